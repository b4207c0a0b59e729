package cgroup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// fileidKernfs is the file handle type of kernfs (cgroupfs) handles: the
// handle is the node's 64-bit id, which for a cgroup is its cgroup id.
const fileidKernfs = 0xfe

// ID returns the id the kernel gives the cgroup at directory dir (a file
// system path below the cgroup2 mount): the value `socket cgroupv2 level N`
// compares, bpf_get_current_cgroup_id returns and systemd shows as
// ControlGroupId. It is the kernfs node id, taken from the directory's file
// handle; on 64-bit kernels it equals the directory's inode number, which
// is what ID returns for a directory outside cgroupfs (test trees).
func ID(dir string) (uint64, error) {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, dir, 0)
	if err == nil && h.Type() == fileidKernfs && h.Size() == 8 {
		return binary.NativeEndian.Uint64(h.Bytes()), nil
	}
	var st unix.Stat_t
	if serr := unix.Stat(dir, &st); serr != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, serr)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, unix.ENOTDIR)
	}
	return st.Ino, nil
}

// Level returns the depth of a cgroup path (relative to the cgroup2 mount,
// as /proc/PID/cgroup writes it): "/" is 0, "/a" is 1, "/a/b" is 2. It is
// the level a `socket cgroupv2 level N` match needs for that cgroup.
func Level(cgPath string) int {
	c := path.Clean("/" + cgPath)
	if c == "/" {
		return 0
	}
	return strings.Count(c, "/")
}

// errBadPath is returned for cgroup paths that are not absolute and clean.
var errBadPath = errors.New("cgroup path must be absolute and clean (like /system.slice/api.service)")

// checkPath validates a declared cgroup path.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.Contains(p, "\x00") {
		return fmt.Errorf("%q: %w", p, errBadPath)
	}
	return nil
}

// within reports whether cgroup path p is c or below it.
func within(p, c string) bool {
	if c == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == c || strings.HasPrefix(p, c+"/")
}
