package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/segmesh/segmesh/mesh"
)

// Address memory (security invariant 1): every node remembers, for each
// overlay IPv4 address, the key that held it and the earliest claim time it
// saw, also while the holder is dead, left or restarting, for
// address_retention after it was last seen alive. Another key's claim of a
// remembered address is refused until the holder's retention ends or an
// operator removes the holder (segmesh node remove).
//
// What a node remembers is its own observation and only that decides whom it
// refuses: another node's memory cannot be checked (in trust: open anyone
// with the cluster key could forge one), so the books that nodes exchange
// through push/pull are hints. A node uses hints to choose its own address
// around remembered ones (a newcomer does not take a restarting node's
// address) and never to refuse or admit a peer.

const (
	addrBookFile = "addresses.json"
	// docKindAddresses carries a node's own memory as hints for others.
	docKindAddresses = "addresses"
	// addrBookSaveEvery bounds how often a last-seen refresh alone is
	// persisted; a new, moved or forgotten holder is persisted at once.
	addrBookSaveEvery = 30 * time.Second
	// maxHintsPerAddr bounds the hinted holders kept per address.
	maxHintsPerAddr = 4
)

// holding is one remembered holder of an IPv4 address.
type holding struct {
	key      mesh.Key
	name     string    // human name, for node remove and messages
	claimed  time.Time // earliest claim time seen
	lastSeen time.Time // last time seen alive holding it
}

// addrBook is a node's memory of address holders. The node guards it with mu.
type addrBook struct {
	retention time.Duration
	local     map[netip.Addr]holding
	byKey     map[mesh.Key]netip.Addr
	hints     map[netip.Addr][]holding
	removed   map[mesh.Key]time.Time // operator removals: hints older than this are ignored
	dirty     bool                   // a change that must be persisted at once
	savedAt   time.Time
}

func newAddrBook(retention time.Duration) addrBook {
	return addrBook{retention: retention, local: map[netip.Addr]holding{}, byKey: map[mesh.Key]netip.Addr{},
		hints: map[netip.Addr][]holding{}, removed: map[mesh.Key]time.Time{}}
}

func (h holding) live(now time.Time, retention time.Duration) bool {
	return now.Sub(h.lastSeen) <= retention
}

// holder returns the remembered holder of addr, if its retention lasts.
func (b *addrBook) holder(addr netip.Addr, now time.Time) (holding, bool) {
	h, ok := b.local[addr]
	if !ok || !h.live(now, b.retention) {
		return holding{}, false
	}
	return h, true
}

// holderOf is holder on a possibly absent book.
func (b *addrBook) holderOf(addr netip.Addr, now time.Time) (holding, bool) {
	if b == nil {
		return holding{}, false
	}
	return b.holder(addr, now)
}

// remembers reports whether key is remembered as holding addr.
func (b *addrBook) remembers(addr netip.Addr, key mesh.Key, now time.Time) bool {
	h, ok := b.holder(addr, now)
	return ok && h.key == key
}

// observe records that key (name) holds addr as of now, with the claim time
// the clash rule granted it. A key holds one IPv4 address: an older entry of
// the same key is dropped.
func (b *addrBook) observe(addr netip.Addr, key mesh.Key, name string, claimed, now time.Time) {
	if old, ok := b.byKey[key]; ok && old != addr {
		delete(b.local, old)
		b.dirty = true
	}
	h, ok := b.local[addr]
	switch {
	case !ok || h.key != key:
		h = holding{key: key, name: name, claimed: claimed}
		b.dirty = true
	case claimed.Before(h.claimed):
		h.claimed, b.dirty = claimed, true
	}
	if h.name != name {
		h.name, b.dirty = name, true
	}
	h.lastSeen = now
	b.local[addr] = h
	b.byKey[key] = addr
}

// expire drops the holders absent longer than the retention; it returns them.
func (b *addrBook) expire(now time.Time) []holding {
	var gone []holding
	for a, h := range b.local {
		if !h.live(now, b.retention) {
			gone = append(gone, h)
			delete(b.local, a)
			delete(b.byKey, h.key)
			b.dirty = true
		}
	}
	b.keepHints(func(h holding) bool { return h.live(now, b.retention) })
	return gone
}

// keepHints keeps the hints for which keep is true.
func (b *addrBook) keepHints(keep func(holding) bool) {
	for a, hs := range b.hints {
		kept := hs[:0]
		for _, h := range hs {
			if keep(h) {
				kept = append(kept, h)
			}
		}
		if len(kept) == 0 {
			delete(b.hints, a)
		} else {
			b.hints[a] = kept
		}
	}
}

// forget frees the address of key (operator removal at time at).
func (b *addrBook) forget(key mesh.Key, at time.Time) (netip.Addr, bool) {
	b.removed[key] = at
	b.keepHints(func(h holding) bool { return h.key != key })
	addr, ok := b.byKey[key]
	if !ok {
		return netip.Addr{}, false
	}
	delete(b.local, addr)
	delete(b.byKey, key)
	b.dirty = true
	return addr, true
}

// find returns a remembered holder by name, key or address (ambiguous names
// are an error).
func (b *addrBook) find(q string) (netip.Addr, holding, error) {
	var found []netip.Addr
	for a, h := range b.local {
		if h.key.String() == q || h.name == q || a.String() == q {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 0:
		return netip.Addr{}, holding{}, errNotRemembered
	case 1:
		return found[0], b.local[found[0]], nil
	}
	return netip.Addr{}, holding{}, fmt.Errorf("%q matches several remembered holders: give the public key", q)
}

var errNotRemembered = errors.New("not remembered")

// heldByOthers returns the addresses remembered or hinted as held by another
// key than self, for choosing self's address.
func (b *addrBook) heldByOthers(self mesh.Key, now time.Time) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	if b == nil {
		return out
	}
	for a, h := range b.local {
		if h.key != self && h.live(now, b.retention) {
			out[a] = true
		}
	}
	for a, hs := range b.hints {
		for _, h := range hs {
			if h.key != self && h.live(now, b.retention) {
				out[a] = true
			}
		}
	}
	return out
}

// hintedForOther reports whether another node's memory says addr is held by
// a key other than self.
func (b *addrBook) hintedForOther(addr netip.Addr, self mesh.Key, now time.Time) bool {
	if b == nil {
		return false
	}
	for _, h := range b.hints[addr] {
		if h.key != self && h.live(now, b.retention) {
			return true
		}
	}
	return false
}

// bookEntry is one holder in the file and in the hints document.
type bookEntry struct {
	Addr     netip.Addr `json:"addr"`
	Key      string     `json:"key"`
	Name     string     `json:"name,omitempty"`
	Claimed  int64      `json:"claimed"`   // unix nanoseconds
	LastSeen int64      `json:"last_seen"` // unix nanoseconds
}

type bookFile struct {
	Holders []bookEntry      `json:"holders"`
	Removed map[string]int64 `json:"removed,omitempty"` // key -> unix nanoseconds
}

func (b *addrBook) entries() []bookEntry {
	out := make([]bookEntry, 0, len(b.local))
	for a, h := range b.local {
		out = append(out, bookEntry{Addr: a, Key: h.key.String(), Name: h.name, Claimed: h.claimed.UnixNano(), LastSeen: h.lastSeen.UnixNano()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

// encodeHints is this node's own memory as a document for push/pull.
func (b *addrBook) encodeHints() ([]byte, error) {
	es := b.entries()
	for i := range es {
		es[i].Name = ""
	}
	return json.Marshal(es)
}

// mergeHints takes another node's memory; it reports how many entries it
// kept. Entries this node cannot use (not IPv4 in network, bad key, removed
// by an operator since) are dropped.
func (b *addrBook) mergeHints(data []byte, network netip.Prefix, now time.Time) (int, error) {
	var es []bookEntry
	if err := json.Unmarshal(data, &es); err != nil {
		return 0, fmt.Errorf("decode address hints: %w", err)
	}
	kept := 0
	for _, e := range es {
		k, err := mesh.ParseKey(e.Key)
		if err != nil || !e.Addr.Is4() || !network.Contains(e.Addr) || mesh.CandidateIndex(network, k, e.Addr) < 0 {
			continue
		}
		h := holding{key: k, claimed: time.Unix(0, e.Claimed), lastSeen: time.Unix(0, e.LastSeen)}
		if at, ok := b.removed[k]; (ok && !h.lastSeen.After(at)) || !h.live(now, b.retention) {
			continue
		}
		b.addHint(e.Addr, h)
		kept++
	}
	return kept, nil
}

func (b *addrBook) addHint(addr netip.Addr, h holding) {
	hs := b.hints[addr]
	for i := range hs {
		if hs[i].key == h.key {
			if h.lastSeen.After(hs[i].lastSeen) {
				hs[i].lastSeen = h.lastSeen
			}
			return
		}
	}
	if len(hs) >= maxHintsPerAddr {
		return
	}
	b.hints[addr] = append(hs, h)
}

// load reads the persisted memory; a missing file is an empty memory, a
// corrupt one an error (refusing to start beats forgetting every holder).
func (b *addrBook) load(stateDir string, network netip.Prefix) error {
	data, err := os.ReadFile(filepath.Join(stateDir, addrBookFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read address memory: %w", err)
	}
	var f bookFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("address memory %s is corrupt (move it away to start with an empty memory): %w", filepath.Join(stateDir, addrBookFile), err)
	}
	for _, e := range f.Holders {
		k, err := mesh.ParseKey(e.Key)
		if err != nil || !network.Contains(e.Addr) {
			continue // another network (renumbered mesh): not ours to keep
		}
		b.local[e.Addr] = holding{key: k, name: e.Name, claimed: time.Unix(0, e.Claimed), lastSeen: time.Unix(0, e.LastSeen)}
		b.byKey[k] = e.Addr
	}
	for s, at := range f.Removed {
		if k, err := mesh.ParseKey(s); err == nil {
			b.removed[k] = time.Unix(0, at)
		}
	}
	return nil
}

// save persists the memory when a change is due: at once after a new,
// moved or forgotten holder, else every addrBookSaveEvery.
func (b *addrBook) save(stateDir string, now time.Time) error {
	if !b.dirty && now.Sub(b.savedAt) < addrBookSaveEvery {
		return nil
	}
	f := bookFile{Holders: b.entries(), Removed: map[string]int64{}}
	for k, at := range b.removed {
		if now.Sub(at) <= b.retention {
			f.Removed[k.String()] = at.UnixNano()
		}
	}
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode address memory: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(stateDir, addrBookFile), data, 0o600); err != nil {
		return fmt.Errorf("persist address memory: %w", err)
	}
	b.dirty, b.savedAt = false, now
	return nil
}

// mergeAddressHints takes another node's address memory from push/pull and
// syncs when it may move this node off its address.
func (n *Node) mergeAddressHints(data []byte) {
	n.mu.Lock()
	now := n.deps.Now()
	_, err := n.book.mergeHints(data, n.cfg.Network, now)
	move := err == nil && n.hintsCount(now) && n.book.hintedForOther(n.claim.Address, n.pub, now)
	n.mu.Unlock()
	if err != nil {
		n.log.Warn("address hints rejected", "err", err)
		return
	}
	if move {
		n.kick()
	}
}
