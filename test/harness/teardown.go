package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Teardown removes what a detached cluster with the given prefix and base
// directory left behind, without needing the Cluster that made it: it
// stops the processes named by baseDir/*/segmesh.pid (SIGTERM, then SIGKILL
// after StopTimeout; only processes whose command line mentions segmesh),
// deletes the namespaces prefix-*, removes /var/run/wireguard/prefix*
// sockets and baseDir. Nothing being there is not an error.
func Teardown(prefix, baseDir string) error {
	if !nameRE.MatchString(prefix) {
		return fmt.Errorf("bad prefix %q", prefix)
	}
	var errs []error
	pidFiles, _ := filepath.Glob(filepath.Join(baseDir, "*", "segmesh.pid"))
	for _, pf := range pidFiles {
		if err := stopPIDFile(pf); err != nil {
			errs = append(errs, err)
		}
	}
	nss, _ := filepath.Glob(filepath.Join(netnsDir, prefix+"-*"))
	for _, ns := range nss {
		if err := DeleteNetns(filepath.Base(ns)); err != nil {
			errs = append(errs, err)
		}
	}
	socks, _ := filepath.Glob(filepath.Join(WireGuardSocketDir, prefix+"*"))
	for _, s := range socks {
		if err := os.Remove(s); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(baseDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func stopPIDFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil // gone meanwhile
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil // not ours to interpret
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "segmesh") {
		return nil // not running, or the pid was reused by something else
	}
	if !pidAlive(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if WaitFor(StopTimeout, func() error {
		if pidAlive(pid) {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	}) == nil {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return WaitFor(5*time.Second, func() error {
		if pidAlive(pid) {
			return fmt.Errorf("pid %d still running after SIGKILL", pid)
		}
		return nil
	})
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z'
}
