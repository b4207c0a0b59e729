package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Allowed flows are observed in the kernel, without per-packet work in
// user space (DESIGN.md "Observed flows"): every identity chain's accept
// goes to chain allow_in, which counts the packet in a dynamic set keyed
// by source . protocol . destination port (port 0 for protocols without
// ports), and a new connection (ct state new) in a second one, then
// accepts:
//
//	set obs4 { type ipv4_addr . inet_proto . inet_service; size 65535; flags dynamic,timeout; counter; timeout 10m }
//	set new4 { ... the same ... }                   # and obs6, new6 for IPv6
//	chain allow_in {
//	  ct status & confirmed == 0 meta nfproto ipv4 meta l4proto tcp update @new4 { ip saddr . meta l4proto . th dport counter }
//	  meta nfproto ipv4 meta l4proto tcp update @obs4 { ip saddr . meta l4proto . th dport counter }
//	  ... udp the same; other protocols with port 0; IPv6 the same ...
//	  accept
//	}
//
// Observed reads both. Counts are exact while an element lives; an
// element goes ObservedTimeout after its last packet.
const (
	chainAllowIn = "allow_in"
	setObs4      = "obs4"
	setObs6      = "obs6"
	setNew4      = "new4"
	setNew6      = "new6"

	// ObservedSize bounds each observation set (sources . ports).
	ObservedSize = 65535
)

// ObservedTimeout is how long an observed (source, protocol, port) stays
// in the kernel's sets after its last packet.
const ObservedTimeout = SeenTimeout

// ctStatusConfirmed is IPS_CONFIRMED of the conntrack status bits.
const ctStatusConfirmed = 1 << 3

var (
	obsKey4 = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	obsKey6 = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
)

// observeSets are the observation sets by name.
func observeSets(t *nftables.Table) map[string]*nftables.Set {
	out := map[string]*nftables.Set{}
	for name, kt := range map[string]nftables.SetDatatype{setObs4: obsKey4, setNew4: obsKey4, setObs6: obsKey6, setNew6: obsKey6} {
		out[name] = &nftables.Set{Table: t, Name: name, KeyType: kt, Concatenation: true, Dynamic: true,
			HasTimeout: true, Timeout: ObservedTimeout, Counter: true, Size: ObservedSize}
	}
	return out
}

// allowInRules are the rules of chain allow_in.
func (l *layout) allowInRules() [][]expr.Any {
	var out [][]expr.Any
	for _, f := range []struct {
		addr          netip.Addr
		off, size     uint32
		proto, port   uint32 // registers after the address
		obs, newConns string
	}{
		{netip.IPv4Unspecified(), 12, 4, 9, 10, setObs4, setNew4},
		{netip.IPv6Unspecified(), 8, 16, 2, 13, setObs6, setNew6}, // reg32 12 is NFT_REG_2: the kernel dumps it so
	} {
		for _, p := range []struct {
			match []expr.Any // on register 1 holding meta l4proto
			ports bool
		}{
			{[]expr.Any{&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}}}, true},
			{[]expr.Any{&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}}}, true},
			{[]expr.Any{&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_UDP}}}, false},
		} {
			key := append(nfproto(f.addr), &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1})
			key = append(key, p.match...)
			key = append(key, netHeader(f.off, f.size, 1), &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.proto})
			if p.ports {
				key = append(key, &expr.Payload{DestRegister: f.port, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
			} else {
				key = append(key, &expr.Immediate{Register: f.port, Data: make([]byte, 4)})
			}
			// The first packet of a connection: its conntrack entry is
			// not confirmed yet (a retransmitted SYN, a second UDP
			// datagram before any reply are "new" but confirmed).
			isNew := []expr.Any{
				&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(ctStatusConfirmed), Xor: make([]byte, 4)},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
			}
			out = append(out, append(append(isNew, key...), l.obsUpdate(f.newConns)))
			out = append(out, append(append([]expr.Any{}, key...), l.obsUpdate(f.obs)))
		}
	}
	return append(out, []expr.Any{accept()})
}

// obsUpdate is `update @set { <reg 1 ...> counter }`.
func (l *layout) obsUpdate(set string) *expr.Dynset {
	s := l.sets[set]
	return &expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Operation: unix.NFT_DYNSET_OP_UPDATE,
		Exprs: []expr.Any{&expr.Counter{}}}
}

// Observation is what the kernel counted of the allowed packets of one
// source to one protocol and destination port of this node.
type Observation struct {
	Src            netip.Addr
	Proto          uint8
	Port           uint16 // 0 for protocols without ports
	Packets, Bytes uint64
	Connections    uint64 // new connections (conntrack state new) admitted
}

// Observed returns the allowed traffic into this node as the kernel
// counts it (see chain allow_in), one entry per source, protocol and port
// still held (ObservedTimeout after its last packet). Counters start
// again from zero when an entry comes back after its timeout.
func (f *Firewall) Observed() ([]Observation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return nil, ErrNotInstalled
	}
	type key struct {
		src   netip.Addr
		proto uint8
		port  uint16
	}
	idx := map[key]int{}
	var out []Observation
	for _, s := range []struct {
		name string
		size int
		conn bool
	}{{setObs4, 4, false}, {setObs6, 16, false}, {setNew4, 4, true}, {setNew6, 16, true}} {
		elems, err := f.conn.GetSetElements(f.lay.sets[s.name])
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.name, err)
		}
		for _, e := range elems {
			// address (padded to 4) . proto (padded to 4) . port (padded to 4)
			if len(e.Key) != s.size+8 {
				return nil, fmt.Errorf("set %s: element key of %d bytes", s.name, len(e.Key))
			}
			a, _ := netip.AddrFromSlice(e.Key[:s.size])
			k := key{a, e.Key[s.size], uint16(e.Key[s.size+4])<<8 | uint16(e.Key[s.size+5])}
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				out = append(out, Observation{Src: k.src, Proto: k.proto, Port: k.port})
			}
			if e.Counter == nil {
				continue
			}
			if s.conn {
				out[i].Connections += e.Counter.Packets
			} else {
				out[i].Packets += e.Counter.Packets
				out[i].Bytes += e.Counter.Bytes
			}
		}
	}
	return out, nil
}
