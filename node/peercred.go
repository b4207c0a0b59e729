package node

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

type connKey struct{}

// withConn stores the accepted connection in the request context so handlers
// can read the peer's credentials (SO_PEERCRED).
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// peerCred returns the uid and gid of the process on the other end of the
// control socket.
func peerCred(ctx context.Context) (*unix.Ucred, error) {
	uc, ok := ctx.Value(connKey{}).(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("peer credentials: %w", cerr)
	}
	return cred, nil
}

// whoIs names the caller for "applied by": user@node.
func whoIs(ctx context.Context, node string) string {
	cred, err := peerCred(ctx)
	if err != nil {
		return "unknown@" + node
	}
	name := strconv.Itoa(int(cred.Uid))
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	return name + "@" + node
}
