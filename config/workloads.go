package config

import (
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cast"
)

// MaxWorkloads is the most workloads one node may declare.
const MaxWorkloads = 32

// Workload is one entry of the workloads key: processes of this node, named
// by a systemd unit or a cgroup v2 path, that carry their own tags (added to
// the node's tags). Exactly one of Unit and Cgroup is set.
type Workload struct {
	Name   string            // [a-z0-9-]{1,32}, unique on the node
	Unit   string            // systemd unit, e.g. api.service
	Cgroup string            // cgroup v2 path below the cgroup2 mount, e.g. /system.slice/api.service
	Tags   map[string]string // keys lower-case; no key of the node's tags
}

// Target is the unit or the cgroup path, whichever is set.
func (w Workload) Target() string {
	if w.Unit != "" {
		return w.Unit
	}
	return w.Cgroup
}

var (
	workloadNameRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	// A systemd unit name that has a cgroup of processes: [prefix][@instance].service|scope|slice.
	unitRE = regexp.MustCompile(`^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|scope|slice)$`)
)

// workloadKeys are the keys of one workloads entry.
var workloadKeys = map[string]bool{"name": true, "unit": true, "cgroup": true, "tags": true}

// problem is one error found in a workload list. Index -1 is about the list
// as a whole; Sub is the key inside the entry ("" = the entry itself).
type problem struct {
	Index int
	Sub   string
	Err   error
}

// key is the config key of a problem: workloads, workloads[2] or
// workloads[2].unit (the index counts from 0, in file order).
func (p problem) key() string {
	switch {
	case p.Index < 0:
		return "workloads"
	case p.Sub == "":
		return fmt.Sprintf("workloads[%d]", p.Index)
	default:
		return fmt.Sprintf("workloads[%d].%s", p.Index, p.Sub)
	}
}

// checkWorkloads returns every problem of a workload list given the node's
// own tags: the count, each name, unit or cgroup and tag, duplicate names,
// tag keys that redefine a node tag.
func checkWorkloads(nodeTags map[string]string, ws []Workload) []problem {
	var out []problem
	add := func(i int, sub string, format string, args ...any) {
		out = append(out, problem{Index: i, Sub: sub, Err: fmt.Errorf(format, args...)})
	}
	if len(ws) > MaxWorkloads {
		add(-1, "", "%d workloads: at most %d per node", len(ws), MaxWorkloads)
	}
	first := map[string]int{}
	for i, w := range ws {
		switch {
		case !workloadNameRE.MatchString(w.Name):
			add(i, "name", "%q: want 1-32 characters of [a-z0-9-]", w.Name)
		default:
			if j, dup := first[w.Name]; dup {
				add(i, "name", "%q is already the name of workloads[%d]; names are unique on the node", w.Name, j)
			} else {
				first[w.Name] = i
			}
		}
		switch {
		case w.Unit != "" && w.Cgroup != "":
			add(i, "", "workload %q sets both unit and cgroup; want exactly one", w.Name)
		case w.Unit == "" && w.Cgroup == "":
			add(i, "", "workload %q sets neither unit nor cgroup; want exactly one", w.Name)
		case w.Unit != "":
			if err := checkUnit(w.Unit); err != nil {
				add(i, "unit", "%w", err)
			}
		default:
			if err := checkCgroup(w.Cgroup); err != nil {
				add(i, "cgroup", "%w", err)
			}
		}
		keys := make([]string, 0, len(w.Tags))
		for k := range w.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			val := w.Tags[k]
			switch {
			case !tagRE.MatchString(k) || !tagRE.MatchString(val) || k != strings.ToLower(k):
				add(i, "tags."+k, "tag keys and values are 1-63 of [A-Za-z0-9_./-], got %q: %q", k, val)
			default:
				if nv, ok := nodeTags[k]; ok {
					add(i, "tags."+k, "workload %q may not redefine the node tag %s (tags.%s: %s); workload tags are added to the node's", w.Name, k, k, nv)
				}
			}
		}
	}
	return out
}

// checkUnit accepts a systemd unit name whose processes have a cgroup:
// NAME.service, NAME.scope or NAME.slice (an instance NAME@I.service too).
func checkUnit(u string) error {
	switch {
	case strings.Contains(u, "/"):
		return fmt.Errorf("%q: a unit name has no '/' (a cgroup path goes in cgroup)", u)
	case len(u) > 255 || !unitRE.MatchString(u):
		return fmt.Errorf("%q: want a systemd unit name ending in .service, .scope or .slice", u)
	case u == "-.slice":
		return fmt.Errorf("%q: the root slice holds every process; name a unit below it", u)
	case strings.HasSuffix(strings.TrimSuffix(u, path.Ext(u)), "@"):
		return fmt.Errorf("%q: a template unit runs no process; name an instance (NAME@INSTANCE.service)", u)
	}
	return nil
}

// checkCgroup accepts an absolute, clean cgroup v2 path below the cgroup2
// mount (/system.slice/api.service), not the root cgroup.
func checkCgroup(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q: want an absolute path below the cgroup2 mount, e.g. /system.slice/api.service", p)
	case p == "/":
		return fmt.Errorf("%q: the root cgroup holds every process; name a cgroup below it", p)
	case strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%q: control characters in a cgroup path", p)
	case path.Clean(p) != p || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return fmt.Errorf("%q: want a clean path (no .., no . or empty elements, no trailing /)", p)
	case p == "/sys/fs/cgroup" || strings.HasPrefix(p, "/sys/fs/cgroup/"):
		return fmt.Errorf("%q: the path is below the cgroup2 mount; drop the /sys/fs/cgroup prefix (%s)", p, strings.TrimPrefix(p, "/sys/fs/cgroup"))
	}
	return nil
}

// ValidateWorkloads checks a workload list against the node's tags exactly as
// Load does. Each error names the key (workloads[2].unit).
func ValidateWorkloads(nodeTags map[string]string, ws []Workload) error {
	var errs []error
	for _, p := range checkWorkloads(nodeTags, ws) {
		errs = append(errs, fmt.Errorf("%s: %w", p.key(), p.Err))
	}
	return errors.Join(errs...)
}

// ParseWorkload parses the --workload flag of init: NAME:UNIT:k=v,k=v, where
// UNIT is a cgroup path when it starts with '/', and the tags part may be
// left out (NAME:UNIT). The result is not validated (ValidateWorkloads).
func ParseWorkload(s string) (Workload, error) {
	name, rest, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || rest == "" {
		return Workload{}, fmt.Errorf("%q: want NAME:UNIT:k=v,... (UNIT a systemd unit or a cgroup path starting with /)", s)
	}
	target, tags := rest, ""
	// The tags are after the last ':' when that part is empty or holds a
	// k=v (a unit name may itself contain ':').
	if i := strings.LastIndex(rest, ":"); i >= 0 && (rest[i+1:] == "" || strings.Contains(rest[i+1:], "=")) {
		target, tags = rest[:i], rest[i+1:]
	}
	w := Workload{Name: strings.TrimSpace(name)}
	if target = strings.TrimSpace(target); strings.HasPrefix(target, "/") {
		w.Cgroup = target
	} else {
		w.Unit = target
	}
	m, err := ParseTags(tags)
	if err != nil {
		return Workload{}, fmt.Errorf("%q: %w", s, err)
	}
	w.Tags = m
	return w, nil
}

// workloads reads the workloads key: a list of maps, never from the
// environment (SEGMESH_WORKLOADS is an error: a list of maps has no
// one-line form).
func (x *validator) workloads(nodeTags map[string]string) []Workload {
	if _, set := os.LookupEnv("SEGMESH_WORKLOADS"); set {
		x.fail("workloads", "cannot be set from the environment (SEGMESH_WORKLOADS); declare workloads in the file")
		return nil
	}
	raw := x.v.Get("workloads")
	if raw == nil {
		return nil
	}
	list, err := cast.ToSliceE(raw)
	if _, isStr := raw.(string); err != nil || isStr {
		x.fail("workloads", "want a list of {name, unit or cgroup, tags}, got %v", raw)
		return nil
	}
	var ws []Workload
	ok := true
	notMap := map[int]bool{} // reported already; kept as a placeholder so indexes stay the file's
	for i, item := range list {
		m, err := cast.ToStringMapE(item)
		if err != nil || item == nil {
			x.fail(problem{Index: i}.key(), "want a map with name, unit or cgroup, and tags; got %v", item)
			ok = false
			notMap[i] = true
			ws = append(ws, Workload{})
			continue
		}
		var w Workload
		unknown := make([]string, 0)
		for k := range m {
			if !workloadKeys[strings.ToLower(k)] {
				unknown = append(unknown, k)
			}
		}
		sort.Strings(unknown)
		for _, k := range unknown {
			x.fail(problem{Index: i, Sub: k}.key(), "unknown key (want name, unit or cgroup, tags)")
			ok = false
		}
		str := func(sub string) string {
			v, present := m[sub]
			if !present || v == nil {
				return ""
			}
			s, err := cast.ToStringE(v)
			if err != nil {
				x.fail(problem{Index: i, Sub: sub}.key(), "want a string, got %v", v)
				ok = false
			}
			return strings.TrimSpace(s)
		}
		w.Name, w.Unit, w.Cgroup = str("name"), str("unit"), str("cgroup")
		w.Tags = map[string]string{}
		if t, present := m["tags"]; present && t != nil {
			tm, err := cast.ToStringMapStringE(t)
			if _, isStr := t.(string); err != nil || isStr {
				x.fail(problem{Index: i, Sub: "tags"}.key(), "want a map of strings, e.g. {svc: api}; got %v", t)
				ok = false
			}
			for k, val := range tm {
				w.Tags[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
			}
		}
		ws = append(ws, w)
	}
	for _, p := range checkWorkloads(nodeTags, ws) {
		if p.Index < 0 || !notMap[p.Index] {
			x.fail(p.key(), "%w", p.Err)
		}
	}
	if !ok {
		return nil
	}
	return ws
}
