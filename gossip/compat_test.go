package gossip

import (
	"os"
	"testing"
)

// Rolling upgrades: a node must read the records of the previous release
// (testdata/compat/record-v1.json, frozen as this release writes them) and
// of a newer one (unknown fields, a higher format), ignoring what it does
// not know.
func TestRecordCompatibility(t *testing.T) {
	for _, f := range []string{"record-v1.json", "record-v2-future.json"} {
		b, err := os.ReadFile("testdata/compat/" + f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := DecodeRecord(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.Name != "db-1" || r.ListenPort != 51820 || r.Tags["role"] != "db" || r.Address4.String() != "100.80.204.210" {
			t.Fatalf("%s decoded as %+v", f, r)
		}
	}
	// What this release writes still reads as the frozen v1 fixture does.
	r, _ := DecodeRecord(mustRead(t, "testdata/compat/record-v1.json"))
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodeRecord(b)
	if err != nil || again.Name != r.Name || again.Claimed != r.Claimed || again.Address6 != r.Address6 {
		t.Fatalf("round trip: %+v %v", again, err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
