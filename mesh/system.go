package mesh

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// netOps is the rtnetlink surface Mesh uses. *netlink.Handle implements it;
// unit tests use an in-memory fake.
type netOps interface {
	LinkByName(name string) (netlink.Link, error)
	LinkByIndex(index int) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetUp(link netlink.Link) error
	LinkSetIP6AddrGenMode(link netlink.Link, mode int) error
	AddrReplace(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteAdd(route *netlink.Route) error
	RouteGet(destination net.IP) ([]netlink.Route, error)
}

// userspaceDevice is a running embedded WireGuard device (wireguard-go on a
// TUN, with its UAPI socket).
type userspaceDevice interface {
	// Up opens the UDP sockets (fails when the listen port is taken).
	Up() error
	// Close stops the device, removes its TUN and UAPI socket and waits for
	// the goroutines it started.
	Close() error
}

// system bundles every OS edge Open touches, so Open can be unit tested.
type system struct {
	nl        netOps
	newClient func() (WGClient, error)
	userspace func(name string, mtu int, log *slog.Logger) (userspaceDevice, error)
	uapiInUse func(name string) bool
}

func realSystem() system {
	return system{
		nl:        &netlink.Handle{},
		newClient: newWgctrl,
		userspace: func(name string, mtu int, log *slog.Logger) (userspaceDevice, error) {
			return startUserspace(name, mtu, log)
		},
		uapiInUse: uapiSocketInUse,
	}
}

func newWgctrl() (WGClient, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("open wgctrl client: %w", err)
	}
	return c, nil
}

// uapiSocketDir is where userspace WireGuard implementations put their
// control sockets (shared by every network namespace of the host).
const uapiSocketDir = "/var/run/wireguard"

func uapiSocketPath(name string) string { return uapiSocketDir + "/" + name + ".sock" }

// uapiSocketInUse reports whether a live process answers on the UAPI socket
// of name.
func uapiSocketInUse(name string) bool {
	c, err := net.DialTimeout("unix", uapiSocketPath(name), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
