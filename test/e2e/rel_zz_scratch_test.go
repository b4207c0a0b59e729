package e2e

import (
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

func TestRelZZScratch(t *testing.T) {
	f := newRelFixture(t, grace)
	tc := f.tc
	a := relAdd(f, "a", role("web"))
	b := relAdd(f, "b", role("app"), a)
	c := relAdd(f, "c", role("db"), a)
	d := relAdd(f, "d", role("web"), a)
	relStart(t, f)
	_ = c
	startServer(t, tc, b.Namespace, "serve-b", []int{relStreamPort, relStreamPort + 1}, nil)
	for i := 0; i < 3; i++ {
		for _, src := range []*harness.Node{a, d} {
			r, err := probeOne(src.Namespace, time.Second, flow{"tcp", f.addr(b, false), 8080})
			t.Logf("before streams: %s -> b: %s %v", src.Name, r, err)
		}
	}
	relStream(t, tc, d, "stream-d-b6", relAddr(f, b, true, relStreamPort))
	for i := 0; i < 3; i++ {
		for _, src := range []*harness.Node{a, d} {
			r, err := probeOne(src.Namespace, time.Second, flow{"tcp", f.addr(b, false), 8080})
			t.Logf("after stream: %s -> b: %s %v", src.Name, r, err)
			r, err = probeOne(src.Namespace, time.Second, flow{"tcp", f.addr(b, true), 8080})
			t.Logf("after stream: %s -> b6: %s %v", src.Name, r, err)
		}
	}
	t.Logf("b sets ok: %v", relSetsMatch(f)(b))
	out, _ := b.Exec("conntrack", "-L")
	t.Logf("b conntrack:\n%s", out)
	out, _ = d.Exec("conntrack", "-L")
	t.Logf("d conntrack:\n%s", out)
	out, _ = b.Exec("nft", "list", "table", "inet", "segmesh")
	t.Logf("b nft:\n%s", out)
}
