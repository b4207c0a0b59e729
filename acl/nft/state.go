package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/segmesh/segmesh/acl"
	"golang.org/x/sys/unix"
)

// content is what the chain and sets of one identity hold.
type content struct {
	any, icmp bool
	tcp, udp  []acl.PortRange
}

func (c *content) equal(o *content) bool {
	return c != nil && o != nil && c.any == o.any && c.icmp == o.icmp &&
		slices.Equal(c.tcp, o.tcp) && slices.Equal(c.udp, o.udp)
}

// state is the table's managed content: what Apply writes.
type state struct {
	local [2][]netip.Addr     // local4, local6 (sorted)
	src   []acl.Source        // src4 and src6, strictly sorted by address
	ids   map[uint32]*content // identity chains; nil content: read from the kernel, not known
	audit bool
}

// fam returns the family index of a: 0 IPv4, 1 IPv6.
func fam(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// desiredState validates e and converts it. It refuses what the table
// cannot hold (see SourceCapacity, IdentityCapacity, PortCapacity) with an
// error wrapping ErrCapacity.
func desiredState(e acl.Enforced) (state, error) {
	s := state{src: slices.Clone(e.Sources), ids: make(map[uint32]*content, len(e.Identities)), audit: e.Audit}
	if len(e.Identities) > IdentityCapacity {
		return state{}, fmt.Errorf("%w: %d identities, at most %d", ErrCapacity, len(e.Identities), IdentityCapacity)
	}
	for _, id := range e.Identities {
		if id.ID == 0 {
			return state{}, fmt.Errorf("identity number 0")
		}
		if s.ids[id.ID] != nil {
			return state{}, fmt.Errorf("identity %d listed twice", id.ID)
		}
		c := &content{any: id.Any, icmp: id.ICMP && !id.Any}
		if !id.Any {
			var err error
			if c.tcp, err = cleanRanges(id.TCP); err != nil {
				return state{}, fmt.Errorf("identity %d: tcp: %w", id.ID, err)
			}
			if c.udp, err = cleanRanges(id.UDP); err != nil {
				return state{}, fmt.Errorf("identity %d: udp: %w", id.ID, err)
			}
		}
		if n := len(c.tcp) + len(c.udp); n > PortCapacity {
			return state{}, fmt.Errorf("%w: identity %d has %d port elements, at most %d", ErrCapacity, id.ID, n, PortCapacity)
		}
		s.ids[id.ID] = c
	}
	// Sources: checked in one pass without allocating (a join among
	// 100,000 peers must not cost more than the kernel's work). Identity
	// numbers are checked through a dense table.
	maxID := uint32(0)
	for id := range s.ids {
		maxID = max(maxID, id)
	}
	known := make([]bool, maxID+1)
	for id := range s.ids {
		known[id] = true
	}
	var perFam [2]int
	for i, src := range e.Sources {
		a := src.Addr
		if !a.Is4() && !(a.Is6() && !a.Is4In6() && a.Zone() == "") {
			return state{}, fmt.Errorf("source %v: not a plain IPv4 or IPv6 address", a)
		}
		if src.ID > maxID || !known[src.ID] {
			return state{}, fmt.Errorf("source %v: identity %d not listed", a, src.ID)
		}
		if i > 0 && !e.Sources[i-1].Addr.Less(a) {
			return state{}, fmt.Errorf("sources not strictly sorted by address at %v", a)
		}
		perFam[fam(a)]++
	}
	for f, n := range perFam {
		if n > SourceCapacity {
			return state{}, fmt.Errorf("%w: %d IPv%d sources, at most %d", ErrCapacity, n, 4+2*f, SourceCapacity)
		}
	}
	for _, a := range e.Local {
		if !a.Is4() && !(a.Is6() && !a.Is4In6() && a.Zone() == "") {
			return state{}, fmt.Errorf("local address %v: not a plain IPv4 or IPv6 address", a)
		}
		if f := fam(a); !slices.Contains(s.local[f], a) {
			s.local[f] = append(s.local[f], a)
		}
	}
	for f := range s.local {
		slices.SortFunc(s.local[f], netip.Addr.Compare)
	}
	return s, nil
}

// ErrCapacity is wrapped by Apply's error when the desired state does not
// fit the table; the table is then left as it was.
var ErrCapacity = fmt.Errorf("policy too large for the nftables table")

// cleanRanges sorts rs and merges overlapping or adjacent ranges.
func cleanRanges(rs []acl.PortRange) ([]acl.PortRange, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	out := slices.Clone(rs)
	for _, r := range out {
		if r.Lo > r.Hi {
			return nil, fmt.Errorf("range %d-%d: low above high", r.Lo, r.Hi)
		}
	}
	slices.SortFunc(out, func(a, b acl.PortRange) int { return int(a.Lo) - int(b.Lo) })
	m := out[:1]
	for _, r := range out[1:] {
		last := &m[len(m)-1]
		if int(r.Lo) <= int(last.Hi)+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		m = append(m, r)
	}
	return m, nil
}

// refresh reads the managed content of the kernel's table into f.cur: the
// local sets, the source maps, the identity chains (their content unknown)
// and the mode.
func (f *Firewall) refresh() error {
	cur := state{ids: map[uint32]*content{}}
	for i, name := range []string{setLocal4, setLocal6} {
		elems, err := f.conn.GetSetElements(f.lay.sets[name])
		if err != nil {
			return fmt.Errorf("list elements of set %s: %w", name, err)
		}
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				return fmt.Errorf("set %s: element key of %d bytes", name, len(e.Key))
			}
			cur.local[i] = append(cur.local[i], a)
		}
		slices.SortFunc(cur.local[i], netip.Addr.Compare)
	}
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		if id, ok := parseIDChain(c.Name); ok {
			cur.ids[id] = nil
		}
	}
	for _, name := range []string{mapSrc4, mapSrc6} {
		elems, err := f.conn.GetSetElements(f.lay.sets[name])
		if err != nil {
			return fmt.Errorf("list elements of map %s: %w", name, err)
		}
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				return fmt.Errorf("map %s: element key of %d bytes", name, len(e.Key))
			}
			chain, err := jumpTarget(e)
			if err != nil {
				return fmt.Errorf("map %s: element %v: %w", name, a, err)
			}
			id, ok := parseIDChain(chain)
			if _, exists := cur.ids[id]; !ok || !exists {
				return fmt.Errorf("map %s: element %v jumps to %q, not an identity chain; Install again", name, a, chain)
			}
			cur.src = append(cur.src, acl.Source{Addr: a, ID: id})
		}
	}
	slices.SortFunc(cur.src, func(x, y acl.Source) int { return x.Addr.Compare(y.Addr) })
	rules, err := f.conn.GetRules(f.lay.table, f.lay.meshIn)
	if err != nil {
		return fmt.Errorf("list rules of chain %s: %w", chainMeshIn, err)
	}
	if len(rules) == 0 {
		return fmt.Errorf("chain %s is empty; Install again", chainMeshIn)
	}
	last := rules[len(rules)-1]
	switch {
	case sameExprs(last.Exprs, finalExprs(false)):
	case sameExprs(last.Exprs, finalExprs(true)):
		cur.audit = true
	default:
		return fmt.Errorf("last rule of chain %s is not the final verdict; Install again", chainMeshIn)
	}
	f.lay.finalHandle = last.Handle
	f.cur, f.known = cur, true
	return nil
}

// jumpTarget returns the chain a verdict map element jumps to (the library
// returns a verdict's attributes undecoded).
func jumpTarget(e nftables.SetElement) (string, error) {
	if e.VerdictData != nil {
		if e.VerdictData.Kind != expr.VerdictJump {
			return "", fmt.Errorf("not a jump")
		}
		return e.VerdictData.Chain, nil
	}
	as, err := netlink.UnmarshalAttributes(e.Val)
	if err != nil {
		return "", fmt.Errorf("decode verdict: %w", err)
	}
	var code int32
	chain := ""
	for _, a := range as {
		switch a.Type &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER) {
		case unix.NFTA_VERDICT_CODE:
			if len(a.Data) == 4 {
				code = int32(binary.BigEndian.Uint32(a.Data))
			}
		case unix.NFTA_VERDICT_CHAIN:
			chain = strings.TrimRight(string(a.Data), "\x00")
		}
	}
	if code != int32(expr.VerdictJump) {
		return "", fmt.Errorf("not a jump")
	}
	return chain, nil
}
