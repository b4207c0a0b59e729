package acl

import (
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	good := []struct {
		in   string
		want Port
	}{
		{"tcp/8080", Port{"tcp", 8080, 8080}},
		{"udp/1-100", Port{"udp", 1, 100}},
		{"tcp/1-65535", Port{"tcp", 1, 65535}},
		{"tcp/7-7", Port{"tcp", 7, 7}},
		{"udp/0053", Port{"udp", 53, 53}},
		{"icmp", Port{Proto: "icmp"}},
		{"any", Port{Proto: "any"}},
	}
	for _, tc := range good {
		got, err := ParsePort(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParsePort(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if again, err := ParsePort(got.String()); err != nil || again != got {
			t.Errorf("ParsePort(%q.String() = %q) = %+v, %v", tc.in, got.String(), again, err)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "unknown protocol"},
		{"sctp/1", "unknown protocol"},
		{"TCP/80", "unknown protocol"},
		{"tcp", "needs a port"},
		{"tcp/", "missing port number"},
		{"tcp/0", "outside 1-65535"},
		{"udp/65536", "outside 1-65535"},
		{"tcp/99999999999999999999", "outside 1-65535"},
		{"tcp/9100-9000", "inverted port range"},
		{"tcp/-5", "missing port number"},
		{"tcp/5-", "missing port number"},
		{"tcp/1-2-3", "not a decimal number"},
		{"tcp/+80", "not a decimal number"},
		{"tcp/ 80", "not a decimal number"},
		{"icmp/8", "takes no port"},
		{"any/1", "takes no port"},
	}
	for _, tc := range bad {
		if got, err := ParsePort(tc.in); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParsePort(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.msg)
		}
	}
}

func TestPortString(t *testing.T) {
	for p, want := range map[Port]string{
		{"tcp", 80, 80}:     "tcp/80",
		{"tcp", 9000, 9100}: "tcp/9000-9100",
		{"udp", 53, 53}:     "udp/53",
		{Proto: "icmp"}:     "icmp",
		{Proto: "any"}:      "any",
	} {
		if got := p.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", p, got, want)
		}
	}
}

func TestPortMatches(t *testing.T) {
	cases := []struct {
		port  Port
		proto string
		n     uint16
		want  bool
	}{
		{Port{"tcp", 10, 20}, "tcp", 10, true},
		{Port{"tcp", 10, 20}, "tcp", 20, true},
		{Port{"tcp", 10, 20}, "tcp", 21, false},
		{Port{"tcp", 10, 20}, "tcp", 9, false},
		{Port{"tcp", 10, 20}, "udp", 15, false},
		{Port{Proto: "icmp"}, "icmp", 0, true},
		{Port{Proto: "icmp"}, "tcp", 0, false},
		{Port{Proto: "any"}, "udp", 1, true},
		{Port{Proto: "any"}, "gre", 0, true},
		{Port{Proto: "bogus"}, "bogus", 0, false},
	}
	for _, tc := range cases {
		if got := tc.port.Matches(tc.proto, tc.n); got != tc.want {
			t.Errorf("%v.Matches(%s, %d) = %v", tc.port, tc.proto, tc.n, got)
		}
	}
}
