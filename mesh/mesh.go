package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Backend names reported by Mesh.Backend.
const (
	BackendKernel    = "kernel"
	BackendUserspace = "wireguard-go"
)

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("mesh: closed")

// ErrNoLink is returned by link operations on a Mesh made by Attach, which
// manages WireGuard peers only.
var ErrNoLink = errors.New("mesh: no interface managed (attached to an existing device)")

// Mesh is the local WireGuard interface.
type Mesh struct {
	name    string
	backend string
	log     *slog.Logger
	nl      netOps          // nil when attached
	wg      WGClient        // WireGuard control
	user    userspaceDevice // nil unless backend is wireguard-go

	mu        sync.Mutex // serialises WireGuard and link changes; guards the fields below
	link      netlink.Link
	addr4     netip.Prefix
	addr6     netip.Prefix
	endpoints map[Key]netip.AddrPort // endpoint this Mesh last set (or saw) per peer
	closed    bool
	closeErr  error
}

// Attach returns a Mesh that manages the peers of an existing WireGuard
// device name through c (Reconcile, Stats) without owning its interface:
// Up and SetAddress4 return ErrNoLink and Close only closes c. It is how
// tests drive a Mesh on meshtest.WireGuard.
func Attach(name string, c WGClient, log *slog.Logger) (*Mesh, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d, err := c.Device(name)
	if err != nil {
		return nil, fmt.Errorf("attach to wireguard device %s: %w", name, err)
	}
	backend := BackendUserspace
	if d.Type == wgtypes.LinuxKernel {
		backend = BackendKernel
	}
	return &Mesh{name: name, backend: backend, log: log.With("interface", name), wg: c,
		endpoints: map[Key]netip.AddrPort{}}, nil
}

// Backend returns "kernel" or "wireguard-go".
func (m *Mesh) Backend() string { return m.backend }

// Name returns the interface name.
func (m *Mesh) Name() string { return m.name }

// Up sets the link up and makes sure the routes for the overlay prefixes via
// the interface exist. Calling it again is harmless.
func (m *Mesh) Up() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.nl == nil {
		return ErrNoLink
	}
	if err := m.nl.LinkSetUp(m.link); err != nil {
		return fmt.Errorf("set %s up: %w", m.name, err)
	}
	return m.ensureRoutesLocked()
}

func (m *Mesh) ensureRoutesLocked() error {
	for _, p := range []netip.Prefix{m.addr4, m.addr6} {
		if err := ensureRoute(m.nl, m.link, p); err != nil {
			return err
		}
	}
	return nil
}

// isUpLocked reports whether the link is administratively up.
func (m *Mesh) isUpLocked() (bool, error) {
	l, err := m.nl.LinkByIndex(m.link.Attrs().Index)
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", m.name, err)
	}
	return l.Attrs().Flags&net.FlagUp != 0, nil
}

// SetAddress4 replaces the overlay IPv4 address (renumbering after an
// address clash). The old address is removed before the new one is added
// (so the kernel never drops the new one with a removed primary); if adding
// fails the old one is restored.
func (m *Mesh) SetAddress4(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("set address4: %q is not an IPv4 prefix", p)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.nl == nil {
		return ErrNoLink
	}
	if p == m.addr4 {
		return nil
	}
	old := m.addr4
	if err := m.nl.AddrDel(m.link, overlayAddr(old)); err != nil && !isAddrNotFound(err) {
		return fmt.Errorf("remove address %s from %s: %w", old, m.name, err)
	}
	if err := m.nl.AddrReplace(m.link, overlayAddr(p)); err != nil {
		if rerr := m.nl.AddrReplace(m.link, overlayAddr(old)); rerr != nil {
			m.log.Error("restore old overlay address", "address4", old, "err", rerr)
		}
		return fmt.Errorf("add address %s to %s: %w", p, m.name, err)
	}
	m.addr4 = p
	m.log.Info("overlay IPv4 address changed", "old", old, "new", p)
	up, err := m.isUpLocked()
	if err != nil {
		return err
	}
	if up {
		return m.ensureRoutesLocked()
	}
	return nil
}

// Close removes the interface and stops every goroutine Open started; it is
// idempotent (later calls return the first call's result).
func (m *Mesh) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.closeErr
	}
	m.closed = true
	m.closeErr = m.teardown()
	if m.closeErr == nil {
		m.log.Info("wireguard interface removed")
	}
	return m.closeErr
}

// teardown undoes what open did, in reverse; every step runs even when an
// earlier one failed.
func (m *Mesh) teardown() error {
	var errs []error
	if m.user != nil {
		if err := m.user.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.nl != nil {
		if err := removeStaleLink(m.nl, m.name); err != nil {
			errs = append(errs, err)
		}
	}
	if m.wg != nil {
		if err := m.wg.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close wgctrl client: %w", err))
		}
	}
	return errors.Join(errs...)
}
