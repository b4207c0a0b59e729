package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/segmesh/segmesh/api"
)

// TestPolicySuggestAuditOnly: --from-audit-only asks the daemon for
// audited flows only and names what it left out on stderr; without it the
// header counts the denied flows.
func TestPolicySuggestAuditOnly(t *testing.T) {
	sock := serveFake(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := api.Suggestion{Version: 2, Flows: 3, Denied: 1, Unplaceable: []string{}, Missing: []api.Missing{},
			Rules: "  # from denied flows (enforce mode): check they are wanted\n  - name: suggested-web-to-db\n    from: [web]\n    to: [db]\n    ports: [tcp/22]\n"}
		if r.URL.Query().Get("audit_only") == "true" {
			s = api.Suggestion{Version: 2, Flows: 2, LeftOut: 1, Unplaceable: []string{}, Missing: []api.Missing{}}
		}
		_ = json.NewEncoder(w).Encode(s)
	}))

	stdout, stderr, err := runCmd("policy", "suggest", "--socket", sock)
	if err != nil || stderr != "" ||
		!strings.HasPrefix(stdout, "# rules allowing the 3 denied/audited flow(s) observed under policy v2; paste under rules:\n"+
			"# 1 of them denied (enforce mode): rules marked so let in what is dropped today; --from-audit-only leaves them out\n"+
			"  # from denied flows") {
		t.Errorf("suggest: %v\nstdout:\n%s\nstderr: %q", err, stdout, stderr)
	}
	stdout, stderr, err = runCmd("policy", "suggest", "--from-audit-only", "--socket", sock)
	if err != nil || stdout != "# nothing to suggest: the 2 audited flow(s) observed are allowed by policy v2 or cannot be placed\n" ||
		stderr != "left out: 1 denied flow(s) (enforce mode; --from-audit-only)\n" {
		t.Errorf("suggest --from-audit-only: %v\nstdout:\n%s\nstderr: %q", err, stdout, stderr)
	}
}
