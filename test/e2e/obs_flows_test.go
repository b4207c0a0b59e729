package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

// flowDeadline is how soon a denied packet must show in the control API.
const flowDeadline = 2 * time.Second

// TestObsDeniedFlow: in a three-node mesh, a connection the policy denies
// (web1 -> db1 tcp/5432) shows in db1's GET /v1/flows with web1's name
// within flowDeadline and as a flow event on /v1/stream, raises
// segmesh_packets_denied_total{src_segment="web",dst_segment="db"} on db1's
// metrics, and the scrape passes `promtool check metrics`.
func TestObsDeniedFlow(t *testing.T) {
	m := newObsMesh(t, obsPolicy, map[string]any{"metrics_listen": metricsListen})
	web, app, db := m.web, m.app, m.db
	// web1's own egress check is off (root on web1): what it sends
	// reaches db1, whose ingress observations are under test.
	bypassEgress(t, web)
	for _, path := range []string{"/healthz", "/readyz"} {
		if _, err := httpGet(db.Namespace, "http://"+metricsListen+path); err != nil {
			t.Errorf("db1 %s: %v", path, err)
		}
	}

	// The server answers an allowed peer, so the timeout below is the ACL.
	expectProbe(t, app, flow{"tcp", m.addr(db), 5432}, resOK)
	m.warmUp(web, db)
	denied := m.flowFrom(web, "tcp", 5432, api.VerdictDenied)
	pair := map[string]string{"src_segment": "web", "dst_segment": "db", "direction": "in"}
	_, before := scrape(t, db)
	deniedBefore, _ := metricValue(before, "segmesh_packets_denied_total", pair)
	auditedBefore, _ := metricValue(before, "segmesh_packets_audited_total", pair)
	if fl, err := api.NewClient(db.Socket).Flows(t.Context()); err != nil {
		t.Fatal(err)
	} else if _, ok := findFlow(fl, denied); ok {
		t.Fatalf("test premise: db1 lists a denied web1 flow before any was made: %+v", fl)
	}

	events := watchFlowEvents(t, db.Socket)
	start := time.Now()
	dial := probeAsync(web, flow{"tcp", m.addr(db), 5432})
	f, _ := waitFlow(t, db.Socket, 10*time.Second, "web1 -> db1 tcp/5432 denied", denied)
	took := time.Since(start)
	t.Logf("TIMING denied connect web1 -> db1 tcp/5432 -> flow in db1's GET /v1/flows with src_name %q: %v",
		f.SrcName, took.Round(time.Millisecond))
	if took > flowDeadline {
		t.Errorf("the denied flow took %v to show in GET /v1/flows, want at most %v", took.Round(time.Millisecond), flowDeadline)
	}
	m.checkFlowFields(t, f, web, db, "web", "db")

	if ev, ok := nextFlowEvent(events, 10*time.Second, denied); !ok {
		t.Errorf("no flow event for web1's denied tcp/5432 on db1's /v1/stream within 10s")
	} else {
		t.Logf("TIMING denied connect -> flow event on db1's /v1/stream: %v", ev.at.Sub(start).Round(time.Millisecond))
		if ev.Flow.SrcName != web.Name {
			t.Errorf("stream flow event %+v, want src_name %q", *ev.Flow, web.Name)
		}
	}
	if res := <-dial; res != resTimeout {
		t.Errorf("web1 -> db1 tcp/5432: %q, want %q (denied)", res, resTimeout)
	}

	var text string
	var after []sample
	m.tc.WaitFor("segmesh_packets_denied_total{web->db} rises on db1", 10*time.Second, func() error {
		text, after = scrape(t, db)
		v, ok := metricValue(after, "segmesh_packets_denied_total", pair)
		if !ok || v <= deniedBefore {
			return fmt.Errorf("segmesh_packets_denied_total%v = %v (present %v), was %v", pair, v, ok, deniedBefore)
		}
		return nil
	})
	deniedAfter, _ := metricValue(after, "segmesh_packets_denied_total", pair)
	auditedAfter, _ := metricValue(after, "segmesh_packets_audited_total", pair)
	t.Logf("db1: segmesh_packets_denied_total{src_segment=web,dst_segment=db} %v -> %v", deniedBefore, deniedAfter)
	if auditedAfter != auditedBefore {
		t.Errorf("segmesh_packets_audited_total{web->db} went %v -> %v in enforce mode", auditedBefore, auditedAfter)
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"segmesh_policy_version", nil, float64(m.policyVersion)},
		{"segmesh_peers", map[string]string{"state": "up"}, 2},
		{"segmesh_gossip_members", nil, 3},
	}
	for _, c := range checks {
		if v, ok := metricValue(after, c.name, c.labels); !ok || v != c.want {
			t.Errorf("db1 %s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	promtoolCheck(t, text)
}

// flowEvent is a flow event of /v1/stream and when it arrived.
type flowEvent struct {
	api.Event
	at time.Time
}

// watchFlowEvents opens /v1/stream on socket, checks that it starts with a
// status event, and delivers the flow events that follow until the test
// ends.
func watchFlowEvents(t *testing.T, socket string) <-chan flowEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := api.NewClient(socket).Stream(ctx)
	if err != nil {
		cancel()
		t.Fatalf("open /v1/stream: %v", err)
	}
	first, err := s.Next()
	if err != nil || first.Type != api.EventStatus || first.Status == nil {
		cancel()
		_ = s.Close()
		t.Fatalf("/v1/stream first event: %+v, %v; want a status event", first, err)
	}
	out := make(chan flowEvent, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := s.Next()
			if err != nil {
				return
			}
			if ev.Type == api.EventFlow && ev.Flow != nil {
				select {
				case out <- flowEvent{ev, time.Now()}:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = s.Close()
		<-done
	})
	return out
}

// nextFlowEvent waits for a flow event that match accepts.
func nextFlowEvent(events <-chan flowEvent, timeout time.Duration, match func(api.Flow) bool) (flowEvent, bool) {
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-events:
			if match(*ev.Flow) {
				return ev, true
			}
		case <-deadline:
			return flowEvent{}, false
		}
	}
}
