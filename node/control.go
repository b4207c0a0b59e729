package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/segmesh/segmesh/api"
)

// controlServer serves the control API on a unix socket (mode 0600).
type controlServer struct {
	path   string
	ln     net.Listener
	srv    *http.Server
	log    *slog.Logger
	wg     sync.WaitGroup
	cancel context.CancelFunc // ends every request's context
}

// listenControl creates the socket. A stale socket left by a crash is
// replaced; a socket another live daemon answers on is an error.
func listenControl(path, group string, n *Node, log *slog.Logger) (*controlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control_socket: %w", err)
	}
	// Another local user must not be able to replace the socket.
	if st, err := os.Stat(filepath.Dir(path)); err == nil && st.Mode().Perm()&0o002 != 0 && st.Mode()&os.ModeSticky == 0 {
		return nil, fmt.Errorf("control_socket: directory %s is world-writable without the sticky bit: anyone could replace the socket", filepath.Dir(path))
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control_socket %s: another segmesh daemon is running", path)
	}
	_ = os.Remove(path)
	ap, err := newAccessPolicy(group)
	if err != nil {
		return nil, err
	}
	old := umask(0o177) // the socket is born 0600: no window where others could connect
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("control_socket: %w", err)
	}
	if err := ap.socketMode(path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control_socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status())
	})
	mux.HandleFunc("GET /v1/segments", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Segments())
	})
	mux.HandleFunc("GET /v1/stream", n.serveStream)
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Flows())
	})
	mux.HandleFunc("GET /v1/fleet/flows", func(w http.ResponseWriter, r *http.Request) {
		f, err := n.FleetFlows(r.Context())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("GET /v1/nodes/resolve", func(w http.ResponseWriter, r *http.Request) {
		name, key, _, err := n.resolveNode(r.URL.Query().Get("node"), true)
		if err != nil {
			writeJSON(w, http.StatusNotFound, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, api.NodeRef{Name: name, PublicKey: key})
	})
	mux.HandleFunc("POST /v1/quarantine", func(w http.ResponseWriter, r *http.Request) {
		var req api.QuarantineRequest
		if err := decodeStrict(r.Body, 1<<16, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: "bad request: " + err.Error()})
			return
		}
		n.mu.Lock()
		name := n.cfg.Name
		n.mu.Unlock()
		res, err := n.Quarantine(req.Entry, whoIs(r.Context(), name))
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrNotNewer) {
				code = http.StatusConflict
			}
			writeJSON(w, code, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/nodes/remove", func(w http.ResponseWriter, r *http.Request) {
		var req api.RemoveRequest
		if err := decodeStrict(r.Body, 1<<16, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: "bad request: " + err.Error()})
			return
		}
		n.mu.Lock()
		name := n.cfg.Name
		n.mu.Unlock()
		res, err := n.RemoveNode(req.Node, whoIs(r.Context(), name))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status().Peers)
	})
	mux.HandleFunc("GET /v1/policy/matrix", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.PolicyMatrix())
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := n.Reload(); err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"result": "reloaded"})
	})
	n.routesPolicy(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.Error{Error: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	// Requests (notably streams) see their context end when the server closes.
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: ap.guard(mux), ReadHeaderTimeout: 5 * time.Second, ConnContext: withConn,
		BaseContext: func(net.Listener) context.Context { return base }}
	return &controlServer{path: path, ln: ln, srv: srv, log: log, cancel: cancel}, nil
}

func (c *controlServer) serve() {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := c.srv.Serve(c.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("control API stopped", "err", err)
		}
	}()
}

func (c *controlServer) close() error {
	c.cancel() // long-lived streams end now instead of holding Shutdown
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.srv.Shutdown(ctx); err != nil {
		c.log.Warn("control API: requests still running at shutdown were cut", "err", err)
		_ = c.srv.Close()
	}
	c.ln.Close()
	c.wg.Wait()
	_ = os.Remove(c.path)
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeStrict decodes one JSON object of at most limit bytes: unknown
// fields and trailing data are errors (a misspelled "expect_version" must
// not silently apply a policy without the check).
func decodeStrict(body io.Reader, limit int64, v any) error {
	dec := json.NewDecoder(io.LimitReader(body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
