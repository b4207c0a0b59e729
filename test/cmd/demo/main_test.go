package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPty returns the terminal end of a new pseudo-terminal.
func openPty(t *testing.T) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestLiveViewNeedsTerminals: the demo starts top only when it reads keys
// from a terminal and draws on one; its output to a pipe (make demo 2>&1 |
// tee demo.log) or from /dev/null (CI) ends in the look-around commands.
func TestLiveViewNeedsTerminals(t *testing.T) {
	tty := openPty(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for _, c := range []struct {
		name          string
		stdin, stdout *os.File
		want          bool
	}{
		{"terminal", tty, tty, true},
		{"stdout to a pipe", tty, w, false},
		{"stdin from a pipe", r, tty, false},
		{"stdin from /dev/null", null, tty, false},
		{"no terminal", null, w, false},
	} {
		if got := liveView(c.stdin, c.stdout); got != c.want {
			t.Errorf("%s: liveView = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestShellEnv: the demo shell finds the demo's segmesh first, points it
// at web-1's config and drops a SEGMESH_CONTROL_SOCKET that would beat it.
func TestShellEnv(t *testing.T) {
	t.Setenv("PATH", "/usr/bin:/bin")
	env := shellEnv([]string{"HOME=/root", "PATH=/usr/bin:/bin", "SEGMESH_CONTROL_SOCKET=/run/x.sock", "SEGMESH_CONFIG=/etc/x.yaml"})
	want := []string{
		"SEGMESH_CONFIG=" + filepath.Join(baseDir, "web-1", "segmesh.yaml"),
		"PATH=" + filepath.Join(baseDir, "bin") + ":/usr/bin:/bin",
		"HOME=/root",
	}
	if !slices.Equal(env, want) {
		t.Fatalf("shellEnv:\n%s\nwant\n%s", strings.Join(env, "\n"), strings.Join(want, "\n"))
	}
}
