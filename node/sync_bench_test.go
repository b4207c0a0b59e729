package node

import (
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// benchPolicy segments the benchmark's peers by role.
const benchPolicy = `mode: enforce
segments:
  web: {role: web}
  db: {role: db}
  app: {role: app}
rules:
  - name: web-to-db
    from: [web]
    to: [db]
    ports: [tcp/5432]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: [tcp/5432, tcp/6432]
`

// syncBench is a node on fakes that the benchmark drives by calling sync
// itself (no Run loop).
type syncBench struct {
	n      *Node
	gossip *fakeGossip
	fw     *fakeFirewall
	mesh   *fakeMesh
	caPriv ed25519.PrivateKey // CA mode
	skew   time.Duration      // the node's clock runs this far ahead of time.Now
	// validity of the peer certificates member issues, from time.Now
	notBefore, notAfter time.Duration
}

// newSyncBench starts a node (CA mode when caMode) with the benchmark
// policy active, not running its loop.
func newSyncBench(tb testing.TB, caMode bool) *syncBench {
	tb.Helper()
	dir := tb.TempDir()
	r, err := config.InitDir(config.InitOptions{Dir: dir, Name: "self", Advertise: "192.0.2.1", Tags: map[string]string{"role": "db"}})
	if err != nil {
		tb.Fatal(err)
	}
	sb := &syncBench{notBefore: -time.Minute, notAfter: 24 * time.Hour}
	tb.Setenv("SEGMESH_STATE_DIR", filepath.Join(dir, "state"))
	tb.Setenv("SEGMESH_CONTROL_SOCKET", filepath.Join(dir, "s.sock"))
	tb.Setenv("SEGMESH_POLICY_FILE", "")
	if caMode {
		pub, priv, err := ca.GenerateCA()
		if err != nil {
			tb.Fatal(err)
		}
		sb.caPriv = priv
		key, err := mesh.LoadPrivateKey(r.KeyFile)
		if err != nil {
			tb.Fatal(err)
		}
		cert := sb.issue(tb, "self", key.PublicKey(), map[string]string{"role": "db"})
		pemBytes, _ := cert.PEM()
		if err := os.WriteFile(filepath.Join(dir, "ca.pub"), ca.MarshalPublicKey(pub, time.Now()), 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "node.crt"), pemBytes, 0o644); err != nil {
			tb.Fatal(err)
		}
		tb.Setenv("SEGMESH_TRUST_CA_FILE", filepath.Join(dir, "ca.pub"))
		tb.Setenv("SEGMESH_TRUST_CERT_FILE", filepath.Join(dir, "node.crt"))
	} else {
		tb.Setenv("SEGMESH_TRUST_CA_FILE", "")
		tb.Setenv("SEGMESH_TRUST_CERT_FILE", "")
	}
	cfg, err := config.Load(filepath.Join(dir, "segmesh.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	ev := &events{}
	sb.mesh, sb.fw = &fakeMesh{ev: ev}, &fakeFirewall{ev: ev}
	sb.gossip = &fakeGossip{ev: ev, changes: make(chan struct{}, 1)}
	deps := Deps{
		OpenMesh:        func(mesh.Config, *slog.Logger) (Mesh, error) { return sb.mesh, nil },
		NewGossip:       func(gossip.Config, gossip.Record) (Gossip, error) { return sb.gossip, nil },
		NewFirewall:     func(nft.Config, *slog.Logger) (Firewall, error) { return sb.fw, nil },
		DeleteConntrack: func(a []netip.Addr) (int, error) { return len(a), nil },
		AutoMTU:         func(netip.Addr) (int, error) { return 1420, nil },
		OpenFlowReader: func(uint16, *slog.Logger) (FlowReader, error) {
			return nil, errors.New("no NFLOG in unit tests")
		},
		Now: func() time.Time { return time.Now().Add(sb.skew) },
	}
	sb.n, err = New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), deps, "bench")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sb.n.ctl.close(); _ = sb.n.flows.stop(); _ = sb.n.stopMetricsNow() })
	content := []byte(benchPolicy)
	o := ApplyOptions{AppliedBy: "bench"}
	if caMode {
		sig, err := ca.SignPolicy(sb.caPriv, content, 1)
		if err != nil {
			tb.Fatal(err)
		}
		o.Version, o.Signature = 1, sig
	}
	if _, err := sb.n.propose(content, o); err != nil {
		tb.Fatal(err)
	}
	return sb
}

func (sb *syncBench) issue(tb testing.TB, name string, key mesh.Key, tags map[string]string) *ca.Signed {
	tb.Helper()
	c, err := ca.Issue(sb.caPriv, ca.Certificate{Name: name, PublicKey: key, Tags: tags,
		NotBefore: time.Now().Add(sb.notBefore), NotAfter: time.Now().Add(sb.notAfter)})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// member is a genuine alive record of key with role (in CA mode carried
// by a certificate).
func (sb *syncBench) member(tb testing.TB, i int, key mesh.Key, role string) gossip.Member {
	tb.Helper()
	cfg := sb.n.cfg
	name := "peer-" + strconv.Itoa(i)
	tags := map[string]string{"role": role}
	rec := gossip.Record{Format: 1, Name: name, PublicKey: key.String(), ListenPort: 51820,
		Address4: mesh.Candidate4(cfg.Network, key, 0), Address6: mesh.Address6(cfg.Network6, key),
		Claimed: time.Now().UnixNano(), Tags: tags}
	if sb.caPriv != nil {
		rec.Tags = nil
		rec.Cert, _ = sb.issue(tb, name, key, tags).Marshal()
	}
	b, err := rec.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i%200)}), 7946)
	return gossip.Member{Name: key.String(), Addr: ep, Meta: b, State: gossip.StateAlive, StateSince: time.Now()}
}

// peers makes count genuine members with rotating roles, and a second
// version of the first one with another role.
func (sb *syncBench) peers(tb testing.TB, count int) (members []gossip.Member, retagged gossip.Member) {
	tb.Helper()
	roles := []string{"web", "app", "db", "cache"}
	for i := range count {
		k, err := mesh.GenerateKey()
		if err != nil {
			tb.Fatal(err)
		}
		members = append(members, sb.member(tb, i, k.PublicKey(), roles[i%len(roles)]))
		if i == 0 {
			retagged = sb.member(tb, i, k.PublicKey(), "app")
		}
	}
	return members, retagged
}

// BenchmarkSync200 is one sync of a node with 200 peers holding genuine
// records (open mode and CA mode): "unchanged" when nothing changed since
// the last sync, "tag" when one peer's tags changed (its record and, in CA
// mode, its certificate are new; the policy is recompiled).
func BenchmarkSync200(b *testing.B) {
	for _, mode := range []string{"open", "ca"} {
		for _, change := range []string{"unchanged", "tag"} {
			b.Run(mode+"/"+change, func(b *testing.B) {
				sb := newSyncBench(b, mode == "ca")
				members, retagged := sb.peers(b, 200)
				variants := [2]gossip.Member{members[0], retagged}
				sb.gossip.setMembers(members...)
				sb.n.sync()
				if got := len(sb.mesh.peers); got != 200 {
					b.Fatalf("%d WireGuard peers configured, want 200", got)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if change == "tag" {
						b.StopTimer()
						members[0] = variants[(i+1)%2]
						sb.gossip.setMembers(members...)
						b.StartTimer()
					}
					sb.n.sync()
				}
			})
		}
	}
}
