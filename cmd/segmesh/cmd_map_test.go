package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/fleetmap"
)

// mapTestPolicy is the demo's policy plus a rule with two sources and a
// port range, so rule expansion and the policy's port notation are seen.
const mapTestPolicy = `mode: audit
segments:
  web: {role: web}
  app: {role: app}
  db:  {role: db}
  api: {svc: api}
rules:
  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8080]}
  - {name: api-to-db, from: [api], to: [db], ports: [tcp/5432]}
  - {name: metrics, from: [web, app], to: [db], ports: [tcp/9100-9102, udp/53]}
  - {name: ping, from: ["*"], to: ["*"], ports: [icmp]}
`

var mapNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func mapSegments() []api.SegmentView {
	m := func(names ...string) []api.SegmentMember {
		var out []api.SegmentMember
		for _, n := range names {
			out = append(out, api.SegmentMember{Name: n})
		}
		return out
	}
	return []api.SegmentView{
		{Name: "web", Members: m("web-1", "web-2")},
		{Name: "app", Members: m("app-1")},
		{Name: "db", Members: m("db-1")},
		{Name: "api", Members: []api.SegmentMember{{Name: "app-1/api", Workload: "api"}}},
	}
}

// in is a flow into node from peer; out an egress flow at node to peer.
func in(node, peer string, from []string, to []string, verdict, proto string, port uint16, conns uint64, ago time.Duration) api.Flow {
	return api.Flow{Node: node, Direction: api.DirectionIn, Peer: peer, PeerSegments: from, SrcSegments: from, DstSegments: to,
		Verdict: verdict, Proto: proto, Port: port, Connections: conns, LastSeen: mapNow.Add(-ago)}
}

func out(node, peer string, from []string, to []string, verdict, proto string, port uint16, conns uint64, ago time.Duration) api.Flow {
	f := in(node, peer, nil, from, verdict, proto, port, conns, ago)
	f.Direction, f.SrcSegments, f.PeerSegments, f.DstSegments = api.DirectionOut, from, to, to
	return f
}

var (
	sWeb = []string{"web"}
	sApp = []string{"app"}
	sDB  = []string{"db"}
	sAA  = []string{"api", "app"}
)

func TestBuildMap(t *testing.T) {
	pol, err := acl.Parse("test", []byte(mapTestPolicy))
	if err != nil {
		t.Fatal(err)
	}
	type edge struct {
		from, to, verdict, ports string
		conns                    uint64
	}
	cases := []struct {
		name    string
		in      mapInput
		edges   []edge
		unused  []string // "name from->to ports"
		missing []fleetmap.Missing
	}{{
		name: "local: in flows summed per pair, unknown source, icmp, unused rules expanded",
		in: mapInput{Local: "app-1", Flows: []api.Flow{
			in("app-1", "web-1", sWeb, sAA, "allowed", "tcp", 8080, 5, time.Minute),
			in("app-1", "web-2", sWeb, sAA, "allowed", "tcp", 8080, 3, time.Minute),
			in("app-1", "", nil, sAA, "audited", "tcp", 22, 1, time.Minute),
			in("app-1", "db-1", sDB, sAA, "allowed", "icmp", 0, 2, time.Minute),
		}},
		edges: []edge{
			{"db", "api", "allowed", "icmp", 2},
			{"db", "app", "allowed", "icmp", 2},
			{"unknown", "api", "audited", "tcp/22", 1},
			{"unknown", "app", "audited", "tcp/22", 1},
			{"web", "api", "allowed", "tcp/8080", 8},
			{"web", "app", "allowed", "tcp/8080", 8},
		},
		unused: []string{
			"api-to-db api->db tcp/5432",
			"metrics app->db tcp/9100-9102,udp/53",
			"metrics web->db tcp/9100-9102,udp/53",
		},
		missing: []fleetmap.Missing{},
	}, {
		name: "fleet: audited out to a node that answered dropped, denied out kept, out to a missing node kept",
		in: mapInput{Local: "web-1", Missing: []api.Missing{{Node: "web-2", Reason: "timeout"}, {Node: "app-2", Reason: "refused"}}, Flows: []api.Flow{
			// seen at both ends in audit mode: counted once, from db-1's side
			out("app-1", "db-1", sApp, sDB, "audited", "tcp", 5432, 4, time.Minute),
			in("db-1", "app-1", sAA, sDB, "audited", "tcp", 5432, 4, time.Minute),
			// denied at the sender: db-1 never saw it
			out("app-1", "db-1", sApp, sDB, "denied", "tcp", 5432, 7, time.Minute),
			// web-2 did not answer: only the sender's view exists
			out("db-1", "web-2", sDB, sWeb, "audited", "tcp", 8080, 2, time.Minute),
			// to the local node (it answered even without flows of its own)
			out("db-1", "web-1", sDB, sWeb, "audited", "tcp", 8081, 9, time.Minute),
			in("db-1", "app-1", sAA, sDB, "allowed", "tcp", 5432, 10, time.Minute),
		}},
		edges: []edge{
			{"api", "db", "allowed", "tcp/5432", 10},
			{"api", "db", "audited", "tcp/5432", 4},
			{"app", "db", "allowed", "tcp/5432", 10},
			{"app", "db", "audited", "tcp/5432", 4},
			{"app", "db", "denied", "tcp/5432", 7},
			{"db", "web", "audited", "tcp/8080", 2},
		},
		unused: []string{
			"ping *->* icmp",
			"metrics app->db tcp/9100-9102,udp/53",
			"web-to-app web->app tcp/8080",
			"metrics web->db tcp/9100-9102,udp/53",
		},
		missing: []fleetmap.Missing{{Node: "app-2", Reason: "refused"}, {Node: "web-2", Reason: "timeout"}},
	}, {
		name: "since: old flows dropped, their node still answered",
		in: mapInput{Local: "web-1", Since: 10 * time.Minute, Flows: []api.Flow{
			in("app-1", "web-1", sWeb, sApp, "allowed", "tcp", 8080, 5, 9*time.Minute),
			in("app-1", "web-1", sWeb, sApp, "allowed", "tcp", 8080, 50, 11*time.Minute),
			in("db-1", "app-1", sApp, sDB, "audited", "tcp", 5432, 3, time.Hour),
			out("app-1", "db-1", sApp, sDB, "audited", "tcp", 5432, 3, time.Second),
			in("db-1", "web-1", sWeb, sDB, "allowed", "icmp", 0, 1, 10*time.Minute), // exactly at the edge: kept
		}},
		edges: []edge{
			{"web", "app", "allowed", "tcp/8080", 5},
			{"web", "db", "allowed", "icmp", 1},
		},
		unused: []string{
			"api-to-db api->db tcp/5432",
			"metrics app->db tcp/9100-9102,udp/53",
			"metrics web->db tcp/9100-9102,udp/53",
		},
		missing: []fleetmap.Missing{},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.in.Segments, c.in.Policy, c.in.Now = mapSegments(), pol, mapNow
			raw := buildMap(c.in)
			if len(raw.Segments) != 4 {
				t.Errorf("segments %+v: want only the daemon's", raw.Segments)
			}
			if mm := raw.Mermaid(); strings.Contains(mm, "unknown (") || strings.Contains(mm, `"* (`) {
				t.Errorf("an implied segment drawn with a count:\n%s", mm)
			}
			m := raw.Normalize()
			var edges []edge
			for _, e := range m.Edges {
				edges = append(edges, edge{e.From, e.To, e.Verdict, strings.Join(e.Ports, ","), e.Connections})
			}
			if !reflect.DeepEqual(edges, c.edges) {
				t.Errorf("edges\n got %v\nwant %v", edges, c.edges)
			}
			var unused []string
			for _, r := range m.Unused {
				unused = append(unused, r.Name+" "+r.From+"->"+r.To+" "+strings.Join(r.Ports, ","))
			}
			if !reflect.DeepEqual(unused, c.unused) {
				t.Errorf("unused\n got %v\nwant %v", unused, c.unused)
			}
			if !reflect.DeepEqual(m.Missing, c.missing) {
				t.Errorf("missing %v, want %v", m.Missing, c.missing)
			}
			if m.Since != c.in.Since {
				t.Errorf("since %v, want %v", m.Since, c.in.Since)
			}
			for _, s := range m.Segments {
				want := map[string]int{"web": 2, "app": 1, "db": 1, "api": 1}[s.Name]
				if s.Members != want {
					t.Errorf("segment %s has %d members, want %d", s.Name, s.Members, want)
				}
			}
		})
	}
}

func TestBuildMapNoPolicy(t *testing.T) {
	m := buildMap(mapInput{Segments: mapSegments(), Local: "db-1", Now: mapNow, Flows: []api.Flow{
		in("db-1", "web-1", sWeb, sDB, "denied", "udp", 53, 1, 0),
	}})
	m = m.Normalize()
	if len(m.Unused) != 0 || len(m.Edges) != 1 || m.Edges[0].Ports[0] != "udp/53" || m.Edges[0].Verdict != "denied" {
		t.Fatalf("%+v", m)
	}
	if len(m.Segments) != 4 {
		t.Fatalf("segments %+v", m.Segments)
	}
}
