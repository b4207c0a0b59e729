// Package meshtest provides in-memory fakes for the OS edges of package
// mesh, in the manner of wireguard-go's tun/tuntest and conn/bindtest.
package meshtest

import (
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Call is one recorded ConfigureDevice call.
type Call struct {
	Name   string
	Config wgtypes.Config
}

// WireGuard is an in-memory WireGuard control client (it implements
// mesh.WGClient). It holds devices and their peers and applies
// ConfigureDevice with WireGuard's semantics: Remove, UpdateOnly,
// ReplaceAllowedIPs, ReplacePeers, an allowed IP moving to the last peer
// that claims it, a peer with the device's own key ignored. Every
// ConfigureDevice call is recorded. Safe for concurrent use.
type WireGuard struct {
	mu           sync.Mutex
	devices      map[string]*wgtypes.Device
	calls        []Call
	configureErr error
	deviceErr    error
	closed       bool
}

// NewWireGuard returns a fake with no devices.
func NewWireGuard() *WireGuard {
	return &WireGuard{devices: map[string]*wgtypes.Device{}}
}

// AddDevice creates device name with the given key and listen port
// (reported as a userspace device).
func (w *WireGuard) AddDevice(name string, private wgtypes.Key, port int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.devices[name] = &wgtypes.Device{
		Name:       name,
		Type:       wgtypes.Userspace,
		PrivateKey: private,
		PublicKey:  private.PublicKey(),
		ListenPort: port,
	}
}

// Device returns a deep copy of device name, or an error wrapping
// os.ErrNotExist.
func (w *WireGuard) Device(name string) (*wgtypes.Device, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deviceErr != nil {
		return nil, w.deviceErr
	}
	d, ok := w.devices[name]
	if !ok {
		return nil, fmt.Errorf("meshtest: device %s: %w", name, os.ErrNotExist)
	}
	return copyDevice(d), nil
}

// ConfigureDevice records cfg and applies it to device name.
func (w *WireGuard) ConfigureDevice(name string, cfg wgtypes.Config) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, Call{Name: name, Config: copyConfig(cfg)})
	if w.configureErr != nil {
		return w.configureErr
	}
	d, ok := w.devices[name]
	if !ok {
		return fmt.Errorf("meshtest: device %s: %w", name, os.ErrNotExist)
	}
	if cfg.PrivateKey != nil {
		d.PrivateKey = *cfg.PrivateKey
		d.PublicKey = cfg.PrivateKey.PublicKey()
	}
	if cfg.ListenPort != nil {
		d.ListenPort = *cfg.ListenPort
	}
	if cfg.FirewallMark != nil {
		d.FirewallMark = *cfg.FirewallMark
	}
	if cfg.ReplacePeers {
		d.Peers = nil
	}
	for _, pc := range cfg.Peers {
		applyPeer(d, pc)
	}
	return nil
}

func applyPeer(d *wgtypes.Device, pc wgtypes.PeerConfig) {
	if pc.PublicKey == d.PublicKey {
		return
	}
	i := slices.IndexFunc(d.Peers, func(p wgtypes.Peer) bool { return p.PublicKey == pc.PublicKey })
	if pc.Remove {
		if i >= 0 {
			d.Peers = slices.Delete(d.Peers, i, i+1)
		}
		return
	}
	if i < 0 {
		if pc.UpdateOnly {
			return
		}
		d.Peers = append(d.Peers, wgtypes.Peer{PublicKey: pc.PublicKey, ProtocolVersion: 1})
		i = len(d.Peers) - 1
	}
	p := &d.Peers[i]
	if pc.PresharedKey != nil {
		p.PresharedKey = *pc.PresharedKey
	}
	if pc.Endpoint != nil {
		p.Endpoint = copyUDPAddr(pc.Endpoint)
	}
	if pc.PersistentKeepaliveInterval != nil {
		p.PersistentKeepaliveInterval = *pc.PersistentKeepaliveInterval
	}
	if pc.ReplaceAllowedIPs {
		p.AllowedIPs = nil
	}
	for _, n := range pc.AllowedIPs {
		// WireGuard stores allowed IPs masked, and an allowed IP belongs to one
		// peer: claiming it moves it.
		n = net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask}
		for j := range d.Peers {
			d.Peers[j].AllowedIPs = slices.DeleteFunc(d.Peers[j].AllowedIPs, func(o net.IPNet) bool {
				return o.String() == n.String()
			})
		}
		p.AllowedIPs = append(p.AllowedIPs, copyIPNet(n))
	}
}

// Close marks the client closed.
func (w *WireGuard) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

// Closed reports whether Close was called.
func (w *WireGuard) Closed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// Calls returns copies of the recorded ConfigureDevice calls.
func (w *WireGuard) Calls() []Call {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Call, len(w.calls))
	for i, c := range w.calls {
		out[i] = Call{Name: c.Name, Config: copyConfig(c.Config)}
	}
	return out
}

// ResetCalls forgets the recorded calls.
func (w *WireGuard) ResetCalls() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = nil
}

// FailConfigure makes every later ConfigureDevice return err (after
// recording the call, without applying it); nil restores normal behaviour.
func (w *WireGuard) FailConfigure(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.configureErr = err
}

// FailDevice makes every later Device return err; nil restores it.
func (w *WireGuard) FailDevice(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deviceErr = err
}

// Roam sets a peer's endpoint as WireGuard does on an authenticated packet
// from a new address. It reports whether the peer exists.
func (w *WireGuard) Roam(device string, peer wgtypes.Key, endpoint *net.UDPAddr) bool {
	return w.updatePeer(device, peer, func(p *wgtypes.Peer) { p.Endpoint = copyUDPAddr(endpoint) })
}

// SetTraffic sets a peer's handshake time and byte counters, as a running
// session would. It reports whether the peer exists.
func (w *WireGuard) SetTraffic(device string, peer wgtypes.Key, handshake time.Time, rx, tx int64) bool {
	return w.updatePeer(device, peer, func(p *wgtypes.Peer) {
		p.LastHandshakeTime, p.ReceiveBytes, p.TransmitBytes = handshake, rx, tx
	})
}

func (w *WireGuard) updatePeer(device string, peer wgtypes.Key, f func(*wgtypes.Peer)) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, ok := w.devices[device]
	if !ok {
		return false
	}
	for i := range d.Peers {
		if d.Peers[i].PublicKey == peer {
			f(&d.Peers[i])
			return true
		}
	}
	return false
}

func copyDevice(d *wgtypes.Device) *wgtypes.Device {
	c := *d
	c.Peers = make([]wgtypes.Peer, len(d.Peers))
	for i, p := range d.Peers {
		p.Endpoint = copyUDPAddr(p.Endpoint)
		p.AllowedIPs = copyIPNets(p.AllowedIPs)
		c.Peers[i] = p
	}
	return &c
}

func copyConfig(cfg wgtypes.Config) wgtypes.Config {
	c := cfg
	if cfg.PrivateKey != nil {
		k := *cfg.PrivateKey
		c.PrivateKey = &k
	}
	if cfg.ListenPort != nil {
		v := *cfg.ListenPort
		c.ListenPort = &v
	}
	if cfg.FirewallMark != nil {
		v := *cfg.FirewallMark
		c.FirewallMark = &v
	}
	if cfg.Peers != nil {
		c.Peers = make([]wgtypes.PeerConfig, len(cfg.Peers))
		for i, p := range cfg.Peers {
			if p.PresharedKey != nil {
				k := *p.PresharedKey
				p.PresharedKey = &k
			}
			p.Endpoint = copyUDPAddr(p.Endpoint)
			if p.PersistentKeepaliveInterval != nil {
				v := *p.PersistentKeepaliveInterval
				p.PersistentKeepaliveInterval = &v
			}
			if p.AllowedIPs != nil {
				p.AllowedIPs = copyIPNets(p.AllowedIPs)
			}
			c.Peers[i] = p
		}
	}
	return c
}

func copyIPNets(ns []net.IPNet) []net.IPNet {
	if ns == nil {
		return nil
	}
	out := make([]net.IPNet, len(ns))
	for i, n := range ns {
		out[i] = copyIPNet(n)
	}
	return out
}

func copyIPNet(n net.IPNet) net.IPNet {
	return net.IPNet{IP: slices.Clone(n.IP), Mask: slices.Clone(n.Mask)}
}

func copyUDPAddr(a *net.UDPAddr) *net.UDPAddr {
	if a == nil {
		return nil
	}
	return &net.UDPAddr{IP: slices.Clone(a.IP), Port: a.Port, Zone: a.Zone}
}
