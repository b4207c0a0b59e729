package acl

import (
	"net/netip"
	"reflect"
	"testing"
)

// polMustParse parses a policy written in a test or fails it.
func polMustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return p
}

// polMember builds a member; v4 and v6 may be "" (invalid address).
func polMember(key, v4, v6 string, tags map[string]string) Member {
	m := Member{Key: key, Name: key, Tags: tags}
	if v4 != "" {
		m.Addr4 = netip.MustParseAddr(v4)
	}
	if v6 != "" {
		m.Addr6 = netip.MustParseAddr(v6)
	}
	return m
}

func polAddrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func tcpEl(src string, lo, hi uint16) PortElement {
	return PortElement{Src: netip.MustParseAddr(src), Proto: ProtoTCP, PortLo: lo, PortHi: hi}
}

func udpEl(src string, lo, hi uint16) PortElement {
	return PortElement{Src: netip.MustParseAddr(src), Proto: ProtoUDP, PortLo: lo, PortHi: hi}
}

func TestCompile(t *testing.T) {
	const segs = "segments:\n  web: {role: web}\n  app: {role: app}\n  db: {role: db}\n  prod: {env: prod}\n"
	app := polMember("app", "100.80.0.1", "fd5e::1", map[string]string{"role": "app", "env": "prod"})
	web := polMember("web", "100.80.0.2", "fd5e::2", map[string]string{"role": "web"})
	web4 := polMember("web4", "100.80.0.3", "", map[string]string{"role": "web"})
	bare := polMember("bare", "100.80.0.9", "", nil)
	dbProd := polMember("db", "100.80.0.4", "fd5e::4", map[string]string{"role": "db", "env": "prod"})
	local := polAddrs("100.80.0.1", "fd5e::1")

	cases := []struct {
		name  string
		pol   string // "" = nil policy
		self  Member
		peers []Member
		want  Desired
	}{
		{
			name:  "nil policy: fail closed",
			self:  app,
			peers: []Member{web, dbProd},
			want:  Desired{Local: local},
		},
		{
			name:  "self in two segments gets both rules; v4 and v6 sources",
			pol:   segs + "rules:\n  - {name: a, from: [web], to: [app], ports: [tcp/80]}\n  - {name: b, from: [web], to: [prod], ports: [tcp/443]}\n",
			self:  app,
			peers: []Member{web, dbProd},
			want: Desired{Local: local, Ports: []PortElement{
				tcpEl("100.80.0.2", 80, 80), tcpEl("100.80.0.2", 443, 443),
				tcpEl("fd5e::2", 80, 80), tcpEl("fd5e::2", 443, 443),
			}},
		},
		{
			name:  "peer in two segments matches through either",
			pol:   segs + "rules:\n  - {name: a, from: [db], to: [app], ports: [tcp/5432]}\n  - {name: b, from: [prod], to: [app], ports: [udp/53]}\n",
			self:  app,
			peers: []Member{dbProd},
			want: Desired{Local: local, Ports: []PortElement{
				tcpEl("100.80.0.4", 5432, 5432), udpEl("100.80.0.4", 53, 53),
				tcpEl("fd5e::4", 5432, 5432), udpEl("fd5e::4", 53, 53),
			}},
		},
		{
			name:  "star from matches peers with no tags, icmp",
			pol:   segs + "rules:\n  - {name: ping, from: ['*'], to: [app], ports: [icmp]}\n",
			self:  app,
			peers: []Member{bare, web4},
			want:  Desired{Local: local, ICMP: polAddrs("100.80.0.3", "100.80.0.9")},
		},
		{
			name:  "peer with no tags matches no named segment",
			pol:   segs + "rules:\n  - {name: a, from: [web, db, prod], to: ['*'], ports: [any]}\n",
			self:  app,
			peers: []Member{bare},
			want:  Desired{Local: local},
		},
		{
			name:  "star to applies to a self in no segment",
			pol:   segs + "rules:\n  - {name: a, from: [web], to: ['*'], ports: [tcp/22]}\n  - {name: b, from: [web], to: [db], ports: [tcp/23]}\n",
			self:  polMember("me", "100.80.0.1", "", map[string]string{"unrelated": "x"}),
			peers: []Member{web4},
			want:  Desired{Local: polAddrs("100.80.0.1"), Ports: []PortElement{tcpEl("100.80.0.3", 22, 22)}},
		},
		{
			name: "ranges merged when overlapping or adjacent, per protocol",
			pol: segs + "rules:\n" +
				"  - {name: a, from: [web], to: [app], ports: [tcp/10-20, tcp/21-30, udp/31-40, tcp/25-40, tcp/50, tcp/42-49, tcp/60-70]}\n" +
				"  - {name: b, from: [web], to: [app], ports: [tcp/65, udp/41, tcp/65535, tcp/65534]}\n",
			self:  app,
			peers: []Member{web4},
			want: Desired{Local: local, Ports: []PortElement{
				tcpEl("100.80.0.3", 10, 40), tcpEl("100.80.0.3", 42, 50), tcpEl("100.80.0.3", 60, 70),
				tcpEl("100.80.0.3", 65534, 65535), udpEl("100.80.0.3", 31, 41),
			}},
		},
		{
			name: "overlapping rules deduplicated",
			pol: segs + "rules:\n  - {name: a, from: [web], to: [app], ports: [tcp/80, icmp]}\n" +
				"  - {name: b, from: [web, db], to: [app, prod], ports: [tcp/80, icmp, tcp/80]}\n",
			self:  app,
			peers: []Member{web4},
			want:  Desired{Local: local, Ports: []PortElement{tcpEl("100.80.0.3", 80, 80)}, ICMP: polAddrs("100.80.0.3")},
		},
		{
			name: "any covers the source's ports and icmp",
			pol: segs + "rules:\n  - {name: a, from: [web], to: [app], ports: [tcp/80, icmp]}\n" +
				"  - {name: b, from: [db], to: [app], ports: [tcp/80, icmp]}\n" +
				"  - {name: c, from: [web], to: [app], ports: [any]}\n",
			self:  app,
			peers: []Member{web, dbProd},
			want: Desired{
				Local: local,
				Ports: []PortElement{tcpEl("100.80.0.4", 80, 80), tcpEl("fd5e::4", 80, 80)},
				ICMP:  polAddrs("100.80.0.4", "fd5e::4"),
				Any:   polAddrs("100.80.0.2", "fd5e::2"),
			},
		},
		{
			name:  "audit flag",
			pol:   "mode: audit\n" + segs + "rules:\n  - {name: a, from: [web], to: [app], ports: [udp/53]}\n",
			self:  app,
			peers: []Member{web4},
			want:  Desired{Local: local, Audit: true, Ports: []PortElement{udpEl("100.80.0.3", 53, 53)}},
		},
		{
			name: "self is never a source (by key or by address)",
			pol:  segs + "rules:\n  - {name: a, from: ['*'], to: ['*'], ports: [tcp/1]}\n",
			self: app,
			peers: []Member{
				app,
				polMember("app", "100.80.0.99", "fd5e::99", app.Tags),
				polMember("impostor", "100.80.0.1", "fd5e::77", nil),
				web4,
			},
			want: Desired{Local: local, Ports: []PortElement{tcpEl("100.80.0.3", 1, 1), tcpEl("fd5e::77", 1, 1)}},
		},
		{
			name:  "rule not addressed to self",
			pol:   segs + "rules:\n  - {name: a, from: ['*'], to: [db], ports: [any]}\n",
			self:  app,
			peers: []Member{web, dbProd},
			want:  Desired{Local: local},
		},
		{
			name: "peers without addresses skipped, mapped addresses unmapped, shared address unioned",
			pol: segs + "rules:\n  - {name: a, from: [web], to: [app], ports: [tcp/80]}\n" +
				"  - {name: b, from: [db], to: [app], ports: [tcp/81]}\n",
			self: app,
			peers: []Member{
				polMember("noaddr", "", "", map[string]string{"role": "web"}),
				polMember("mapped", "::ffff:100.80.0.5", "", map[string]string{"role": "web"}),
				polMember("clash", "100.80.0.5", "", map[string]string{"role": "db"}),
			},
			want: Desired{Local: local, Ports: []PortElement{tcpEl("100.80.0.5", 80, 81)}},
		},
		{
			name:  "no rules",
			pol:   segs,
			self:  app,
			peers: []Member{web},
			want:  Desired{Local: local},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p *Policy
			if tc.pol != "" {
				p = polMustParse(t, tc.pol)
			}
			got := Compile(p, tc.self, tc.peers)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Compile =\n%+v\nwant\n%+v", got, tc.want)
			}
			polCheckDesired(t, got)
		})
	}
}

// polCheckDesired asserts the documented invariants of a Desired: sorted,
// deduplicated, non-overlapping and non-adjacent ranges per (source,
// protocol), no source both in Any and elsewhere.
func polCheckDesired(t testing.TB, d Desired) {
	t.Helper()
	anySrc := map[netip.Addr]bool{}
	for i, a := range d.Any {
		anySrc[a] = true
		if i > 0 && d.Any[i-1].Compare(a) >= 0 {
			t.Errorf("Any not strictly sorted at %d: %v", i, d.Any)
		}
	}
	for i, a := range d.ICMP {
		if anySrc[a] {
			t.Errorf("ICMP source %v is also in Any", a)
		}
		if i > 0 && d.ICMP[i-1].Compare(a) >= 0 {
			t.Errorf("ICMP not strictly sorted at %d: %v", i, d.ICMP)
		}
	}
	for i, e := range d.Ports {
		if anySrc[e.Src] {
			t.Errorf("port element %+v has a source in Any", e)
		}
		if e.PortLo > e.PortHi || e.PortLo == 0 || (e.Proto != ProtoTCP && e.Proto != ProtoUDP) {
			t.Errorf("malformed port element %+v", e)
		}
		if i == 0 {
			continue
		}
		prev := d.Ports[i-1]
		switch c := prev.Src.Compare(e.Src); {
		case c > 0 || (c == 0 && prev.Proto > e.Proto):
			t.Errorf("Ports not sorted at %d: %+v then %+v", i, prev, e)
		case c == 0 && prev.Proto == e.Proto && int(e.PortLo) <= int(prev.PortHi)+1:
			t.Errorf("Ports overlap or touch at %d: %+v then %+v", i, prev, e)
		}
	}
	for i := 1; i < len(d.Local); i++ {
		if d.Local[i-1].Compare(d.Local[i]) >= 0 {
			t.Errorf("Local not strictly sorted: %v", d.Local)
		}
	}
}

func TestSegmentsOf(t *testing.T) {
	p := polMustParse(t, "segments:\n  web: {role: web}\n  prod: {env: prod}\n  aweb: {role: web, env: prod}\n  db: {role: db}\n")
	if got := p.SegmentsOf(map[string]string{"role": "web", "env": "prod", "x": "y"}); !reflect.DeepEqual(got, []string{"aweb", "prod", "web"}) {
		t.Errorf("SegmentsOf = %v", got)
	}
	if got := p.SegmentsOf(map[string]string{"role": "web", "env": "dev"}); !reflect.DeepEqual(got, []string{"web"}) {
		t.Errorf("SegmentsOf = %v", got)
	}
	if got := p.SegmentsOf(nil); got != nil {
		t.Errorf("SegmentsOf(nil) = %v", got)
	}
	var none *Policy
	if got := none.SegmentsOf(map[string]string{"role": "web"}); got != nil {
		t.Errorf("nil policy SegmentsOf = %v", got)
	}
	hand := &Policy{Segments: []Segment{{Name: "all", Selector: map[string]string{}}}}
	if got := hand.SegmentsOf(map[string]string{"role": "web"}); got != nil {
		t.Errorf("an empty selector matched: %v", got)
	}
}
