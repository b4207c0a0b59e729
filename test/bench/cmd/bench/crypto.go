package main

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// benchCrypto measures ChaCha20-Poly1305 seal+open of 1420-byte packets on
// one core and turns it into the best TCP goodput two namespaces on this
// machine could reach if every core did nothing but WireGuard's crypto.
func benchCrypto(prm Params, dp *dataplaneResult) []Row {
	const size = 1420
	key := make([]byte, chacha20poly1305.KeySize)
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return errRow("4", "crypto ceiling", err)
	}
	plain := make([]byte, size)
	nonce := make([]byte, chacha20poly1305.NonceSize)
	sealed := make([]byte, 0, size+aead.Overhead())
	opened := make([]byte, 0, size)
	var nsPerOp float64
	var samples []float64
	for range 3 {
		r := testing.Benchmark(func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				sealed = aead.Seal(sealed[:0], nonce, plain, nil)
				var err error
				if opened, err = aead.Open(opened[:0], nonce, sealed, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		samples = append(samples, float64(r.NsPerOp()))
	}
	nsPerOp = median(samples)
	cores := runtime.NumCPU()
	perCore := size * 8 / nsPerOp // Gbit/s of 1420-byte packets sealed and opened by one core
	// Each packet is sealed once (sender) and opened once (receiver); with
	// every core of the machine busy on crypto only, the two namespaces
	// together move cores*perCore of tunnel packets, of which TCP goodput
	// is 1420-40 bytes per packet.
	ceiling := perCore * float64(cores) * (size - 40) / size
	row := Row{
		ID: "4", What: "crypto ceiling: ChaCha20-Poly1305 seal+open, 1420-byte packets",
		Measured: fmt.Sprintf("%.0f ns per seal+open on one core = %.2f Gbit/s per core; ceiling for 2 namespaces on %d cores %.2f Gbit/s TCP goodput", nsPerOp, perCore, cores, ceiling),
		Verdict:  Info,
		Note:     "golang.org/x/crypto/chacha20poly1305 (WireGuard's AEAD), testing.Benchmark, median of 3; ceiling = cores × per-core rate × 1380/1420 (TCP/IP headers inside the tunnel); it ignores TUN, UDP, syscalls and TCP itself, so no tunnel can reach it.",
	}
	if dp != nil && dp.sm4 > 0 {
		row.Measured += fmt.Sprintf("; segmesh 4 streams %.2f Gbit/s, wireguard-go %.2f", dp.sm4, dp.wg4)
		row.Ratio = fmt.Sprintf("segmesh %.2f, wireguard-go %.2f of ceiling", dp.sm4/ceiling, dp.wg4/ceiling)
	}
	return []Row{row}
}
