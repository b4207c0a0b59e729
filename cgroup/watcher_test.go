package cgroup

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if addrs := os.Getenv(helperEnv); addrs != "" {
		os.Exit(connectHelper(strings.Split(addrs, ",")))
	}
	goleak.VerifyTestMain(m)
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func status(w Source, name string) Status {
	for _, s := range w.Statuses() {
		if s.Name == name {
			return s
		}
	}
	return Status{Name: "<undeclared>"}
}

func drain(c <-chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// A plain directory tree stands in for the cgroup2 mount: the watcher only
// needs directories (IDs are then inode numbers). The rescan is an hour,
// so only inotify can make the deadlines.
func TestWatcherFakeTree(t *testing.T) {
	root := t.TempDir()
	w, err := NewWatcher(Config{Mount: root, Rescan: time.Hour, Log: testLog(t)}, []Workload{
		{Name: "api", Path: "/app.slice/api"},
		{Name: "db", Unit: "db.service"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if s := status(w, "api"); s.State != Missing || s.Path != "/app.slice/api" || s.Level != 2 || s.ID != 0 {
		t.Fatalf("api before mkdir: %+v", s)
	}
	if s := status(w, "db"); s.State != Missing || s.Path != "" {
		t.Fatalf("db before mkdir: %+v", s)
	}

	// Appears, parent and all (the watch moves from / to /app.slice).
	drain(w.Changes())
	if err := os.MkdirAll(filepath.Join(root, "app.slice", "api"), 0o755); err != nil {
		t.Fatal(err)
	}
	want, _ := ID(filepath.Join(root, "app.slice", "api"))
	d := waitFor(t, time.Second, "api active", func() bool { s := status(w, "api"); return s.State == Active && s.ID == want })
	t.Logf("missing -> active in %v", d)
	select {
	case <-w.Changes():
	default:
		t.Fatal("no change notified")
	}

	// Recreated with a new id (as a unit restart does). The old directory
	// is moved away, not removed, so its inode cannot be reused.
	if err := os.Rename(filepath.Join(root, "app.slice", "api"), filepath.Join(root, "old")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "api missing", func() bool { return status(w, "api").State == Missing })
	if err := os.Mkdir(filepath.Join(root, "app.slice", "api"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "api active with a new id", func() bool {
		s := status(w, "api")
		return s.State == Active && s.ID != want && s.ID != 0
	})

	// A unit found by searching the tree.
	for _, p := range []string{"system.slice/db.service"} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Second, "db active in system.slice", func() bool {
		s := status(w, "db")
		return s.State == Active && s.Path == "/system.slice/db.service" && s.Level == 2
	})
	// Removed: missing, the path kept.
	for _, p := range []string{"system.slice/db.service"} {
		if err := os.Remove(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Second, "db missing", func() bool {
		s := status(w, "db")
		return s.State == Missing && s.Path == "/system.slice/db.service"
	})

	// In another top-level slice, seen by inotify too.
	if err := os.MkdirAll(filepath.Join(root, "custom.slice", "db.service"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "db active in custom.slice", func() bool {
		s := status(w, "db")
		return s.State == Active && s.Path == "/custom.slice/db.service"
	})

	// A config reload: db removed, a new one declared (already there).
	if err := w.Update([]Workload{{Name: "api", Path: "/app.slice/api"}, {Name: "old", Path: "/old"}}); err != nil {
		t.Fatal(err)
	}
	sts := w.Statuses()
	if len(sts) != 2 || sts[0].Name != "api" || sts[1].Name != "old" || sts[1].State != Active || sts[1].Level != 1 {
		t.Fatalf("after Update: %+v", sts)
	}
	if err := w.Update([]Workload{{Name: "x", Path: "relative"}}); err == nil {
		t.Fatal("invalid update accepted")
	}
	if len(w.Statuses()) != 2 {
		t.Fatal("refused update changed the statuses")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Update(nil); err == nil {
		t.Fatal("Update after Close accepted")
	}
}

// Without inotify events (a directory nobody watches changes), the
// periodic rescan still finds it.
func TestWatcherRescan(t *testing.T) {
	root := t.TempDir()
	w, err := NewWatcher(Config{Mount: root, Rescan: 20 * time.Millisecond}, []Workload{{Name: "a", Path: "/a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Stop inotify from seeing anything: drop the watches behind its back.
	w.disableInotify()
	if err := os.Mkdir(filepath.Join(root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "a active", func() bool { return status(w, "a").State == Active })
}

type fakeUnits map[string]string

func (f fakeUnits) ControlGroup(_ context.Context, unit string) (string, error) {
	cg, ok := f[unit]
	if !ok {
		return "", errors.New("no bus")
	}
	return cg, nil
}

func TestWatcherUnits(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"custom.slice/api.service", "system.slice/api.service", "system.slice/fallback.service"} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	units := fakeUnits{"api.service": "/custom.slice/api.service", "stopped.service": ""}
	w, err := NewWatcher(Config{Mount: root, Units: units}, []Workload{
		{Name: "api", Unit: "api.service"},
		{Name: "stopped", Unit: "stopped.service"},
		{Name: "fb", Unit: "fallback.service"}, // the manager fails: searched
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if s := status(w, "api"); s.State != Active || s.Path != "/custom.slice/api.service" {
		t.Fatalf("api: %+v (the manager's answer wins over the search)", s)
	}
	if s := status(w, "stopped"); s.State != Missing {
		t.Fatalf("stopped: %+v", s)
	}
	if s := status(w, "fb"); s.State != Active || s.Path != "/system.slice/fallback.service" {
		t.Fatalf("fb: %+v", s)
	}
}

func TestValidate(t *testing.T) {
	for _, bad := range [][]Workload{
		{{Name: "", Path: "/a"}},
		{{Name: "a", Path: "/a"}, {Name: "a", Path: "/b"}},
		{{Name: "a"}},
		{{Name: "a", Path: "/a", Unit: "a.service"}},
		{{Name: "a", Path: "a"}},
		{{Name: "a", Path: "/a/../b"}},
		{{Name: "a", Path: "/a/"}},
		{{Name: "a", Unit: "x/a.service"}},
		{{Name: "a", Unit: ".."}},
	} {
		if err := Validate(bad); err == nil {
			t.Errorf("Validate(%+v) accepted", bad)
		}
		if _, err := NewWatcher(Config{Mount: t.TempDir()}, bad); err == nil {
			t.Errorf("NewWatcher(%+v) accepted", bad)
		}
	}
	if err := Validate([]Workload{{Name: "a", Path: "/"}, {Name: "b", Unit: "b.service"}}); err != nil {
		t.Fatal(err)
	}
}

func TestFindUnitBounds(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b", "c", "d", "e", "f", "g", "deep.service")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "a", "b", "near.service"), 0o755); err != nil {
		t.Fatal(err)
	}
	if cg, err := FindUnit(root, "near.service"); err != nil || cg != "/a/b/near.service" {
		t.Fatalf("near: %q, %v", cg, err)
	}
	// system.slice first, even over a shallower match.
	for _, p := range []string{"pref.service", "system.slice/pref.service"} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if cg, err := FindUnit(root, "pref.service"); err != nil || cg != "/system.slice/pref.service" {
		t.Fatalf("pref: %q, %v", cg, err)
	}
	if cg, err := FindUnit(root, "deep.service"); err != nil || cg != "" {
		t.Fatalf("deep (beyond the depth bound) found: %q, %v", cg, err)
	}
	if _, err := FindUnit(root, "../x"); err == nil {
		t.Fatal("unit with a slash accepted")
	}
}

// The D-Bus path: skips where systemd does not run (as on the project's
// test machine, where the watcher searches the tree instead).
func TestSystemdHere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sd, err := NewSystemd(ctx)
	if err != nil {
		t.Skipf("no systemd on the system bus: %v", err)
	}
	defer sd.Close()
	cg, err := sd.ControlGroup(ctx, "init.scope")
	if err != nil || cg != "/init.scope" {
		t.Fatalf("ControlGroup(init.scope) = %q, %v", cg, err)
	}
	if _, err := sd.ControlGroup(ctx, "x.target"); err == nil {
		t.Fatal("a target has no cgroup")
	}
}
