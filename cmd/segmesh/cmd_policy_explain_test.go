package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/segmesh/segmesh/api"
)

// fakeExplainDaemon answers /v1/policy/explain with allow for port
// tcp/5432, deny for any other port, and 404 (an error) for node "nobody".
func fakeExplainDaemon(t *testing.T) string {
	t.Helper()
	sock := serveFake(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/v1/policy/explain" || q.Get("from") == "nobody" {
			http.Error(w, `{"error":"unknown node nobody"}`, http.StatusNotFound)
			return
		}
		e := api.Explanation{Verdict: "deny", From: q.Get("from"), To: q.Get("to"), Port: q.Get("port"), Mode: "audit", Version: 3,
			FromSegments: []string{"web"}, ToSegments: []string{"db"}}
		if e.Port == "tcp/5432" {
			e.Verdict, e.Rules = "allow", []string{"web-to-db"}
		}
		_ = json.NewEncoder(w).Encode(e)
	}))
	return sock
}

func runCmd(args ...string) (stdout, stderr string, err error) {
	root := newRoot()
	var o, e bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

// TestPolicyExplainExit: explain exits 0 on an allow and 3 on a deny (also
// in audit mode and with --json), silently (the verdict is on stdout); an
// error is 1, a usage error 2.
func TestPolicyExplainExit(t *testing.T) {
	sock := fakeExplainDaemon(t)
	for _, c := range []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"web-1", "db-1", "tcp/5432"}, 0, "ALLOW: web-1 -> db-1 tcp/5432 (policy v3, audit mode)\n"},
		{[]string{"web-1", "db-1", "tcp/22"}, 3, "DENY: web-1 -> db-1 tcp/22 (policy v3, audit mode)\n"},
		{[]string{"web-1", "db-1", "tcp/5432", "--json"}, 0, `{"verdict":"allow"`},
		{[]string{"web-1", "db-1", "tcp/22", "--json"}, 3, `{"verdict":"deny"`},
		{[]string{"nobody", "db-1", "tcp/22"}, 1, ""},
		{[]string{"web-1", "db-1"}, 2, ""},
		{[]string{"web-1", "db-1", "tcp/22", "--no-such-flag"}, 2, ""},
	} {
		stdout, _, err := runCmd(append([]string{"policy", "explain", "--socket", sock}, c.args...)...)
		if got := exitCode(err); got != c.code {
			t.Errorf("%v: exit %d (%v), want %d", c.args, got, err, c.code)
		}
		if !strings.HasPrefix(stdout, c.stdout) || (c.stdout == "") != (stdout == "") {
			t.Errorf("%v: stdout %q, want it to start with %q", c.args, stdout, c.stdout)
		}
		var ee *exitError
		if c.code == 3 && (!errors.As(err, &ee) || ee.err != nil) {
			t.Errorf("%v: a deny is not a silent exit (main would print %v)", c.args, err)
		}
	}
}
