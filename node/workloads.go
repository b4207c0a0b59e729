package node

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/config"
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
// tag, a tag key the node's tags already define, more than MaxWorkloads
// (the ones beyond), or, in CA mode (cert is the peer's verified
// certificate; nil in trust: open), a tag of its own that the certificate
// does not allow (the first by key is named). An older node never sends
// any. A rejected workload's processes have the node's identity.
//
// rejected is keyed by the workload's index in rec.Workloads.
func checkWorkloads(rec gossip.Record, cert *ca.Signed) (ok []acl.Workload, rejected map[int]string) {
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
		default:
			why = workloadTagProblem(rec.Tags, w.Tags, cert)
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

// workloadTagProblem is why a workload's own tags do not count ("" when
// they do): a bad tag, one that redefines a node tag, or, with a
// certificate (CA mode), one it does not allow; the first such tag by key
// is named. The common case (no problem) does not allocate.
func workloadTagProblem(nodeTags, tags map[string]string, cert *ca.Signed) string {
	bad := false
	for k, v := range tags {
		if bad = tagProblem(nodeTags, k, v, cert) != ""; bad {
			break
		}
	}
	if !bad {
		return ""
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if why := tagProblem(nodeTags, k, tags[k], cert); why != "" {
			return why
		}
	}
	return ""
}

// tagProblem is why one workload tag k=v does not count ("" when it does).
func tagProblem(nodeTags map[string]string, k, v string, cert *ca.Signed) string {
	switch _, set := nodeTags[k]; {
	case !workloadTagRE.MatchString(k) || !workloadTagRE.MatchString(v):
		return fmt.Sprintf("bad tag %q: %q", k, v)
	case set:
		return fmt.Sprintf("tag %s redefines a node tag", k)
	case cert != nil && !cert.AllowsWorkloadTag(k, v):
		return fmt.Sprintf("tag %s=%s not allowed by the node's certificate", k, v)
	}
	return ""
}

// judgeWorkloads applies checkWorkloads's rules to this node's own
// workloads: nodeTags are the node's tags (in CA mode its certificate's),
// ws the configured workloads (n.cfg.Workloads), cert this node's
// certificate (n.trust.cert; nil in trust: open). ok lists, in config
// order, the workloads whose tags count (an acl.Workload sharing ws's tag
// maps: do not modify them); rejected maps the name of every other
// workload to the reason, e.g. "tag svc=web not allowed by the node's
// certificate". A rejected workload's processes have the node's identity;
// status shows it as "rejected" with the reason. Config validation already
// refuses bad names, tags and counts, so in trust: open nothing is
// rejected unless the config bypassed it; in CA mode a workload is rejected
// when the certificate does not allow one of its own tags, or when one of
// its tag keys is a tag of the certificate. Pure: safe without mu.
func judgeWorkloads(nodeTags map[string]string, ws []config.Workload, cert *ca.Signed) (ok []acl.Workload, rejected map[string]string) {
	rec := gossip.Record{Tags: nodeTags, Workloads: make([]gossip.Workload, len(ws))}
	for i, w := range ws {
		rec.Workloads[i] = gossip.Workload{Name: w.Name, Tags: w.Tags}
	}
	ok, byIndex := checkWorkloads(rec, cert)
	for i, why := range byIndex {
		if rejected == nil {
			rejected = map[string]string{}
		}
		if _, first := rejected[ws[i].Name]; !first {
			rejected[ws[i].Name] = why
		}
	}
	return ok, rejected
}

// localWorkloadVerdicts is judgeWorkloads for this node now: its tags
// (the certificate's in CA mode), its configured workloads and its
// certificate. Callers hold mu or own n.
func (n *Node) localWorkloadVerdicts() (ok []acl.Workload, rejected map[string]string) {
	var cert *ca.Signed
	if n.trust != nil {
		cert = n.trust.cert
	}
	return judgeWorkloads(n.cfg.Tags, n.cfg.Workloads, cert)
}

// peerWorkloads describes a peer's declared workloads for status (cert is
// the peer's verified certificate, nil in trust: open): active when their
// tags count, rejected with the reason otherwise; segments (of
// the node's tags and the workload's) only while the peer is admitted.
// Callers hold mu.
func (n *Node) peerWorkloads(rec gossip.Record, cert *ca.Signed, admitted bool) []api.Workload {
	_, rejected := checkWorkloads(rec, cert)
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
