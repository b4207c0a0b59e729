package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// finalIs is a condition: n's final rule has the verdict v.
func finalIs(v string) func(*harness.Node) error {
	return func(n *harness.Node) error {
		got, err := finalVerdict(n.Namespace)
		if err != nil {
			return err
		}
		if got != v {
			return fmt.Errorf("final rule %s, want %s", got, v)
		}
		return nil
	}
}

// testAuditMode: under `mode: audit` a flow no rule allows (web1 -> db1
// tcp/5432, udp/54) connects and is counted in db1's counter "final";
// back in enforce mode the same flows time out and are counted too.
func testAuditMode(t *testing.T, f *aclFixture) {
	web1, db1 := f.byName["web1"], f.byName["db1"]
	enforce := f.policy
	audit := strings.Replace(enforce, "mode: enforce", "mode: audit", 1)
	if audit == enforce {
		t.Fatal("test premise: no mode: enforce in the policy")
	}
	cases := []flowCase{{db1, "tcp", 5432, false}, {db1, "udp", 54, false}}
	for _, c := range cases {
		if f.expect(web1, c.dst, c.proto, c.port) {
			t.Fatalf("test premise: the model allows web1 -> db1 %s/%d", c.proto, c.port)
		}
	}
	var flows []flow
	for _, c := range cases {
		flows = append(flows, flow{c.proto, f.addr(db1, false), c.port}, flow{c.proto, f.addr(db1, true), c.port})
	}

	for _, mode := range []struct {
		content string
		name    string
		verdict string
		result  string
	}{{audit, "audit", "accept", resOK}, {enforce, "enforce", "drop", resTimeout}} {
		f.setPolicy(t, mode.content)
		start := time.Now()
		a := applyPolicy(t, web1, mode.content)
		if a.mode != mode.name {
			t.Errorf("policy apply reports mode %q, want %q", a.mode, mode.name)
		}
		at, err := waitNodes(f.nodes, start, 10*time.Second,
			both(hasPolicy(a.version, a.hash), both(finalIs(mode.verdict), f.setsMatch)))
		if err != nil {
			t.Fatalf("after applying %s mode: %v", mode.name, err)
		}
		logPropagation(t, "policy apply of mode "+mode.name+" (on web1)", at, f.nodes)
		if st, err := db1.Status(); err != nil || st.Policy.Mode != mode.name {
			t.Errorf("db1 status policy mode: %+v (%v), want %s", st, err, mode.name)
		}

		if mode.name == "enforce" {
			// web1's own egress check refuses them at once...
			res, err := probeFlows(web1.Namespace, denyTimeout, flows)
			if err != nil {
				t.Fatal(err)
			}
			for _, fl := range flows {
				if res[fl] != refusedAtSender(fl) {
					t.Errorf("enforce mode: web1 -> db1 %s: %q, want %q (web1's egress)", fl, res[fl], refusedAtSender(fl))
				}
			}
			// ...and with it switched off (root on web1), db1 drops them.
			bypassEgress(t, web1)
		}
		before, err := finalCounter(db1.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		res, err := probeFlows(web1.Namespace, denyTimeout, flows)
		if err != nil {
			t.Fatal(err)
		}
		for _, fl := range flows {
			if res[fl] != mode.result {
				t.Errorf("%s mode: web1 -> db1 %s: %q, want %q", mode.name, fl, res[fl], mode.result)
			}
		}
		after, err := finalCounter(db1.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s mode: %d denied flows gave %s; db1's counter final went %d -> %d", mode.name, len(flows), mode.result, before, after)
		if after < before+uint64(len(flows)) {
			t.Errorf("%s mode: counter final on db1 went %d -> %d, want at least %d more", mode.name, before, after, len(flows))
		}
	}
}

// hostFirewall is the host's own table: a chain on the same hook and
// priority as segmesh's, a set and a named counter, none of which the test
// traffic touches (198.51.100.0/24 is TEST-NET-2, unused here).
const hostFirewall = `table inet hostfw {
	counter hostcnt {
	}
	set blocked {
		type ipv4_addr
		elements = { 198.51.100.7, 198.51.100.8 }
	}
	chain pre {
		type filter hook prerouting priority -150; policy accept;
		ip saddr @blocked counter name "hostcnt" drop
	}
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr 198.51.100.9 tcp dport 22 drop
	}
}
`

// setupHostFirewall loads hostFirewall into n's namespace (before segmesh
// starts) and returns its `nft -j list table inet hostfw`.
func setupHostFirewall(t *testing.T, n *harness.Node) string {
	t.Helper()
	file := filepath.Join(n.Dir, "hostfw.nft")
	if err := os.WriteFile(file, []byte(hostFirewall), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Exec("nft", "-f", file); err != nil {
		t.Fatalf("load host table: %v: %s", err, out)
	}
	return listHostFirewall(t, n)
}

func listHostFirewall(t *testing.T, n *harness.Node) string {
	t.Helper()
	out, err := n.Exec("nft", "-j", "list", "table", "inet", "hostfw")
	if err != nil {
		t.Fatalf("list host table: %v: %s", err, out)
	}
	return string(out)
}

// checkHostFirewall fails unless the host table is byte for byte as loaded.
func checkHostFirewall(t *testing.T, n *harness.Node, want, when string) {
	t.Helper()
	if got := listHostFirewall(t, n); got != want {
		t.Errorf("table inet hostfw changed %s:\nbefore: %s\nnow:    %s", when, want, got)
	} else {
		t.Logf("table inet hostfw on %s byte-for-byte unchanged %s", n.Name, when)
	}
}
