package ca

import (
	"crypto/ed25519"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// t0 is a fixed clock for tests.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newCA(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func nodeKey(t testing.TB) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func template(t testing.TB) Certificate {
	return Certificate{
		Name:      "db-1",
		PublicKey: nodeKey(t),
		Tags:      map[string]string{"role": "db", "env": "prod"},
		Address4:  netip.MustParseAddr("100.80.3.7"),
		NotBefore: t0.Add(-time.Hour),
		NotAfter:  t0.Add(24 * time.Hour),
	}
}

func issue(t testing.TB, priv ed25519.PrivateKey, tmpl Certificate) *Signed {
	t.Helper()
	s, err := Issue(priv, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
