package node

import (
	"fmt"
	"regexp"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/gossip"
)

// MaxWorkloads is the most workloads a node may declare (DESIGN.md
// "Workloads").
const MaxWorkloads = 32

var (
	workloadNameRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	workloadTagRE  = regexp.MustCompile(`^[A-Za-z0-9_./-]{1,63}$`)
)

// checkWorkloads sorts a peer record's workloads into those whose tags
// count and those rejected, with the reason: a bad or repeated name, a bad
// tag, a tag key the node's tags already define, or more than
// MaxWorkloads (the ones beyond). An older node never sends any. In CA
// mode (certified) a workload's tags count only where the node's
// certificate allows them; certificates do not carry workload tags yet, so
// every workload of a certified record is rejected and its processes have
// the node's identity.
//
// rejected is keyed by the workload's index in rec.Workloads.
func checkWorkloads(rec gossip.Record, certified bool) (ok []acl.Workload, rejected map[int]string) {
	seen := map[string]bool{}
	for i, w := range rec.Workloads {
		why := ""
		switch {
		case !workloadNameRE.MatchString(w.Name):
			why = fmt.Sprintf("name %q is not 1-32 of [a-z0-9-]", w.Name)
		case seen[w.Name]:
			why = "name declared twice"
		case i >= MaxWorkloads:
			why = fmt.Sprintf("more than %d workloads", MaxWorkloads)
		case certified:
			why = "the node's certificate allows no workload tags"
		}
		for k, v := range w.Tags {
			if why != "" {
				break
			}
			if !workloadTagRE.MatchString(k) || !workloadTagRE.MatchString(v) {
				why = fmt.Sprintf("bad tag %q: %q", k, v)
			} else if _, set := rec.Tags[k]; set {
				why = fmt.Sprintf("tag %s redefines a node tag", k)
			}
		}
		seen[w.Name] = true
		if why != "" {
			if rejected == nil {
				rejected = map[int]string{}
			}
			rejected[i] = why
			continue
		}
		ok = append(ok, acl.Workload{Name: w.Name, Tags: w.Tags})
	}
	return ok, rejected
}

// peerWorkloads describes a peer's declared workloads for status: active
// when their tags count, rejected with the reason otherwise; segments (of
// the node's tags and the workload's) only while the peer is admitted.
// Callers hold mu.
func (n *Node) peerWorkloads(rec gossip.Record, certified, admitted bool) []api.Workload {
	_, rejected := checkWorkloads(rec, certified)
	out := make([]api.Workload, 0, len(rec.Workloads))
	for i, w := range rec.Workloads {
		aw := api.Workload{Name: w.Name, Tags: nonNilTags(w.Tags), Segments: []string{}, State: api.WorkloadActive}
		if why, bad := rejected[i]; bad {
			aw.State, aw.Reason = api.WorkloadRejected, why
		} else if admitted {
			aw.Segments = n.segmentsOf(acl.WorkloadTags(rec.Tags, acl.Workload{Name: w.Name, Tags: w.Tags}))
		}
		out = append(out, aw)
	}
	return out
}
