package peerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/segmesh/segmesh/api"
)

// Source is what the peer API serves. Its methods are called concurrently.
type Source interface {
	Flows() []api.Flow
	Observed() api.Observed
	Info() api.PeerInfo
}

// Config configures a Server.
type Config struct {
	Interface string // the mesh interface every socket is bound to
	Port      int
	// Admitted reports whether a source address belongs to an admitted
	// (CA mode: trusted) peer. Connections from anyone else are closed
	// unanswered.
	Admitted func(netip.Addr) bool
	// Count is told the outcome of every request: its HTTP status code,
	// or RefusedCode for a connection closed unanswered. May be nil.
	Count func(code string)
	Log   *slog.Logger
}

// RefusedCode is the code Count receives for a connection from a source
// that is not an admitted peer, closed before a byte was read.
const RefusedCode = "refused"

// maxConcurrent bounds the requests served at once; more get 503.
const maxConcurrent = 8

// Server serves the peer API on a set of overlay addresses.
type Server struct {
	cfg  Config
	srv  *http.Server
	slot chan struct{}

	mu  sync.Mutex
	lns map[netip.Addr]net.Listener
	wg  sync.WaitGroup
}

// New returns a server that listens nowhere until SetAddrs.
func New(cfg Config, src Source) *Server {
	s := &Server{cfg: cfg, slot: make(chan struct{}, maxConcurrent), lns: map[netip.Addr]net.Listener{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, _ *http.Request) { s.reply(w, src.Flows()) })
	mux.HandleFunc("GET /v1/observed", func(w http.ResponseWriter, _ *http.Request) { s.reply(w, src.Observed()) })
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, _ *http.Request) { s.reply(w, src.Info()) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	s.srv = &http.Server{Handler: s.limit(mux), ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug)}
	return s
}

// SetAddrs makes the server listen on exactly addrs: new ones are bound,
// gone ones closed. An address that cannot be bound is an error; the others
// are still set.
func (s *Server) SetAddrs(addrs []netip.Addr) error {
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		if a.IsValid() {
			want[a] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, ln := range s.lns {
		if !want[a] {
			ln.Close()
			delete(s.lns, a)
		}
	}
	var errs []error
	for a := range want {
		if _, ok := s.lns[a]; ok {
			continue
		}
		ln, err := s.listen(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.lns[a] = ln
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.cfg.Log.Error("peer API stopped listening", "address", a, "err", err)
			}
		}()
	}
	return errors.Join(errs...)
}

// Close stops listening and ends the requests in flight (at most 2 s).
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	s.mu.Lock()
	for a, ln := range s.lns {
		ln.Close()
		delete(s.lns, a)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// listen binds a TCP socket to a on the mesh interface. IP_FREEBIND lets
// it bind before the address is fully up.
func (s *Server) listen(a netip.Addr) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.BindToDevice(int(fd), s.cfg.Interface); serr != nil {
				serr = fmt.Errorf("bind to device %s: %w", s.cfg.Interface, serr)
				return
			}
			if a.Is4() {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	addr := netip.AddrPortFrom(a, uint16(s.cfg.Port)).String()
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer_api_port: listen on %s: %w", addr, err)
	}
	return &admittedListener{Listener: ln, s: s}, nil
}

// admittedListener closes, unanswered, every connection whose source is
// not an admitted peer.
type admittedListener struct {
	net.Listener
	s *Server
}

func (l *admittedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src, ok := remoteAddr(c)
		if ok && l.s.cfg.Admitted != nil && l.s.cfg.Admitted(src) {
			return c, nil
		}
		if tc, isTCP := c.(*net.TCPConn); isTCP {
			_ = tc.SetLinger(0) // a reset, not a polite close
		}
		c.Close()
		l.s.count(RefusedCode)
		l.s.cfg.Log.Debug("peer API: connection from a source that is no admitted peer closed", "source", src)
	}
}

func remoteAddr(c net.Conn) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func (s *Server) limit(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case s.slot <- struct{}{}:
			defer func() { <-s.slot }()
			h.ServeHTTP(w, r)
		default:
			s.fail(w, http.StatusServiceUnavailable, "busy: too many peer API requests at once")
		}
	})
}

func (s *Server) reply(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "encode: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	s.count(strconv.Itoa(http.StatusOK))
}

func (s *Server) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(api.Error{Error: msg})
	s.count(strconv.Itoa(code))
}

func (s *Server) count(code string) {
	if s.cfg.Count != nil {
		s.cfg.Count(code)
	}
}
