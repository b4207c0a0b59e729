package node

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
)

// TestGossipBadDocumentKeepsPolicy: a newer document from gossip that this
// binary cannot parse (as an older or newer binary's view of the language
// might be) is refused: the node keeps enforcing its active policy,
// persists nothing, and logs why with file:line:col (a warning the first
// time, debug when push/pull brings the same document back).
func TestGossipBadDocumentKeepsPolicy(t *testing.T) {
	logs := newLogRecords()
	dir := t.TempDir()
	r := newRigLog(t, dir, "", slog.New(logs))
	active, err := r.n.ApplyPolicy([]byte(policyV), ApplyOptions{AppliedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	// Every bad document is in audit mode: had one been taken, the node
	// would stop dropping.
	audit := func(content string) string { return strings.Replace(content, "mode: enforce", "mode: audit", 1) }

	cases := []struct {
		name, content, want string
	}{
		{"unknown service", policyV + "  - {name: x, from: [web], to: [db], ports: [postgress]}\n",
			`policy v2:10:46: unknown service "postgress"`},
		{"contradictory selector", strings.Replace(policyV, "db: {role: db}", `db: {role: db, "!role": "*"}`, 1),
			`policy v3:4:18: segment "db" can never match: {role: db, "!role": "*"} requires tag "role" and its absence`},
		{"service shadowing a built-in", policyV + "services:\n  ssh: [tcp/2222]\n",
			`policy v4:11:3: service "ssh" is built in and cannot be redefined`},
		{"empty list", strings.Replace(policyV, "db: {role: db}", "db: {role: []}", 1),
			`policy v5:4:14: tag "role" in the selector of segment "db" is an empty list`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := uint64(i + 2)
			b, err := acl.NewDocument([]byte(audit(tc.content)), v, "older-binary", time.Now()).Encode()
			if err != nil {
				t.Fatal(err)
			}
			if r.gossip.docs.MergeDocument(docKindPolicy, b) {
				t.Fatal("a document that does not parse was accepted (and would be re-broadcast)")
			}
			st := r.n.Status()
			if st.Policy.Version != active.Version || st.Policy.Hash != active.Hash {
				t.Errorf("active policy %+v, want v%d %s", st.Policy, active.Version, active.Hash)
			}
			r.n.mu.Lock()
			mode := r.n.policy.pol.Mode
			r.n.mu.Unlock()
			if d := r.fw.desired(); mode != acl.ModeEnforce || d.Audit {
				t.Errorf("mode %s, firewall audit %v: the active enforce policy must stay in force", mode, d.Audit)
			}
			recs := logs.find("policy document rejected; keeping the active policy")
			if len(recs) != 2*i+1 {
				t.Fatalf("%d rejection records, want %d", len(recs), 2*i+1)
			}
			rec := recs[2*i]
			if rec.Level != slog.LevelWarn || rec.Attrs["active_version"] != "1" || !strings.Contains(rec.Attrs["err"], tc.want) {
				t.Errorf("logged %+v, want a warning with active_version 1 and err containing %q", rec, tc.want)
			}
			// Push/pull brings the same document back: still refused, at debug level.
			if r.gossip.docs.MergeDocument(docKindPolicy, b) {
				t.Fatal("the same bad document was accepted the second time")
			}
			recs = logs.find("policy document rejected; keeping the active policy")
			if len(recs) != 2*i+2 || recs[2*i+1].Level != slog.LevelDebug {
				t.Errorf("the repeat logged %+v, want one debug record", recs[2*i:])
			}
		})
	}

	// Nothing was persisted: a restart enforces v1 still.
	r.shutdown()
	r2 := newRig(t, dir, "")
	if st := r2.n.Status(); st.Policy.Version != active.Version || st.Policy.Hash != active.Hash {
		t.Errorf("after a restart: policy %+v, want v%d", st.Policy, active.Version)
	}
}
