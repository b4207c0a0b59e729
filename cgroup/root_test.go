package cgroup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmesh/segmesh/internal/netnstest"
	"golang.org/x/sys/unix"
)

// testTree is a throwaway subtree of the real cgroup2 hierarchy,
// <mount>/segmesh-test-PID-N, removed at the end of the test (its
// processes moved back to the root cgroup first).
type testTree struct {
	t     *testing.T
	mount string
	base  string // cgroup path of the subtree, like /segmesh-test-1-1
}

var treeSeq atomic.Int32

// requireCgroups skips unless root (CI=true: fails) and returns a fresh
// subtree of the cgroup2 hierarchy.
func requireCgroups(t *testing.T, tools ...string) *testTree {
	t.Helper()
	netnstest.RequireRoot(t, tools...)
	mount, err := Mount()
	if err != nil {
		t.Fatalf("cgroup2 mount: %v", err)
	}
	tr := &testTree{t: t, mount: mount, base: fmt.Sprintf("/segmesh-test-%d-%d", os.Getpid(), treeSeq.Add(1))}
	tr.mkdir("")
	t.Cleanup(tr.cleanup)
	return tr
}

func (tr *testTree) dir(rel string) string { return filepath.Join(tr.mount, tr.base, rel) }

func (tr *testTree) path(rel string) string {
	if rel == "" {
		return tr.base
	}
	return tr.base + "/" + rel
}

func (tr *testTree) mkdir(rel string) {
	tr.t.Helper()
	if err := os.Mkdir(tr.dir(rel), 0o755); err != nil {
		tr.t.Fatalf("create cgroup: %v", err)
	}
}

// rmdir removes cgroup rel after moving its processes to the root cgroup.
func (tr *testTree) rmdir(rel string) error {
	d := tr.dir(rel)
	b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
	if err != nil {
		return err
	}
	for _, pid := range strings.Fields(string(b)) {
		_ = os.WriteFile(filepath.Join(tr.mount, "cgroup.procs"), []byte(pid), 0o644) // gone meanwhile: fine
	}
	return os.Remove(d)
}

// move writes pid into cgroup rel's cgroup.procs.
func (tr *testTree) move(pid int, rel string) {
	tr.t.Helper()
	if err := os.WriteFile(filepath.Join(tr.dir(rel), "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		tr.t.Fatalf("move %d into %s: %v", pid, tr.path(rel), err)
	}
}

func (tr *testTree) cleanup() {
	root := tr.dir("")
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- { // deepest first
		rel, _ := filepath.Rel(root, dirs[i])
		if rel == "." {
			rel = ""
		}
		var err error
		for try := 0; try < 100; try++ { // a killed process leaves its cgroup asynchronously
			if err = tr.rmdir(rel); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			tr.t.Errorf("remove test cgroup %s: %v", dirs[i], err)
		}
	}
}

// sleeper starts a process the test's cleanup kills.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// The id from the file handle is the directory's inode number on 64-bit
// kernels: both name the same kernfs node id.
func TestRootIDIsInode(t *testing.T) {
	tr := requireCgroups(t)
	tr.mkdir("a")
	id, err := ID(tr.dir("a"))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(tr.dir("a"), &st); err != nil {
		t.Fatal(err)
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, tr.dir("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Type() != fileidKernfs || h.Size() != 8 || binary.NativeEndian.Uint64(h.Bytes()) != id || st.Ino != id {
		t.Fatalf("id %d, inode %d, handle type %#x size %d", id, st.Ino, h.Type(), h.Size())
	}
	if l := Level(tr.path("a")); l != 2 {
		t.Fatalf("Level(%s) = %d", tr.path("a"), l)
	}
}

// A real cgroup: missing, created, a process moved in (and found by pid),
// removed, created again with a new id; each change within 1 s, without
// the periodic rescan (an hour here), then the same with only the rescan.
func TestRootWatcher(t *testing.T) {
	tr := requireCgroups(t, "sleep")
	for _, rescan := range []time.Duration{time.Hour, 500 * time.Millisecond} {
		t.Run(rescan.String(), func(t *testing.T) {
			const rel = "app"
			decl := []Workload{{Name: "app", Path: tr.path(rel)}, {Name: "base", Path: tr.base}}
			w, err := NewWatcher(Config{Mount: tr.mount, Rescan: rescan, Log: testLog(t)}, decl)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if rescan != time.Hour {
				// Only the rescan: inotify reads nothing.
				w.disableInotify()
			}
			if s := status(w, "app"); s.State != Missing || s.Level != 2 {
				t.Fatalf("before: %+v", s)
			}
			if s := status(w, "base"); s.State != Active || s.Level != 1 {
				t.Fatalf("base: %+v", s)
			}

			tr.mkdir(rel)
			id1, _ := ID(tr.dir(rel))
			d := waitFor(t, time.Second, "app active", func() bool { s := status(w, "app"); return s.State == Active && s.ID == id1 })
			t.Logf("created -> active in %v", d)

			p := sleeper(t)
			tr.move(p.Process.Pid, rel)
			if name, ok, err := WorkloadOf(p.Process.Pid, w.Statuses()); err != nil || !ok || name != "app" {
				t.Fatalf("WorkloadOf(sleeper) = %q %v %v (want app, deeper than base)", name, ok, err)
			}

			if err := tr.rmdir(rel); err != nil { // moves the sleeper out
				t.Fatal(err)
			}
			d = waitFor(t, time.Second, "app missing", func() bool { return status(w, "app").State == Missing })
			t.Logf("removed -> missing in %v", d)
			if name, _, _ := WorkloadOf(p.Process.Pid, w.Statuses()); name != "" {
				t.Fatalf("sleeper moved out still in %q", name)
			}

			tr.mkdir(rel)
			id2, _ := ID(tr.dir(rel))
			if id2 == id1 {
				t.Fatalf("recreated cgroup kept id %d", id1)
			}
			d = waitFor(t, time.Second, "app active with the new id", func() bool { s := status(w, "app"); return s.State == Active && s.ID == id2 })
			t.Logf("recreated -> new id in %v", d)

			// A fast restart: removed and made again between two looks.
			if err := tr.rmdir(rel); err != nil {
				t.Fatal(err)
			}
			tr.mkdir(rel)
			id3, _ := ID(tr.dir(rel))
			waitFor(t, time.Second, "app active with the third id", func() bool { s := status(w, "app"); return s.State == Active && s.ID == id3 })
			if err := tr.rmdir(rel); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// helperEnv makes the test binary a connect helper (see TestMain's
// caller): it waits for a line on stdin (meanwhile the test moves it into
// a cgroup), dials each address and prints one line per address.
const helperEnv = "SEGMESH_CGROUP_HELPER_ADDRS"

// dialResult is one attempt of the helper.
type dialResult struct {
	ok  bool
	dur time.Duration
	err string
}

func (r dialResult) String() string {
	if r.ok {
		return fmt.Sprintf("ok in %v", r.dur)
	}
	return fmt.Sprintf("failed in %v: %s", r.dur, r.err)
}

// runHelper starts the test binary in network namespace ns (nsenter, which
// keeps /sys and so the cgroups), moves it into cgroup rel of tr, and
// returns its dial results.
func runHelper(t *testing.T, ns *netnstest.NS, tr *testTree, rel string, addrs []string) map[string]dialResult {
	t.Helper()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+ns.Name, os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join(addrs, ","))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "ready" { // nsenter exec'd the helper, in the namespace
		t.Fatalf("helper not ready: %q", sc.Text())
	}
	if rel != "-" {
		tr.move(cmd.Process.Pid, rel)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	res := map[string]dialResult{}
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 3 {
			t.Fatalf("helper: %q", sc.Text())
		}
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		r := dialResult{ok: f[1] == "ok", dur: time.Duration(ns)}
		if len(f) == 4 {
			r.err = f[3]
		}
		res[f[0]] = r
	}
	if len(res) != len(addrs) {
		t.Fatalf("helper answered %d of %d", len(res), len(addrs))
	}
	return res
}

// A unit without systemd: found by searching the real tree, followed
// through a restart (removed, made again with a new id).
func TestRootWatcherUnitSearch(t *testing.T) {
	tr := requireCgroups(t)
	unit := fmt.Sprintf("segmesh-test-%d.service", os.Getpid())
	w, err := NewWatcher(Config{Mount: tr.mount, Log: testLog(t)}, []Workload{{Name: "u", Unit: unit}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if s := status(w, "u"); s.State != Missing {
		t.Fatalf("before: %+v", s)
	}
	tr.mkdir(unit)
	id1, _ := ID(tr.dir(unit))
	d := waitFor(t, time.Second, "unit found", func() bool {
		s := status(w, "u")
		return s.State == Active && s.Path == tr.path(unit) && s.ID == id1 && s.Level == 2
	})
	t.Logf("unit found in %v", d)
	if err := tr.rmdir(unit); err != nil {
		t.Fatal(err)
	}
	tr.mkdir(unit)
	id2, _ := ID(tr.dir(unit))
	d = waitFor(t, time.Second, "restarted unit's new id", func() bool { s := status(w, "u"); return s.State == Active && s.ID == id2 })
	t.Logf("restart seen in %v", d)
}
