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

// ErrNoCgroup2 means no cgroup2 file system is mounted.
var ErrNoCgroup2 = errors.New("no cgroup2 mount")

// Mount returns the mount point of the cgroup2 hierarchy as
// /proc/self/mountinfo lists it: /sys/fs/cgroup on a pure v2 system,
// /sys/fs/cgroup/unified on a hybrid one.
func Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// ParseMountinfo returns the mount point of the first cgroup2 mount whose
// root is the hierarchy's root in a mountinfo text (proc(5)). A mount of
// a subtree (a bind mount, or the view of a cgroup namespace) is used only
// when no full one exists.
func ParseMountinfo(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	sub := ""
	for n := 1; sc.Scan(); n++ {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) {
			if len(fields) == 0 {
				continue
			}
			return "", fmt.Errorf("mountinfo line %d: malformed: %q", n, sc.Text())
		}
		if fields[sep+1] != "cgroup2" {
			continue
		}
		root, err := unescapeMountinfo(fields[3])
		if err != nil {
			return "", fmt.Errorf("mountinfo line %d: root: %w", n, err)
		}
		point, err := unescapeMountinfo(fields[4])
		if err != nil {
			return "", fmt.Errorf("mountinfo line %d: mount point: %w", n, err)
		}
		if root == "/" {
			return point, nil
		}
		if sub == "" {
			sub = point
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if sub != "" {
		return sub, nil
	}
	return "", ErrNoCgroup2
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, \011,
// \012, \134) the kernel writes into mountinfo paths.
func unescapeMountinfo(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			if i+4 > len(s) {
				return "", fmt.Errorf("truncated escape in %q", s)
			}
			v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
			if err != nil {
				return "", fmt.Errorf("bad escape in %q: %w", s, err)
			}
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}
