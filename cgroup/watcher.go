package cgroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Workload is a declared workload: a systemd unit or a cgroup path.
type Workload struct {
	Name string
	Unit string // systemd unit name, like api.service; or
	Path string // cgroup path relative to the cgroup2 mount, like /system.slice/api.service
}

// State is whether a workload's cgroup exists.
type State uint8

const (
	Missing State = iota // no cgroup (yet): the unit is not running, the path does not exist
	Active               // the cgroup exists; Status.ID is valid
)

func (s State) String() string {
	if s == Active {
		return "active"
	}
	return "missing"
}

// Status is the current state of one declared workload.
type Status struct {
	Name  string
	State State
	Path  string // cgroup path relative to the mount; "" for a unit never found
	ID    uint64 // cgroup id (ID), 0 unless Active
	Level int    // Level(Path): the level for socket cgroupv2 matching
}

// Source follows the cgroups of declared workloads; the daemon consumes
// it (Watcher is the real one, cgrouptest.Fake the fake).
type Source interface {
	// Statuses returns the state of each declared workload, in declaration
	// order.
	Statuses() []Status
	// Changes receives a value (coalesced: one pending at most) after
	// Statuses changed; read Statuses again on it.
	Changes() <-chan struct{}
	// Update replaces the declared workloads (a config reload); an invalid
	// list is refused and the previous one kept.
	Update(decls []Workload) error
	// Close stops following.
	Close() error
}

// Config configures a Watcher.
type Config struct {
	Mount  string        // the cgroup2 mount; "" finds it with Mount
	Units  Units         // resolves units; nil searches the tree (FindUnit)
	Rescan time.Duration // safety-net rescan interval; 0 is 500 ms
	Log    *slog.Logger  // nil discards
}

// Watcher is a Source that rescans on inotify events on the directories
// holding declared cgroups, and every Rescan interval as a safety net.
type Watcher struct {
	mount  string
	units  Units
	log    *slog.Logger
	rescan time.Duration

	changes chan struct{}
	kick    chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	inotify *os.File
	ifd     int

	mu       sync.Mutex
	closed   bool
	decls    []Workload
	statuses []Status
	unitPath map[string]string // unit -> last resolved cgroup path
	watches  map[string]int32  // watched directory -> watch descriptor
	noWatch  bool              // tests: rely on the rescan alone
}

var _ Source = (*Watcher)(nil)

// NewWatcher starts following decls; Statuses is valid on return. Close
// stops its goroutines.
func NewWatcher(cfg Config, decls []Workload) (*Watcher, error) {
	if err := Validate(decls); err != nil {
		return nil, err
	}
	mount := cfg.Mount
	if mount == "" {
		m, err := Mount()
		if err != nil {
			return nil, err
		}
		mount = m
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rescan := cfg.Rescan
	if rescan <= 0 {
		rescan = 500 * time.Millisecond
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &Watcher{
		mount: mount, units: cfg.Units, log: log, rescan: rescan,
		changes:  make(chan struct{}, 1),
		kick:     make(chan struct{}, 1),
		inotify:  os.NewFile(uintptr(fd), "inotify"), // non-blocking: Close ends a Read
		ifd:      fd,
		decls:    slices.Clone(decls),
		unitPath: map[string]string{},
		watches:  map[string]int32{},
	}
	w.mu.Lock()
	w.scanLocked()
	w.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(2)
	go w.readEvents()
	go w.loop(ctx)
	return w, nil
}

// Validate checks a workload list: names unique and non-empty, each with
// either a unit or a clean absolute cgroup path.
func Validate(decls []Workload) error {
	seen := map[string]bool{}
	for _, d := range decls {
		if d.Name == "" {
			return errors.New("workload without a name")
		}
		if seen[d.Name] {
			return fmt.Errorf("workload %q declared twice", d.Name)
		}
		seen[d.Name] = true
		switch {
		case (d.Unit == "") == (d.Path == ""):
			return fmt.Errorf("workload %q: want exactly one of unit and cgroup path", d.Name)
		case d.Path != "":
			if err := checkPath(d.Path); err != nil {
				return fmt.Errorf("workload %q: %w", d.Name, err)
			}
		default:
			if d.Unit == "." || d.Unit == ".." || filepath.Base(d.Unit) != d.Unit {
				return fmt.Errorf("workload %q: invalid unit name %q", d.Name, d.Unit)
			}
		}
	}
	return nil
}

// Statuses implements Source.
func (w *Watcher) Statuses() []Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.statuses)
}

// Changes implements Source.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Update implements Source.
func (w *Watcher) Update(decls []Workload) error {
	if err := Validate(decls); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("cgroup watcher closed")
	}
	w.decls = slices.Clone(decls)
	w.scanLocked()
	return nil
}

// Close implements Source.
func (w *Watcher) Close() error {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		w.cancel()
		_ = w.inotify.Close() // ends readEvents' Read
		w.wg.Wait()
	})
	return nil
}

// loop rescans on inotify events and periodically, until ctx ends.
func (w *Watcher) loop(ctx context.Context) {
	defer w.wg.Done()
	t := time.NewTicker(w.rescan)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
		w.mu.Lock()
		if !w.closed {
			w.scanLocked()
		}
		w.mu.Unlock()
	}
}

// readEvents turns inotify events into kicks of loop; the contents do not
// matter, every event means "rescan".
func (w *Watcher) readEvents() {
	defer w.wg.Done()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		if _, err := w.inotify.Read(buf); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				w.log.Warn("cgroup watcher: inotify read failed, rescanning periodically only", "err", err)
			}
			return
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// scanLocked recomputes every status, notifies a change and re-aims the
// inotify watches. A directory that only now got a watch may have changed
// before the watch was in place (mkdir -p of a cgroup and its parent), so
// new watches mean one more look. w.mu is held.
func (w *Watcher) scanLocked() {
	for range 8 { // a deeper tree appearing at once is caught by the rescan
		if !w.scanOnceLocked() {
			return
		}
	}
}

// scanOnceLocked is one look; it reports whether a new watch was added.
func (w *Watcher) scanOnceLocked() bool {
	next := make([]Status, 0, len(w.decls))
	want := map[string]bool{}
	units := map[string]bool{}
	slicesWatched := false
	for _, d := range w.decls {
		st := w.status(d)
		next = append(next, st)
		if d.Unit != "" {
			units[d.Unit] = true
			if st.State == Missing && !slicesWatched {
				// Where a unit may appear: the root and the top-level
				// slices (system.slice, user.slice, ...); deeper, the
				// rescan finds it.
				w.addSlices(want)
				slicesWatched = true
			}
		}
		if st.Path != "" {
			want[w.watchDir(st.Path)] = true
		}
	}
	for u := range w.unitPath {
		if !units[u] {
			delete(w.unitPath, u)
		}
	}
	if !slices.Equal(next, w.statuses) {
		for _, st := range next {
			if i := slices.IndexFunc(w.statuses, func(o Status) bool { return o.Name == st.Name }); i < 0 || w.statuses[i] != st {
				w.log.Info("workload cgroup", "workload", st.Name, "state", st.State, "path", st.Path, "id", st.ID, "level", st.Level)
			}
		}
		w.statuses = next
		select {
		case w.changes <- struct{}{}:
		default:
		}
	}
	return w.aimWatches(want)
}

// addSlices adds the root and its *.slice directories to want.
func (w *Watcher) addSlices(want map[string]bool) {
	want["/"] = true
	entries, err := os.ReadDir(w.mount)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasSuffix(e.Name(), ".slice") {
			want["/"+e.Name()] = true
		}
	}
}

// status finds the cgroup of one workload.
func (w *Watcher) status(d Workload) Status {
	cg := d.Path
	if d.Unit != "" {
		cg = w.unitPath[d.Unit]
		if cg == "" || !isDir(w.dir(cg)) {
			if found := w.resolveUnit(d.Unit); found != "" {
				cg = found
				w.unitPath[d.Unit] = found
			}
		}
	}
	st := Status{Name: d.Name, Path: cg}
	if cg == "" {
		return st
	}
	st.Level = Level(cg)
	id, err := ID(w.dir(cg))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			w.log.Debug("cgroup id", "workload", d.Name, "err", err)
		}
		return st
	}
	st.State, st.ID = Active, id
	return st
}

// resolveUnit asks Units, falling back to searching the tree when it
// fails.
func (w *Watcher) resolveUnit(unit string) string {
	if w.units != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		cg, err := w.units.ControlGroup(ctx, unit)
		cancel()
		if err == nil {
			if cg != "" && checkPath(cg) != nil {
				w.log.Warn("service manager returned an unusable cgroup path", "unit", unit, "path", cg)
				return ""
			}
			return cg
		}
		w.log.Debug("unit cgroup from service manager failed, searching the tree", "unit", unit, "err", err)
	}
	cg, err := FindUnit(w.mount, unit)
	if err != nil {
		w.log.Debug("search unit cgroup", "unit", unit, "err", err)
	}
	return cg
}

func (w *Watcher) dir(cg string) string { return filepath.Join(w.mount, cg) }

// watchDir returns the directory to watch for cgroup cg: its parent sees
// cg created and removed; when the parent is missing too, its deepest
// existing ancestor.
func (w *Watcher) watchDir(cg string) string {
	p := path.Dir(cg)
	for p != "/" && !isDir(w.dir(p)) {
		p = path.Dir(p)
	}
	return p
}

const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_ONLYDIR

// aimWatches makes the inotify watches exactly the directories of want;
// it reports whether it added a watch that was not there before.
func (w *Watcher) aimWatches(want map[string]bool) bool {
	if w.noWatch {
		want = nil
	}
	added := false
	for dir, wd := range w.watches {
		if !want[dir] {
			_, _ = unix.InotifyRmWatch(w.ifd, uint32(wd)) // fails when the directory went away: fine
			delete(w.watches, dir)
		}
	}
	for dir := range want {
		// Adding again is idempotent for the same directory and follows
		// a directory that was removed and made again (a new inode).
		wd, err := unix.InotifyAddWatch(w.ifd, w.dir(dir), watchMask)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				w.log.Debug("inotify watch", "dir", w.dir(dir), "err", err)
			}
			delete(w.watches, dir)
			continue
		}
		if old, ok := w.watches[dir]; !ok || old != int32(wd) {
			added = true
		}
		w.watches[dir] = int32(wd)
	}
	return added
}
