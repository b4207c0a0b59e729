package node

import (
	"errors"
	"net/http"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
)

// maxPolicySize bounds a policy submitted over the control socket.
const maxPolicySize = 4 << 20

func (n *Node) routesPolicy(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		d := docToAPI(n.policy.doc, n.policy.pol)
		n.mu.Unlock()
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("GET /v1/policy/history", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		out := make([]api.PolicyDocument, 0, len(n.policy.history))
		for i := range n.policy.history {
			out = append(out, docToAPI(&n.policy.history[i], nil))
		}
		n.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		var req api.ApplyRequest
		if err := decodeStrict(r.Body, maxPolicySize, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: "bad request: " + err.Error()})
			return
		}
		n.mu.Lock()
		name := n.cfg.Name
		n.mu.Unlock()
		doc, err := n.ApplyPolicy([]byte(req.Content), ApplyOptions{Expect: req.ExpectVersion, Version: req.Version,
			Signature: req.Signature, AppliedBy: whoIs(r.Context(), name)})
		switch {
		case errors.Is(err, ErrVersionConflict), errors.Is(err, ErrUnsigned):
			writeJSON(w, http.StatusConflict, api.Error{Error: err.Error()})
		case err != nil:
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
		default:
			writeJSON(w, http.StatusOK, docToAPI(doc, nil))
		}
	})
	mux.HandleFunc("GET /v1/revocations", func(w http.ResponseWriter, r *http.Request) {
		rv, err := n.Revocations()
		if err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rv)
	})
	mux.HandleFunc("POST /v1/revocations", func(w http.ResponseWriter, r *http.Request) {
		var req api.RevokeRequest
		if err := decodeStrict(r.Body, 1<<20, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: "bad request: " + err.Error()})
			return
		}
		res, err := n.Revoke(req.Entry)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /v1/policy/suggest", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		s, err := n.Suggest(r.Context(), q.Get("fleet") == "true", q.Get("audit_only") == "true")
		if err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, s)
	})
	mux.HandleFunc("POST /v1/policy/diff", func(w http.ResponseWriter, r *http.Request) {
		var req api.DiffRequest
		if err := decodeStrict(r.Body, maxPolicySize, &req); err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: "bad request: " + err.Error()})
			return
		}
		d, err := n.Diff(r.Context(), []byte(req.Content), req.Fleet)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("GET /v1/policy/explain", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		e, err := n.Explain(q.Get("from"), q.Get("to"), q.Get("port"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, api.Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, e)
	})
}

func docToAPI(d *acl.Document, p *acl.Policy) api.PolicyDocument {
	if d == nil {
		return api.PolicyDocument{Mode: string(acl.ModeEnforce)}
	}
	out := api.PolicyDocument{Version: d.Version, Hash: d.Hash, AppliedBy: d.AppliedBy,
		Time: d.Time.UTC().Format(time.RFC3339), Content: d.Content}
	if p == nil {
		p, _ = acl.Parse("policy", []byte(d.Content))
	}
	if p != nil {
		out.Mode = string(p.Mode)
	}
	return out
}
