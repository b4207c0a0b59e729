package cgroup

import "golang.org/x/sys/unix"

func unixRmWatch(fd int, wd int32) (int, error) { return unix.InotifyRmWatch(fd, uint32(wd)) }
