package gossip

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/mesh"
)

// benchRecords returns genuine node records as a daemon announces them: open
// mode with a few declared tags; CA mode (tags only inside the compact
// certificate, as node.record builds it); and open mode with enough tags
// that the record no longer fits memberlist's node meta, so it travels as a
// stub plus a separate full record (the extension).
func benchRecords(b *testing.B) map[string]Record {
	b.Helper()
	key, err := mesh.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	pub := key.PublicKey()
	base := Record{
		Format: RecordFormat, Name: "web-17", PublicKey: pub.String(), ListenPort: 51820,
		Address4: mesh.Candidate4(netip.MustParsePrefix("100.80.0.0/16"), pub, 0), Claimed: time.Now().UnixNano(),
		Address6: mesh.Address6(netip.MustParsePrefix("fd5e:6d00::/48"), pub),
	}
	tags := map[string]string{"role": "web", "env": "prod", "team": "payments"}

	plain := base
	plain.Tags = tags

	_, caPriv, err := ca.GenerateCA()
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Issue(caPriv, ca.Certificate{Name: base.Name, PublicKey: pub, Tags: tags})
	if err != nil {
		b.Fatal(err)
	}
	compact, err := cert.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	withCert := base
	withCert.Cert = compact

	extended := base
	extended.Tags = map[string]string{}
	for i := range 12 {
		extended.Tags[fmt.Sprintf("label-%02d", i)] = fmt.Sprintf("value-of-label-%02d", i)
	}
	return map[string]Record{"plain": plain, "cert": withCert, "extended": extended}
}

var benchRecordCases = []string{"plain", "cert", "extended"}

// BenchmarkRecordEncode is the announcing side: splitRecord (what New and
// UpdateLocal run) encodes the record as node meta, and as stub plus full
// record when it exceeds MaxMetaSize.
func BenchmarkRecordEncode(b *testing.B) {
	recs := benchRecords(b)
	for _, name := range benchRecordCases {
		b.Run(name, func(b *testing.B) {
			r := recs[name]
			lr, err := splitRecord(r)
			if err != nil {
				b.Fatal(err)
			}
			checkBenchCase(b, name, lr)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := splitRecord(r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(lr.meta)), "meta-bytes")
			if lr.full != nil {
				b.ReportMetric(float64(len(lr.full)), "full-bytes")
			}
		})
	}
}

// BenchmarkRecordDecode is the receiving side of one announcement: the
// extension digest is read from the meta (setNode), the meta is decoded
// (what the daemon reads from Members), and for a stub the full record,
// arrived separately, is decoded too (storeRecordLocked).
func BenchmarkRecordDecode(b *testing.B) {
	recs := benchRecords(b)
	for _, name := range benchRecordCases {
		b.Run(name, func(b *testing.B) {
			lr, err := splitRecord(recs[name])
			if err != nil {
				b.Fatal(err)
			}
			checkBenchCase(b, name, lr)
			b.ReportAllocs()
			for b.Loop() {
				ext := metaExt(lr.meta)
				r, err := DecodeRecord(lr.meta)
				if err != nil {
					b.Fatal(err)
				}
				if ext != "" {
					if r, err = DecodeRecord(lr.full); err != nil {
						b.Fatal(err)
					}
				}
				if r.PublicKey == "" {
					b.Fatal("decoded record has no key")
				}
			}
		})
	}
}

// checkBenchCase fails the benchmark when a case does not take the path it
// is named after.
func checkBenchCase(b *testing.B, name string, lr localRecord) {
	b.Helper()
	if extended := lr.full != nil; extended != (name == "extended") {
		b.Fatalf("case %s: record extended = %v (meta %d bytes)", name, extended, len(lr.meta))
	}
	r, err := DecodeRecord(lr.meta)
	if err != nil {
		b.Fatal(err)
	}
	if hasCert := len(r.Cert) > 0; hasCert != (name == "cert") {
		b.Fatalf("case %s: record carries a certificate = %v", name, hasCert)
	}
}
