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

// TestForgedRecordRejected: a member with the cluster key and a genuine
// WireGuard key that claims another node's overlay address is never made a
// WireGuard peer and shows as "untrusted" with a reason; the victim keeps
// its address.
func TestForgedRecordRejected(t *testing.T) {
	tc := newCluster(t)
	a := tc.AddNode(harness.NodeSpec{Name: "a", Tags: role("web")})
	b := tc.AddNode(harness.NodeSpec{Name: "b", Tags: role("db"), Join: []string{a.GossipAddr()}})
	tc.Start(a, b)
	tc.WaitMesh(meshTimeout, a, b)
	self := selves(t, tc, a, b)
	// Sessions first, so the checks after each forgery see the effect of the
	// forgery and not a first handshake.
	tc.Ping(a, self[b].Self.Address, pingTimeout)
	tc.Ping(b, self[a].Self.Address6, pingTimeout)

	cases := []struct {
		name   string
		node   string
		claims func() []string // forger flags
	}{
		{"claims b's IPv4 with an earlier claim", "f4", func() []string {
			return []string{"-address4", self[b].Self.Address, "-claimed", "1"}
		}},
		{"claims a's IPv6", "f6", func() []string {
			return []string{"-address6", self[a].Self.Address6}
		}},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			tc := tc.With(t)
			f := tc.AddNode(harness.NodeSpec{Name: cs.node, Bare: true})
			pubFile := filepath.Join(f.Dir, "forger.pub")
			argv := append([]string{bins.Forger,
				"-cluster-key", a.ClusterKeyPath(),
				"-bind", f.Addr.String(),
				"-join", a.GossipAddr(),
				"-name", cs.node,
				"-pubkey-file", pubFile,
			}, cs.claims()...)
			if err := f.StartCommand(argv...); err != nil {
				t.Fatal(err)
			}
			var fpub string
			tc.WaitFor("forger writes its public key", 10*time.Second, func() error {
				if err := f.ExitError(); err != nil {
					return harness.Abort(err)
				}
				b, err := os.ReadFile(pubFile)
				if err != nil {
					return err
				}
				fpub = strings.TrimSpace(string(b))
				return nil
			})
			start := time.Now()
			for _, o := range []*harness.Node{a, b} {
				waitPeer(tc, o, fpub, "shows the forger untrusted", 20*time.Second, func(p harness.StatusPeer, ok bool) error {
					switch {
					case !ok:
						return fmt.Errorf("forger not listed")
					case p.State == harness.StateUp:
						return harness.Abort(fmt.Errorf("forger accepted as up (address %s %s)", p.Address, p.Address6))
					case p.State != harness.StateUntrusted:
						return fmt.Errorf("forger is %q", p.State)
					case strings.TrimSpace(p.Reason) == "":
						return fmt.Errorf("forger untrusted without a reason")
					}
					t.Logf("%s: forger untrusted: %s", o.Name, p.Reason)
					return nil
				})
				t.Logf("TIMING %s flagged the forger untrusted %v after it started gossiping", o.Name, time.Since(start).Round(time.Millisecond))
				if in, err := inWireGuard(o, fpub); err != nil {
					t.Fatal(err)
				} else if in {
					t.Errorf("%s: wg show %s lists the forger %s", o.Name, o.Interface, fpub)
				}
			}
			// The victims keep their addresses and their mesh.
			if err := harness.MeshProblem(a, b); err != nil {
				t.Errorf("after forgery: %v", err)
			}
			now := selves(t, tc, a, b)
			for _, n := range []*harness.Node{a, b} {
				if now[n].Self.Address != self[n].Self.Address || now[n].Self.Address6 != self[n].Self.Address6 {
					t.Errorf("%s renumbered from %s %s to %s %s", n.Name, self[n].Self.Address, self[n].Self.Address6,
						now[n].Self.Address, now[n].Self.Address6)
				}
			}
			checkPeerViews(t, tc, now, a, b)
			tc.Ping(a, self[b].Self.Address, pingTimeout)
			tc.Ping(b, self[a].Self.Address6, pingTimeout)
			tc.Stop(f)
		})
	}
}
