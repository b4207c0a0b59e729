package node

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// caRig is a node in CA mode on fakes, with the CA key at hand.
type caRig struct {
	*rig
	caPriv ed25519.PrivateKey
	dir    string
}

// issueFor writes a certificate for key to path.
func issueFor(t *testing.T, priv ed25519.PrivateKey, name string, key mesh.Key, tags map[string]string, valid time.Duration) *ca.Signed {
	t.Helper()
	c, err := ca.Issue(priv, ca.Certificate{Name: name, PublicKey: key, Tags: tags,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(valid)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCARig(t *testing.T) *caRig {
	t.Helper()
	dir := t.TempDir()
	r, err := config.InitDir(config.InitOptions{Dir: dir, Name: "self", Advertise: "192.0.2.1", Tags: map[string]string{"role": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ca.GenerateCA()
	os.WriteFile(filepath.Join(dir, "ca.pub"), ca.MarshalPublicKey(pub, time.Now()), 0o644)
	key, _ := mesh.LoadPrivateKey(r.KeyFile)
	cert := issueFor(t, priv, "db-1", key.PublicKey(), map[string]string{"role": "db"}, 20*24*time.Hour)
	pemBytes, _ := cert.PEM()
	os.WriteFile(filepath.Join(dir, "node.crt"), pemBytes, 0o644)
	t.Setenv("SEGMESH_TRUST_CA_FILE", filepath.Join(dir, "ca.pub"))
	t.Setenv("SEGMESH_TRUST_CERT_FILE", filepath.Join(dir, "node.crt"))
	return &caRig{rig: newRig(t, dir, ""), caPriv: priv, dir: dir}
}

// peerMember is a genuine record of a fresh key, carrying cert when given.
func (r *caRig) peerMember(t *testing.T, declared map[string]string, cert func(mesh.Key) *ca.Signed) (gossip.Member, gossip.Record) {
	n := newTestNode(t)
	rec := gossip.Record{Format: 1, Name: "peer", PublicKey: n.pub.String(), ListenPort: 51820,
		Address4: mesh.Candidate4(r.cfg.Network, n.pub, 0), Address6: mesh.Address6(r.cfg.Network6, n.pub),
		Claimed: time.Now().UnixNano(), Tags: declared}
	if cert != nil {
		rec.Cert, _ = cert(n.pub).Marshal()
	}
	return n.withRecord(rec, gossip.StateAlive), rec
}

func (r *caRig) peerState(t *testing.T, key string) api.Peer {
	t.Helper()
	for _, p := range r.n.Status().Peers {
		if p.PublicKey == key {
			return p
		}
	}
	t.Fatalf("peer %s not in status", key)
	return api.Peer{}
}

func TestCAModeIdentityAndPeers(t *testing.T) {
	r := newCARig(t)
	st := r.n.Status()
	if st.Trust != "ca" || st.Self.Name != "db-1" || st.Self.Tags["role"] != "db" || !st.Self.CertExpiresSoon {
		t.Fatalf("self in CA mode takes the certificate's identity and flags a near expiry: %+v", st.Self)
	}
	rec := r.n.record()
	if len(rec.Cert) == 0 || rec.Tags != nil {
		t.Fatalf("the record carries the certificate instead of declared tags: %+v", rec)
	}

	noCert, _ := r.peerMember(t, map[string]string{"role": "db"}, nil)
	liar, liarRec := r.peerMember(t, map[string]string{"role": "db"}, func(k mesh.Key) *ca.Signed {
		return issueFor(t, r.caPriv, "web-9", k, map[string]string{"role": "web"}, 365*24*time.Hour)
	})
	_, otherCA, _ := ca.GenerateCA()
	foreign, _ := r.peerMember(t, nil, func(k mesh.Key) *ca.Signed {
		return issueFor(t, otherCA, "x", k, map[string]string{"role": "db"}, 365*24*time.Hour)
	})
	r.gossip.setMembers(noCert, liar, foreign)
	waitFor(t, "three peers evaluated", func() bool { return len(r.n.Status().Peers) == 3 })

	if p := r.peerState(t, noCert.Name); p.State != api.StateUntrusted || p.Reason == "" {
		t.Fatalf("a peer without a certificate is untrusted: %+v", p)
	}
	if p := r.peerState(t, foreign.Name); p.State != api.StateUntrusted {
		t.Fatalf("a certificate of another CA is untrusted: %+v", p)
	}
	p := r.peerState(t, liar.Name)
	if p.State != api.StateUp || p.Name != "web-9" || p.Tags["role"] != "web" {
		t.Fatalf("the certificate's name and tags replace the declared ones: %+v", p)
	}
	// Status evaluates the members at once; WireGuard follows with the sync.
	var wg []mesh.Peer
	waitFor(t, "the certified peer configured in WireGuard", func() bool {
		r.mesh.mu.Lock()
		defer r.mesh.mu.Unlock()
		wg = r.mesh.peers
		return len(wg) > 0
	})
	if len(wg) != 1 || wg[0].PublicKey.String() != liarRec.PublicKey {
		t.Fatalf("only the certified peer is a WireGuard peer: %+v", wg)
	}
}

func TestCAModeSignedPoliciesOnly(t *testing.T) {
	r := newCARig(t)
	if _, err := r.n.ApplyPolicy([]byte(policyV), ApplyOptions{}); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("an unsigned policy must be refused: %v", err)
	}
	sig1, _ := ca.SignPolicy(r.caPriv, []byte(policyV), 1)
	if _, err := r.n.ApplyPolicy([]byte(policyV), ApplyOptions{Version: 1, Signature: sig1}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.n.ApplyPolicy([]byte(policyV), ApplyOptions{Version: 2, Signature: sig1}); err == nil {
		t.Fatal("a signature for v1 must not carry the same content as v2")
	}
	v2 := policyV + "# v2\n"
	sig2, _ := ca.SignPolicy(r.caPriv, []byte(v2), 2)
	doc2 := acl.NewDocument([]byte(v2), 2, "ops", time.Now())
	doc2.Signature = sig2
	b2, _ := doc2.Encode()
	if !r.gossip.docs.MergeDocument(docKindPolicy, b2) {
		t.Fatal("a signed newer policy from the mesh is accepted")
	}
	unsigned := acl.NewDocument([]byte(v2+"# v3\n"), 3, "evil", time.Now())
	ub, _ := unsigned.Encode()
	replay := acl.NewDocument([]byte(policyV), 1, "evil", time.Now())
	replay.Signature = sig1
	rb, _ := replay.Encode()
	if r.gossip.docs.MergeDocument(docKindPolicy, ub) || r.gossip.docs.MergeDocument(docKindPolicy, rb) {
		t.Fatal("unsigned or replayed policies must be refused")
	}
	if v := r.n.Status().Policy.Version; v != 2 {
		t.Fatalf("active version %d, want 2", v)
	}
}

func TestCAModeRevocationAndRenewal(t *testing.T) {
	r := newCARig(t)
	peer, rec := r.peerMember(t, nil, func(k mesh.Key) *ca.Signed {
		return issueFor(t, r.caPriv, "web-1", k, map[string]string{"role": "web"}, 365*24*time.Hour)
	})
	r.gossip.setMembers(peer)
	waitFor(t, "peer up", func() bool { return len(r.n.Status().Peers) == 1 && r.n.Status().Peers[0].State == api.StateUp })

	key, _ := mesh.ParseKey(rec.PublicKey)
	entry, err := ca.Revoke(r.caPriv, ca.Revocation{PublicKey: key, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := entry.Marshal()
	res, err := r.n.Revoke(raw)
	if err != nil || !res.Added || res.Version != 1 {
		t.Fatalf("revoke: %+v %v", res, err)
	}
	if p := r.peerState(t, rec.PublicKey); p.State != api.StateUntrusted {
		t.Fatalf("a revoked peer is out at once: %+v", p)
	}
	wantConntrack(t, r.rig, "admitted", rec.Address4)
	wantConntrack(t, r.rig, "revoked", rec.Address4, rec.Address6)
	if docs := r.gossip.docs.Documents(); len(docs[docKindRevocations]) == 0 {
		t.Fatal("revocations travel in push/pull")
	}

	// Renewal: a new certificate with a later end is picked up by reload.
	renewed := issueFor(t, r.caPriv, "db-1", r.n.pub, map[string]string{"role": "db", "env": "prod"}, 365*24*time.Hour)
	pemBytes, _ := renewed.PEM()
	os.WriteFile(filepath.Join(r.dir, "node.crt"), pemBytes, 0o644)
	if err := r.n.Reload(); err != nil {
		t.Fatal(err)
	}
	if st := r.n.Status(); st.Self.CertExpiresSoon || st.Self.Tags["env"] != "prod" {
		t.Fatalf("renewed certificate not picked up: %+v", st.Self)
	}
	r.shutdown()
	// The revocation survives a restart.
	r2 := newRig(t, r.dir, "")
	r2.gossip.setMembers(peer)
	waitFor(t, "peer evaluated", func() bool { return len(r2.n.Status().Peers) == 1 })
	if p := r2.n.Status().Peers[0]; p.State != api.StateUntrusted {
		t.Fatalf("a revoked peer stays out across restarts: %+v", p)
	}
}
