// Package cgrouptest provides a fake cgroup.Source for tests that cannot
// create cgroups: the test sets the statuses the consumer sees.
package cgrouptest

import (
	"slices"
	"sync"

	"github.com/segmesh/segmesh/cgroup"
)

// Fake is a cgroup.Source whose statuses the test sets. Update validates
// like the real Watcher, records the list and makes every newly declared
// workload Missing (Set makes them Active).
type Fake struct {
	mu       sync.Mutex
	decls    []cgroup.Workload
	statuses []cgroup.Status
	updates  int
	closed   bool
	changes  chan struct{}
}

var _ cgroup.Source = (*Fake)(nil)

// New returns a Fake following decls, all Missing.
func New(decls []cgroup.Workload) *Fake {
	f := &Fake{changes: make(chan struct{}, 1)}
	f.mu.Lock()
	f.declare(decls)
	f.mu.Unlock()
	return f
}

func (f *Fake) declare(decls []cgroup.Workload) {
	next := make([]cgroup.Status, 0, len(decls))
	for _, d := range decls {
		st := cgroup.Status{Name: d.Name, Path: d.Path}
		if d.Path != "" {
			st.Level = cgroup.Level(d.Path)
		}
		if i := slices.IndexFunc(f.statuses, func(s cgroup.Status) bool { return s.Name == d.Name }); i >= 0 {
			st = f.statuses[i]
		}
		next = append(next, st)
	}
	f.decls = slices.Clone(decls)
	f.statuses = next
}

// Set replaces the status of the declared workload st.Name and notifies
// Changes; it reports false when no such workload is declared.
func (f *Fake) Set(st cgroup.Status) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.statuses, func(s cgroup.Status) bool { return s.Name == st.Name })
	if i < 0 {
		return false
	}
	if f.statuses[i] != st {
		f.statuses[i] = st
		f.notify()
	}
	return true
}

// Activate makes workload name Active at cgroup path cg with id.
func (f *Fake) Activate(name, cg string, id uint64) bool {
	return f.Set(cgroup.Status{Name: name, State: cgroup.Active, Path: cg, ID: id, Level: cgroup.Level(cg)})
}

// Deactivate makes workload name Missing, keeping its path.
func (f *Fake) Deactivate(name string) bool {
	f.mu.Lock()
	i := slices.IndexFunc(f.statuses, func(s cgroup.Status) bool { return s.Name == name })
	if i < 0 {
		f.mu.Unlock()
		return false
	}
	st := f.statuses[i]
	f.mu.Unlock()
	st.State, st.ID = cgroup.Missing, 0
	return f.Set(st)
}

func (f *Fake) notify() {
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

// Statuses implements cgroup.Source.
func (f *Fake) Statuses() []cgroup.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.statuses)
}

// Changes implements cgroup.Source.
func (f *Fake) Changes() <-chan struct{} { return f.changes }

// Update implements cgroup.Source.
func (f *Fake) Update(decls []cgroup.Workload) error {
	if err := cgroup.Validate(decls); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	before := slices.Clone(f.statuses)
	f.declare(decls)
	f.updates++
	if !slices.Equal(before, f.statuses) {
		f.notify()
	}
	return nil
}

// Declared returns the last declared workload list and how many times
// Update was called.
func (f *Fake) Declared() ([]cgroup.Workload, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.decls), f.updates
}

// Close implements cgroup.Source.
func (f *Fake) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// Closed reports whether Close was called.
func (f *Fake) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}
