package cgroup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/segmesh/segmesh/internal/netnstest"
	"golang.org/x/sys/unix"
)

// connectHelper is the test binary run as a helper: "ready", wait for a
// line on stdin, then one "ADDR ok|err NANOS [ERROR]" line per address.
// An address "early:IP:PORT" is connected with a socket opened before
// "ready", that is, before the test moved the helper into a cgroup (a
// blocking connect: use it only towards accept or reset).
func connectHelper(addrs []string) int {
	early := map[string]int{}
	for _, a := range addrs {
		if _, ok := strings.CutPrefix(a, "early:"); ok {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, "socket:", err)
				return 2
			}
			early[a] = fd
		}
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return 2
	}
	for _, a := range addrs {
		fd, ok := early[a]
		if !ok {
			fmt.Println(dialLine(a))
			continue
		}
		ap := netip.MustParseAddrPort(strings.TrimPrefix(a, "early:"))
		start := time.Now()
		err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()})
		d := time.Since(start)
		_ = unix.Close(fd)
		if err != nil {
			fmt.Printf("%s err %d connect: %v\n", a, d.Nanoseconds(), err)
		} else {
			fmt.Printf("%s ok %d\n", a, d.Nanoseconds())
		}
	}
	return 0
}

func dialLine(addr string) string {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	d := time.Since(start)
	if err != nil {
		return fmt.Sprintf("%s err %d %v", addr, d.Nanoseconds(), err)
	}
	_ = c.Close()
	return fmt.Sprintf("%s ok %d", addr, d.Nanoseconds())
}

func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// cgroupMatch is `socket cgroupv2 level L == id`: the socket expression
// writes the 8-byte id, in host byte order, of the sending socket's
// cgroup ancestor at level L (no match when the socket's cgroup is less
// deep, or the packet has no full socket).
func cgroupMatch(level int, id uint64) []expr.Any {
	return []expr.Any{
		&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: uint32(level), Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint64(nil, id)},
	}
}

// toTCPPort is `oifname "lo" meta l4proto tcp th dport P`.
func toTCPPort(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

// grantKey is the element key of a `socket cgroupv2 level L . ip daddr .
// meta l4proto . th dport` set: 8-byte id (host order), 4-byte address,
// protocol padded to 4, port (network order) padded to 4: 20 bytes.
func grantKey(id uint64, addr netip.Addr, proto uint8, port uint16) []byte {
	k := binary.NativeEndian.AppendUint64(nil, id)
	k = append(k, addr.AsSlice()...)
	k = append(k, proto, 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, port)
	return append(k, 0, 0)
}

// listen opens a TCP listener on 127.0.0.1 inside ns that accepts and
// closes connections until the test ends.
func listen(t *testing.T, ns *netnstest.NS) (string, uint16) {
	t.Helper()
	var ln net.Listener
	ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	ap := netip.MustParseAddrPort(ln.Addr().String())
	return ln.Addr().String(), ap.Port()
}

// Proves the kernel side of workload egress with google/nftables: in an
// output chain, `socket cgroupv2 level L == ID(dir)` matches a connect
// from a process in that cgroup (or below it, at a lower level), not one
// from another cgroup or the root; a concatenated set key
// `socket cgroupv2 level 2 . ip daddr . meta l4proto . th dport` works;
// `reject with tcp reset` fails connect() at once, drop makes it hang.
func TestRootNftSocketCgroupv2(t *testing.T) {
	tr := requireCgroups(t, "nft", "nsenter")
	ns := netnstest.New(t, "smcg")
	tr.mkdir("in")
	tr.mkdir("other")
	inID, err := ID(tr.dir("in"))
	if err != nil {
		t.Fatal(err)
	}
	otherID, _ := ID(tr.dir("other"))
	baseID, _ := ID(tr.dir(""))
	level := Level(tr.path("in")) // 2

	aCmp, pCmp := listen(t, ns)   // in only, by cmp
	aSet, pSet := listen(t, ns)   // other only, by the concatenated set
	aBase, pBase := listen(t, ns) // anything below base, level 1
	aDrop, pDrop := listen(t, ns) // dropped for all
	aOpen, _ := listen(t, ns)     // no rule: open

	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "segmesh_cgtest"})
	ch := c.AddChain(&nftables.Chain{Name: "out", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter})
	set := &nftables.Set{Table: tbl, Name: "grants", Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeCGroupV2, nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)}
	lo := netip.MustParseAddr("127.0.0.1")
	if err := c.AddSet(set, []nftables.SetElement{{Key: grantKey(otherID, lo, unix.IPPROTO_TCP, pSet)}}); err != nil {
		t.Fatal(err)
	}
	rule := func(e ...[]expr.Any) {
		var all []expr.Any
		for _, x := range e {
			all = append(all, x...)
		}
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: all})
	}
	accept := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	reset := []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
	rule(toTCPPort(pCmp), cgroupMatch(level, inID), accept)
	rule(toTCPPort(pCmp), reset)
	rule(toTCPPort(pSet), []expr.Any{
		&expr.Socket{Key: expr.SocketKeyCgroupv2, Level: uint32(level), Register: 1}, // reg32 8-9
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 11},
		&expr.Payload{DestRegister: 12, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}, accept)
	rule(toTCPPort(pSet), reset)
	rule(toTCPPort(pBase), cgroupMatch(1, baseID), accept)
	rule(toTCPPort(pBase), reset)
	rule(toTCPPort(pDrop), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})
	if err := c.Flush(); err != nil {
		t.Fatalf("install rules: %v", err)
	}

	// nft 1.0.6 lists the rules: the id as a number (it looks for the
	// path below /sys/fs/cgroup, not the hybrid unified mount).
	out, err := exec.Command("nsenter", "--net=/var/run/netns/"+ns.Name, "nft", "list", "table", "ip", "segmesh_cgtest").CombinedOutput()
	t.Logf("nft list:\n%s", out)
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("socket cgroupv2 level %d", level)) {
		t.Fatalf("nft list table: %v", err)
	}

	addrs := []string{aCmp, aSet, aBase, aDrop, aOpen}
	ok := func(r dialResult) bool { return r.ok }
	refused := func(r dialResult) bool { return !r.ok && strings.Contains(r.err, "connection refused") }
	timedOut := func(r dialResult) bool { return !r.ok && strings.Contains(r.err, "timeout") }
	want := map[string]map[string]func(dialResult) bool{
		"in":    {aCmp: ok, aSet: refused, aBase: ok, aDrop: timedOut, aOpen: ok},
		"other": {aCmp: refused, aSet: ok, aBase: ok, aDrop: timedOut, aOpen: ok},
		"-":     {aCmp: refused, aSet: refused, aBase: refused, aDrop: timedOut, aOpen: ok}, // the root cgroup: level 0
	}
	names := map[string]string{aCmp: "cmp(in)", aSet: "set(other)", aBase: "level1(base)", aDrop: "drop", aOpen: "open"}
	for _, who := range []string{"in", "other", "-"} {
		res := runHelper(t, ns, tr, who, addrs)
		for _, a := range addrs {
			r := res[a]
			t.Logf("from %s to %s: %v", who, names[a], r)
			if !want[who][a](r) {
				t.Errorf("from %s to %s: %v", who, names[a], r)
			}
			if refused(r) && r.dur > 100*time.Millisecond {
				t.Errorf("from %s to %s: reset took %v (want < 100ms)", who, names[a], r.dur)
			}
		}
	}
	// A socket keeps the cgroup it was opened in: one opened before the
	// move into in is refused, one opened after it gets through.
	res := runHelper(t, ns, tr, "in", []string{"early:" + aCmp, aCmp})
	t.Logf("socket opened before the move: %v; after: %v", res["early:"+aCmp], res[aCmp])
	if !refused(res["early:"+aCmp]) || !res[aCmp].ok {
		t.Errorf("socket opened before the move: %v; after: %v", res["early:"+aCmp], res[aCmp])
	}

	// A unit restart: the cgroup made again at the same path gets a new id,
	// and the rule naming the old one no longer matches (the watcher's
	// new ID has to reach the rules).
	if err := tr.rmdir("in"); err != nil {
		t.Fatal(err)
	}
	tr.mkdir("in")
	if r := runHelper(t, ns, tr, "in", []string{aCmp})[aCmp]; !refused(r) {
		t.Errorf("from the recreated in to cmp(old id): %v", r)
	}
	// The rules still list without error when their cgroups are gone.
	if err := tr.rmdir("in"); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("nsenter", "--net=/var/run/netns/"+ns.Name, "nft", "list", "chain", "ip", "segmesh_cgtest", "out").CombinedOutput()
	t.Logf("nft list with the cgroup removed:\n%s", out)
	if err != nil {
		t.Fatalf("nft list chain: %v", err)
	}

	// And from this process (the root cgroup) in the namespace: refused at once.
	ns.Do(func() error {
		line := dialLine(aCmp)
		t.Logf("from the test process to cmp(in): %s", line)
		if !strings.Contains(line, "connection refused") {
			return errors.New("not refused: " + line)
		}
		return nil
	})
}
