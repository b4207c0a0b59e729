package mesh

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"

	"github.com/segmesh/segmesh/mesh/meshtest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeNet is an in-memory rtnetlink: links with addresses, MTU, up flag and
// addr_gen_mode, and a main routing table. fail makes a method return an
// error.
type fakeNet struct {
	mu        sync.Mutex
	kernelWG  bool // LinkAdd of a wireguard link succeeds
	nextIndex int
	links     map[string]*fakeLink
	routes    []netlink.Route
	fail      map[string]error
	calls     []string
}

type fakeLink struct {
	index   int
	name    string
	kind    string
	mtu     int
	up      bool
	genMode int // -1 until set
	addrs   []netlink.Addr
}

func newFakeNet(kernelWG bool) *fakeNet {
	return &fakeNet{kernelWG: kernelWG, nextIndex: 1, links: map[string]*fakeLink{}, fail: map[string]error{}}
}

// addLink creates a link directly (as the kernel or a TUN would).
func (f *fakeNet) addLink(name, kind string, mtu int) *fakeLink {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addLinkLocked(name, kind, mtu)
}

func (f *fakeNet) addLinkLocked(name, kind string, mtu int) *fakeLink {
	if mtu == 0 {
		mtu = 1500
	}
	l := &fakeLink{index: f.nextIndex, name: name, kind: kind, mtu: mtu, genMode: -1}
	f.nextIndex++
	f.links[name] = l
	return l
}

func (f *fakeNet) removeLink(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removeLinkLocked(name)
}

func (f *fakeNet) removeLinkLocked(name string) {
	l, ok := f.links[name]
	if !ok {
		return
	}
	delete(f.links, name)
	f.routes = slices.DeleteFunc(f.routes, func(r netlink.Route) bool { return r.LinkIndex == l.index })
}

func (f *fakeNet) get(name string) *fakeLink {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.links[name]; ok {
		c := *l
		c.addrs = slices.Clone(l.addrs)
		return &c
	}
	return nil
}

func (f *fakeNet) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeNet) routeList() []netlink.Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.routes)
}

// enter logs a call and returns the injected error for "method" or for
// "method arg", if any.
func (f *fakeNet) enter(method, arg string) error {
	f.calls = append(f.calls, method+" "+arg)
	if err := f.fail[method+" "+arg]; err != nil {
		return err
	}
	return f.fail[method]
}

func notFound() error { return fmt.Errorf("Link not found: %w", unix.ENODEV) }

func (f *fakeNet) view(l *fakeLink) netlink.Link {
	attrs := netlink.LinkAttrs{Index: l.index, Name: l.name, MTU: l.mtu}
	if l.up {
		attrs.Flags = net.FlagUp
	}
	return &netlink.Device{LinkAttrs: attrs}
}

func (f *fakeNet) byIndex(i int) *fakeLink {
	for _, l := range f.links {
		if l.index == i {
			return l
		}
	}
	return nil
}

func (f *fakeNet) resolve(link netlink.Link) *fakeLink {
	if l := f.byIndex(link.Attrs().Index); l != nil && link.Attrs().Index != 0 {
		return l
	}
	return f.links[link.Attrs().Name]
}

func (f *fakeNet) LinkByName(name string) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("LinkByName", name); err != nil {
		return nil, err
	}
	l, ok := f.links[name]
	if !ok {
		return nil, notFound()
	}
	return f.view(l), nil
}

func (f *fakeNet) LinkByIndex(index int) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("LinkByIndex", fmt.Sprint(index)); err != nil {
		return nil, err
	}
	l := f.byIndex(index)
	if l == nil {
		return nil, notFound()
	}
	return f.view(l), nil
}

func (f *fakeNet) LinkAdd(link netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("LinkAdd", link.Type()+" "+link.Attrs().Name); err != nil {
		return err
	}
	if link.Type() == "wireguard" && !f.kernelWG {
		return fmt.Errorf("%w: Unknown device type", unix.EOPNOTSUPP)
	}
	if _, ok := f.links[link.Attrs().Name]; ok {
		return unix.EEXIST
	}
	f.addLinkLocked(link.Attrs().Name, link.Type(), link.Attrs().MTU)
	return nil
}

func (f *fakeNet) LinkDel(link netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("LinkDel", link.Attrs().Name); err != nil {
		return err
	}
	l := f.resolve(link)
	if l == nil {
		return unix.ENODEV
	}
	f.removeLinkLocked(l.name)
	return nil
}

func (f *fakeNet) LinkSetMTU(link netlink.Link, mtu int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("LinkSetMTU", link.Attrs().Name); err != nil {
		return err
	}
	l := f.resolve(link)
	if l == nil {
		return unix.ENODEV
	}
	l.mtu = mtu
	return nil
}

func (f *fakeNet) LinkSetUp(link netlink.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("LinkSetUp", link.Attrs().Name); err != nil {
		return err
	}
	l := f.resolve(link)
	if l == nil {
		return unix.ENODEV
	}
	l.up = true
	return nil
}

func (f *fakeNet) LinkSetIP6AddrGenMode(link netlink.Link, mode int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("LinkSetIP6AddrGenMode", link.Attrs().Name); err != nil {
		return err
	}
	l := f.resolve(link)
	if l == nil {
		return unix.ENODEV
	}
	if l.up {
		return fmt.Errorf("fake: addr_gen_mode set while %s is up (too late: link-local already generated)", l.name)
	}
	l.genMode = mode
	return nil
}

func (f *fakeNet) AddrReplace(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("AddrReplace", addr.IPNet.String()); err != nil {
		return err
	}
	l := f.resolve(link)
	if l == nil {
		return unix.ENODEV
	}
	l.addrs = slices.DeleteFunc(l.addrs, func(a netlink.Addr) bool { return a.IP.Equal(addr.IP) })
	a := *addr
	a.LinkIndex = l.index
	l.addrs = append(l.addrs, a)
	return nil
}

func (f *fakeNet) AddrDel(link netlink.Link, addr *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("AddrDel", addr.IPNet.String()); err != nil {
		return err
	}
	l := f.resolve(link)
	if l == nil {
		return unix.ENODEV
	}
	n := len(l.addrs)
	l.addrs = slices.DeleteFunc(l.addrs, func(a netlink.Addr) bool { return a.IPNet.String() == addr.IPNet.String() })
	if len(l.addrs) == n {
		return unix.EADDRNOTAVAIL
	}
	return nil
}

func (f *fakeNet) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("AddrList", fmt.Sprint(family)); err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, l := range f.links {
		if link != nil && l.index != link.Attrs().Index {
			continue
		}
		for _, a := range l.addrs {
			is4 := a.IP.To4() != nil
			if family == netlink.FAMILY_ALL || is4 == (family == netlink.FAMILY_V4) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

func (f *fakeNet) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("RouteListFiltered", filter.Dst.String()); err != nil {
		return nil, err
	}
	var out []netlink.Route
	for _, r := range f.routes {
		if mask&netlink.RT_FILTER_OIF != 0 && r.LinkIndex != filter.LinkIndex {
			continue
		}
		if mask&netlink.RT_FILTER_DST != 0 && r.Dst.String() != filter.Dst.String() {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

func (f *fakeNet) RouteAdd(route *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("RouteAdd", route.Dst.String()); err != nil {
		return err
	}
	if f.byIndex(route.LinkIndex) == nil {
		return unix.ENODEV
	}
	f.routes = append(f.routes, *route)
	return nil
}

func (f *fakeNet) RouteGet(dst net.IP) ([]netlink.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("RouteGet", dst.String()); err != nil {
		return nil, err
	}
	for _, r := range f.routes {
		if r.Dst == nil || r.Dst.Contains(dst) {
			return []netlink.Route{r}, nil
		}
	}
	return nil, unix.ENETUNREACH
}

// fakeUser is a userspace WireGuard device: starting it creates a TUN link
// in fakeNet, closing it removes the link.
type fakeUser struct {
	net    *fakeNet
	name   string
	upErr  error
	up     bool
	closed int
}

func (u *fakeUser) Up() error {
	if u.upErr != nil {
		return u.upErr
	}
	u.up = true
	return nil
}

func (u *fakeUser) Close() error {
	u.closed++
	u.net.removeLink(u.name)
	return nil
}

// fakeSystem wires fakes into a system and records what Open did.
type fakeSystem struct {
	net       *fakeNet
	client    WGClient            // what newClient returns
	fakeWG    *meshtest.WireGuard // the fake behind client
	clientErr error
	clients   int
	user      *fakeUser
	userErr   error
	userUpErr error
	inUse     bool
}

func (s *fakeSystem) system() system {
	return system{
		nl: s.net,
		newClient: func() (WGClient, error) {
			if s.clientErr != nil {
				return nil, s.clientErr
			}
			s.clients++
			return s.client, nil
		},
		userspace: func(name string, mtu int, _ *slog.Logger) (userspaceDevice, error) {
			if s.userErr != nil {
				return nil, s.userErr
			}
			s.net.addLink(name, "tuntap", mtu)
			s.user = &fakeUser{net: s.net, name: name, upErr: s.userUpErr}
			return s.user, nil
		},
		uapiInUse: func(string) bool { return s.inUse },
	}
}
