package main

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// earlySocket creates a TCP socket now and returns a function that
// connects it (blocking) to target and closes it.
func earlySocket(target string) (func() error, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return nil, err
	}
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if ap.Addr().Is6() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	return func() error {
		defer unix.Close(fd)
		return unix.Connect(fd, sa)
	}, nil
}
