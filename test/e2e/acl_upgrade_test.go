package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

const upgradePolicy = `mode: enforce
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
rules:
  - {name: web-to-db, from: [web], to: [db], ports: [tcp/5432]}
`

// oldTableFor returns the previous release's table (acl/nft/testdata,
// captured from that release) for node n, without its elements: interface
// and overlay networks replaced by n's. The elements are added by the
// caller.
func oldTableFor(t *testing.T, n *harness.Node, net4, net6 string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "acl", "nft", "testdata", "old_table.nft"))
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`(?s)\n\s*elements = \{[^}]*\}`).ReplaceAllString(string(b), "")
	return strings.NewReplacer(`"smesh0"`, `"`+n.Interface+`"`, "100.80.0.0/16", net4, "fd5e:6d00::/48", net6).Replace(s)
}

// guardPrefixes reads the overlay networks from the underlay guard of n's
// table (`iifname != "lo" ip saddr NET drop`).
func guardPrefixes(t *testing.T, n *harness.Node) (net4, net6 string) {
	t.Helper()
	out, err := n.Exec("nft", "list", "chain", "inet", "segmesh", "prerouting")
	if err != nil {
		t.Fatalf("nft list chain: %v: %s", err, out)
	}
	m4 := regexp.MustCompile(`ip saddr (\S+) drop`).FindStringSubmatch(string(out))
	m6 := regexp.MustCompile(`ip6 saddr (\S+) drop`).FindStringSubmatch(string(out))
	if m4 == nil || m6 == nil {
		t.Fatalf("no underlay guard in prerouting:\n%s", out)
	}
	return m4[1], m6[1]
}

// TestACLUpgradeFromPreviousTable: db1's namespace holds the previous
// release's table (per-source `saddr . l4proto . dport` sets), granting
// tcp/5432 to web1 and — stale — to app1. A new daemon starts over it:
// the table is converted before the mesh interface exists, so app1 never
// reaches the port (its stale grant never takes effect), web1 reaches it
// from its first success on without a single failure, and the table is
// the identity layout afterwards.
func TestACLUpgradeFromPreviousTable(t *testing.T) {
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: upgradePolicy})
	db := tc.AddNode(harness.NodeSpec{Name: "db1", Tags: role("db")})
	web := tc.AddNode(harness.NodeSpec{Name: "web1", Tags: role("web"), Join: []string{db.GossipAddr()}})
	app := tc.AddNode(harness.NodeSpec{Name: "app1", Tags: role("app"), Join: []string{db.GossipAddr()}})
	nodes := []*harness.Node{db, web, app}
	tc.Start(nodes...)
	tc.WaitMesh(meshTimeout, nodes...)
	st := map[*harness.Node]*harness.Status{}
	for _, n := range nodes {
		st[n] = tc.Status(n)
	}
	net4, net6 := guardPrefixes(t, db)
	dbAddr := netip.MustParseAddr(st[db].Self.Address)
	startServer(t, tc, db.Namespace, "serve-db1", []int{5432}, nil)
	toDB := flow{"tcp", dbAddr, 5432}
	if r, err := probeOne(web.Namespace, denyTimeout, toDB); err != nil || r != resOK {
		t.Fatalf("test premise: web1 -> db1 tcp/5432: %s %v", r, err)
	}

	// db1 stops (its table goes) and the previous release's table is put
	// in its place.
	tc.Stop(db)
	script := filepath.Join(t.TempDir(), "old.nft")
	var els strings.Builder
	fmt.Fprintf(&els, "add element inet segmesh local4 { %s }\n", st[db].Self.Address)
	fmt.Fprintf(&els, "add element inet segmesh local6 { %s }\n", st[db].Self.Address6)
	for _, n := range []*harness.Node{web, app} {
		fmt.Fprintf(&els, "add element inet segmesh allow4 { %s . tcp . 5432 }\n", st[n].Self.Address)
		fmt.Fprintf(&els, "add element inet segmesh allow6 { %s . tcp . 5432 }\n", st[n].Self.Address6)
	}
	if err := os.WriteFile(script, []byte(oldTableFor(t, db, net4, net6)+"\n"+els.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := db.Exec("nft", "-f", script); err != nil {
		t.Fatalf("load the previous release's table: %v: %s", err, out)
	}
	if out, _ := db.Exec("nft", "list", "table", "inet", "segmesh"); !strings.Contains(string(out), "allow4r_127") ||
		!strings.Contains(string(out), st[app].Self.Address+" . tcp . 5432") {
		t.Fatalf("test premise: the old layout with app1's stale grant:\n%s", out)
	}

	// Probe from web1 and app1 all through db1's start.
	type result struct {
		at  time.Time
		res string
	}
	var mu sync.Mutex
	results := map[string][]result{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range []*harness.Node{web, app} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// A denied probe only times out: app1 probes more often.
				timeout := 1500 * time.Millisecond
				if n == app {
					timeout = 300 * time.Millisecond
				}
				r, err := probeOne(n.Namespace, timeout, toDB)
				if err != nil {
					r = "error: " + err.Error()
				}
				mu.Lock()
				results[n.Name] = append(results[n.Name], result{time.Now(), r})
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	tc.Start(db)
	tc.WaitMesh(meshTimeout, nodes...)
	count := func(name string) (ok int) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results[name] {
			if r.res == resOK {
				ok++
			}
		}
		return ok
	}
	tc.WaitFor("web1 reaches db1 again, 10 times", 30*time.Second, func() error {
		if n := count("web1"); n < 10 {
			return fmt.Errorf("%d successes", n)
		}
		return nil
	})
	close(stop)
	wg.Wait()

	first := -1
	for i, r := range results["web1"] {
		if r.res == resOK && first < 0 {
			first = i
		}
		if first >= 0 && r.res != resOK {
			t.Errorf("web1 -> db1 tcp/5432 failed at %s after its first success (%s): %s",
				r.at.Format(time.TimeOnly+".000"), results["web1"][first].at.Format(time.TimeOnly+".000"), r.res)
		}
	}
	if n := count("app1"); n != 0 {
		t.Errorf("app1 reached db1 tcp/5432 %d times of %d: the stale grant of the old table took effect", n, len(results["app1"]))
	}
	t.Logf("probes: web1 %d (first success at #%d), app1 %d", len(results["web1"]), first, len(results["app1"]))

	out, err := db.Exec("nft", "list", "table", "inet", "segmesh")
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	tbl := string(out)
	if strings.Contains(tbl, "allow4") || !strings.Contains(tbl, "jump src4") || !regexp.MustCompile(`ip saddr @id_\d+_s4 goto id_\d+`).MatchString(tbl) {
		t.Errorf("db1's table is not the identity layout:\n%s", tbl)
	}
	if log, _ := os.ReadFile(db.LogPath); !strings.Contains(string(log), "nftables table of the previous release converted") {
		t.Errorf("db1 did not log the conversion")
	}
}
