package acl

import (
	"fmt"
	"strconv"
	"strings"
)

// TestFailure is a policy test whose expectation does not hold.
type TestFailure struct {
	Test
	Got   string   // "allow" or "deny"
	Rules []string // the rules that allow the flow (empty when Got is "deny")
}

// Message describes the failure without a position, e.g.
// `test web -> db tcp/5432: expected deny, got allow (rule "x")`; a test
// naming a service shows it with its port: `postgres (tcp/5432)`.
func (f TestFailure) Message() string {
	why := "no rule allows it"
	if len(f.Rules) > 0 {
		q := make([]string, len(f.Rules))
		for i, r := range f.Rules {
			q[i] = strconv.Quote(r)
		}
		why = "allowed by rule " + strings.Join(q, ", ")
	}
	port := f.Port.String()
	if f.Service != "" {
		port = f.Service + " (" + port + ")"
	}
	return fmt.Sprintf("test %s -> %s %s: expected %s, got %s (%s)", f.From, f.To, port, f.Expect, f.Got, why)
}

// Err gives the failure as an *Error at the test's position in file.
func (f TestFailure) Err(file string) *Error {
	return &Error{File: file, Line: f.Pos.Line, Col: f.Pos.Col, Msg: f.Message()}
}

// Format gives "file:line:col: message".
func (f TestFailure) Format(file string) string { return f.Err(file).String() }

// Error gives "line:col: message".
func (f TestFailure) Error() string { return f.Err("").String() }

// RunTests evaluates the policy's tests section and returns the failures in
// file order (nil when all pass).
//
// A test is evaluated on hypothetical nodes, not on tags: its source is a
// node whose only segment is From and its destination a node whose only
// segment is To ("*" stands for an admitted node in no segment). The flow is
// allowed when some rule has (From in rule.From, or "*" in rule.From) and
// (To in rule.To, or "*" in rule.To) and a port entry matching the test's
// port (a tcp/udp port inside a range of the same protocol, icmp for icmp,
// and "any" for everything). The mode does not matter: a test checks what
// the rules allow, and audit mode only changes what happens to the rest.
func (p *Policy) RunTests() []TestFailure {
	if p == nil {
		return nil
	}
	var out []TestFailure
	for _, t := range p.Tests {
		rules := p.allowingRules(testSegments(t.From), testSegments(t.To), t.Port.Proto, t.Port.Lo)
		got := "deny"
		if len(rules) > 0 {
			got = "allow"
		}
		if got != t.Expect {
			out = append(out, TestFailure{Test: t, Got: got, Rules: rules})
		}
	}
	return out
}

// testSegments is the segment set of a test's hypothetical node.
func testSegments(name string) []string {
	if name == Wildcard {
		return nil
	}
	return []string{name}
}

// allowingRules returns, in file order, the names of the rules that allow a
// flow (proto, port) from a node in segments fromSegs to a node in segments
// toSegs.
func (p *Policy) allowingRules(fromSegs, toSegs []string, proto string, port uint16) []string {
	var out []string
	for i := range p.Rules {
		r := &p.Rules[i]
		if !listAdmits(r.From, fromSegs) || !listAdmits(r.To, toSegs) {
			continue
		}
		for _, pt := range r.Ports {
			if pt.valid() && pt.Matches(proto, port) {
				out = append(out, r.Name)
				break
			}
		}
	}
	return out
}
