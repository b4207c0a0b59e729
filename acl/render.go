package acl

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// RenderRules renders rules in policy-file syntax as the items of a rules
// list, every line indented by two spaces, so an operator can paste them
// under the "rules:" key of a policy file (prefix "rules:\n" for a
// standalone section). Below "rules:", the output for one rule:
//
//	rules:
//	  - name: suggested-web-to-db
//	    from: [web]
//	    to: [db]
//	    ports: [tcp/5432]
//
// Strings are quoted where YAML needs it ("*" is written '*'). Nothing is
// validated: a rule with an empty list renders as [] and Parse rejects it.
// No rules give "".
func RenderRules(rules []Rule) string {
	if len(rules) == 0 {
		return ""
	}
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for i := range rules {
		list.Content = append(list.Content, renderRuleNode(&rules[i]))
	}
	out, err := renderYAML(list)
	if err != nil {
		// Unreachable for valid UTF-8, which renderStr guarantees; keep the
		// failure visible rather than return a silently short list.
		return fmt.Sprintf("# cannot render rules: %v\n", err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(out), "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "") + "\n"
}

// WithRules returns the policy file content of p with extra appended to its
// rules: mode, segments (file order, selector keys sorted), rules (p's, then
// extra) and tests, re-rendered in policy-file syntax (comments and the
// formatting of the original file are not kept; positions are ignored). The
// result is parsed before it is returned, so an extra rule that refers to
// an undefined segment, repeats a rule name or has an empty or malformed
// list is an error (with the position in the rendered content). The tests
// are not run: RunTests (or `policy check`) says whether they still hold.
// A nil p is an empty enforce policy.
func (p *Policy) WithRules(extra []Rule) ([]byte, error) {
	merged := Policy{Mode: ModeEnforce}
	if p != nil {
		merged = *p
		if merged.Mode == "" {
			merged.Mode = ModeEnforce
		}
	}
	merged.Rules = append(slices.Clip(merged.Rules), extra...)
	out, err := renderYAML(renderPolicyNode(&merged))
	if err != nil {
		return nil, fmt.Errorf("render policy: %w", err)
	}
	if _, err := Parse("policy with added rules", out); err != nil {
		return nil, fmt.Errorf("policy with added rules is invalid: %w", err)
	}
	return out, nil
}

// renderYAML writes n as one YAML document indented by two.
func renderYAML(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return b.Bytes(), nil
}

// renderPolicyNode builds the YAML mapping of a whole policy file.
func renderPolicyNode(p *Policy) *yaml.Node {
	root := &yaml.Node{Kind: yaml.MappingNode}
	root.Content = append(root.Content, renderStr("mode"), renderStr(string(p.Mode)))
	if len(p.Services) > 0 {
		svcs := &yaml.Node{Kind: yaml.MappingNode}
		for _, s := range p.Services {
			svcs.Content = append(svcs.Content, renderStr(s.Name), renderFlowList(portStrings(s.Ports)))
		}
		root.Content = append(root.Content, renderStr("services"), svcs)
	}
	if len(p.Segments) > 0 {
		segs := &yaml.Node{Kind: yaml.MappingNode}
		for i := range p.Segments {
			s := &p.Segments[i]
			segs.Content = append(segs.Content, renderStr(s.Name), renderSelectorNode(s))
		}
		root.Content = append(root.Content, renderStr("segments"), segs)
	}
	if len(p.Rules) > 0 {
		rules := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range p.Rules {
			rules.Content = append(rules.Content, renderRuleNode(&p.Rules[i]))
		}
		root.Content = append(root.Content, renderStr("rules"), rules)
	}
	if len(p.Tests) > 0 {
		tests := &yaml.Node{Kind: yaml.SequenceNode}
		for _, t := range p.Tests {
			tests.Content = append(tests.Content, &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: []*yaml.Node{
				renderStr("from"), renderStr(t.From),
				renderStr("to"), renderStr(t.To),
				renderStr("port"), renderStr(cmp.Or(t.Service, t.Port.String())),
				renderStr("expect"), renderStr(t.Expect),
			}})
		}
		root.Content = append(root.Content, renderStr("tests"), tests)
	}
	return root
}

// renderSelectorNode renders a segment's selector as a flow mapping with
// sorted keys, each term as written ("!key" keys sort first).
func renderSelectorNode(s *Segment) *yaml.Node {
	type pair struct {
		key string
		val *yaml.Node
	}
	pairs := make([]pair, 0, len(s.Selector)+len(s.Terms))
	for k, v := range s.Selector {
		pairs = append(pairs, pair{k, renderStr(v)})
	}
	for _, t := range s.Terms {
		key := t.Key
		if t.Not {
			key = SelectorNot + key
		}
		switch {
		case t.Values == nil:
			pairs = append(pairs, pair{key, renderStr(Wildcard)})
		case t.Not && len(t.Values) == 1:
			pairs = append(pairs, pair{key, renderStr(t.Values[0])})
		default:
			pairs = append(pairs, pair{key, renderFlowList(t.Values)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int { return strings.Compare(a.key, b.key) })
	n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	for _, p := range pairs {
		n.Content = append(n.Content, renderStr(p.key), p.val)
	}
	return n
}

// renderRuleNode renders one rule as a block mapping with flow lists; its
// ports as written when the rule was parsed (service names kept).
func renderRuleNode(r *Rule) *yaml.Node {
	ports := portStrings(r.Ports)
	if len(r.Entries) > 0 {
		ports = make([]string, len(r.Entries))
		for i, e := range r.Entries {
			ports[i] = e.String()
		}
	}
	return &yaml.Node{Kind: yaml.MappingNode, HeadComment: renderComment(r.Comment), Content: []*yaml.Node{
		renderStr("name"), renderStr(r.Name),
		renderStr("from"), renderFlowList(r.From),
		renderStr("to"), renderFlowList(r.To),
		renderStr("ports"), renderFlowList(ports),
	}}
}

// renderComment is a rule's comment as one YAML comment line ("" for none):
// line breaks become spaces, so it cannot end the comment.
func renderComment(c string) string {
	c = strings.Join(strings.Fields(strings.ToValidUTF8(c, "\uFFFD")), " ")
	if c == "" {
		return ""
	}
	return "# " + c
}

func portStrings(ports []Port) []string {
	out := make([]string, len(ports))
	for i, pt := range ports {
		out[i] = pt.String()
	}
	return out
}

func renderFlowList(items []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, s := range items {
		n.Content = append(n.Content, renderStr(s))
	}
	return n
}

// renderStr is a string scalar; the encoder quotes it when a plain scalar
// would read back as something else. Invalid UTF-8 (only possible in a
// hand-built policy) is replaced, as YAML cannot carry it.
func renderStr(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.ToValidUTF8(s, "\uFFFD")}
}
