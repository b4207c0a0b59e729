package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ErrNoV2Line means a /proc/PID/cgroup text has no cgroup2 ("0::") line.
var ErrNoV2Line = errors.New("no cgroup2 line")

// PidCgroup returns the cgroup2 path of process pid from /proc/PID/cgroup,
// relative to the cgroup2 mount (as seen from this process's cgroup
// namespace).
func PidCgroup(pid int) (string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	defer f.Close()
	p, err := ParseProcCgroup(f)
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return p, nil
}

// ParseProcCgroup returns the path of the "0::" line of a /proc/PID/cgroup
// text; the v1 lines of a hybrid system are ignored.
func ParseProcCgroup(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			// A process whose cgroup was removed reads "/path (deleted)".
			p = strings.TrimSuffix(p, " (deleted)")
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read cgroup: %w", err)
	}
	return "", ErrNoV2Line
}

// Match returns the name of the workload cgroup path cg belongs to: the
// active status whose path is cg or its deepest ancestor.
func Match(cg string, statuses []Status) (string, bool) {
	best, bestLevel := "", -1
	for _, s := range statuses {
		if s.State != Active || !within(cg, s.Path) {
			continue
		}
		if s.Level > bestLevel {
			best, bestLevel = s.Name, s.Level
		}
	}
	return best, bestLevel >= 0
}

// WorkloadOf returns the workload process pid belongs to, among statuses
// (a Source's Statuses); it serves logging which workload a denied packet
// came from.
func WorkloadOf(pid int, statuses []Status) (string, bool, error) {
	cg, err := PidCgroup(pid)
	if err != nil {
		return "", false, err
	}
	name, ok := Match(cg, statuses)
	return name, ok, nil
}
