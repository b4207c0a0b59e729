package flows

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// collector gathers the packets Run hands over.
type collector struct {
	mu   sync.Mutex
	pkts []Packet
}

func (c *collector) add(p Packet) { c.mu.Lock(); c.pkts = append(c.pkts, p); c.mu.Unlock() }

func (c *collector) all() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pkts)
}

// has reports whether a packet matching want (ignoring Time) arrived.
func (c *collector) has(want Packet) bool {
	for _, p := range c.all() {
		// Neither the time nor the source port (the sockets' own) are
		// part of what the tests send.
		p.Time, p.SrcPort = time.Time{}, 0
		if p == want {
			return true
		}
	}
	return false
}

func (c *collector) count(match func(Packet) bool) int {
	n := 0
	for _, p := range c.all() {
		if match(p) {
			n++
		}
	}
	return n
}

// nflogInstance returns the fields of group's line in the namespace's
// /proc/net/netfilter/nfnetlink_log (group, peer portid, queue length, copy
// mode, copy range, flush timeout, use), or nil.
func nflogInstance(t *testing.T, ns *testNS, group uint16) []string {
	t.Helper()
	var b []byte
	ns.Do(func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_log")
		return err
	})
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == fmt.Sprint(group) {
			return f
		}
	}
	return nil
}

// startRun runs r.Run on its own goroutine; the returned channel gets its
// result.
func startRun(ctx context.Context, r *NFLOG, c *collector) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, c.add) }()
	return done
}

func waitRun(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// openIn opens the NFLOG group inside ns.
func openIn(t *testing.T, ns *testNS, group uint16) (*NFLOG, error) {
	t.Helper()
	var r *NFLOG
	var err error
	ns.Do(func() error { r, err = OpenNFLOG(group, discardLogger()); return nil })
	return r, err
}

func sendUDP(to string, port int) error {
	c, err := net.Dial("udp", net.JoinHostPort(to, fmt.Sprint(port)))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte("flowstest"))
	return err
}

// sendTCPSyn connects to a closed port: the SYN is logged, the RST answers.
func sendTCPSyn(to string, port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(to, fmt.Sprint(port)), 5*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("tcp connect to %s:%d succeeded, want refused", to, port)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("tcp connect to %s:%d: %w, want connection refused", to, port, err)
	}
	return nil
}

// sendEcho sends one ICMP (IPv4) or ICMPv6 echo request from a raw socket.
func sendEcho(from, to string) error {
	network, msg := "ip4:icmp", []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1}
	if netip.MustParseAddr(to).Is6() {
		network, msg = "ip6:ipv6-icmp", []byte{128, 0, 0, 0, 0x12, 0x34, 0, 1} // the kernel sums ICMPv6
	} else {
		sum := 0
		for i := 0; i < len(msg); i += 2 {
			sum += int(msg[i])<<8 | int(msg[i+1])
		}
		sum = (sum >> 16) + (sum & 0xffff)
		sum = ^(sum + sum>>16) & 0xffff
		msg[2], msg[3] = byte(sum>>8), byte(sum)
	}
	c, err := net.ListenPacket(network, from)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WriteTo(msg, &net.IPAddr{IP: net.ParseIP(to)})
	return err
}

// sendUDP6DstOpts sends a UDP datagram with an IPv6 destination options
// header (PadN) in front of the UDP header.
func sendUDP6DstOpts(to string, port int) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// next header (kernel fills), length 0 (8 bytes), PadN of 4.
	opt := string([]byte{0, 0, 1, 4, 0, 0, 0, 0})
	if err := unix.SetsockoptString(fd, unix.IPPROTO_IPV6, unix.IPV6_DSTOPTS, opt); err != nil {
		return fmt.Errorf("IPV6_DSTOPTS: %w", err)
	}
	sa := &unix.SockaddrInet6{Port: port, Addr: netip.MustParseAddr(to).As16()}
	return unix.Sendto(fd, []byte("flowstest"), 0, sa)
}

// TestNFLOGReceivesRealPackets proves the nfnetlink_log wire format against
// the kernel: packets sent from namespace a to b and logged by an nft `log
// group` rule in b arrive through OpenNFLOG+Run with the right source,
// destination, protocol and port.
func TestNFLOGReceivesRealPackets(t *testing.T) {
	p := newNSPair(t)
	baseGoroutines := runtime.NumGoroutine()
	r, err := openIn(t, p.b, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The kernel shows the instance: our socket, copy mode packet (2),
	// copy range Snaplen.
	inst := nflogInstance(t, p.b, testGroup)
	if want := []string{fmt.Sprint(testGroup), fmt.Sprint(r.conn.PID()), "0", "2", fmt.Sprint(Snaplen)}; len(inst) < 5 || !slices.Equal(inst[:5], want) {
		t.Fatalf("kernel instance %q, want prefix %q", inst, want)
	}
	var c collector
	start := time.Now()
	done := startRun(t.Context(), r, &c)

	p.a.Do(func() error {
		return errors.Join(
			sendUDP(bAddr4, 5353),
			sendTCPSyn(bAddr4, 8080),
			sendEcho(aAddr4, bAddr4),
			sendUDP(bAddr6, 5353),
			sendTCPSyn(bAddr6, 8080),
			sendEcho(aAddr6, bAddr6),
			sendUDP6DstOpts(bAddr6, 5454),
		)
	})
	a4, b4, a6, b6 := mustAddr(aAddr4), mustAddr(bAddr4), mustAddr(aAddr6), mustAddr(bAddr6)
	want := []Packet{
		{Src: a4, Dst: b4, Proto: ProtoUDP, Port: 5353},
		{Src: a4, Dst: b4, Proto: ProtoTCP, Port: 8080},
		{Src: a4, Dst: b4, Proto: ProtoICMP, ICMPType: 8},
		{Src: a6, Dst: b6, Proto: ProtoUDP, Port: 5353},
		{Src: a6, Dst: b6, Proto: ProtoTCP, Port: 8080},
		{Src: a6, Dst: b6, Proto: ProtoICMPv6, ICMPType: 128},
		{Src: a6, Dst: b6, Proto: ProtoUDP, Port: 5454}, // behind a destination options header
	}
	waitFor(t, "all logged packets", 5*time.Second, func() bool {
		for _, w := range want {
			if !c.has(w) {
				return false
			}
		}
		return true
	})
	for _, got := range c.all() {
		if got.Time.Before(start.Add(-time.Second)) || got.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("packet %+v: time %v not around now", got, got.Time)
		}
	}
	if d := r.Dropped(); d != 0 {
		t.Errorf("Dropped = %d, want 0", d)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run after Close: %v, want nil", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if inst := nflogInstance(t, p.b, testGroup); inst != nil {
		t.Fatalf("kernel instance %q still there after Close", inst)
	}
	waitFor(t, "goroutines to end", 5*time.Second, func() bool { return runtime.NumGoroutine() <= baseGoroutines })
}

// TestNFLOGRunStopsOnContext: a done context ends Run with its error, and a
// later Run on the same NFLOG reads again.
func TestNFLOGRunStopsOnContext(t *testing.T) {
	p := newNSPair(t)
	baseGoroutines := runtime.NumGoroutine()
	r, err := openIn(t, p.b, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var c collector
	ctx, cancel := context.WithCancel(t.Context())
	done := startRun(ctx, r, &c)
	sent := time.Now()
	p.a.Do(func() error { return sendUDP(bAddr4, 1001) })
	waitFor(t, "first packet", 5*time.Second, func() bool { return c.count(func(Packet) bool { return true }) == 1 })
	// Queue threshold 1: no batching (the kernel default holds a lone
	// packet for its 1 s flush timeout).
	if d := time.Since(sent); d > 900*time.Millisecond {
		t.Fatalf("a lone packet took %v to arrive", d)
	}
	cancel()
	if err := waitRun(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	// Logged while no Run is active: queued in the socket.
	p.a.Do(func() error { return sendUDP(bAddr4, 1002) })
	done = startRun(t.Context(), r, &c)
	p.a.Do(func() error { return sendUDP(bAddr4, 1003) })
	for _, port := range []uint16{1002, 1003} {
		waitFor(t, fmt.Sprintf("packet to port %d", port), 5*time.Second, func() bool {
			return c.has(Packet{Src: mustAddr(aAddr4), Dst: mustAddr(bAddr4), Proto: ProtoUDP, Port: port})
		})
	}
	if err := r.Run(t.Context(), c.add); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("concurrent Run: %v, want an error", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run after Close: %v", err)
	}
	if err := r.Run(t.Context(), c.add); err != nil {
		t.Fatalf("Run after Close: %v, want nil at once", err)
	}
	waitFor(t, "goroutines to end", 5*time.Second, func() bool { return runtime.NumGoroutine() <= baseGoroutines })
}

// TestNFLOGGroupExclusive: a group has one reader per namespace; closing
// releases it; other namespaces have their own groups.
func TestNFLOGGroupExclusive(t *testing.T) {
	p := newNSPair(t)
	r1, err := openIn(t, p.b, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	if r2, err := openIn(t, p.b, testGroup); err == nil {
		r2.Close()
		t.Fatal("second OpenNFLOG of the same group succeeded")
	} else {
		t.Logf("second bind: %v", err)
	}
	rA, err := openIn(t, p.a, testGroup)
	if err != nil {
		t.Fatalf("same group in another namespace: %v", err)
	}
	rA.Close()
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	var r3 *NFLOG
	waitFor(t, "the group to be free again", 5*time.Second, func() bool {
		r3, err = openIn(t, p.b, testGroup)
		return err == nil
	})
	defer r3.Close()
	var c collector
	done := startRun(t.Context(), r3, &c)
	p.a.Do(func() error { return sendUDP(bAddr4, 2000) })
	waitFor(t, "packet after rebinding", 5*time.Second, func() bool {
		return c.has(Packet{Src: mustAddr(aAddr4), Dst: mustAddr(bAddr4), Proto: ProtoUDP, Port: 2000})
	})
	r3.Close()
	if err := waitRun(t, done); err != nil {
		t.Fatal(err)
	}
}

// TestNFLOGCountsOverruns: with a tiny socket buffer and nobody reading, the
// kernel drops messages (ENOBUFS); Run goes on, and every packet logged is
// either delivered or counted by Dropped.
func TestNFLOGCountsOverruns(t *testing.T) {
	p := newNSPair(t)
	r, err := openIn(t, p.b, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.conn.SetReadBuffer(1); err != nil { // the kernel's minimum
		t.Fatal(err)
	}
	const flood = 300
	p.a.Do(func() error {
		// Unconnected: port unreachable errors do not fail later sends.
		c, err := net.ListenPacket("udp4", aAddr4+":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.ParseIP(bAddr4), Port: 3000}
		for range flood {
			if _, err := c.WriteTo([]byte("x"), to); err != nil {
				return err
			}
		}
		return nil
	})
	var c collector
	done := startRun(t.Context(), r, &c)
	// A marker after the flood reveals the losses at its end. While the
	// socket is still congested the kernel drops markers too (silently:
	// one ENOBUFS per congestion), so send markers until one arrives.
	isMarker := func(p Packet) bool { return p.Port == 3001 }
	markers := 0
	for c.count(isMarker) == 0 {
		if markers == 50 {
			t.Fatalf("no marker arrived: delivered %d, dropped %d, overruns %d", len(c.all()), r.Dropped(), r.overruns.Load())
		}
		p.a.Do(func() error { return sendUDP(bAddr4, 3001) })
		markers++
		time.Sleep(20 * time.Millisecond)
	}
	logged := uint64(flood + markers)
	waitFor(t, "every logged packet delivered or counted", 5*time.Second, func() bool {
		return uint64(len(c.all()))+r.Dropped() == logged
	})
	got := c.count(func(p Packet) bool { return p.Port == 3000 })
	if got+c.count(isMarker) != len(c.all()) {
		t.Fatalf("unexpected packets: %+v", c.all())
	}
	if r.Dropped() == 0 {
		t.Fatalf("Dropped = 0 after flooding a tiny buffer (%d of %d delivered)", got, flood)
	}
	if r.overruns.Load() == 0 {
		t.Fatal("Run saw no ENOBUFS")
	}
	t.Logf("delivered %d of %d, %d markers sent, dropped %d, overruns %d", got, flood, markers, r.Dropped(), r.overruns.Load())
	r.Close()
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
