package api_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segmesh/segmesh/api"
)

func TestFormatExplanation(t *testing.T) {
	e := &api.Explanation{
		Verdict: "deny", From: "api-1", To: "db-2", FromSegments: []string{"api"}, ToSegments: []string{},
		Port: "tcp/5432", Service: "postgres", Rules: []string{}, Mode: "enforce", Version: 3,
		Considered: []api.ExplainedRule{
			{
				Rule: "web-in", FromMatch: true, Ports: []string{"web", "icmp"},
				From: []api.ExplainedSegment{{Segment: "*", Match: true}},
				To: []api.ExplainedSegment{{Segment: "stable", Terms: []api.ExplainedTerm{
					{Term: `"!canary": "*"`, Match: true, Tag: "canary"},
					{Term: "role: web", Tag: "role", Present: true, Value: "db"},
				}}},
			},
			{
				Rule: "api-db", FromMatch: true, Ports: []string{"postgres"}, PortMatch: "postgres", Service: "postgres",
				From: []api.ExplainedSegment{{Segment: "api", Match: true, Terms: []api.ExplainedTerm{
					{Term: "role: app", Match: true, Tag: "role", Present: true, Value: "app"},
					{Term: "svc: api", Match: true, Tag: "svc", Present: true, Value: "api"},
				}}},
				To: []api.ExplainedSegment{{Segment: "prod-db", Terms: []api.ExplainedTerm{
					{Term: "env: [prod, staging]", Tag: "env", Present: true, Value: "dev"},
					{Term: "role: db", Match: true, Tag: "role", Present: true, Value: "db"},
				}}, {Segment: "tagged", Terms: []api.ExplainedTerm{{Term: `team: "*"`, Tag: "team"}}}},
			},
			{
				Rule: "ops", Allow: true, FromMatch: true, ToMatch: true, Ports: []string{"tcp/5000-6000"}, PortMatch: "tcp/5000-6000",
				From: []api.ExplainedSegment{{Segment: "*", Match: true}}, To: []api.ExplainedSegment{{Segment: "*", Match: true}},
			},
		},
	}
	var b bytes.Buffer
	api.FormatExplanation(&b, e)
	want := `DENY: api-1 -> db-2 tcp/5432 (service postgres) (policy v3, enforce mode)
  api-1 segments: api
  db-2 segments: (none)
  no rule allows it (default deny)
  rules:
    web-in: does not apply
      from * ✓ (any node)
      to stable ✗: "!canary": "*" ✓, role: web ✗ (role=db)
      port tcp/5432 ✗ (ports: web, icmp)
    api-db: does not apply
      from api ✓: role: app ✓, svc: api ✓
      to prod-db ✗: env: [prod, staging] ✗ (env=dev), role: db ✓ | tagged ✗: team: "*" ✗ (team absent)
      port tcp/5432 ✓ (service postgres)
    ops: allows it
      from * ✓ (any node)
      to * ✓ (any node)
      port tcp/5432 ✓ (tcp/5000-6000)
`
	if got := b.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatStatusWorkloads(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hs := now.Add(-5 * time.Second).Format(time.RFC3339)
	many := make([]api.Workload, 12)
	for i := range many {
		many[i] = api.Workload{Name: fmt.Sprintf("worker-%02d", i), State: api.WorkloadActive}
	}
	many[3].State = api.WorkloadRejected
	s := &api.Status{
		Self: api.Self{Name: "app-1", PublicKey: "KEY", Address: "100.80.2.5", Tags: map[string]string{"role": "app"}, Segments: []string{"app"},
			Workloads: []api.Workload{
				{Name: "api", State: api.WorkloadActive, Segments: []string{"api", "app"}, Cgroup: "/system.slice/api.service"},
				{Name: "cron", State: api.WorkloadMissing, Segments: []string{"app"}, Cgroup: "/system.slice/cron.service",
					Reason: "cgroup does not exist"},
				{Name: "batch", State: api.WorkloadRejected, Segments: []string{"app"},
					Cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/batch-runner.service",
					Reason: "tag svc=batch not allowed by the certificate (allowed: svc=api,svc=worker)"},
			}},
		Peers: []api.Peer{
			{Name: "db-1", State: api.StateUp, Address: "100.80.3.7", LastHandshake: &hs},
			{Name: "app-2", State: api.StateUp, Address: "100.80.2.6", LastHandshake: &hs, Workloads: []api.Workload{
				{Name: "api", State: api.WorkloadActive}, {Name: "cron", State: api.WorkloadMissing}}},
			{Name: "worker-host-with-a-long-name", State: api.StateUp, Address: "100.80.4.1", LastHandshake: &hs, Workloads: many},
		},
		Policy: api.Policy{Version: 2, Hash: "sha256:ab", Mode: "enforce"}, Trust: "ca", Interface: "segmesh0", Backend: "kernel", Members: 4,
	}
	var b bytes.Buffer
	if err := api.FormatStatus(&b, s, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	self := `WORKLOAD  STATE     SEGMENTS  CGROUP
api       active    api,app   /system.slice/api.service
cron      missing   app       /system.slice/cron.service
          cgroup does not exist
batch     rejected  app       …/user@1000.service/app.slice/batch-runner.service
          tag svc=batch not allowed by the certificate (allowed: svc=api,svc=wo…
`
	peers := `peer workloads (✓ active, ? missing, ✗ rejected)
  app-2                     api✓ cron?
  worker-host-with-a-long…  worker-00✓ worker-01✓ worker-02✓ worker-03✗ +8 more
(cut to fit 80 columns: segmesh status -o wide shows everything)
`
	if !strings.Contains(out, "\n\n"+self+"\nNAME") {
		t.Errorf("no self workload table between summary and peers; want\n%s\ngot\n%s", self, out)
	}
	if !strings.HasSuffix(out, "\n\n"+peers) {
		t.Errorf("output does not end with the peer workloads; want\n%s\ngot\n%s", peers, out)
	}
	for _, l := range strings.Split(self+peers, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("%d columns: %q", n, l)
		}
	}
}

func TestFormatStatusWithoutWorkloads(t *testing.T) {
	s := &api.Status{Self: api.Self{Name: "db-1"}, Peers: []api.Peer{{Name: "web-1", State: api.StateUp}}}
	var b bytes.Buffer
	if err := api.FormatStatus(&b, s, time.Now()); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); strings.Contains(out, "WORKLOAD") || strings.Contains(out, "workloads") || strings.Contains(out, "cut to fit") {
		t.Errorf("workload parts without workloads:\n%s", out)
	}
}

func TestWorkloadMarks(t *testing.T) {
	ws := []api.Workload{{Name: "api", State: api.WorkloadActive}, {Name: "cron", State: api.WorkloadMissing},
		{Name: "old", State: api.WorkloadRejected}}
	for width, want := range map[int]string{
		100: "api✓ cron? old✗", 15: "api✓ cron? old✗", 14: "api✓ +2 more", 11: "3 workloads",
	} {
		if got := api.WorkloadMarks(ws, width); got != want {
			t.Errorf("WorkloadMarks(%d) = %q, want %q", width, got, want)
		}
	}
	if got := api.WorkloadMarks(ws[:1], 2); got != "1 workload" {
		t.Errorf("WorkloadMarks of one in 2 = %q", got)
	}
}

func TestFormatStatusQuarantined(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := &api.Status{
		Self: api.Self{Name: "web-3", PublicKey: "KEY3", Address: "100.80.1.12"},
		Peers: []api.Peer{
			{Name: "ops-1", State: api.StateUp, Address: "100.80.9.1"},
			{Name: "web-4", State: api.StateQuarantined, Address: "100.80.1.13",
				Reason: "quarantined since 2026-03-01T11:50:00Z by bob@ops-1: same campaign"},
		},
		Quarantined: []api.Quarantined{
			{Node: "web-3", PublicKey: "KEY3", Since: "2026-03-01T11:58:00Z", By: "alice@ops-1", AllowFrom: []string{"ops"},
				Reason: "INC-4711 beaconing to 203.0.113.9 every 30 s since the deploy of 11:40, see the ticket for the pcap", Self: true},
			{Node: "web-4", PublicKey: "KEY4", Since: "2026-03-01T11:50:00Z",
				By: "incident-responder-on-call@bastion-host-in-the-secure-zone.example", AllowFrom: []string{}, Reason: "same campaign"},
		},
		Policy: api.Policy{Version: 2, Hash: "sha256:ab", Mode: "enforce"}, Trust: "open", Members: 3,
	}
	var b bytes.Buffer
	if err := api.FormatStatus(&b, s, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	first := "THIS NODE IS QUARANTINED since 2026-03-01T11:58:00Z (allow-from ops): INC-4711 …\n"
	if !strings.HasPrefix(out, first+"node      web-3  KEY3\n") {
		t.Errorf("output does not start with the quarantine line; want\n%s\ngot\n%s", first, out)
	}
	section := `quarantined (mesh traffic only from ALLOW-FROM; lift: segmesh release NODE)
  NODE               SINCE                 BY                         ALLOW-FROM
  web-3 (this node)  2026-03-01T11:58:00Z  alice@ops-1                ops
                     INC-4711 beaconing to 203.0.113.9 every 30 s since the
                     deploy of 11:40, see the ticket for the pcap
  web-4              2026-03-01T11:50:00Z  incident-responder-on-ca…  nobody
                     same campaign
`
	if !strings.Contains(out, "\n\n"+section+"\nNAME") {
		t.Errorf("no quarantined section between summary and peers; want\n%s\ngot\n%s", section, out)
	}
	if !strings.Contains(out, "web-4  quarantined") {
		t.Errorf("peer web-4 not shown as quarantined:\n%s", out)
	}
	if !strings.HasSuffix(out, "(cut to fit 80 columns: segmesh status -o wide shows everything)\n") {
		t.Errorf("no note that values were cut:\n%s", out)
	}
	for _, l := range strings.Split(first+section, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("%d columns: %q", n, l)
		}
	}

	// Another node's quarantine only: the section, no first line, nothing cut.
	s.Quarantined = s.Quarantined[1:]
	s.Quarantined[0].By = "bob@ops-1"
	b.Reset()
	if err := api.FormatStatus(&b, s, now); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	if strings.Contains(out, "THIS NODE") || !strings.HasPrefix(out, "node ") {
		t.Errorf("quarantine line for another node's quarantine:\n%s", out)
	}
	if !strings.Contains(out, "  web-4  2026-03-01T11:50:00Z  bob@ops-1  nobody\n         same campaign\n") || strings.Contains(out, "cut to fit") {
		t.Errorf("quarantined section:\n%s", out)
	}
}

func TestFormatStatusNotQuarantined(t *testing.T) {
	s := &api.Status{Self: api.Self{Name: "db-1"}, Quarantined: []api.Quarantined{}}
	var b bytes.Buffer
	if err := api.FormatStatus(&b, s, time.Now()); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); strings.Contains(strings.ToLower(out), "quarantined") {
		t.Errorf("quarantine parts without quarantines:\n%s", out)
	}
}

// TestFormatStatusWidth: by default every line of status fits 80 columns
// (the peer table has fewer columns, a peer's reason on a line below it,
// values cut with "…" and a note); FormatStatusWide shows every column and
// value in full.
func TestFormatStatusWidth(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hs := now.Add(-95 * time.Second).Format(time.RFC3339)
	s := &api.Status{
		Self: api.Self{Name: "app-1", PublicKey: "wJ3bqhMxX3i+M1Ms9ZtOkxKqh3yqPSPcBRzLkIRiJ3I=", Address: "100.80.2.5",
			Address6: "fd7a:115c:a1e0:ab12:4843:cd96:6258:b240", Endpoint: "[2001:db8:1234:5678::25]:51820",
			Tags: map[string]string{"role": "app", "env": "prod", "zone": "eu-central-1a", "team": "payments"}, Segments: []string{"app", "prod"}},
		Peers: []api.Peer{
			{Name: "db-1", State: api.StateUp, Address: "100.80.3.7", Address6: "fd7a:115c:a1e0:ab12:4843:cd96:6258:b241",
				Endpoint: "203.0.113.17:51820", Segments: []string{"db", "prod"}, Tags: map[string]string{"role": "db", "env": "prod"},
				LastHandshake: &hs, RxBytes: 123456789, TxBytes: 98765432, RxRate: 2048, TxRate: 1024},
			{Name: "payments-worker-eu-central-1a-07", State: api.StateUntrusted, Address: "100.80.2.77",
				Endpoint: "[2001:db8:1234:5678::77]:51820", Segments: []string{"app", "payments", "prod", "workers"},
				Reason: "certificate expired at 2026-02-28T00:00:00Z (issued by the fleet CA, serial 4711): renew it with segmesh cert issue"},
		},
		Policy: api.Policy{Version: 12, Hash: "sha256:9f86d081884c7d65", Mode: "enforce"}, Trust: "ca", Interface: "segmesh0", Backend: "kernel", Members: 3,
	}
	var b bytes.Buffer
	if err := api.FormatStatus(&b, s, now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("%d columns: %q", n, l)
		}
	}
	for _, w := range []string{
		"\naddress   100.80.2.5  fd7a:115c:a1e0:ab12:4843:cd96:6258:b240\nendpoint  [2001:db8:1234:5678::25]:51820\n",
		"\nNAME          STATE      ADDRESS      ENDPOINT               SEGMENTS  HANDSHAKE\n",
		"\ndb-1          up         100.80.3.7   203.0.113.17:51820     db,prod   1m35s ago\n",
		"\npayments-wo…  untrusted  100.80.2.77  [2001:db8:1234:5678:…  app,pay…  never\n",
		"\n  certificate expired at 2026-02-28T00:00:00Z (issued by the fleet CA, serial 4…\n",
		"\n(cut to fit 80 columns: segmesh status -o wide shows everything)\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("80 columns: no %q in\n%s", w, out)
		}
	}
	if strings.Contains(out, "ADDRESS6") || strings.Contains(out, "RX/s") {
		t.Errorf("80 columns with the wide columns:\n%s", out)
	}

	b.Reset()
	if err := api.FormatStatusWide(&b, s, now); err != nil {
		t.Fatal(err)
	}
	wide := b.String()
	for _, w := range []string{
		"ADDRESS6", "TAGS", "RX/s", "fd7a:115c:a1e0:ab12:4843:cd96:6258:b241", "env=prod,role=app,team=payments,zone=eu-central-1a",
		"payments-worker-eu-central-1a-07", "[2001:db8:1234:5678::77]:51820", "app,payments,prod,workers", "117.7MiB", "2.0KiB",
		s.Peers[1].Reason,
	} {
		if !strings.Contains(wide, w) {
			t.Errorf("wide: no %q in\n%s", w, wide)
		}
	}
	if strings.Contains(wide, "…") || strings.Contains(wide, "cut to fit") {
		t.Errorf("wide output cut:\n%s", wide)
	}

	// Nothing too wide: no note.
	s.Self = api.Self{Name: "db-1", PublicKey: "KEY", Address: "100.80.3.7"}
	s.Peers = s.Peers[:1]
	b.Reset()
	if err := api.FormatStatus(&b, s, now); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); strings.Contains(out, "cut to fit") || strings.Contains(out, "…") {
		t.Errorf("cut although it fits:\n%s", out)
	}
}
