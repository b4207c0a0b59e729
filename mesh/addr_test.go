package mesh

import (
	"net/netip"
	"testing"
)

func TestAddress6(t *testing.T) {
	k1, k2 := testKey(t).PublicKey(), testKey(t).PublicKey()
	for _, n := range []string{"fd5e:6d00::/48", "fd00::/8", "fd5e:6d00:1:2::/64", "fd5e:6d00::/127"} {
		net6 := netip.MustParsePrefix(n)
		a := Address6(net6, k1)
		if !net6.Contains(a) {
			t.Errorf("%s: %s outside the prefix", n, a)
		}
		if a != Address6(net6, k1) {
			t.Errorf("%s: not deterministic", n)
		}
		if net6.Bits() < 127 && a == net6.Masked().Addr() {
			t.Errorf("%s: subnet-router anycast address %s", n, a)
		}
		if net6.Bits() <= 64 && a == Address6(net6, k2) {
			t.Errorf("%s: two keys share %s", n, a)
		}
	}
	if Address6(netip.MustParsePrefix("fd5e:6d00::/48"), k1) == Address6(netip.MustParsePrefix("fd5e:6d01::/48"), k1) {
		t.Error("address does not depend on the prefix")
	}
}

func TestCandidate4(t *testing.T) {
	for bits := 8; bits <= 30; bits++ {
		network := netip.PrefixFrom(netip.MustParseAddr("100.80.0.0"), bits).Masked()
		bcast := lastAddr(network)
		for k := 0; k < 20; k++ {
			pub := testKey(t).PublicKey()
			for i := 0; i < MaxCandidates; i++ {
				a := Candidate4(network, pub, i)
				if !network.Contains(a) || a == network.Addr() || a == bcast {
					t.Fatalf("/%d candidate %d = %s: network %s broadcast %s", bits, i, a, network.Addr(), bcast)
				}
				if a != Candidate4(network, pub, i) {
					t.Fatalf("/%d: not deterministic", bits)
				}
			}
		}
	}
	// A /30 has two usable addresses; both must come up across keys.
	n30 := netip.MustParsePrefix("192.0.2.4/30")
	seen := map[netip.Addr]bool{}
	for k := 0; k < 50; k++ {
		seen[Candidate4(n30, testKey(t).PublicKey(), 0)] = true
	}
	if len(seen) != 2 || !seen[netip.MustParseAddr("192.0.2.5")] || !seen[netip.MustParseAddr("192.0.2.6")] {
		t.Fatalf("/30 candidates %v", seen)
	}
	// Candidates of one key in a large network differ.
	pub := testKey(t).PublicKey()
	n16 := netip.MustParsePrefix("100.80.0.0/16")
	uniq := map[netip.Addr]bool{}
	for i := 0; i < MaxCandidates; i++ {
		uniq[Candidate4(n16, pub, i)] = true
	}
	if len(uniq) < MaxCandidates-1 {
		t.Fatalf("only %d distinct candidates of %d", len(uniq), MaxCandidates)
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<host - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func TestCandidateIndex(t *testing.T) {
	n := netip.MustParsePrefix("100.80.0.0/16")
	pub, other := testKey(t).PublicKey(), testKey(t).PublicKey()
	for i := 0; i < MaxCandidates; i++ {
		a := Candidate4(n, pub, i)
		got := CandidateIndex(n, pub, a)
		// An earlier candidate may coincide; the first index is returned.
		if got < 0 || got > i || Candidate4(n, pub, got) != a {
			t.Fatalf("CandidateIndex(candidate %d = %s) = %d", i, a, got)
		}
	}
	if got := CandidateIndex(n, pub, Candidate4(n, pub, MaxCandidates+3)); got != -1 && Candidate4(n, pub, got) != Candidate4(n, pub, MaxCandidates+3) {
		t.Fatalf("candidate beyond the limit accepted as %d", got)
	}
	outside := netip.MustParseAddr("10.0.0.1")
	if got := CandidateIndex(n, pub, outside); got != -1 {
		t.Fatalf("address outside the network accepted as candidate %d", got)
	}
	// Another key's address is not ours (unless by a 1-in-4000 collision).
	forged := 0
	for i := 0; i < MaxCandidates; i++ {
		if CandidateIndex(n, pub, Candidate4(n, other, i)) >= 0 {
			forged++
		}
	}
	if forged > 1 {
		t.Fatalf("%d of another key's candidates accepted", forged)
	}
}
