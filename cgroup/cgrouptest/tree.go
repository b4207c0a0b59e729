package cgrouptest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Remove kills the processes of cgroup directory dir and removes it,
// retrying for 5 s while they exit (a cgroup goes once it is empty). A
// missing dir is not an error. For tests, benchmarks and the demo, which
// make real cgroups below the cgroup2 mount.
func Remove(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Command is argv run in the named network namespace (nsenter --net:
// `ip netns exec` would remount /sys and hide the cgroup mount) from
// inside cgroup directory dir: a shell moves itself into the cgroup and
// execs argv, so every socket argv creates belongs to that cgroup. An
// empty dir runs argv in the caller's cgroup.
func Command(ns, dir string, argv ...string) *exec.Cmd {
	args := []string{"--net=/var/run/netns/" + ns, "--"}
	if dir != "" {
		args = append(args, "sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir)
	}
	return exec.Command("nsenter", append(args, argv...)...)
}
