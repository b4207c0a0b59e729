package acl

import (
	"errors"
	"os"
	"slices"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, an error
// must be a non-empty ErrorList whose entries all name the file and a
// position (line and column >= 1), and an accepted policy must compile,
// explain and run its tests without panicking. The seeds (every file of the
// parse tests, the language tests and the example) run in plain `go test`.
func FuzzParse(f *testing.F) {
	for _, tc := range parseErrorCases {
		f.Add([]byte(tc.src))
	}
	for _, tc := range langErrorCases {
		f.Add([]byte(tc.src))
	}
	f.Add([]byte(langPolicy))
	if data, err := os.ReadFile("testdata/example.yaml"); err == nil {
		f.Add(data)
	} else {
		f.Fatal(err)
	}
	f.Add([]byte("segments:\n  a: &x {role: a}\n  b: *x\nrules:\n  - {name: r, from: ['*'], to: [a, b], ports: [any, udp/1-65535]}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("rules: [&r {name: x, from: ['*'], to: ['*'], ports: [icmp]}, *r]\n"))
	f.Add([]byte("\xef\xbb\xbfmode: audit\n"))
	f.Add([]byte("mode: !!binary ZW5mb3JjZQ==\n"))

	self := polMember("self", "100.80.0.1", "fd5e::1", map[string]string{"role": "a"})
	peers := []Member{
		polMember("p1", "100.80.0.2", "fd5e::2", map[string]string{"role": "b"}),
		polMember("p2", "100.80.0.3", "", nil),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatalf("policy returned with errors")
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is not a non-empty ErrorList: %T %v", err, err)
			}
			for _, e := range list {
				if e.Line < 1 || e.Col < 1 || e.File != "fuzz.yaml" || e.Msg == "" {
					t.Fatalf("bad error %+v", e)
				}
			}
			return
		}
		if p == nil {
			t.Fatalf("nil policy without error")
		}
		d := Compile(p, self, peers)
		polCheckDesired(t, d)
		_ = p.RunTests()
		v := Explain(p, peers[0], self, "tcp", 80)
		var traced []string
		for _, tr := range v.Trace {
			if tr.Allow {
				traced = append(traced, tr.Rule)
			}
		}
		if !slices.Equal(traced, v.Rules) {
			t.Fatalf("explain trace allows %v, verdict %v", traced, v.Rules)
		}
		// A rendered policy reads back the same.
		if out, err := p.WithRules(nil); err != nil {
			t.Fatalf("render: %v", err)
		} else if q, err := Parse("rendered", out); err != nil {
			t.Fatalf("rendered policy does not parse: %v\n%s", err, out)
		} else if r, s, m := Diff(p, q); len(r)+len(s) != 0 || m != "" {
			t.Fatalf("rendered policy differs: %+v %+v %q\n%s", r, s, m, out)
		}
	})
}
