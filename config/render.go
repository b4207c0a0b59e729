package config

import (
	"fmt"
	"sort"
	"strings"
)

// InitValues are what `segmesh init` puts into a new config file.
type InitValues struct {
	Name           string
	Interface      string
	PrivateKeyFile string
	SecretFile     string
	Advertise      string
	Join           []string
	Tags           map[string]string
	Workloads      []Workload
}

// Render returns a commented YAML config listing every key, with the given
// values set and the other keys at their defaults.
func Render(iv InitValues) string {
	set := map[string]string{
		"name":               quote(iv.Name),
		"interface":          quote(iv.Interface),
		"private_key_file":   quote(iv.PrivateKeyFile),
		"gossip.secret_file": quote(iv.SecretFile),
		"gossip.advertise":   quote(iv.Advertise),
	}
	var b strings.Builder
	b.WriteString("# segmesh configuration. Every key may be overridden by SEGMESH_<KEY>\n")
	b.WriteString("# (nested keys joined by _, e.g. SEGMESH_GOSSIP_ADVERTISE), except workloads.\n")
	section := ""
	for _, k := range Keys {
		top, sub, nested := strings.Cut(k.Key, ".")
		indent := ""
		if nested {
			if section != top {
				fmt.Fprintf(&b, "%s:\n", top)
				section = top
			}
			indent = "  "
		} else {
			section = ""
			sub = top
		}
		fmt.Fprintf(&b, "%s# %s\n", indent, k.Doc)
		switch k.Key {
		case "gossip.join":
			fmt.Fprintf(&b, "%s%s: [%s]\n", indent, sub, joinQuoted(iv.Join))
		case "tags":
			writeTags(&b, iv.Tags)
		case "workloads":
			writeWorkloads(&b, iv.Workloads)
		default:
			val, ok := set[k.Key]
			if !ok || val == `""` && k.Default != "" {
				val = fmt.Sprint(k.Default)
				if s, isStr := k.Default.(string); isStr {
					val = quote(s)
				}
			}
			fmt.Fprintf(&b, "%s%s: %s\n", indent, sub, val)
		}
	}
	return b.String()
}

func writeTags(b *strings.Builder, tags map[string]string) {
	if len(tags) == 0 {
		b.WriteString("tags: {}\n")
		return
	}
	b.WriteString("tags:\n")
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(b, "  %s: %s\n", k, quote(tags[k]))
	}
}

func writeWorkloads(b *strings.Builder, ws []Workload) {
	if len(ws) == 0 {
		b.WriteString("# e.g.\n")
		b.WriteString("# workloads:\n")
		b.WriteString("#   - name: api\n")
		b.WriteString("#     unit: api.service        # or: cgroup: /system.slice/api.service\n")
		b.WriteString("#     tags: {svc: api}\n")
		b.WriteString("workloads: []\n")
		return
	}
	b.WriteString("workloads:\n")
	for _, w := range ws {
		fmt.Fprintf(b, "  - name: %s\n", quote(w.Name))
		if w.Unit != "" {
			fmt.Fprintf(b, "    unit: %s\n", quote(w.Unit))
		}
		if w.Cgroup != "" {
			fmt.Fprintf(b, "    cgroup: %s\n", quote(w.Cgroup))
		}
		var t strings.Builder
		writeTags(&t, w.Tags)
		for _, line := range strings.SplitAfter(t.String(), "\n") {
			if line != "" {
				b.WriteString("    " + line)
			}
		}
	}
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func joinQuoted(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = quote(s)
	}
	return strings.Join(q, ", ")
}
