package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/ca"
)

const (
	policyFile     = "policy.json"         // the active document
	historyFile    = "policy-history.json" // past documents, oldest first
	policyFileSeen = "policy_file.sha256"  // hash of policy_file as this node last read it
	maxHistory     = 50
	docKindPolicy  = "policy" // gossip document kind
)

// policyState is the active policy and its history.
type policyState struct {
	doc     *acl.Document // nil: no policy (fail closed)
	pol     *acl.Policy
	history []acl.Document
}

// loadPolicy reads the persisted policy. A missing file means no policy; a
// corrupt one is an error (refusing to start beats guessing the policy).
func loadPolicy(stateDir string) (policyState, error) {
	var ps policyState
	b, err := os.ReadFile(filepath.Join(stateDir, policyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return ps, nil
	}
	if err != nil {
		return ps, fmt.Errorf("read persisted policy: %w", err)
	}
	if ps.doc, ps.pol, err = acl.DecodeDocument(b); err != nil {
		return ps, fmt.Errorf("persisted policy %s: %w", filepath.Join(stateDir, policyFile), err)
	}
	if hb, err := os.ReadFile(filepath.Join(stateDir, historyFile)); err == nil {
		_ = json.Unmarshal(hb, &ps.history) // history is informational; a bad file only loses history
	}
	return ps, nil
}

// persist writes the active document first, then the history.
func (ps *policyState) persist(stateDir string) error {
	b, err := ps.doc.Encode()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(stateDir, policyFile), b, 0o600); err != nil {
		return fmt.Errorf("persist policy: %w", err)
	}
	hb, err := json.Marshal(ps.history)
	if err != nil {
		return fmt.Errorf("encode policy history: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(stateDir, historyFile), hb, 0o600); err != nil {
		return fmt.Errorf("persist policy history: %w", err)
	}
	return nil
}

// accept makes doc the active policy when it is newer, persisting it first
// (security invariant 5: never back to an older one). It reports whether doc
// was accepted. Callers hold n.mu.
func (n *Node) accept(doc *acl.Document, pol *acl.Policy, source string) (bool, error) {
	if !doc.Newer(n.policy.doc) {
		return false, nil
	}
	next := policyState{doc: doc, pol: pol, history: append(append([]acl.Document(nil), n.policy.history...), *doc)}
	if len(next.history) > maxHistory {
		next.history = next.history[len(next.history)-maxHistory:]
	}
	if err := next.persist(n.cfg.StateDir); err != nil {
		return false, err // the running policy stays; the document is not half-accepted
	}
	if old := n.policy.pol; old != nil && old.Mode != pol.Mode {
		// Fold the counters in under the mode they were counted in.
		if _, _, err := n.observeDeniedLocked(); err != nil {
			n.log.Warn("denied-packet counters before a mode switch", "err", err)
		}
	}
	n.policy = next
	n.policyPending = n.deps.Now()
	n.log.Info("policy accepted", "version", doc.Version, "hash", doc.Hash, "mode", pol.Mode,
		"applied_by", doc.AppliedBy, "source", source)
	return true, nil
}

// docHandler carries policy documents through gossip (one delegate per concern).
type docHandler struct{ n *Node }

// MergeDocument accepts a newer, valid policy from the mesh.
func (h docHandler) MergeDocument(kind string, data []byte) bool {
	if kind != docKindPolicy && kind != docKindRevocations && kind != docKindRemove && kind != docKindAddresses && kind != docKindQuarantine {
		return false
	}
	switch kind {
	case docKindQuarantine:
		return h.n.mergeQuarantine(data)
	case docKindAddresses:
		h.n.mergeAddressHints(data)
		return false // hints go peer to peer in push/pull, never re-broadcast
	case docKindRevocations:
		return h.n.mergeRevocations(data)
	case docKindRemove:
		return h.n.mergeRemoval(data)
	}
	doc, pol, err := acl.DecodeDocument(data)
	if err != nil {
		// E.g. a policy an older binary accepted that this one cannot read
		// (an unknown service, a contradictory selector): keep enforcing
		// the active policy and say why.
		h.n.mu.Lock()
		var active uint64
		if h.n.policy.doc != nil {
			active = h.n.policy.doc.Version
		}
		sum := acl.Hash(data)
		again := h.n.rejectedDoc == sum
		h.n.rejectedDoc = sum
		h.n.mu.Unlock()
		level := slog.LevelWarn
		if again {
			level = slog.LevelDebug
		}
		h.n.log.Log(context.Background(), level, "policy document rejected; keeping the active policy", "active_version", active, "err", err)
		return false
	}
	h.n.mu.Lock()
	t := h.n.trust
	h.n.mu.Unlock()
	if err := checkSignature(t, doc); err != nil {
		h.n.log.Warn("policy document rejected: CA mode needs a valid signature", "version", doc.Version, "err", err)
		return false
	}
	h.n.mu.Lock()
	ok, err := h.n.accept(doc, pol, "gossip")
	h.n.mu.Unlock()
	if err != nil {
		h.n.log.Error("policy from the mesh not accepted", "version", doc.Version, "err", err)
		return false
	}
	if ok {
		h.n.kick()
	}
	return ok
}

// Documents returns the active policy for push/pull, so joining and healed
// nodes catch up.
func (h docHandler) Documents() map[string][]byte {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	out := map[string][]byte{}
	if h.n.policy.doc != nil {
		if b, err := h.n.policy.doc.Encode(); err == nil {
			out[docKindPolicy] = b
		}
	}
	if b, err := h.n.book.encodeHints(); err == nil {
		out[docKindAddresses] = b
	}
	if h.n.quar.Len() > 0 {
		if b, err := h.n.quar.Encode(); err == nil {
			out[docKindQuarantine] = b
		}
	}
	if h.n.trust != nil && h.n.trust.revs.Version() > 0 {
		if b, err := h.n.trust.revs.Encode(); err == nil {
			out[docKindRevocations] = b
		}
	}
	return out
}

// Errors of ApplyPolicy.
var (
	ErrVersionConflict = errors.New("version conflict")
	ErrUnsigned        = errors.New("unsigned policy")
)

// checkSignature verifies a document's CA signature in CA mode (open mode:
// nothing to check). The signature covers content and version, so an old
// signed policy cannot be re-sent under a new number.
func checkSignature(t *trustState, d *acl.Document) error {
	if t == nil {
		return nil
	}
	if d.Signature == "" {
		return ErrUnsigned
	}
	if err := ca.VerifyPolicy(t.cas, []byte(d.Content), d.Version, d.Signature); err != nil {
		return fmt.Errorf("policy signature: %w", err)
	}
	return nil
}

// ApplyOptions qualify a policy proposal.
type ApplyOptions struct {
	Expect    *uint64 // when set, must equal the active version
	Version   uint64  // CA mode: the version the signature covers
	Signature string  // CA mode: ca.SignPolicy over content and Version
	AppliedBy string
}

// ApplyPolicy validates content (including its tests), makes it the next
// version (open mode: active+1; CA mode: the signed version, which must be
// newer), activates it here, spreads it through the mesh and returns once it
// is enforced on this node.
func (n *Node) ApplyPolicy(content []byte, o ApplyOptions) (*acl.Document, error) {
	doc, err := n.propose(content, o)
	if err != nil {
		return nil, err
	}
	if b, err := doc.Encode(); err == nil {
		if err := n.gossip.PublishUrgent(docKindPolicy, b); err != nil {
			n.log.Warn("policy publish failed; push/pull will spread it", "err", err)
		}
	}
	n.syncAndWait()
	return doc, nil
}

// propose validates content and activates it locally as the next version.
func (n *Node) propose(content []byte, o ApplyOptions) (*acl.Document, error) {
	pol, err := acl.Parse("policy", content)
	if err != nil {
		return nil, err
	}
	if fails := pol.RunTests(); len(fails) > 0 {
		msgs := make([]string, len(fails))
		for i, f := range fails {
			msgs[i] = f.Format("policy")
		}
		return nil, fmt.Errorf("policy tests failed:\n%s", strings.Join(msgs, "\n"))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var cur uint64
	if n.policy.doc != nil {
		cur = n.policy.doc.Version
	}
	if o.Expect != nil && *o.Expect != cur {
		return nil, fmt.Errorf("%w: active version is %d, not %d", ErrVersionConflict, cur, *o.Expect)
	}
	version := cur + 1
	if n.trust != nil {
		if o.Signature == "" {
			return nil, fmt.Errorf("%w: CA mode accepts only signed policies (segmesh policy sign, or policy apply --sign-key)", ErrUnsigned)
		}
		version = o.Version
		if version <= cur {
			return nil, fmt.Errorf("%w: the signature covers version %d, not newer than the active %d (re-sign with --version %d)", ErrVersionConflict, version, cur, cur+1)
		}
	}
	doc := acl.NewDocument(content, version, o.AppliedBy, n.deps.Now())
	doc.Signature = o.Signature
	if err := checkSignature(n.trust, doc); err != nil {
		return nil, err
	}
	ok, err := n.accept(doc, pol, "apply")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: version %d is not newer than the active policy", ErrVersionConflict, version)
	}
	return doc, nil
}

// proposePolicyFile proposes policy_file when its content differs from what
// this node last read from it — never merely because it differs from the
// active policy, so a stale file cannot roll the fleet back.
func (n *Node) proposePolicyFile(path string, publish bool) error {
	if path == "" {
		return nil
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("policy_file: %w", err)
	}
	n.mu.Lock()
	seenPath := filepath.Join(n.cfg.StateDir, policyFileSeen)
	by := "policy_file " + path + " on " + n.cfg.Name
	n.mu.Unlock()
	h := acl.Hash(content)
	if last, err := os.ReadFile(seenPath); err == nil && strings.TrimSpace(string(last)) == h {
		return nil
	}
	o := ApplyOptions{AppliedBy: by}
	if n.trust != nil {
		body, sig, err := ca.SplitSignedPolicy(content)
		if err != nil {
			return fmt.Errorf("policy_file %s: %w", path, err)
		}
		if sig == nil {
			return fmt.Errorf("policy_file %s: %w: CA mode needs `segmesh policy sign` output", path, ErrUnsigned)
		}
		content, o.Version, o.Signature = body, sig.Version, sig.Sig
	}
	if publish {
		_, err = n.ApplyPolicy(content, o)
	} else {
		_, err = n.propose(content, o) // at start: push/pull spreads it on join
	}
	if err != nil {
		return fmt.Errorf("policy_file %s: %w", path, err)
	}
	return writeFileAtomic(seenPath, []byte(h+"\n"), 0o600)
}
