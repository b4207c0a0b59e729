package acl

import (
	"encoding/json"
	"math/rand"
	"reflect"
	"slices"
	"testing"
)

func TestMatrix(t *testing.T) {
	tcp := func(lo, hi uint16) Port { return Port{Proto: "tcp", Lo: lo, Hi: hi} }
	udp := func(lo, hi uint16) Port { return Port{Proto: "udp", Lo: lo, Hi: hi} }
	icmp, anyPort := Port{Proto: "icmp"}, Port{Proto: "any"}

	cases := []struct {
		name string
		src  string
		want []Cell
	}{
		{
			name: "wildcards in from and to",
			src: yamlLines(
				"segments: {web: {role: web}, app: {role: app}, db: {role: db}}",
				"rules:",
				"  - {name: web-to-app, from: [web], to: [app], ports: [tcp/8081-8090, tcp/8080]}",
				"  - {name: web-to-app-2, from: [web], to: [app], ports: [udp/53, tcp/8000-8080]}",
				"  - {name: ping, from: ['*'], to: ['*'], ports: [icmp]}",
				"  - {name: admin, from: [app], to: [db, web], ports: [any, tcp/22]}",
				"  - {name: ssh-from-db, from: [db], to: ['*'], ports: [tcp/22]}",
			),
			want: []Cell{
				{From: "web", To: "web", Ports: []Port{icmp}, Rules: []string{"ping"}},
				{From: "web", To: "app", Ports: []Port{tcp(8000, 8090), udp(53, 53), icmp}, Rules: []string{"web-to-app", "web-to-app-2", "ping"}},
				{From: "web", To: "db", Ports: []Port{icmp}, Rules: []string{"ping"}},
				{From: "web", To: "*", Ports: []Port{icmp}, Rules: []string{"ping"}},
				{From: "app", To: "web", Ports: []Port{anyPort}, Rules: []string{"ping", "admin"}},
				{From: "app", To: "app", Ports: []Port{icmp}, Rules: []string{"ping"}},
				{From: "app", To: "db", Ports: []Port{anyPort}, Rules: []string{"ping", "admin"}},
				{From: "app", To: "*", Ports: []Port{icmp}, Rules: []string{"ping"}},
				{From: "db", To: "web", Ports: []Port{tcp(22, 22), icmp}, Rules: []string{"ping", "ssh-from-db"}},
				{From: "db", To: "app", Ports: []Port{tcp(22, 22), icmp}, Rules: []string{"ping", "ssh-from-db"}},
				{From: "db", To: "db", Ports: []Port{tcp(22, 22), icmp}, Rules: []string{"ping", "ssh-from-db"}},
				{From: "db", To: "*", Ports: []Port{tcp(22, 22), icmp}, Rules: []string{"ping", "ssh-from-db"}},
				{From: "*", To: "web", Ports: []Port{icmp}, Rules: []string{"ping"}},
				{From: "*", To: "app", Ports: []Port{icmp}, Rules: []string{"ping"}},
				{From: "*", To: "db", Ports: []Port{icmp}, Rules: []string{"ping"}},
				{From: "*", To: "*", Ports: []Port{icmp}, Rules: []string{"ping"}},
			},
		},
		{
			name: "no wildcard: no star row or column, empty cells kept",
			src: yamlLines(
				"segments: {a: {role: a}, b: {role: b}}",
				"rules:",
				"  - {name: a-to-b, from: [a], to: [b], ports: [udp/1-10, udp/11, tcp/5]}",
			),
			want: []Cell{
				{From: "a", To: "a"},
				{From: "a", To: "b", Ports: []Port{tcp(5, 5), udp(1, 11)}, Rules: []string{"a-to-b"}},
				{From: "b", To: "a"},
				{From: "b", To: "b"},
			},
		},
		{
			name: "star only in to: a column, no row",
			src: yamlLines(
				"segments: {a: {role: a}}",
				"rules:",
				"  - {name: a-out, from: [a], to: ['*'], ports: [tcp/1]}",
			),
			want: []Cell{
				{From: "a", To: "a", Ports: []Port{tcp(1, 1)}, Rules: []string{"a-out"}},
				{From: "a", To: "*", Ports: []Port{tcp(1, 1)}, Rules: []string{"a-out"}},
			},
		},
		{
			name: "no segments, star rule",
			src:  "rules: [{name: all, from: ['*'], to: ['*'], ports: [any]}]\n",
			want: []Cell{{From: "*", To: "*", Ports: []Port{anyPort}, Rules: []string{"all"}}},
		},
		{
			name: "empty policy",
			src:  "mode: enforce\n",
			want: []Cell{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := polMustParse(t, tc.src).Matrix()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Matrix =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}

	t.Run("nil policy", func(t *testing.T) {
		var p *Policy
		if got := p.Matrix(); got != nil {
			t.Errorf("Matrix of nil = %+v", got)
		}
	})
	t.Run("hand-built: malformed ports ignored", func(t *testing.T) {
		p := &Policy{
			Segments: []Segment{{Name: "a", Selector: map[string]string{"r": "a"}}},
			Rules: []Rule{
				{Name: "bad", From: []string{"a"}, To: []string{"a"}, Ports: []Port{{Proto: "tcp"}, {Proto: "sctp", Lo: 1, Hi: 1}}},
				{Name: "good", From: []string{"a"}, To: []string{"a"}, Ports: []Port{{Proto: "tcp", Lo: 9, Hi: 7}, tcp(7, 9)}},
			},
		}
		want := []Cell{{From: "a", To: "a", Ports: []Port{tcp(7, 9)}, Rules: []string{"good"}}}
		if got := p.Matrix(); !reflect.DeepEqual(got, want) {
			t.Errorf("Matrix =\n%+v\nwant\n%+v", got, want)
		}
	})
}

func TestCellPortStrings(t *testing.T) {
	c := Cell{Ports: []Port{{Proto: "tcp", Lo: 1, Hi: 2}, {Proto: "icmp"}}}
	if got, want := c.PortStrings(), []string{"tcp/1-2", "icmp"}; !slices.Equal(got, want) {
		t.Errorf("PortStrings = %q, want %q", got, want)
	}
	b, err := json.Marshal(Cell{}.PortStrings())
	if err != nil || string(b) != "[]" {
		t.Errorf("empty PortStrings encodes as %s (%v), want []", b, err)
	}
}

// TestMatrixMatchesBruteForce checks every cell of random policies against
// an evaluation written from the policy semantics, and that a node in
// several segments gets the union of the cells of its segment pairs.
func TestMatrixMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for it := range 500 {
		p := propPolicy(r)
		cells := p.Matrix()
		byPair := map[[2]string]Cell{}
		for _, c := range cells {
			byPair[[2]string{c.From, c.To}] = c
		}
		var names []string
		for _, s := range p.Segments {
			names = append(names, s.Name)
		}
		star := func(side func(Rule) []string) bool {
			for _, rule := range p.Rules {
				if slices.Contains(side(rule), Wildcard) {
					return true
				}
			}
			return false
		}
		rows, cols := slices.Clone(names), slices.Clone(names)
		if star(func(r Rule) []string { return r.From }) {
			rows = append(rows, Wildcard)
		}
		if star(func(r Rule) []string { return r.To }) {
			cols = append(cols, Wildcard)
		}
		if len(cells) != len(rows)*len(cols) {
			t.Fatalf("iteration %d: %d cells, want %d×%d", it, len(cells), len(rows), len(cols))
		}
		i := 0
		for _, from := range rows {
			for _, to := range cols {
				c := cells[i]
				i++
				if c.From != from || c.To != to {
					t.Fatalf("iteration %d: cell %d is %s->%s, want %s->%s", it, i-1, c.From, c.To, from, to)
				}
				var wantRules []string
				for _, rule := range p.Rules {
					if matrixListHas(rule.From, from) && matrixListHas(rule.To, to) {
						wantRules = append(wantRules, rule.Name)
					}
				}
				if !slices.Equal(c.Rules, wantRules) {
					t.Fatalf("iteration %d: %s->%s rules %q, want %q", it, from, to, c.Rules, wantRules)
				}
				for _, f := range propFlows {
					want := false
					for _, rule := range p.Rules {
						if slices.Contains(wantRules, rule.Name) {
							for _, pt := range rule.Ports {
								want = want || bruteAllows(pt, f)
							}
						}
					}
					if got := matrixCellAllows(c, f); got != want {
						t.Fatalf("iteration %d: %s->%s %+v: cell allows %v, want %v (cell %+v)", it, from, to, f, got, want, c)
					}
				}
			}
		}

		// A node in several segments: the union of its pairs' cells.
		for range 5 {
			src, dst := matrixSubset(r, names), matrixSubset(r, names)
			for _, f := range propFlows {
				want := len(p.allowingRules(src, dst, f.proto, f.port)) > 0
				got := false
				for _, from := range matrixOrStar(src) {
					for _, to := range matrixOrStar(dst) {
						if c, ok := byPair[[2]string{from, to}]; ok {
							got = got || matrixCellAllows(c, f)
						}
					}
				}
				if got != want {
					t.Fatalf("iteration %d: %q -> %q %+v: union of cells %v, want %v", it, src, dst, f, got, want)
				}
			}
		}
	}
}

// matrixListHas: a rule list admits the hypothetical node of a row or column.
func matrixListHas(list []string, name string) bool {
	return slices.Contains(list, Wildcard) || (name != Wildcard && slices.Contains(list, name))
}

func matrixCellAllows(c Cell, f propFlow) bool {
	for _, pt := range c.Ports {
		if bruteAllows(pt, f) {
			return true
		}
	}
	return false
}

func matrixOrStar(segs []string) []string {
	if len(segs) == 0 {
		return []string{Wildcard}
	}
	return segs
}

// matrixSubset picks a random subset of names (possibly empty).
func matrixSubset(r *rand.Rand, names []string) []string {
	var out []string
	for _, n := range names {
		if r.Intn(3) == 0 {
			out = append(out, n)
		}
	}
	return out
}
