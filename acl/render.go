package acl

import (
	"bytes"
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
	if len(p.Segments) > 0 {
		segs := &yaml.Node{Kind: yaml.MappingNode}
		for i := range p.Segments {
			s := &p.Segments[i]
			segs.Content = append(segs.Content, renderStr(s.Name), renderSelectorNode(s.Selector))
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
				renderStr("port"), renderStr(t.Port.String()),
				renderStr("expect"), renderStr(t.Expect),
			}})
		}
		root.Content = append(root.Content, renderStr("tests"), tests)
	}
	return root
}

// renderSelectorNode renders a selector as a flow mapping with sorted keys.
func renderSelectorNode(sel map[string]string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n.Content = append(n.Content, renderStr(k), renderStr(sel[k]))
	}
	return n
}

// renderRuleNode renders one rule as a block mapping with flow lists.
func renderRuleNode(r *Rule) *yaml.Node {
	ports := make([]string, len(r.Ports))
	for i, pt := range r.Ports {
		ports[i] = pt.String()
	}
	return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		renderStr("name"), renderStr(r.Name),
		renderStr("from"), renderFlowList(r.From),
		renderStr("to"), renderFlowList(r.To),
		renderStr("ports"), renderFlowList(ports),
	}}
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
