package cgroup

import (
	"errors"
	"strings"
	"testing"
)

const pureV2 = `22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
28 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
`

// As on this project's test machine (hybrid: v1 controllers, v2 unified).
const hybrid = `23 0 0:22 / /sys rw,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const v1Only = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:3 master:1 - cgroup cgroup rw,cpu
`

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
		err              error
	}{
		{"pure v2", pureV2, "/sys/fs/cgroup", nil},
		{"hybrid", hybrid, "/sys/fs/cgroup/unified", nil},
		{"none", v1Only, "", ErrNoCgroup2},
		{"empty", "", "", ErrNoCgroup2},
		// Several optional fields, an escaped space in the mount point.
		{"escaped", "41 31 0:38 / /mnt/cg\\040two rw shared:1 master:2 propagate_from:3 - cgroup2 none rw\n", "/mnt/cg two", nil},
		// A container's view (root not /) counts only without a full one.
		{"subtree only", "50 40 0:38 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup", nil},
		{"full preferred", "50 40 0:38 /sub /mnt/sub rw - cgroup2 cgroup2 rw\n" + hybrid, "/sys/fs/cgroup/unified", nil},
		// "-" as a mount point is not the separator.
		{"dash mount point", "60 1 0:50 / - rw - cgroup2 cgroup2 rw\n", "-", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMountinfo(strings.NewReader(tc.text))
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("ParseMountinfo = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
	if _, err := ParseMountinfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Fatal("malformed line accepted")
	}
	if _, err := ParseMountinfo(strings.NewReader("41 31 0:38 / /a\\04 rw - cgroup2 cgroup2 rw\n")); err == nil {
		t.Fatal("truncated escape accepted")
	}
}

func TestMountHere(t *testing.T) {
	m, err := Mount()
	if errors.Is(err, ErrNoCgroup2) {
		t.Skip("no cgroup2 on this machine")
	}
	if err != nil {
		t.Fatal(err)
	}
	if !isDir(m) {
		t.Fatalf("Mount() = %q, not a directory", m)
	}
}
