package acl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Parse reads and validates a policy file. file only names the source in
// errors. It is strict: every problem is reported (not just the first) as an
// ErrorList of *Error, each with the line and column of the offending YAML
// node, and no policy is returned when there is any.
//
// Validation:
//   - the document is one YAML mapping (an empty file is an error: write
//     "mode: enforce" for a policy that allows nothing);
//   - unknown or repeated keys at any level are errors; anchors and aliases
//     are followed, merge keys ("<<") are not supported;
//   - mode is "enforce" or "audit" (absent: enforce);
//   - segments is a mapping of unique names (not "*") to non-empty selectors
//     whose keys and values are strings;
//   - rules is a list; each rule has a unique non-empty name and non-empty
//     from, to and ports lists; from/to hold defined segment names or "*";
//     ports are as ParsePort reads them;
//   - tests is a list of {from, to, port, expect} (all required); from/to
//     are defined segment names or "*"; port is one flow (tcp/N, udp/N or
//     icmp: "any" and ranges are rejected, a test checks one concrete flow);
//     expect is "allow" or "deny";
//   - segments, rules and tests may be absent or null (nothing is allowed).
//
// Parse never panics, whatever the input: it can be fed policies received
// from other nodes.
func Parse(file string, data []byte) (pol *Policy, err error) {
	ps := &parser{file: file}
	root := ps.decode(data)
	if root != nil {
		pol = ps.policy(root)
	}
	if len(ps.errs) > 0 {
		return nil, sortErrors(ps.errs)
	}
	return pol, nil
}

// parser collects the errors of one Parse call.
type parser struct {
	file    string
	errs    ErrorList
	defined map[string]bool // segment names defined so far

	defServices  map[string]Service // the policy's valid services by name
	serviceNames map[string]bool    // every name the services section defines, valid or not
}

func (ps *parser) errorf(line, col int, format string, args ...any) {
	if line < 1 {
		line = 1
	}
	if col < 1 {
		col = 1
	}
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// nodeErrorf reports a problem at node n.
func (ps *parser) nodeErrorf(n *yaml.Node, format string, args ...any) {
	ps.errorf(n.Line, n.Column, format, args...)
}

// decode turns data into the root node of its single YAML document, or
// records why it cannot and returns nil.
func (ps *parser) decode(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 has panicked on malformed input in the past; a policy can
		// come from the network, so a parser bug must not take the daemon down.
		if r := recover(); r != nil {
			root = nil
			ps.errorf(1, 1, "YAML parser failed: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.errorf(1, 1, "policy file is empty (write \"mode: enforce\" for a policy that allows nothing)")
		} else {
			ps.syntaxError(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		ps.syntaxError(err)
		return nil
	default:
		ps.nodeErrorf(&extra, "a policy file holds one YAML document, found another")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		ps.nodeErrorf(&doc, "not a YAML document")
		return nil
	}
	return doc.Content[0]
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the messages of yaml.v3 parser (not scanner)
// errors. yaml.v3 v3.0.1 reports their line 0-based (scanner errors are
// 1-based), and leaves the line out when it is 0.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// syntaxError records a yaml.v3 error. yaml.v3 gives the line (of the
// construct being parsed, or of the problem; line 1 when it gives none) but
// never the column: the column is then 1.
func (ps *parser) syntaxError(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		msg = m[2]
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			line = n
			if yamlParserProblems[msg] {
				line++
			}
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	if strings.Contains(msg, "did not find expected alphabetic or numeric character") {
		msg += ` (a bare * starts a YAML alias: write "*" in quotes)`
	}
	ps.errorf(line, 1, "YAML syntax error: %s", msg)
}

// yamlResolve follows aliases to the node they name.
func yamlResolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an explicit or implicit YAML null.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// str returns n's value when it is a string scalar; otherwise it reports
// "what must be a string" at n.
func (ps *parser) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return n.Value, true
	}
	ps.nodeErrorf(n, "%s must be a string, got %s", what, describe(n))
	return "", false
}

// describe names a node's kind for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing (null)"
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		default:
			return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
		}
	}
	return "an unsupported YAML node"
}

// yamlPair is one key and value of a mapping, aliases resolved.
type yamlPair struct {
	key, val *yaml.Node
	name     string
}

// pairs returns the entries of mapping n in file order. Keys must be unique
// strings; offenders are reported and left out.
func (ps *parser) pairs(n *yaml.Node, what string) []yamlPair {
	if n.Kind != yaml.MappingNode {
		ps.nodeErrorf(n, "%s must be a mapping, got %s", what, describe(n))
		return nil
	}
	var out []yamlPair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlResolve(n.Content[i]), yamlResolve(n.Content[i+1])
		if k == nil || v == nil {
			continue
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			ps.nodeErrorf(k, "merge keys (<<) are not supported")
			continue
		}
		name, ok := ps.str(k, "a key in "+what)
		if !ok {
			continue
		}
		if first, dup := seen[name]; dup {
			ps.nodeErrorf(k, "duplicate key %q in %s (first at line %d)", name, what, first)
			continue
		}
		seen[name] = k.Line
		out = append(out, yamlPair{key: k, val: v, name: name})
	}
	return out
}

// fields returns the entries of mapping n by key, reporting keys not in
// allowed.
func (ps *parser) fields(n *yaml.Node, what string, allowed ...string) map[string]yamlPair {
	out := map[string]yamlPair{}
	for _, p := range ps.pairs(n, what) {
		known := false
		for _, a := range allowed {
			known = known || a == p.name
		}
		if !known {
			ps.nodeErrorf(p.key, "unknown key %q in %s (want %s)", p.name, what, strings.Join(allowed, ", "))
			continue
		}
		out[p.name] = p
	}
	return out
}

// list returns the items of sequence n (aliases resolved), reporting a
// non-list or an empty one.
func (ps *parser) list(n *yaml.Node, what, example string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		ps.nodeErrorf(n, "%s must be a list, e.g. %s; got %s", what, example, describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		ps.nodeErrorf(n, "%s is empty", what)
		return nil
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		if c = yamlResolve(c); c != nil {
			out = append(out, c)
		}
	}
	return out
}

func posOf(n *yaml.Node) Pos { return Pos{Line: n.Line, Col: n.Column} }
