package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/segmesh/segmesh/test/harness"
)

// WireGuardGoVersion is the upstream wireguard-go compared against (the one
// in go.mod, built standalone with `go install`).
const WireGuardGoVersion = "v0.0.0-20260522210424-ecfc5a8d5446"

// Env holds the binaries the suite runs.
type Env struct {
	Dir     string // temporary build directory
	Segmesh string
	WGGo    string // upstream wireguard-go
	Self    string // this program (helpers)
	Root    string // module root
}

func newEnv() (*Env, error) {
	root, err := harness.ModuleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "segmesh-bench-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Root: root, Segmesh: filepath.Join(dir, "segmesh"), WGGo: filepath.Join(dir, "wireguard")}
	if e.Self, err = os.Executable(); err != nil {
		return nil, err
	}
	logf("building segmesh and upstream wireguard-go %s into %s", WireGuardGoVersion, dir)
	if err := harness.BuildPackage("./cmd/segmesh", e.Segmesh); err != nil {
		return nil, fmt.Errorf("build segmesh: %w", err)
	}
	cmd := exec.Command("go", "install", "golang.zx2c4.com/wireguard@"+WireGuardGoVersion)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go install wireguard-go: %w: %s", err, out)
	}
	var missing []string
	for _, t := range []struct{ tool, pkg string }{{"iperf3", "iperf3"}, {"nft", "nftables"}, {"wg", "wireguard-tools"}, {"ping", "iputils-ping"}} {
		if _, err := exec.LookPath(t.tool); err != nil {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing tools; install them with `make bench-deps` or `apt-get install %s` (perf, optional, is in linux-perf)", strings.Join(missing, " "))
	}
	return e, nil
}

// Close removes the build directory.
func (e *Env) Close() { _ = os.RemoveAll(e.Dir) }

// median of a copy of v (0 when empty).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pairedRatio is the median over runs of a[i]/b[i]: each run measured both
// back to back, so the ratio within a run is free of the drift between runs
// (the machine's speed changes by several percent from one run to the next).
func pairedRatio(a, b []float64) float64 {
	var r []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return median(r)
}

// ratioList is a[i]/b[i] of every run, for the notes.
func ratioList(a, b []float64) string {
	var parts []string
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			parts = append(parts, fmt.Sprintf("%.3f", a[i]/b[i]))
		}
	}
	return strings.Join(parts, ", ")
}

// percentile (nearest rank) of a copy of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p/100*float64(len(s))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

// daemonPID finds the pid of `segmesh up -c configPath`.
func daemonPID(configPath string) (int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 2 && filepath.Base(args[0]) == "segmesh" && args[1] == "up" && strings.Contains(string(b), configPath) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no segmesh daemon with config %s", configPath)
}
