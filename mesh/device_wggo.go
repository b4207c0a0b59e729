package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// uapiListenerErrors is how many errors ipc.UAPIListener's Accept reports
// in its life: one from its accept goroutine and one from its socket-file
// watcher. The accept loop drains both so neither goroutine stays blocked.
const uapiListenerErrors = 2

// userspace is wireguard-go running in this process on a TUN, with the UAPI
// socket that wgctrl and `wg` talk to.
type userspace struct {
	log  *slog.Logger
	dev  *device.Device
	uapi net.Listener

	acceptDone chan struct{}
	handlers   sync.WaitGroup

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{}

	closeOnce sync.Once
}

// startUserspace creates the TUN name (tun.CreateTUN keeps GSO/GRO), starts
// wireguard-go on it and serves its UAPI socket.
func startUserspace(name string, mtu int, log *slog.Logger) (*userspace, error) {
	t, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("create TUN %s: %w", name, err)
	}
	if got, err := t.Name(); err != nil || got != name {
		t.Close()
		return nil, fmt.Errorf("create TUN %s: kernel named it %q (%v)", name, got, err)
	}
	log = log.With("component", "wireguard-go")
	dev := device.NewDevice(t, conn.NewDefaultBind(), slogAdapter(log))
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("open UAPI socket for %s: %w", name, err)
	}
	l, err := ipc.UAPIListen(name, f)
	f.Close() // UAPIListen holds its own copy of the descriptor
	if err != nil {
		dev.Close()
		os.Remove(uapiSocketPath(name))
		return nil, fmt.Errorf("listen on UAPI socket for %s: %w", name, err)
	}
	u := &userspace{
		log:        log,
		dev:        dev,
		uapi:       l,
		acceptDone: make(chan struct{}),
		conns:      map[net.Conn]struct{}{},
	}
	go u.acceptLoop()
	return u, nil
}

func (u *userspace) acceptLoop() {
	defer close(u.acceptDone)
	for errs := 0; errs < uapiListenerErrors; {
		c, err := u.uapi.Accept()
		if err != nil {
			errs++
			if !u.isClosing() {
				u.log.Warn("UAPI listener stopped; `wg` and wgctrl can no longer reach the device", "err", err)
			}
			continue
		}
		if !u.track(c) {
			c.Close()
			continue
		}
		go func() {
			defer u.handlers.Done()
			defer u.untrack(c)
			u.dev.IpcHandle(c)
		}()
	}
}

func (u *userspace) isClosing() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.closing
}

// track registers a UAPI connection; false once closing.
func (u *userspace) track(c net.Conn) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closing {
		return false
	}
	u.conns[c] = struct{}{}
	u.handlers.Add(1)
	return true
}

func (u *userspace) untrack(c net.Conn) {
	u.mu.Lock()
	delete(u.conns, c)
	u.mu.Unlock()
}

// Up binds the UDP sockets now, so that a taken listen port fails Open
// instead of being logged later when the link comes up.
func (u *userspace) Up() error {
	if err := u.dev.Up(); err != nil {
		return fmt.Errorf("start wireguard-go: %w", err)
	}
	return nil
}

// Close stops the UAPI server and the device; closing the TUN removes the
// interface, closing the listener unlinks the socket.
func (u *userspace) Close() error {
	var err error
	u.closeOnce.Do(func() {
		u.mu.Lock()
		u.closing = true
		for c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
		if cerr := u.uapi.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("close UAPI listener: %w", cerr)
		}
		select {
		case <-u.acceptDone:
		case <-time.After(5 * time.Second):
			u.log.Error("UAPI accept loop did not stop")
		}
		u.handlers.Wait()
		u.dev.Close()
	})
	return err
}

// slogAdapter routes wireguard-go's printf logging to slog: verbose lines
// at debug (formatted only when enabled), errors at error.
func slogAdapter(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			log.Error(fmt.Sprintf(format, args...))
		},
	}
}
