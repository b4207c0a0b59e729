package acl

import (
	"fmt"
	"strconv"
	"strings"
)

// Protocol names used in policy files, Port.Proto and Explain.
const (
	protoNameTCP  = "tcp"
	protoNameUDP  = "udp"
	protoNameICMP = "icmp"
	protoNameAny  = "any"
)

// Port is one entry of a rule's ports list.
//
// Proto is "tcp", "udp", "icmp" or "any". For tcp and udp, [Lo, Hi] is an
// inclusive destination port range with 1 <= Lo <= Hi <= 65535 (a single port
// has Lo == Hi). For icmp and any, Lo and Hi are zero. "icmp" allows ICMP and
// ICMPv6 (the backend picks by family); "any" allows every protocol and port.
type Port struct {
	Proto  string
	Lo, Hi uint16
}

// String gives the policy-file form: "tcp/80", "tcp/9000-9100", "icmp", "any".
func (p Port) String() string {
	switch p.Proto {
	case protoNameTCP, protoNameUDP:
		if p.Lo == p.Hi {
			return fmt.Sprintf("%s/%d", p.Proto, p.Lo)
		}
		return fmt.Sprintf("%s/%d-%d", p.Proto, p.Lo, p.Hi)
	default:
		return p.Proto
	}
}

// Matches reports whether a flow with protocol proto ("tcp", "udp" or
// "icmp") to destination port port is allowed by p. The port is ignored for
// icmp. "any" matches every flow; an unknown proto matches only "any".
func (p Port) Matches(proto string, port uint16) bool {
	switch p.Proto {
	case protoNameAny:
		return true
	case protoNameICMP:
		return proto == protoNameICMP
	case protoNameTCP, protoNameUDP:
		return proto == p.Proto && p.Lo <= port && port <= p.Hi
	}
	return false
}

// valid reports whether p is well formed (what ParsePort can produce).
func (p Port) valid() bool {
	switch p.Proto {
	case protoNameTCP, protoNameUDP:
		return p.Lo >= 1 && p.Lo <= p.Hi
	case protoNameICMP, protoNameAny:
		return p.Lo == 0 && p.Hi == 0
	}
	return false
}

// ParsePort parses one ports entry: "tcp/8080", "udp/1-100" (inclusive range),
// "icmp" or "any". Protocol names are lower case; ports are decimal in
// 1-65535 and a range must not be inverted. The error message does not carry
// a position (Parse adds it).
func ParsePort(s string) (Port, error) {
	proto, rest, hasPort := strings.Cut(s, "/")
	switch proto {
	case protoNameICMP, protoNameAny:
		if hasPort {
			return Port{}, fmt.Errorf("%q: %s takes no port", s, proto)
		}
		return Port{Proto: proto}, nil
	case protoNameTCP, protoNameUDP:
	default:
		return Port{}, fmt.Errorf("%q: unknown protocol %q (want tcp/PORT, udp/PORT, tcp/LO-HI, udp/LO-HI, icmp or any)", s, proto)
	}
	if !hasPort {
		return Port{}, fmt.Errorf("%q: %s needs a port or range (%s/1-65535 for all ports)", s, proto, proto)
	}
	loS, hiS, isRange := strings.Cut(rest, "-")
	lo, err := parsePortNumber(loS)
	if err != nil {
		return Port{}, fmt.Errorf("%q: %w", s, err)
	}
	hi := lo
	if isRange {
		if hi, err = parsePortNumber(hiS); err != nil {
			return Port{}, fmt.Errorf("%q: %w", s, err)
		}
		if lo > hi {
			return Port{}, fmt.Errorf("%q: inverted port range (%d > %d)", s, lo, hi)
		}
	}
	return Port{Proto: proto, Lo: lo, Hi: hi}, nil
}

// parsePortNumber parses a decimal port in 1-65535.
func parsePortNumber(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("missing port number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a decimal number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s outside 1-65535", s)
	}
	return uint16(n), nil
}
