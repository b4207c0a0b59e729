package mesh

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// createKernelLink creates the kernel WireGuard interface name. It returns
// false (and no error) when the kernel has no WireGuard support.
func createKernelLink(h netOps, name string, mtu int) (bool, error) {
	err := h.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EOPNOTSUPP):
		return false, nil // "Unknown device type": no module, none loadable
	default:
		return false, fmt.Errorf("create wireguard interface %s: %w", name, err)
	}
}

// KernelSupported reports whether the kernel WireGuard device can be
// created: the module is loaded, or creating (and at once deleting) a probe
// interface succeeds. Without CAP_NET_ADMIN and no loaded module it reports
// false.
func KernelSupported() bool {
	if _, err := os.Stat("/sys/module/wireguard"); err == nil {
		return true
	}
	return kernelProbe(&netlink.Handle{})
}

func kernelProbe(h netOps) bool {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false
	}
	name := "smprobe" + hex.EncodeToString(b[:])
	ok, err := createKernelLink(h, name, 0)
	if !ok || err != nil {
		return false
	}
	if l, err := h.LinkByName(name); err == nil {
		_ = h.LinkDel(l)
	}
	return true
}
