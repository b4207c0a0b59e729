package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// nftObjects runs `nft -j ARGS` in ns and returns the objects of its
// "nftables" array (metainfo dropped), each a one-key map such as
// {"set": {...}}.
func nftObjects(ns string, args ...string) ([]map[string]json.RawMessage, error) {
	b, code, err := nsExec(ns, 10*time.Second, append([]string{"nft", "-j"}, args...)...)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("nft -j %s in %s: exit %d: %s", strings.Join(args, " "), ns, code, b)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("nft -j %s: %w: %s", strings.Join(args, " "), err, b)
	}
	var out []map[string]json.RawMessage
	for _, o := range doc.Nftables {
		if _, meta := o["metainfo"]; !meta {
			out = append(out, o)
		}
	}
	return out, nil
}

// segmeshSets reads table inet segmesh in ns and renders it per source,
// as the model knows it: local4/local6, and for each source in the source
// set of identity N (id_N_s4, id_N_s6) its identity's single ports (set id_N_p) in
// allow4/allow6, its ranges (id_N_r) in allow4r/allow6r, and the icmp and
// any rules of chain id_N in icmp4/icmp6 and any4/any6. Elements are
// normalized as in nftSets.
func segmeshSets(ns string) (nftSets, error) {
	objs, err := nftObjects(ns, "list", "table", "inet", "segmesh")
	if err != nil {
		return nil, err
	}
	type ident struct {
		ports, ranges []string // "PROTO LO-HI"
		icmp, any     bool
	}
	ids := map[string]*ident{}
	id := func(chain string) *ident {
		if ids[chain] == nil {
			ids[chain] = &ident{}
		}
		return ids[chain]
	}
	sets := nftSets{}
	srcs := map[string]map[string]string{} // family -> address -> chain
	for _, o := range objs {
		if raw, ok := o["rule"]; ok {
			var r struct {
				Chain string            `json:"chain"`
				Expr  []json.RawMessage `json:"expr"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, fmt.Errorf("decode rule: %w", err)
			}
			if !strings.HasPrefix(r.Chain, "id_") {
				continue
			}
			switch {
			case strings.Contains(string(raw), "echo-request"):
				id(r.Chain).icmp = true
			case len(r.Expr) == 1 && strings.Contains(string(r.Expr[0]), `"allow_in"`): // any: goto allow_in
				id(r.Chain).any = true
			}
			continue
		}
		raw, ok := o["set"]
		if !ok {
			raw, ok = o["map"]
		}
		if !ok {
			continue
		}
		var s struct {
			Name string            `json:"name"`
			Elem []json.RawMessage `json:"elem"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("decode set: %w", err)
		}
		switch {
		case strings.HasPrefix(s.Name, "id_") && (strings.HasSuffix(s.Name, "_s4") || strings.HasSuffix(s.Name, "_s6")):
			chain, family := s.Name[:len(s.Name)-3], s.Name[len(s.Name)-1:]
			if srcs[family] == nil {
				srcs[family] = map[string]string{}
			}
			for _, e := range s.Elem {
				var addr string
				if err := json.Unmarshal(e, &addr); err != nil {
					return nil, fmt.Errorf("set %s: unexpected element %s", s.Name, e)
				}
				if other, dup := srcs[family][addr]; dup && other != chain { // the same twice: a dump during a resize
					return nil, fmt.Errorf("%s is in the sources of %s and %s", addr, other, chain)
				}
				srcs[family][addr] = chain
			}
		case strings.HasPrefix(s.Name, "id_"):
			for _, e := range s.Elem {
				str, err := normElem(e)
				if err != nil {
					return nil, fmt.Errorf("set %s: %w", s.Name, err)
				}
				chain, kind := s.Name[:len(s.Name)-2], s.Name[len(s.Name)-1:]
				if kind == "p" {
					id(chain).ports = append(id(chain).ports, str)
				} else {
					id(chain).ranges = append(id(chain).ranges, str)
				}
			}
		case s.Name == "local4" || s.Name == "local6":
			elems := []string{}
			for _, e := range s.Elem {
				str, err := normElem(e)
				if err != nil {
					return nil, fmt.Errorf("set %s: %w", s.Name, err)
				}
				elems = append(elems, str)
			}
			sets[s.Name] = elems
		}
	}
	for fam, m := range srcs {
		for addr, chain := range m {
			i := id(chain)
			switch {
			case i.any:
				sets["any"+fam] = append(sets["any"+fam], addr)
				continue
			case i.icmp:
				sets["icmp"+fam] = append(sets["icmp"+fam], addr)
			}
			for _, p := range i.ports {
				sets["allow"+fam] = append(sets["allow"+fam], addr+" "+p)
			}
			for _, p := range i.ranges {
				sets["allow"+fam+"r"] = append(sets["allow"+fam+"r"], addr+" "+p)
			}
		}
	}
	for k, v := range sets {
		sort.Strings(v)
		sets[k] = slices.Compact(v) // a dump during a resize may list an element twice
	}
	return sets, nil
}

// normElem renders one set element: "ADDR" or "PROTO LO-HI".
func normElem(raw json.RawMessage) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	if m, ok := v.(map[string]any); ok {
		if inner, ok := m["elem"].(map[string]any); ok { // element with attributes
			v = inner["val"]
		}
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case map[string]any:
		parts, ok := x["concat"].([]any)
		if !ok || len(parts) != 2 {
			return "", fmt.Errorf("unexpected element %s", raw)
		}
		lo, hi, err := portRange(parts[1])
		if err != nil {
			return "", fmt.Errorf("element %s: %w", raw, err)
		}
		return fmt.Sprintf("%v %d-%d", parts[0], lo, hi), nil
	}
	return "", fmt.Errorf("unexpected element %s", raw)
}

func portRange(v any) (int, int, error) {
	switch x := v.(type) {
	case float64:
		return int(x), int(x), nil
	case map[string]any:
		r, ok := x["range"].([]any)
		if ok && len(r) == 2 {
			lo, ok1 := r[0].(float64)
			hi, ok2 := r[1].(float64)
			if ok1 && ok2 {
				return int(lo), int(hi), nil
			}
		}
	}
	return 0, 0, fmt.Errorf("bad port %v", v)
}

// finalCounter reads the packets of counter "final" of table inet segmesh.
func finalCounter(ns string) (uint64, error) {
	objs, err := nftObjects(ns, "list", "counter", "inet", "segmesh", "final")
	if err != nil {
		return 0, err
	}
	for _, o := range objs {
		if raw, ok := o["counter"]; ok {
			var c struct {
				Packets uint64 `json:"packets"`
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				return 0, err
			}
			return c.Packets, nil
		}
	}
	return 0, fmt.Errorf("no counter final in %s", ns)
}

// meshInRules returns the rules of chain mesh_in as their expression lists.
func meshInRules(ns string) ([][]map[string]json.RawMessage, error) {
	objs, err := nftObjects(ns, "list", "chain", "inet", "segmesh", "mesh_in")
	if err != nil {
		return nil, err
	}
	var out [][]map[string]json.RawMessage
	for _, o := range objs {
		if raw, ok := o["rule"]; ok {
			var r struct {
				Expr []map[string]json.RawMessage `json:"expr"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, err
			}
			out = append(out, r.Expr)
		}
	}
	return out, nil
}

// onlyToMeCounter reads the packets counted by mesh_in's
// `ip daddr != @local4 counter drop` rule (set "@local6" for IPv6).
func onlyToMeCounter(ns, localSet string) (uint64, error) {
	rules, err := meshInRules(ns)
	if err != nil {
		return 0, err
	}
	for _, r := range rules {
		isIt := false
		for _, e := range r {
			if m, ok := e["match"]; ok {
				var mt struct {
					Op    string `json:"op"`
					Right any    `json:"right"`
				}
				if json.Unmarshal(m, &mt) == nil && mt.Op == "!=" && mt.Right == localSet {
					isIt = true
				}
			}
		}
		if !isIt {
			continue
		}
		for _, e := range r {
			if c, ok := e["counter"]; ok {
				var cnt struct {
					Packets uint64 `json:"packets"`
				}
				if err := json.Unmarshal(c, &cnt); err != nil {
					return 0, err
				}
				return cnt.Packets, nil
			}
		}
	}
	return 0, fmt.Errorf("no `daddr != %s counter` rule in mesh_in of %s", localSet, ns)
}

// finalVerdict returns the verdict ("drop" or "accept") of the rule that
// references counter "final".
func finalVerdict(ns string) (string, error) {
	rules, err := meshInRules(ns)
	if err != nil {
		return "", err
	}
	for _, r := range rules {
		named := false
		for _, e := range r {
			if c, ok := e["counter"]; ok && string(c) == `"final"` {
				named = true
			}
		}
		if !named {
			continue
		}
		for _, e := range r {
			for _, v := range []string{"drop", "accept"} {
				if _, ok := e[v]; ok {
					return v, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no rule with counter final in mesh_in of %s", ns)
}

// hasTable reports whether table FAMILY NAME exists in ns.
func hasTable(ns, family, name string) (bool, error) {
	objs, err := nftObjects(ns, "list", "tables")
	if err != nil {
		return false, err
	}
	for _, o := range objs {
		if raw, ok := o["table"]; ok {
			var t struct {
				Family string `json:"family"`
				Name   string `json:"name"`
			}
			if err := json.Unmarshal(raw, &t); err == nil && t.Family == family && t.Name == name {
				return true, nil
			}
		}
	}
	return false, nil
}
