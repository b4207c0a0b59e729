package nft

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
)

// oldTable returns testdata/old_table.nft — the previous release's table as
// `nft list table inet segmesh` printed it, captured from that release's
// Firewall (local 100.80.0.1; 100.80.0.2 and fd5e:6d00::2 allowed tcp/22,
// tcp/8000-8100 and icmp; .3 tcp/22 and udp/53; .4 any) — with the
// addresses .1 and .2 swapped to fit the mesh pair (server .2, client .1).
// Captured with the previous release's Firewall.Install and Apply in a
// throwaway namespace, then `nft list table inet segmesh`.
func oldTable(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "old_table.nft"))
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("100.80.0.1 ", "100.80.0.2 ", "100.80.0.2 ", "100.80.0.1 ",
		"fd5e:6d00::1 ", "fd5e:6d00::2 ", "fd5e:6d00::2 ", "fd5e:6d00::1 ")
	return r.Replace(string(b))
}

// TestRootUpgradeFromPreviousRelease: the previous release's table is in
// place and enforcing; a new Firewall's Install keeps it (no transaction)
// and the first Apply converts it in one transaction. Allowed probes pass
// before, during and after; denied ones fail; an established flow survives.
func TestRootUpgradeFromPreviousRelease(t *testing.T) {
	var script string
	p := newMeshPairWith(t, func(s *testNS) {
		script = filepath.Join(t.TempDir(), "old.nft")
		if err := os.WriteFile(script, []byte(oldTable(t)), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Run("nft", "-f", script)
		// The range shard is the source's address modulo 128: the swapped
		// client's range belongs to shard 1, as the old release put it.
		s.Run("nft", "add element inet segmesh allow4r_001 { 100.80.0.1 . tcp . 8000-8100 }")
		s.Run("nft", "add element inet segmesh allow6r_001 { fd5e:6d00::1 . tcp . 8000-8100 }")
	})
	if tbl := p.server.Run("nft", "list", "table", "inet", "segmesh"); !strings.Contains(tbl, "allow4r_127") || !strings.Contains(tbl, "100.80.0.1 . tcp . 8000-8100") {
		t.Fatalf("test premise: old layout:\n%s", tbl)
	}
	p.mustConnect(srv4, 8080)
	p.mustConnect(srv6, 8080)
	p.mustTimeOut(srv4, 9090)
	established := p.mustConnect(srv4, 8080)

	p.fw = p.server.firewall(testConfig())
	g := p.server.gen()
	if err := p.fw.Install(); err != nil {
		t.Fatal(err)
	}
	if d := p.server.gen() - g; d != 0 {
		t.Fatalf("Install over the previous release's table committed %d transactions, want 0 (kept until the first Apply)", d)
	}
	// Still enforcing the old elements.
	p.mustConnect(srv4, 8080)
	p.mustTimeOut(srv4, 9090)

	// Probe continuously while converting: every allowed connection passes.
	var probes atomic.Int64
	stop := make(chan struct{})
	failures := make(chan error, 100)
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			c, err := p.dial(srv4, 8080, 2*time.Second)
			if err == nil {
				err = echo(c, 2*time.Second)
				_ = c.Close()
			}
			if err != nil {
				failures <- err
			}
			n++
			probes.Add(1)
		}
	}()
	e := acl.Enforced{Local: srvLocal,
		Identities: []acl.Identity{{ID: 1, ICMP: true, TCP: []acl.PortRange{{Lo: 22, Hi: 22}, {Lo: 8000, Hi: 8100}}}},
		Sources:    []acl.Source{{Addr: cli4, ID: 1}, {Addr: cli6, ID: 1}}}
	waitProbes := func(min int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for probes.Load() < int64(min) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitProbes(3) // the prober runs before the conversion
	g = p.server.gen()
	if err := p.fw.Apply(e); err != nil {
		t.Fatal(err)
	}
	if d := p.server.gen() - g; d != 1 || !p.fw.last.Converted {
		t.Fatalf("conversion: %d transactions, %+v; want one converting transaction", d, p.fw.last)
	}
	waitProbes(int(probes.Load()) + 3) // and after it
	close(stop)
	n := <-done
	close(failures)
	for err := range failures {
		t.Errorf("allowed probe failed around the conversion: %v", err)
	}
	t.Logf("%d probes around the conversion", n)

	tbl := p.server.Run("nft", "list", "table", "inet", "segmesh")
	if strings.Contains(tbl, "allow4") || !strings.Contains(tbl, "ip saddr vmap @src4") || !strings.Contains(tbl, "100.80.0.1 : jump id_1") {
		t.Fatalf("not converted:\n%s", tbl)
	}
	if err := echo(established, 5*time.Second); err != nil {
		t.Errorf("established flow cut by the conversion: %v", err)
	}
	p.mustConnect(srv4, 8080)
	p.mustConnect(srv6, 8080)
	p.mustTimeOut(srv4, 9090)
	p.mustTimeOut(srv6, 9090)
	p.client.Run("ping", "-c", "1", "-W", "2", "100.80.0.2")
	// And it is a normal table from now on: a restart keeps it.
	f2 := p.server.firewall(testConfig())
	g = p.server.gen()
	if err := f2.Install(); err != nil {
		t.Fatal(err)
	}
	if d := p.server.gen() - g; d != 0 {
		t.Errorf("Install over the converted table committed %d transactions", d)
	}
}
