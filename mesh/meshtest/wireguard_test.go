package meshtest

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func key(t *testing.T) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func cidr(s string) net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return *n
}

func TestWireGuardSemantics(t *testing.T) {
	w := NewWireGuard()
	if _, err := w.Device("wg0"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing device: %v", err)
	}
	self := key(t)
	w.AddDevice("wg0", self, 51820)
	a, b := key(t).PublicKey(), key(t).PublicKey()
	ka := 25 * time.Second
	err := w.ConfigureDevice("wg0", wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: a, Endpoint: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}, PersistentKeepaliveInterval: &ka,
			AllowedIPs: []net.IPNet{cidr("100.80.0.1/32"), cidr("10.0.0.0/8")}},
		{PublicKey: self.PublicKey(), AllowedIPs: []net.IPNet{cidr("100.80.0.9/32")}}, // own key: ignored
		{PublicKey: b, UpdateOnly: true},                                              // missing: not created
	}})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := w.Device("wg0")
	if len(d.Peers) != 1 || d.Peers[0].PublicKey != a || d.Peers[0].PersistentKeepaliveInterval != ka ||
		len(d.Peers[0].AllowedIPs) != 2 {
		t.Fatalf("peers %+v", d.Peers)
	}
	// An allowed IP claimed by another peer moves to it.
	if err := w.ConfigureDevice("wg0", wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: b, AllowedIPs: []net.IPNet{cidr("100.80.0.1/32")}},
	}}); err != nil {
		t.Fatal(err)
	}
	d, _ = w.Device("wg0")
	if len(d.Peers) != 2 || len(d.Peers[0].AllowedIPs) != 1 || d.Peers[0].AllowedIPs[0].String() != "10.0.0.0/8" {
		t.Fatalf("allowed IP did not move: %+v", d.Peers)
	}
	// ReplaceAllowedIPs, Remove, ReplacePeers.
	if err := w.ConfigureDevice("wg0", wgtypes.Config{Peers: []wgtypes.PeerConfig{
		{PublicKey: a, UpdateOnly: true, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{cidr("100.80.0.2/32")}},
		{PublicKey: b, Remove: true},
	}}); err != nil {
		t.Fatal(err)
	}
	d, _ = w.Device("wg0")
	if len(d.Peers) != 1 || len(d.Peers[0].AllowedIPs) != 1 || d.Peers[0].AllowedIPs[0].String() != "100.80.0.2/32" {
		t.Fatalf("after replace/remove: %+v", d.Peers)
	}
	if !w.Roam("wg0", a, &net.UDPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 2}) || w.Roam("wg0", b, &net.UDPAddr{}) {
		t.Fatal("Roam reports wrong existence")
	}
	if err := w.ConfigureDevice("wg0", wgtypes.Config{ReplacePeers: true}); err != nil {
		t.Fatal(err)
	}
	if d, _ = w.Device("wg0"); len(d.Peers) != 0 {
		t.Fatalf("ReplacePeers kept %+v", d.Peers)
	}
	if n := len(w.Calls()); n != 4 {
		t.Fatalf("%d calls recorded, want 4", n)
	}
}

func TestWireGuardCopies(t *testing.T) {
	w := NewWireGuard()
	w.AddDevice("wg0", key(t), 1)
	a := key(t).PublicKey()
	n := cidr("100.80.0.1/32")
	cfg := wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: a, AllowedIPs: []net.IPNet{n}}}}
	if err := w.ConfigureDevice("wg0", cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Peers[0].AllowedIPs[0].IP[0] = 1 // caller mutates its config
	d, _ := w.Device("wg0")
	d.Peers[0].AllowedIPs[0].IP[0] = 2 // and the returned device
	d2, _ := w.Device("wg0")
	if got := d2.Peers[0].AllowedIPs[0].String(); got != "100.80.0.1/32" {
		t.Fatalf("fake state aliased: %s", got)
	}
	if got := w.Calls()[0].Config.Peers[0].AllowedIPs[0].String(); got != "100.80.0.1/32" {
		t.Fatalf("recorded call aliased: %s", got)
	}
}
