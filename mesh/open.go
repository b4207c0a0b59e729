package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Open creates the interface named cfg.Interface: the kernel WireGuard
// device through netlink when the kernel supports it, else embedded
// wireguard-go on a TUN (GSO/GRO kept) with its UAPI socket in
// /var/run/wireguard, so `wg show <if>` works. It disables IPv6
// autoconfiguration on it (addr_gen_mode none, by netlink) while the link
// is down, sets the MTU, the private key and listen port, and the overlay
// addresses cfg.Address4 and cfg.Address6 with their prefix lengths. The
// link stays DOWN: the caller installs the firewall and then calls Up
// (wireguard-go's own UDP socket is bound already, which makes a taken
// listen port fail Open; with no peers it accepts no traffic). On any
// failure Open removes what it created. An interface with that name
// left by a crash is removed first, unless a live process still serves its
// UAPI socket (then Open fails and touches nothing).
func Open(cfg Config, log *slog.Logger) (*Mesh, error) {
	return open(cfg, log, realSystem())
}

func open(cfg Config, log *slog.Logger, sys system) (_ *Mesh, err error) {
	if err := validateConfig(cfg); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("interface", cfg.Interface)
	name := cfg.Interface

	if sys.uapiInUse(name) {
		return nil, fmt.Errorf("open %s: a running WireGuard process serves %s", name, uapiSocketPath(name))
	}
	if err := removeStaleLink(sys.nl, name); err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}

	m := &Mesh{name: name, log: log, nl: sys.nl, addr4: cfg.Address4, addr6: cfg.Address6,
		endpoints: map[Key]netip.AddrPort{}}
	defer func() {
		if err != nil {
			if cerr := m.teardown(); cerr != nil {
				log.Warn("cleanup after failed open", "err", cerr)
			}
		}
	}()

	kernel, err := createKernelLink(sys.nl, name, cfg.MTU)
	if err != nil {
		return nil, err
	}
	m.backend = BackendKernel
	if !kernel {
		m.backend = BackendUserspace
		if m.user, err = sys.userspace(name, cfg.MTU, log); err != nil {
			return nil, err
		}
	}
	if m.link, err = sys.nl.LinkByName(name); err != nil {
		return nil, fmt.Errorf("look up %s after creating it: %w", name, err)
	}
	if err := disableIPv6Autoconf(sys.nl, m.link); err != nil {
		return nil, err
	}
	if err := sys.nl.LinkSetMTU(m.link, cfg.MTU); err != nil {
		return nil, fmt.Errorf("set MTU %d on %s: %w", cfg.MTU, name, err)
	}
	if m.wg, err = sys.newClient(); err != nil {
		return nil, err
	}
	key, port := cfg.PrivateKey, cfg.ListenPort
	if err := m.wg.ConfigureDevice(name, wgtypes.Config{PrivateKey: &key, ListenPort: &port}); err != nil {
		return nil, fmt.Errorf("set key and listen port on %s: %w", name, err)
	}
	if m.user != nil {
		// wireguard-go brings itself up from a TUN event as soon as the TUN
		// exists; Up makes sure it is, so a taken port fails here.
		if err := m.user.Up(); err != nil {
			return nil, fmt.Errorf("%s listen port %d: %w", name, port, err)
		}
	}
	// A bind that failed asynchronously (the TUN event racing the
	// configuration) leaves wireguard-go on a random port: check.
	if d, err := m.wg.Device(name); err != nil {
		return nil, fmt.Errorf("read back %s: %w", name, err)
	} else if port != 0 && d.ListenPort != port {
		return nil, fmt.Errorf("%s listens on port %d, not %d (port taken?)", name, d.ListenPort, port)
	}
	for _, p := range []netip.Prefix{cfg.Address4, cfg.Address6} {
		if err := sys.nl.AddrReplace(m.link, overlayAddr(p)); err != nil {
			return nil, fmt.Errorf("add address %s to %s: %w", p, name, err)
		}
	}
	log.Info("wireguard interface created", "backend", m.backend, "mtu", cfg.MTU,
		"listen_port", port, "address4", cfg.Address4, "address6", cfg.Address6)
	return m, nil
}

func validateConfig(cfg Config) error {
	if err := validIfName(cfg.Interface); err != nil {
		return err
	}
	if cfg.PrivateKey == (Key{}) {
		return errors.New("mesh config: empty private key")
	}
	if cfg.ListenPort < 0 || cfg.ListenPort > 65535 {
		return fmt.Errorf("mesh config: listen port %d out of range", cfg.ListenPort)
	}
	if cfg.MTU < 1280 || cfg.MTU > 65535 {
		return fmt.Errorf("mesh config: MTU %d out of range 1280..65535 (IPv6 needs 1280)", cfg.MTU)
	}
	if !cfg.Address4.IsValid() || !cfg.Address4.Addr().Is4() {
		return fmt.Errorf("mesh config: address4 %q is not an IPv4 prefix", cfg.Address4)
	}
	if !cfg.Address6.IsValid() || !cfg.Address6.Addr().Is6() || cfg.Address6.Addr().Is4In6() {
		return fmt.Errorf("mesh config: address6 %q is not an IPv6 prefix", cfg.Address6)
	}
	return nil
}

// validIfName accepts what the kernel accepts as a fixed interface name
// (no "%d" templates).
func validIfName(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." {
		return fmt.Errorf("mesh config: invalid interface name %q (1-15 characters)", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("mesh config: invalid interface name %q (letters, digits, '-', '_', '.')", name)
		}
	}
	return nil
}
