// Package cgroup follows the cgroups of declared workloads for per-workload
// egress: a workload is a systemd unit or a cgroup v2 path, and the kernel
// backend matches the sending socket's cgroup with `socket cgroupv2 level
// N` in the output hook.
//
//   - Mount finds the cgroup2 mount in /proc/self/mountinfo
//     (/sys/fs/cgroup on a pure v2 system, /sys/fs/cgroup/unified on a
//     hybrid one).
//   - ID is the cgroup id the kernel compares; Level the depth N to match
//     a cgroup path at.
//   - FindUnit and Systemd resolve a unit to its cgroup path.
//   - Watcher (a Source) reports each declared workload Active (with path,
//     id and level) or Missing, and signals Changes within a second of a
//     cgroup being created, removed or recreated with a new id (a unit
//     restart): inotify on the directories that would hold the cgroups,
//     and a rescan every 500 ms as a safety net. cgrouptest.Fake is a
//     Source for tests.
//   - WorkloadOf (PidCgroup, Match) names the workload a process belongs
//     to, the deepest active declared cgroup holding it (for logging
//     denials).
//
// # The cgroup id
//
// The id `socket cgroupv2` yields is cgroup_id(): the kernfs node id of
// the cgroup's directory. ID reads it from the directory's file handle
// (name_to_handle_at: handle type 0xfe FILEID_KERNFS, 8 bytes, host byte
// order); on 64-bit kernels it equals the directory's inode number
// (TestRootIDIsInode). Ids are not reused: a cgroup removed and made again
// at the same path (a unit restart) has a new id, and a rule holding the
// old one no longer matches it (TestRootNftSocketCgroupv2), so the
// watcher's new ID has to reach the rules. Level counts path components
// below the mount: "/" 0, "/a" 1, "/a/b" 2; `level N` compares the id of
// the socket's cgroup ancestor at depth N, so a level-1 rule on /a also
// matches sockets of /a/b, and a socket in a cgroup less deep than N (the
// root cgroup, say) matches no rule of that level.
//
// # socket cgroupv2 with google/nftables (verified, kernel 6.18)
//
// `socket cgroupv2 level L == id` is
//
//	&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: L, Register: 1}
//	&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint64(nil, id)}
//
// The expression writes 8 bytes (two 32-bit registers) in host byte order.
// A set key `socket cgroupv2 level L . ip daddr . meta l4proto . th dport`
// has KeyType nftables.MustConcatSetType(TypeCGroupV2, TypeIPAddr,
// TypeInetProto, TypeInetService), Concatenation true, and is loaded as
//
//	&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: L, Register: 1} // reg32 8-9
//	&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
//	&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 11}
//	&expr.Payload{DestRegister: 12, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
//	&expr.Lookup{SourceRegister: 1, SetName: ..., SetID: ...}
//
// with 20-byte element keys: the id (8 bytes, host order), the IPv4
// address (4), the protocol padded to 4, the port (network order) padded
// to 4. (Register 1 is the first 16-byte register, the same storage as
// 32-bit register 8.) In an inet table, check meta nfproto ipv4 before
// reading ip daddr at offset 16. The kernel accepts the socket expression
// in output chains only (not forward: forwarded packets have no local
// socket).
//
// In an output chain of a throwaway namespace, a connect from a process
// placed in the cgroup matched and got through; one from a sibling cgroup
// or the root cgroup fell through to `reject with tcp reset`
// (&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}), and connect() failed
// with ECONNREFUSED in 0.05-0.25 ms; with drop it hung until the dial
// timeout. A socket keeps the cgroup it was created in: what counts is the
// cgroup of the process when it opened the socket (a socket opened before
// the process was moved into the granted cgroup was still refused).
//
// nft 1.0.6 lists these rules sanely: a match prints as
// `socket cgroupv2 level 2 "unified/segmesh-test/in"` (it resolves the
// id to a path below /sys/fs/cgroup, hence the "unified/" prefix on a
// hybrid machine), a removed cgroup's id as a bare number
// (`socket cgroupv2 level 2 500`), set elements the same way, the lookup as
// `socket cgroupv2 level 2 . ip daddr . meta l4proto . tcp dport @grants`.
//
// # Namespaces
//
// `ip netns exec` remounts /sys, and the cgroup tree vanishes inside it;
// tests enter a namespace with setns (netnstest.NS.Do) or run a child
// through `nsenter --net=/var/run/netns/NAME`, which keeps /sys.
package cgroup
