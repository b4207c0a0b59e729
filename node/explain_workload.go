package node

import (
	"errors"
	"fmt"
	"strings"

	"github.com/segmesh/segmesh/acl"
)

// declaredWorkload is one workload a node declares, with why its tags do
// not count ("" when they do).
type declaredWorkload struct {
	acl.Workload
	rejected string
}

// declaredWorkloads lists the declared workloads of this node (its
// configured ones, judged against its certificate in CA mode) and of its
// admitted peers (their records', judged by checkWorkloads), keyed by
// member key, in declaration order. Callers hold mu.
func (n *Node) declaredWorkloads() map[string][]declaredWorkload {
	out := map[string][]declaredWorkload{}
	_, rejected := n.localWorkloadVerdicts()
	self := make([]declaredWorkload, 0, len(n.cfg.Workloads))
	for _, w := range n.cfg.Workloads {
		self = append(self, declaredWorkload{Workload: acl.Workload{Name: w.Name, Tags: w.Tags}, rejected: rejected[w.Name]})
	}
	out[n.pub.String()] = self
	for i := range n.view.peers {
		p := &n.view.peers[i]
		if !p.configured || len(p.rec.Workloads) == 0 {
			continue
		}
		_, rejected := checkWorkloads(p.rec, p.cert)
		ws := make([]declaredWorkload, len(p.rec.Workloads))
		for j, w := range p.rec.Workloads {
			ws[j] = declaredWorkload{Workload: acl.Workload{Name: w.Name, Tags: w.Tags}, rejected: rejected[j]}
		}
		out[p.name] = ws
	}
	return out
}

// explainEnd is one side of an explained flow.
type explainEnd struct {
	identity acl.Member // the node, or for NODE/WORKLOAD the workload's identity
	workload string     // the workload's name; "" for the node
	note     string     // why the identity is not what was asked for ("" when it is)
}

// resolveEnd resolves q as resolve does, or as NODE/WORKLOAD: when q as a
// whole is no node (a name or key may itself hold "/"), the part after its
// last "/" names a workload declared by the node before it. The identity
// of a workload is its node's tags and its own; a rejected workload's is
// its node's, with a note saying why. A workload the node does not declare
// is an error listing the ones it does.
func resolveEnd(members []acl.Member, declared map[string][]declaredWorkload, q string) (explainEnd, error) {
	m, err := resolve(members, q)
	if err == nil {
		return explainEnd{identity: m}, nil
	}
	cut := strings.LastIndex(q, "/")
	if cut < 0 || !errors.Is(err, errNoSuchNode) {
		return explainEnd{}, err
	}
	nodeQ, name := q[:cut], q[cut+1:]
	if m, err = resolve(members, nodeQ); err != nil {
		return explainEnd{}, fmt.Errorf("%q: %w", q, err)
	}
	ws := declared[m.Key]
	for _, w := range ws {
		if w.Name != name {
			continue
		}
		if w.rejected != "" {
			return explainEnd{identity: nodeIdentity(m), workload: name, note: fmt.Sprintf(
				"workload %s of %s is rejected (%s): explained with the node's identity", name, m.Name, w.rejected)}, nil
		}
		id := nodeIdentity(m)
		id.Tags = acl.WorkloadTags(m.Tags, w.Workload)
		return explainEnd{identity: id, workload: name}, nil
	}
	return explainEnd{}, fmt.Errorf("node %s has no workload %q (%s)", m.Name, name, workloadList(ws))
}

// nodeIdentity is m without its workloads: the identity of its processes
// outside every workload.
func nodeIdentity(m acl.Member) acl.Member {
	m.Workloads = nil
	return m
}

// workloadList says which workloads a node declares, e.g.
// "its workloads: api, web (rejected)".
func workloadList(ws []declaredWorkload) string {
	if len(ws) == 0 {
		return "it declares no workloads"
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Name
		if w.rejected != "" {
			names[i] += " (rejected)"
		}
	}
	return "its workloads: " + strings.Join(names, ", ")
}
