package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// conntrackWith returns the conntrack entries in ns (read from that
// namespace's /proc/net/nf_conntrack) that name the IPv4 addr, split into
// those whose original direction comes from addr and the others (flows the
// namespace itself opened towards addr).
func conntrackWith(ns string, addr string) (from, to []string, err error) {
	b, code, err := nsExec(ns, 10*time.Second, "cat", "/proc/net/nf_conntrack")
	if err != nil {
		return nil, nil, err
	}
	if code != 0 {
		return nil, nil, fmt.Errorf("cat /proc/net/nf_conntrack in %s: exit %d: %s", ns, code, b)
	}
	for _, l := range strings.Split(string(b), "\n") {
		fields := strings.Fields(l)
		first := slices.IndexFunc(fields, func(f string) bool { return strings.HasPrefix(f, "src=") })
		switch {
		case first < 0 || !slices.Contains(fields, "src="+addr) && !slices.Contains(fields, "dst="+addr):
		case fields[first] == "src="+addr:
			from = append(from, l)
		default:
			to = append(to, l)
		}
	}
	return from, to, nil
}

// revokedEverywhere is the condition of a revocation taking effect on a
// node: the revoked key is out of WireGuard, listed untrusted for reason
// "revoked", and the sets are those of the remaining nodes only.
func revokedEverywhere(rest *aclFixture, pub string) func(*harness.Node) error {
	return allOf(notInWireGuard(pub), peerUntrusted(pub, "revoked"), rest.setsMatch)
}

// testCARevocation: liar is revoked by public key through web1's control
// socket while it streams to app1: within 2 s every other node drops it
// from WireGuard and its sets, the stream stops, app1's conntrack forgets
// it, and its new connections time out. It stays out when it restarts
// (also after dropping the revocation list it was sent) and when app1
// restarts. Then app1's certificate is revoked by serial offline (cert
// revoke --out) and the file handed to db1 (cert revoke --signed), with the
// same effect for app1.
func testCARevocation(t *testing.T, f *caFixture) {
	tc := f.tc.With(t)
	liarPub, appPub := f.key(f.liar), f.key(f.app)
	liar4 := f.addr4(f.liar)

	// An established flow and sessions from the node to be revoked.
	target := netip.AddrPortFrom(netip.MustParseAddr(f.addr4(f.app)), 8080).String()
	s := startStream(tc, f.liar, "stream-liar-app1", target)
	tc.Ping(f.liar, f.addr4(f.web), pingTimeout)
	tc.Ping(f.liar, f.addr6(f.db), pingTimeout)
	if from, _, err := conntrackWith(f.app.Namespace, liar4); err != nil || len(from) == 0 {
		t.Fatalf("test premise: app1 has %d conntrack entries from liar (%v)", len(from), err)
	}

	rest := subFixture(f.acl, f.web, f.app, f.db)
	tc.WaitFor("liar's stream is live", 5*time.Second, func() error {
		ts := echoTimes(s.Output())
		if age := time.Since(ts[len(ts)-1]); age > 100*time.Millisecond {
			return fmt.Errorf("last echo %v ago", age)
		}
		return nil
	})
	start := time.Now()
	r := segmeshCLI(t, "cert", "revoke", "--ca-key", f.ca.key, "--public-key", liarPub,
		"--reason", "e2e: liar", "--socket", f.web.Socket)
	returned := time.Since(start)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	t.Logf("cert revoke --public-key on web1 returned after %v: %s", returned.Round(time.Millisecond), strings.TrimSpace(r.stdout))
	at, err := waitNodes(rest.nodes, start, 10*time.Second, revokedEverywhere(rest, liarPub))
	if err != nil {
		t.Errorf("after revoking liar: %v", err)
	}
	logPropagation(t, "revocation of liar by public key (cert revoke on web1)", at, rest.nodes)
	last := stallAfter(tc, s, "liar's established flow to app1 stops")
	cut := last.Sub(start)
	t.Logf("TIMING established flow liar -> app1 tcp/8080 (echo every 50ms): last echo %v after cert revoke started on web1",
		cut.Round(time.Millisecond))
	if cut > propagationBound {
		t.Errorf("the revoked node's established flow passed data %v after the revocation, want <= %v", cut, propagationBound)
	}
	if from, to, err := conntrackWith(f.app.Namespace, liar4); err != nil || len(from) != 0 {
		t.Errorf("app1 keeps %d conntrack entries of flows from the revoked liar (%v):\n%s", len(from), err, strings.Join(from, "\n"))
	} else if len(to) > 0 {
		t.Logf("app1 conntrack entries towards the revoked liar (opened by app1 after the removal):\n%s", strings.Join(to, "\n"))
	}
	liarFlows := []flow{tcpTo(f.addr4(f.app), 8080), tcpTo(f.addr6(f.app), 8080), tcpTo(f.addr4(f.web), 7000),
		tcpTo(f.addr4(f.db), 7000), icmpTo(f.addr4(f.web)), icmpTo(f.addr6(f.db))}
	// The receivers cut the revoked node, whatever it thinks: with its
	// egress off (root on liar) its packets reach them and are dropped.
	bypassEgress(t, f.liar)
	deniedFlows(t, f.liar, liarFlows...)

	t.Run("revoked node restarts", func(t *testing.T) {
		tc := tc.With(t)
		restartRevoked(t, tc, f)
		// The others keep it out although it is back in gossip.
		if err := holdsFor(rest.nodes, time.Second, revokedEverywhere(rest, liarPub)); err != nil {
			t.Errorf("after liar's restart: %v", err)
		}
		deniedFlows(t, f.liar, liarFlows...)
	})

	t.Run("another node restarts", func(t *testing.T) {
		tc := tc.With(t)
		tc.Restart(f.app)
		// From its first moments on, app1 never takes liar as a peer.
		tc.WaitFor("app1 back in the mesh, liar never in its WireGuard", meshTimeout, func() error {
			if in, err := inWireGuard(f.app, liarPub); err == nil && in {
				return harness.Abort(fmt.Errorf("restarted app1 configured the revoked liar in WireGuard"))
			}
			return harness.MeshProblem(rest.nodes...)
		})
		if _, err := waitNodes([]*harness.Node{f.app}, time.Now(), 10*time.Second, revokedEverywhere(rest, liarPub)); err != nil {
			t.Errorf("app1 after its restart: %v", err)
		}
		if err := holdsFor(rest.nodes, time.Second, revokedEverywhere(rest, liarPub)); err != nil {
			t.Errorf("after app1's restart: %v", err)
		}
		deniedFlows(t, f.liar, tcpTo(f.addr4(f.app), 8080), icmpTo(f.addr4(f.app)))
	})

	t.Run("offline revocation by serial", func(t *testing.T) {
		checkExpected(t, rest, f.app, []flowCase{{f.db, "tcp", 5432, true}, {f.web, "tcp", 7000, true}})
		serial := f.ca.showCert(t, f.certs[f.app]).Serial
		file := filepath.Join(t.TempDir(), "app1.revocation")
		if r := segmeshCLI(t, "cert", "revoke", "--ca-key", f.ca.key, "--serial", serial,
			"--reason", "e2e: offline", "--out", file); r.code != 0 {
			t.Fatalf("%v", r)
		}
		rest2 := subFixture(f.acl, f.web, f.db)
		start := time.Now()
		r := segmeshCLI(t, "cert", "revoke", "--signed", file, "--socket", f.db.Socket)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		at, err := waitNodes(rest2.nodes, start, 10*time.Second, revokedEverywhere(rest2, appPub))
		if err != nil {
			t.Errorf("after revoking app1: %v", err)
		}
		logPropagation(t, "offline revocation of app1 by serial (cert revoke --signed on db1)", at, rest2.nodes)
		bypassEgress(t, f.app) // the receivers cut it
		deniedFlows(t, f.app, tcpTo(f.addr4(f.db), 5432), tcpTo(f.addr6(f.db), 5432), tcpTo(f.addr4(f.web), 7000),
			icmpTo(f.addr4(f.db)), icmpTo(f.addr6(f.web)))
		// liar stays out too.
		for _, n := range rest2.nodes {
			if err := revokedEverywhere(rest2, liarPub)(n); err != nil {
				t.Errorf("%s: liar: %v", n.Name, err)
			}
		}
	})
}

// restartRevoked restarts liar after its revocation. Having received the
// revocation, it may refuse to start (non-zero exit naming the
// certificate); then its state_dir (persisted revocations included) is
// deleted, as a revoked node bent on rejoining would, and it is started
// again. It returns once liar runs and is back in gossip (it lists the
// others up).
func restartRevoked(t *testing.T, tc *harness.TestCluster, f *caFixture) {
	t.Helper()
	tc.Stop(f.liar)
	tc.Start(f.liar)
	others := []*harness.Node{f.web, f.app, f.db}
	rejoined := func() error {
		st, err := f.liar.Status()
		if err != nil {
			return err
		}
		for _, o := range others {
			if p, ok := st.Peer(f.key(o)); !ok || p.State != harness.StateUp {
				return fmt.Errorf("liar sees %s as %q", o.Name, p.State)
			}
		}
		return nil
	}
	err := harness.WaitFor(15*time.Second, func() error {
		if code, exited := f.liar.ExitCode(); exited {
			return harness.Abort(fmt.Errorf("exited with code %d", code))
		}
		return rejoined()
	})
	if err == nil {
		t.Logf("liar restarted with its certificate revoked and rejoined gossip")
		return
	}
	code, exited := f.liar.ExitCode()
	if !exited {
		t.Fatalf("liar after restart: %v", err)
	}
	logText, _ := os.ReadFile(f.liar.LogPath)
	lines := strings.Split(strings.TrimSpace(string(logText)), "\n")
	lastLine := lines[len(lines)-1]
	t.Logf("liar refused to start with its revoked certificate: exit %d: %s", code, lastLine)
	if code == 0 || !strings.Contains(lastLine, "trust.cert_file") {
		t.Errorf("liar's refusal: exit %d, last log line %q; want a non-zero exit naming trust.cert_file", code, lastLine)
	}
	st, err := harness.ReadConfig(f.liar.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	stateDir, _ := st["state_dir"].(string)
	if stateDir == "" || !strings.HasPrefix(stateDir, f.liar.Dir) {
		t.Fatalf("liar's state_dir %q is not in its directory", stateDir)
	}
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	tc.Start(f.liar)
	tc.WaitFor("liar (revocations deleted) rejoins gossip", 15*time.Second, func() error {
		if err := f.liar.ExitError(); err != nil {
			return harness.Abort(err)
		}
		return rejoined()
	})
}
