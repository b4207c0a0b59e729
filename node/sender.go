package node

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/cgroup"
	"github.com/segmesh/segmesh/flows"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// senderLookups bounds the process lookups of egress denials per second
// (each reads sock_diag and walks /proc): NFLOG already limits the logged
// packets, this bounds the work on them.
const senderLookups = 10

// senderFinder finds the local process behind an egress denial: the
// workload's cgroup path from the watcher, and — where it can be found —
// the sending socket (sock_diag by the packet's addresses and ports) and
// the process holding it (/proc/PID/fd), or the cgroup's only process. A
// TCP connect refused at once usually closes its socket before the
// lookup: then only the workload and the socket's owner (NFLOG) are known.
type senderFinder struct {
	mu     sync.Mutex
	window time.Time
	used   int
}

// allow reports whether another lookup fits this second.
func (s *senderFinder) allow(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.window) >= time.Second {
		s.window, s.used = now, 0
	}
	if s.used >= senderLookups {
		return false
	}
	s.used++
	return true
}

// describe fills p's cgroup, pid and command where found.
func (n *Node) describeSender(p *flows.Packet) {
	var st cgroup.Status
	n.mu.Lock()
	for _, s := range n.cgroupStatuses() {
		if s.Name == p.Workload && p.Workload != "" {
			st = s
		}
	}
	n.mu.Unlock()
	p.Cgroup = st.Path
	if !n.senders.allow(time.Now()) {
		return
	}
	if ino := socketInode(*p); ino != 0 {
		if pid := pidOfSocket(ino); pid != 0 {
			p.PID, p.Command = pid, command(pid)
			return
		}
	}
	if st.State == cgroup.Active && st.Path != "" {
		if mount, err := cgroup.Mount(); err == nil {
			if pids := cgroupProcs(filepath.Join(mount, st.Path), 2); len(pids) == 1 {
				p.PID, p.Command = pids[0], command(pids[0])
			}
		}
	}
}

// socketInode asks sock_diag for the socket of p (TCP by its exact
// addresses and ports, UDP by a dump of the family); 0 when none.
func socketInode(p flows.Packet) uint32 {
	if p.SrcPort == 0 {
		return 0
	}
	switch p.Proto {
	case acl.ProtoTCP:
		s, err := netlink.SocketGet(
			&net.TCPAddr{IP: p.Src.AsSlice(), Port: int(p.SrcPort)},
			&net.TCPAddr{IP: p.Dst.AsSlice(), Port: int(p.Port)})
		if err != nil || s == nil {
			return 0
		}
		return s.INode
	case acl.ProtoUDP:
		family := uint8(unix.AF_INET)
		if p.Src.Is6() {
			family = unix.AF_INET6
		}
		socks, err := netlink.SocketDiagUDP(family)
		if err != nil {
			return 0
		}
		for _, s := range socks {
			if s.ID.SourcePort == p.SrcPort && (s.ID.Source.Equal(p.Src.AsSlice()) || s.ID.Source.IsUnspecified()) {
				return s.INode
			}
		}
	}
	return 0
}

// pidOfSocket finds a process holding socket inode ino (/proc/*/fd).
func pidOfSocket(ino uint32) int {
	want := "socket:[" + strconv.FormatUint(uint64(ino), 10) + "]"
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir("/proc/" + d.Name() + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink("/proc/" + d.Name() + "/fd/" + fd.Name()); err == nil && l == want {
				return pid
			}
		}
	}
	return 0
}

// cgroupProcs returns up to max pids of the cgroup directory dir.
func cgroupProcs(dir string, max int) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
			if len(out) == max {
				break
			}
		}
	}
	return out
}

// command is a process's command name (/proc/PID/comm).
func command(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
