package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// expiryBound is how soon after its certificate ends a peer must be out
// everywhere (nodes re-check their view about once a second).
const expiryBound = 5 * time.Second

// testCAExpiry: a node joins as app with a certificate valid for a few
// seconds. While valid it is up everywhere, flagged cert_expires_soon, and
// reaches db1 on tcp/5432; once it has expired every node lists it
// untrusted for certificate_expired, drops it from WireGuard and its sets,
// and its connections time out.
func testCAExpiry(t *testing.T, f *caFixture) {
	tc := f.tc.With(t)
	n := tc.AddNode(harness.NodeSpec{Name: "brief", Tags: role("app"), Join: []string{f.web.GossipAddr()}})
	cert := f.ca.trust(t, n, role("app"), "--valid-for", "12s")
	notAfter, err := time.Parse(time.RFC3339, f.ca.showCert(t, cert).NotAfter)
	if err != nil {
		t.Fatal(err)
	}
	pub := tc.PublicKey(n)
	tc.Start(n)
	nodes := f.nodes()
	_, err = waitNodes(nodes, time.Now(), 8*time.Second, func(o *harness.Node) error {
		st, err := caStatusOf(o)
		if err != nil {
			return err
		}
		for _, p := range st.Peers {
			if p.PublicKey == pub {
				if p.State != harness.StateUp || !p.CertExpiresSoon {
					return fmt.Errorf("brief is %q, cert_expires_soon %v", p.State, p.CertExpiresSoon)
				}
				return nil
			}
		}
		return fmt.Errorf("brief not listed")
	})
	if err != nil {
		t.Fatalf("brief while its certificate is valid: %v", err)
	}
	// The others' certificates (365 days) are not flagged.
	if st, err := caStatusOf(f.web); err == nil {
		for _, p := range st.Peers {
			if p.PublicKey != pub && p.CertExpiresSoon {
				t.Errorf("web1: %s flagged cert_expires_soon (not after %s)", p.Name, p.CertNotAfter)
			}
		}
	}
	toDB := flow{"tcp", netip.MustParseAddr(f.addr4(f.db)), 5432}
	if res, err := probeOne(n.Namespace, 2*time.Second, toDB); err != nil || res != resOK {
		t.Fatalf("brief (app, certificate valid) -> db1 %s: %q (%v), want ok", toDB, res, err)
	}
	if time.Now().After(notAfter) {
		t.Fatalf("test premise: brief's certificate (not after %v) expired during the checks; lengthen its validity", notAfter)
	}

	rest := subFixture(f.acl, nodes...)
	at, err := waitNodes(nodes, notAfter, time.Until(notAfter)+expiryBound,
		allOf(peerUntrusted(pub, "certificate_expired"), notInWireGuard(pub), rest.setsMatch))
	if err != nil {
		t.Errorf("after brief's certificate expired: %v", err)
	}
	var worst time.Duration
	for _, d := range at {
		worst = max(worst, d)
	}
	t.Logf("TIMING certificate expiry: every node lists brief untrusted (certificate_expired), out of WireGuard and sets %v after its not_after",
		worst.Round(time.Millisecond))
	// The others cut it (brief's own view does not count): with its
	// egress off, its packets reach them and are dropped.
	bypassEgress(t, n)
	deniedFlows(t, n, toDB, icmpTo(f.addr4(f.web)))
	tc.Stop(n)
}
