package node

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/cgroup"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/gossip"
)

// cgroupFollow forwards a cgroup Source's changes to the sync loop; the
// node owns it (closeCgroups stops it).
type cgroupFollow struct {
	src  cgroup.Source
	stop chan struct{}
	done chan struct{}
}

func cgroupDecls(ws []config.Workload) []cgroup.Workload {
	out := make([]cgroup.Workload, len(ws))
	for i, w := range ws {
		out[i] = cgroup.Workload{Name: w.Name, Unit: w.Unit, Path: w.Cgroup}
	}
	return out
}

// followCgroups starts following the configured workloads' cgroups, or
// replaces the declared list of the running source (reload). Without
// workloads nothing runs. A host without a cgroup v2 mount cannot place
// workloads: the error names the key. Callers own n or hold no lock.
func (n *Node) followCgroups(ws []config.Workload, file string) error {
	if n.cg != nil {
		if err := n.cg.src.Update(cgroupDecls(ws)); err != nil {
			return &config.Error{File: file, Key: "workloads", Err: err}
		}
		return nil
	}
	if len(ws) == 0 {
		return nil
	}
	src, err := n.deps.OpenCgroups(cgroupDecls(ws), n.log.With("sub", "cgroup"))
	if err != nil {
		return &config.Error{File: file, Key: "workloads", Err: fmt.Errorf("follow the workloads' cgroups: %w", err)}
	}
	f := &cgroupFollow{src: src, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			select {
			case <-src.Changes():
				n.kick()
			case <-f.stop:
				return
			}
		}
	}()
	n.mu.Lock()
	n.cg = f
	n.mu.Unlock()
	return nil
}

// closeCgroups stops following cgroups.
func (n *Node) closeCgroups() error {
	n.mu.Lock()
	f := n.cg
	n.mu.Unlock()
	if f == nil {
		return nil
	}
	close(f.stop)
	<-f.done
	return f.src.Close()
}

// cgroupStatuses returns the workloads' cgroups now (nil without
// workloads). Callers hold mu.
func (n *Node) cgroupStatuses() []cgroup.Status {
	if n.cg == nil {
		return nil
	}
	return n.cg.src.Statuses()
}

// recordWorkloads is what this node's record says of its workloads.
func recordWorkloads(ws []config.Workload) []gossip.Workload {
	if len(ws) == 0 {
		return nil
	}
	out := make([]gossip.Workload, len(ws))
	for i, w := range ws {
		out[i] = gossip.Workload{Name: w.Name, Tags: maps.Clone(w.Tags)}
	}
	return out
}

// localWorkloads judges this node's own workloads as every receiver
// judges them in its record: the accepted ones, and the reasons of the
// rejected ones by name. Callers hold mu or own n.
func (n *Node) localWorkloads() ([]acl.Workload, map[string]string) {
	return n.localWorkloadVerdicts()
}

// selfWorkloads describes this node's workloads for status: rejected with
// the reason (CA mode), else active or missing as their cgroups are.
// Callers hold mu.
func (n *Node) selfWorkloads() []api.Workload {
	_, rejected := n.localWorkloads()
	byName := map[string]cgroup.Status{}
	for _, st := range n.cgroupStatuses() {
		byName[st.Name] = st
	}
	out := make([]api.Workload, 0, len(n.cfg.Workloads))
	for _, w := range n.cfg.Workloads {
		aw := api.Workload{Name: w.Name, Tags: nonNilTags(w.Tags), Segments: []string{}, State: api.WorkloadMissing}
		st := byName[w.Name]
		aw.Cgroup = st.Path
		switch why, bad := rejected[w.Name]; {
		case bad:
			aw.State, aw.Reason = api.WorkloadRejected, why
		case st.State == cgroup.Active:
			aw.State = api.WorkloadActive
			if pid, foreign := n.foreignWorkload(w.Name, st.Path); foreign {
				aw.State, aw.Reason = api.WorkloadRejected, fmt.Sprintf(
					"process %d is in another network namespace (a container network): its traffic cannot be matched by cgroup here; use host networking", pid)
			}
		default:
			aw.Reason = "no cgroup " + w.Target() + " (not running)"
		}
		if aw.State != api.WorkloadRejected {
			aw.Segments = n.segmentsOf(acl.WorkloadTags(n.cfg.Tags, acl.Workload{Name: w.Name, Tags: w.Tags}))
		}
		out = append(out, aw)
	}
	return out
}

// foreignWorkload checks an active workload's cgroup for processes in
// another network namespace and warns once per workload. Callers hold mu.
func (n *Node) foreignWorkload(name, path string) (int, bool) {
	mount, err := cgroup.Mount()
	if err != nil {
		return 0, false
	}
	pid, foreign := foreignNetns(filepath.Join(mount, path))
	if foreign && !n.netnsWarned[name] {
		if n.netnsWarned == nil {
			n.netnsWarned = map[string]bool{}
		}
		n.netnsWarned[name] = true
		n.log.Warn("workload has processes in another network namespace; socket cgroupv2 cannot match them (refused: use host networking)",
			"workload", name, "cgroup", path, "pid", pid)
	}
	return pid, foreign
}

// egressInputs is what the egress part of the table is computed from.
type egressInputs struct {
	in      compileInputs
	cgroups []cgroup.Status
}

func (a egressInputs) same(b egressInputs) bool {
	return a.in.same(b.in) && slices.Equal(a.cgroups, b.cgroups)
}

// desiredEgress compiles the egress of this node: its identity and its
// accepted workloads' (with their active cgroups) towards the admitted
// peers. Callers hold mu or own n.
func (n *Node) desiredEgress(e egressInputs) nft.Egress {
	if n.egressIDs == nil {
		n.egressIDs = acl.NewIdentityAllocator()
	}
	eg := n.egressIDs.CompileEgress(e.in.pol, e.in.self, e.in.peers)
	cgs := map[string][]nft.Cgroup{}
	for _, st := range e.cgroups {
		if st.State == cgroup.Active && st.ID != 0 && st.Level >= 1 {
			cgs[st.Name] = []nft.Cgroup{{ID: st.ID, Level: st.Level}}
		}
	}
	audit := e.in.pol != nil && e.in.pol.Mode == acl.ModeAudit
	return nft.FromACL(eg, cgs, audit)
}

// openCgroupSource is the real Deps.OpenCgroups: a Watcher resolving units
// through systemd's D-Bus API when it answers (within 2 s), else by
// searching the tree.
func openCgroupSource(decls []cgroup.Workload, log *slog.Logger) (cgroup.Source, error) {
	if err := checkKernel(); err != nil {
		return nil, err
	}
	cfg := cgroup.Config{Log: log}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	sd, err := cgroup.NewSystemd(ctx)
	cancel()
	if err == nil {
		cfg.Units = sd
	} else {
		log.Info("systemd D-Bus not available; units are found by searching the cgroup tree", "err", err)
	}
	w, err := cgroup.NewWatcher(cfg, decls)
	if err != nil {
		if sd != nil {
			_ = sd.Close()
		}
		return nil, err
	}
	return &systemdWatcher{Watcher: w, sd: sd}, nil
}

// systemdWatcher closes the D-Bus connection with the watcher.
type systemdWatcher struct {
	*cgroup.Watcher
	sd *cgroup.Systemd
}

func (s *systemdWatcher) Close() error {
	err := s.Watcher.Close()
	if s.sd != nil {
		_ = s.sd.Close()
	}
	return err
}
