package node

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// trustGen is everything verifyRecord depends on besides the member and the
// time: a cached outcome is reused only under the same generation.
type trustGen struct {
	self       mesh.Key
	net4, net6 netip.Prefix
	trust      *trustState // replaced on reload (CA keys, certificate)
	revs       uint64      // revocation list version (it only grows within one trustState)
}

// certPhase is where a time stands against a certificate's validity.
type certPhase int8

const (
	phaseNone   certPhase = iota // no certificate parsed: the outcome does not depend on time
	phaseBefore                  // before NotBefore
	phaseWithin                  // in [NotBefore, NotAfter)
	phaseAfter                   // at or past NotAfter
)

// phaseOf places now against the window [nb, na), as ca.Signed.Verify does.
func phaseOf(w certWindow, now time.Time) certPhase {
	switch {
	case !w.ok:
		return phaseNone
	case now.Before(w.notBefore):
		return phaseBefore
	case now.Before(w.notAfter):
		return phaseWithin
	}
	return phaseAfter
}

// verifyEntry is one member's verified (or rejected) record.
type verifyEntry struct {
	meta    []byte // the exact record bytes the outcome is for
	vr      verified
	rej     *rejection
	decoded bool           // the record decoded (vr.rec holds its announced fields)
	window  certWindow     // the certificate's validity, when one was parsed
	phase   certPhase      // where the verification time stood in window
	allowed []netip.Prefix // its overlay addresses as WireGuard routes them (read-only, shared by views)
	round   uint64         // last sync round that used it
}

// verifyCache keeps each member's record verification (decode, addresses,
// certificate signature and revocation) across syncs: a record is verified
// again only when its bytes change, the trust generation changes, or the
// time crosses its certificate's NotBefore or NotAfter. Entries of members
// no longer listed are dropped at the end of each round. The node's mu
// guards it.
type verifyCache struct {
	gen     trustGen
	round   uint64
	entries map[string]*verifyEntry // by member name
}

func newVerifyCache() verifyCache {
	return verifyCache{entries: map[string]*verifyEntry{}}
}

// begin starts a sync round under gen, dropping every entry when gen
// changed.
func (c *verifyCache) begin(gen trustGen) {
	if gen != c.gen {
		clear(c.entries)
		c.gen = gen
	}
	c.round++
}

// lookup returns m's verification at now, verifying it when nothing cached
// applies.
func (c *verifyCache) lookup(m gossip.Member, now time.Time) *verifyEntry {
	e := c.entries[m.Name]
	if e == nil || !bytes.Equal(e.meta, m.Meta) || phaseOf(e.window, now) != e.phase {
		e = c.verify(m, now)
		c.entries[m.Name] = e
	}
	e.round = c.round
	return e
}

func (c *verifyCache) verify(m gossip.Member, now time.Time) *verifyEntry {
	g := c.gen
	vr, rej, w, decoded := checkRecord(m, g.self, g.net4, g.net6, g.trust, now)
	e := &verifyEntry{meta: bytes.Clone(m.Meta), vr: vr, rej: rej, decoded: decoded, window: w, phase: phaseOf(w, now)}
	if rej == nil {
		e.allowed = []netip.Prefix{netip.PrefixFrom(vr.rec.Address4, 32), netip.PrefixFrom(vr.rec.Address6, 128)}
	}
	return e
}

// end drops the entries of members the round did not look up.
func (c *verifyCache) end() {
	for name, e := range c.entries {
		if e.round != c.round {
			delete(c.entries, name)
		}
	}
}
