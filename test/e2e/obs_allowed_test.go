package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

// TestObsAllowedFlows: app1 makes N connections to db1's tcp/5432 (allowed)
// and sends a known number of bytes in one more: `segmesh flows --verdict
// allow --json` on db1 shows app1's aggregate with exactly N+1 connections
// and the bytes within 5% of what was sent (the kernel counts the original
// direction, headers included); a denied flow is not among them.
func TestObsAllowedFlows(t *testing.T) {
	m := newObsMesh(t, obsPolicy, nil)
	app, db := m.app, m.db
	const n = 7
	const bulk = 2 << 20
	target := flow{"tcp", m.addr(db), 5432}
	for range n {
		expectProbe(t, app, target, resOK)
	}
	if out, code, err := nsExec(app.Namespace, 30*time.Second, bins.Probe, "send", "-bytes", fmt.Sprint(bulk), flowTarget(target)); err != nil || code != 0 {
		t.Fatalf("send: %v (exit %d): %s", err, code, out)
	}
	expectProbe(t, m.web, flow{"tcp", m.addr(db), 5433}, refusedAtSender(target))

	var got api.Flow
	m.tc.WaitFor("app1's allowed tcp/5432 in db1's segmesh flows", 10*time.Second, func() error {
		r := segmeshCLI(t, "flows", "--verdict", "allow", "--json", "--socket", db.Socket)
		if r.code != 0 {
			return fmt.Errorf("flows: %v", r)
		}
		var out struct {
			Flows   []api.Flow `json:"flows"`
			Missing []any      `json:"missing"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			return fmt.Errorf("flows --json: %v: %s", err, r.stdout)
		}
		if out.Missing == nil {
			return fmt.Errorf("flows --json has no missing list: %s", r.stdout)
		}
		for _, f := range out.Flows {
			if f.Verdict != api.VerdictAllowed {
				return fmt.Errorf("--verdict allow listed %+v", f)
			}
			if f.Peer == app.Name && f.Port == 5432 && f.Proto == "tcp" {
				got = f
				if f.Connections == n+1 && f.Bytes >= bulk {
					return nil
				}
			}
		}
		return fmt.Errorf("app1's aggregate %+v", got)
	})
	t.Logf("db1's allowed aggregate of app1 tcp/5432: %d connections, %d packets, %d bytes (sent %d in one and %d small echoes)",
		got.Connections, got.Packets, got.Bytes, bulk, n)
	if got.Bytes > bulk*105/100 || got.Node != db.Name || !sameStrings(got.PeerSegments, []string{"app"}) || got.Direction != api.DirectionIn {
		t.Errorf("aggregate %+v: want bytes within 5%% of %d, node db1, peer segments [app], direction in", got, bulk)
	}
}
