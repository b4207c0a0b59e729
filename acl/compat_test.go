package acl

import (
	"os"
	"testing"
)

// Rolling upgrades: policy documents of the previous release (frozen as
// this release writes them) and of a newer one (unknown fields, a higher
// format) are both accepted, with their hash still checked.
func TestDocumentCompatibility(t *testing.T) {
	for _, f := range []string{"document-v1.json", "document-v2-future.json"} {
		b, err := os.ReadFile("testdata/compat/" + f)
		if err != nil {
			t.Fatal(err)
		}
		d, p, err := DecodeDocument(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.Version != 3 || d.AppliedBy != "root@web-1" || len(p.Rules) != 3 {
			t.Fatalf("%s decoded as %+v", f, d)
		}
	}
}
