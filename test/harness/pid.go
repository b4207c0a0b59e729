package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PID returns the process id of the node's running process (the daemon
// itself: `ip netns exec` execs it in place), or 0 when none runs.
func (n *Node) PID() int {
	p := n.current()
	if p == nil || !n.Running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// ProcUsage is a process's resident memory and open descriptors.
type ProcUsage struct {
	RSSKiB int64 // VmRSS of /proc/PID/status
	FDs    int   // entries of /proc/PID/fd
}

// ReadProcUsage reads /proc/PID/status (VmRSS) and counts /proc/PID/fd.
func ReadProcUsage(pid int) (ProcUsage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcUsage{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	u := ProcUsage{RSSKiB: -1}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				u.RSSKiB, err = strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return ProcUsage{}, fmt.Errorf("pid %d: VmRSS %q: %w", pid, rest, err)
				}
			}
		}
	}
	if u.RSSKiB < 0 {
		return ProcUsage{}, fmt.Errorf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return ProcUsage{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	u.FDs = len(fds)
	return u, nil
}
