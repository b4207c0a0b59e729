package mesh

import (
	"crypto/sha256"
	"encoding/binary"
	"math/big"
	"net/netip"
)

// MaxCandidates is how many IPv4 candidates a key has. A record whose IPv4
// address is not one of them is forged.
const MaxCandidates = 16

// Address6 returns the overlay IPv6 address of pub inside network6: the
// prefix bits of network6 followed by a hash of the key. Any node can verify
// it from the key alone.
func Address6(network6 netip.Prefix, pub Key) netip.Addr {
	h := sha256.Sum256(append([]byte("segmesh/v6/"), pub[:]...))
	base := network6.Masked().Addr().As16()
	bits := network6.Bits()
	var out [16]byte
	for i := 0; i < 16; i++ {
		mask := byte(0)
		switch {
		case bits >= (i+1)*8:
			mask = 0xff
		case bits > i*8:
			mask = byte(0xff << (8 - (bits - i*8)))
		}
		out[i] = base[i]&mask | h[i]&^mask
	}
	a := netip.AddrFrom16(out)
	if a == network6.Masked().Addr() { // never the subnet-router anycast address
		out[15] ^= 1
		a = netip.AddrFrom16(out)
	}
	return a
}

// Candidate4 returns IPv4 candidate i (0-based) of pub inside network. The
// network and broadcast addresses are never returned.
func Candidate4(network netip.Prefix, pub Key, i int) netip.Addr {
	var idx [4]byte
	binary.BigEndian.PutUint32(idx[:], uint32(i))
	in := append([]byte("segmesh/v4/"), pub[:]...)
	h := sha256.Sum256(append(in, idx[:]...))
	hostBits := 32 - network.Bits()
	base := binary.BigEndian.Uint32(network.Masked().Addr().AsSlice())
	if hostBits <= 1 {
		return network.Masked().Addr()
	}
	size := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	usable := new(big.Int).Sub(size, big.NewInt(2)) // minus network and broadcast
	host := new(big.Int).Mod(new(big.Int).SetBytes(h[:8]), usable)
	v := base + uint32(host.Uint64()) + 1
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return netip.AddrFrom4(out)
}

// CandidateIndex returns i such that Candidate4(network, pub, i) == a, or -1
// when a is none of the first MaxCandidates candidates.
func CandidateIndex(network netip.Prefix, pub Key, a netip.Addr) int {
	for i := 0; i < MaxCandidates; i++ {
		if Candidate4(network, pub, i) == a {
			return i
		}
	}
	return -1
}
