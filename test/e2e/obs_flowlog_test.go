package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/test/harness"
)

// flowLogMode is the mode the daemon gives a flow_log file it creates.
const flowLogMode = 0o640

// TestObsFlowLog: with flow_log set on db1, a denied flow from web1 is
// written there as a JSON line carrying web1's name. After the file is
// renamed away (log rotation), `segmesh reload` and then a SIGHUP to the
// daemon each make it write new flows to a new file at the configured path,
// none to the renamed one.
func TestObsFlowLog(t *testing.T) {
	dir, err := os.MkdirTemp("", "segmesh-e2e-flowlog-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	logPath := filepath.Join(dir, "flows.jsonl")
	m := newObsMesh(t, obsPolicy, map[string]any{"flow_log": logPath})
	web, db := m.web, m.db
	// web1's own egress check is off (root on web1): what it sends
	// reaches db1, whose ingress observations are under test.
	bypassEgress(t, web)
	checkLogMode(t, logPath)
	m.warmUp(web, db)

	// Each step denies a new port, so each is a new aggregate, written at once.
	steps := []struct {
		port   int
		rotate func(t *testing.T)
		how    string
	}{
		{5432, nil, "at start"},
		{5433, func(t *testing.T) { reloadNode(t, db) }, "after rename and `segmesh reload`"},
		{6379, func(t *testing.T) { sighup(t, db) }, "after rename and SIGHUP"},
	}
	var rotated []string
	for i, s := range steps {
		if s.rotate != nil {
			old := fmt.Sprintf("%s.%d", logPath, i)
			if err := os.Rename(logPath, old); err != nil {
				t.Fatal(err)
			}
			rotated = append(rotated, old)
			s.rotate(t)
			m.tc.WaitFor("flow_log reopened at "+logPath, 10*time.Second, func() error {
				_, err := os.Stat(logPath)
				return err
			})
			checkLogMode(t, logPath)
		}
		start := time.Now()
		dial := probeAsync(web, flow{"tcp", m.addr(db), s.port})
		match := m.flowFrom(web, "tcp", uint16(s.port), api.VerdictDenied)
		var f api.Flow
		err := waitUntil(10*time.Second, measurePoll, func() error {
			lines, err := readFlowLog(logPath)
			if err != nil {
				return err
			}
			var ok bool
			if f, ok = findFlow(lines, match); !ok {
				return fmt.Errorf("not among %d lines", len(lines))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: web1's denied tcp/%d in %s: %v", s.how, s.port, logPath, err)
		}
		t.Logf("TIMING %s: denied connect tcp/%d -> JSON line in flow_log: %v", s.how, s.port, time.Since(start).Round(time.Millisecond))
		m.checkFlowFields(t, f, web, db, "web", "db")
		if res := <-dial; res != resTimeout {
			t.Errorf("web1 -> db1 tcp/%d: %q, want %q (denied)", s.port, res, resTimeout)
		}
		for _, old := range rotated {
			lines, err := readFlowLog(old)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := findFlow(lines, match); ok {
				t.Errorf("%s: tcp/%d was written to the renamed file %s", s.how, s.port, old)
			}
		}
	}
	// The first rotated file holds the first flow: nothing was lost.
	lines, err := readFlowLog(rotated[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := findFlow(lines, m.flowFrom(web, "tcp", 5432, api.VerdictDenied)); !ok {
		t.Errorf("the renamed %s lost web1's tcp/5432 line", rotated[0])
	}
}

// readFlowLog parses a flow_log file: every line must be one api.Flow.
func readFlowLog(path string) ([]api.Flow, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []api.Flow
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		var f api.Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return nil, fmt.Errorf("%s:%d: not a flow JSON line: %w: %q", path, n, err, sc.Text())
		}
		out = append(out, f)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%s: last line not terminated (a write in progress?)", path)
	}
	return out, sc.Err()
}

// checkLogMode checks the mode of a flow_log file the daemon created.
func checkLogMode(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("flow_log: %v", err)
	}
	if st.Mode().Perm() != flowLogMode {
		t.Errorf("flow_log %s: mode %v, want %v", path, st.Mode().Perm(), os.FileMode(flowLogMode))
	}
}

// sighup sends SIGHUP to n's daemon: the process in n's namespace running
// `up -c n.ConfigPath`.
func sighup(t *testing.T, n *harness.Node) {
	t.Helper()
	out, stderr, code, err := runCmd(10*time.Second, nil, "ip", "netns", "pids", n.Namespace)
	if err != nil || code != 0 {
		t.Fatalf("ip netns pids %s: exit %d, %v: %s", n.Namespace, code, err, stderr)
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue // exited meanwhile
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) >= 4 && args[1] == "up" && args[2] == "-c" && args[3] == n.ConfigPath {
			pids = append(pids, pid)
		}
	}
	if len(pids) != 1 {
		t.Fatalf("%s: want one daemon process in %s, found %v", n.Name, n.Namespace, pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP %s (pid %d): %v", n.Name, pids[0], err)
	}
	t.Logf("sent SIGHUP to %s's daemon, pid %d", n.Name, pids[0])
}
