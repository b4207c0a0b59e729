package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/test/harness"
)

// Security invariant 1 across restarts (issue 21): an intruder with the
// cluster key and a WireGuard key ground so that its first IPv4 candidate is
// db-1's address joins while db-1 is down. Every node refuses it, db-1 comes
// back with its address, and a client dialling db-1's IPv4 reaches db-1.

// addrNet is the overlay network of these tests: small, so that grinding a
// key whose first candidate is a given address takes ~1,000 key generations.
const addrNet = "100.80.0.0/22"

// bannerPort serves "NAME\n" on every node of these tests.
const bannerPort = "7100"

const addrPolicy = `mode: enforce
segments:
  all: {env: test}
rules:
  - name: banner
    from: ["*"]
    to: ["*"]
    ports: [tcp/7100, icmp]
`

type addrFixture struct {
	tc                 *harness.TestCluster
	web, app, ops, db  *harness.Node
	dbAddr, dbPub      string
	others             []*harness.Node // web, app, ops
	intruders, servers int
}

func newAddrFixture(t *testing.T, set map[string]any) *addrFixture {
	t.Helper()
	tc := harness.NewTestCluster(t, harness.Config{Binary: bins.Segmesh, DeadPeerGrace: grace, Policy: addrPolicy})
	f := &addrFixture{tc: tc}
	tags := map[string]string{"env": "test"}
	s := map[string]any{"network": addrNet}
	for k, v := range set {
		s[k] = v
	}
	f.web = tc.AddNode(harness.NodeSpec{Name: "web1", Tags: tags, Set: s})
	seed := []string{f.web.GossipAddr()}
	f.app = tc.AddNode(harness.NodeSpec{Name: "app1", Tags: tags, Join: seed, Set: s})
	f.ops = tc.AddNode(harness.NodeSpec{Name: "ops1", Tags: tags, Join: seed, Set: s})
	f.db = tc.AddNode(harness.NodeSpec{Name: "db1", Tags: tags, Join: seed, Set: s})
	f.others = []*harness.Node{f.web, f.app, f.ops}
	tc.Start(f.web, f.app, f.ops, f.db)
	tc.WaitMesh(meshTimeout, f.web, f.app, f.ops, f.db)
	st := tc.Status(f.db)
	f.dbAddr, f.dbPub = st.Self.Address, st.Self.PublicKey
	f.serveBanner(t, f.db)
	f.expectBanner(t, f.web, "db1")
	return f
}

// serveBanner runs a TCP server in n's namespace that greets with n's name.
func (f *addrFixture) serveBanner(t *testing.T, n *harness.Node) {
	t.Helper()
	f.servers++
	p := f.tc.Spawn(n.Namespace, fmt.Sprintf("banner-%s-%d", n.Name, f.servers), bins.Probe, "serve", "-tcp", bannerPort, "-banner", n.Name)
	if err := p.WaitOutput("ready", 10*time.Second); err != nil {
		t.Fatalf("banner server on %s: %v", n.Name, err)
	}
}

// expectBanner waits until a client on from that dials db-1's IPv4 address
// is greeted by want.
func (f *addrFixture) expectBanner(t *testing.T, from *harness.Node, want string) {
	t.Helper()
	target := netip.AddrPortFrom(netip.MustParseAddr(f.dbAddr), 7100).String()
	var got string
	f.tc.WaitFor(from.Name+" dials "+target+" and meets "+want, 20*time.Second, func() error {
		out, err := from.Exec(bins.Probe, "banner", "-timeout", "1s", target)
		got = strings.TrimSpace(string(out))
		if err != nil {
			return fmt.Errorf("%v: %s", err, got)
		}
		if got != want {
			return harness.Abort(fmt.Errorf("%s reached %q at %s, want %q", from.Name, got, target, want))
		}
		return nil
	})
}

// grindKey returns a private key whose first IPv4 candidate in addrNet is addr.
func grindKey(t *testing.T, addr string) mesh.Key {
	t.Helper()
	network, want := netip.MustParsePrefix(addrNet), netip.MustParseAddr(addr)
	for i := 0; i < 200_000; i++ {
		k, err := mesh.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if mesh.Candidate4(network, k.PublicKey(), 0) == want {
			return k
		}
	}
	t.Fatalf("no key with first candidate %s in 200,000 tries", addr)
	return mesh.Key{}
}

// startIntruder starts a forger (test/forger: gossip only, never renumbers)
// with the cluster key and a key ground so that its first genuine candidate
// is db-1's address, announcing a claim back-dated to 1970.
func (f *addrFixture) startIntruder(t *testing.T) string {
	t.Helper()
	f.intruders++
	k := grindKey(t, f.dbAddr)
	n := f.tc.AddNode(harness.NodeSpec{Name: fmt.Sprintf("intr%d", f.intruders), Bare: true})
	keyFile, pubFile := filepath.Join(n.Dir, "private.key"), filepath.Join(n.Dir, "forger.pub")
	if err := mesh.WriteSecretFile(keyFile, []byte(k.String()+"\n"), true); err != nil {
		t.Fatal(err)
	}
	if err := n.StartCommand(bins.Forger, "-cluster-key", f.web.ClusterKeyPath(), "-bind", n.Addr.String(),
		"-join", f.web.GossipAddr(), "-name", n.Name, "-network", addrNet, "-private-key-file", keyFile,
		"-claimed", "1", "-tags", "env=test", "-pubkey-file", pubFile); err != nil {
		t.Fatal(err)
	}
	f.tc.WaitFor("the intruder announces itself", 10*time.Second, func() error {
		if err := n.ExitError(); err != nil {
			return harness.Abort(err)
		}
		_, err := os.Stat(pubFile)
		return err
	})
	return k.PublicKey().String()
}

// addNewcomer adds (not starts) a real node whose key's first candidate is
// db-1's address.
func (f *addrFixture) addNewcomer(t *testing.T, name string) (*harness.Node, string) {
	t.Helper()
	k := grindKey(t, f.dbAddr)
	n := f.tc.AddNode(harness.NodeSpec{Name: name, Tags: map[string]string{"env": "test"},
		Join: []string{f.web.GossipAddr()}, Set: map[string]any{"network": addrNet}})
	if err := mesh.WriteSecretFile(n.PrivateKeyPath(), []byte(k.String()+"\n"), true); err != nil {
		t.Fatal(err)
	}
	return n, k.PublicKey().String()
}

// waitRefused waits until every node in on lists pub as untrusted for
// holding db-1's remembered address.
func (f *addrFixture) waitRefused(t *testing.T, pub string, on ...*harness.Node) {
	t.Helper()
	for _, o := range on {
		waitPeer(f.tc, o, pub, "refuses the intruder", 30*time.Second, func(p harness.StatusPeer, ok bool) error {
			switch {
			case !ok:
				return fmt.Errorf("intruder not listed")
			case p.State == harness.StateUp:
				return harness.Abort(fmt.Errorf("intruder accepted as up at %s", p.Address))
			case p.State != harness.StateUntrusted || !strings.HasPrefix(p.Reason, "address_held") ||
				!strings.Contains(p.Reason, f.dbAddr) || !strings.Contains(p.Reason, f.dbPub):
				return fmt.Errorf("intruder is %q: %q", p.State, p.Reason)
			}
			return nil
		})
		if in, err := inWireGuard(o, pub); err != nil || in {
			t.Fatalf("%s: intruder in WireGuard: %v %v", o.Name, in, err)
		}
	}
}

// waitHolder waits until every node in on lists pub up at addr.
func (f *addrFixture) waitHolder(t *testing.T, pub, addr string, on ...*harness.Node) {
	t.Helper()
	for _, o := range on {
		waitPeer(f.tc, o, pub, "lists the holder up at "+addr, 30*time.Second, func(p harness.StatusPeer, ok bool) error {
			if !ok || p.State != harness.StateUp || p.Address != addr {
				return fmt.Errorf("peer %v %q at %q (%s)", ok, p.State, p.Address, p.Reason)
			}
			return nil
		})
	}
}

// comeBack restarts db-1 and checks it kept its address, everyone routes it
// there and the intruder stays refused, also by db-1.
func (f *addrFixture) comeBack(t *testing.T, intruder string) {
	t.Helper()
	f.tc.Start(f.db)
	f.tc.WaitFor("db1 up again", meshTimeout, func() error {
		st, err := f.db.Status()
		if err != nil {
			return err
		}
		if st.Self.Address != f.dbAddr {
			return harness.Abort(fmt.Errorf("db1 came back at %s, was %s", st.Self.Address, f.dbAddr))
		}
		return nil
	})
	f.waitHolder(t, f.dbPub, f.dbAddr, f.others...)
	f.waitRefused(t, intruder, append([]*harness.Node{f.db}, f.others...)...)
	for _, o := range f.others {
		f.expectBanner(t, o, "db1")
	}
}

func TestAddressSurvivesRestart(t *testing.T) {
	for _, how := range []string{"sigterm", "kill -9"} {
		t.Run(how, func(t *testing.T) {
			f := newAddrFixture(t, nil)
			if how == "sigterm" {
				f.tc.Stop(f.db)
			} else {
				f.tc.Kill(f.db)
			}
			pub := f.startIntruder(t)
			f.waitRefused(t, pub, f.others...)
			// An honest newcomer with such a key chooses around the
			// remembered address: it is admitted elsewhere.
			nc, ncPub := f.addNewcomer(t, "new1")
			f.tc.Start(nc)
			f.serveBanner(t, nc)
			var at string
			f.tc.WaitFor("the newcomer moves off db1's address", meshTimeout, func() error {
				st, err := nc.Status()
				if err != nil {
					return err
				}
				if at = st.Self.Address; at == f.dbAddr {
					return fmt.Errorf("newcomer still at %s", at)
				}
				return nil
			})
			f.waitHolder(t, ncPub, at, f.others...)
			f.comeBack(t, pub)
		})
	}
}

// TestAddressMemorySurvivesFleetRestart: every other node restarts while
// db-1 is down; their memory is persisted, so the intruder is still refused.
func TestAddressMemorySurvivesFleetRestart(t *testing.T) {
	f := newAddrFixture(t, nil)
	f.tc.Stop(f.db)
	pub := f.startIntruder(t)
	f.waitRefused(t, pub, f.others...)
	for _, o := range f.others {
		f.tc.Restart(o)
	}
	f.tc.WaitMesh(meshTimeout, f.others...)
	f.waitRefused(t, pub, f.others...)
	f.comeBack(t, pub)
}

// TestNodeRemoveFreesAddress: `segmesh node remove db1` frees the address
// everywhere: a newcomer whose first candidate it is then takes it.
func TestNodeRemoveFreesAddress(t *testing.T) {
	f := newAddrFixture(t, nil)
	f.tc.Stop(f.db)
	f.tc.WaitFor("db1 gone from web1's membership (past dead_peer_grace)", 3*grace+meshTimeout, func() error {
		st, err := f.web.Status()
		if err != nil {
			return err
		}
		for _, p := range st.Peers {
			if p.PublicKey == f.dbPub {
				return fmt.Errorf("db1 still listed: %s", p.State)
			}
		}
		return nil
	})
	r := segmeshCLI(t, "node", "remove", "db1", "--socket", f.web.Socket)
	if r.code != 0 || !strings.Contains(r.stdout, "address "+f.dbAddr+" is free") {
		t.Fatalf("node remove db1: %+v", r)
	}
	for _, o := range f.others {
		f.tc.WaitFor(o.Name+" forgets db1's address", 20*time.Second, func() error { return remembersNot(o, f.dbPub) })
	}
	n, pub := f.addNewcomer(t, "new1")
	f.tc.Start(n)
	f.waitHolder(t, pub, f.dbAddr, f.others...)
	f.serveBanner(t, n)
	f.expectBanner(t, f.app, n.Name)
}

// TestAddressRetentionEnds: a holder absent longer than address_retention
// loses its claim: another key's claim of the address is accepted, and the
// holder, back, moves to another address.
func TestAddressRetentionEnds(t *testing.T) {
	const retention = 15 * time.Second
	f := newAddrFixture(t, map[string]any{"address_retention": retention.String()})
	f.tc.Stop(f.db)
	for _, o := range f.others {
		f.tc.WaitFor(o.Name+" drops db1 after address_retention", retention+20*time.Second, func() error { return remembersNot(o, f.dbPub) })
	}
	pub := f.startIntruder(t)
	f.waitHolder(t, pub, f.dbAddr, f.others...)
	f.tc.Start(f.db)
	var moved string
	f.tc.WaitFor("db1 back on another address", meshTimeout, func() error {
		st, err := f.db.Status()
		if err != nil {
			return err
		}
		if moved = st.Self.Address; moved == f.dbAddr {
			return fmt.Errorf("db1 still at %s", moved)
		}
		return nil
	})
	f.waitHolder(t, f.dbPub, moved, f.others...)
	f.waitHolder(t, pub, f.dbAddr, f.others...)
}

// remembersNot checks that n's persisted address memory has no entry of pub.
func remembersNot(n *harness.Node, pub string) error {
	b, err := os.ReadFile(filepath.Join(n.Dir, "state", "addresses.json"))
	if err != nil {
		return err
	}
	var f struct {
		Holders []struct {
			Key string `json:"key"`
		} `json:"holders"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	for _, h := range f.Holders {
		if h.Key == pub {
			return fmt.Errorf("%s still remembers %s", n.Name, pub)
		}
	}
	return nil
}
