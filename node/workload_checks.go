package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// minKernel is the oldest kernel whose nftables matches `socket cgroupv2`
// in the output hook (5.13).
var minKernel = [2]int{5, 13}

// checkKernel refuses workloads on a kernel older than minKernel: egress
// by cgroup would silently not work.
func checkKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	major, minor, ok := kernelVersion(rel)
	if !ok {
		return nil // unknown format: let nftables tell
	}
	if major < minKernel[0] || major == minKernel[0] && minor < minKernel[1] {
		return fmt.Errorf("kernel %s: workloads need Linux >= %d.%d (nftables socket cgroupv2)", rel, minKernel[0], minKernel[1])
	}
	return nil
}

// kernelVersion parses "6.1.0-13-amd64" into 6, 1.
func kernelVersion(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	end := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(parts[1])
	}
	minor, err2 := strconv.Atoi(parts[1][:end])
	return major, minor, err1 == nil && err2 == nil
}

// foreignNetns reports a process of cgroup dir (or of its direct
// children) that lives in another network namespace than this daemon: a
// container with its own network (a Docker bridge network). Its sockets'
// packets leave through its own namespace, where this node's egress chain
// is not: such a workload cannot be enforced by cgroup here.
func foreignNetns(dir string) (pid int, found bool) {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return 0, false
	}
	dirs := []string{dir}
	if subs, err := os.ReadDir(dir); err == nil {
		for _, s := range subs {
			if s.IsDir() && len(dirs) < 64 {
				dirs = append(dirs, filepath.Join(dir, s.Name()))
			}
		}
	}
	for _, d := range dirs {
		for _, p := range cgroupProcs(d, 16) {
			ns, err := os.Readlink("/proc/" + strconv.Itoa(p) + "/ns/net")
			if err == nil && ns != self {
				return p, true
			}
		}
	}
	return 0, false
}
