package main

// Meters of the gossip simulation: CPU, heap, UDP drops, the failure
// detector's verdicts, bandwidth windows.

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	rtmetrics "runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cpuSeconds is this process's user+system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// cpuRate samples this process's CPU use (cores) over window.
func cpuRate(window time.Duration) float64 {
	c0, t0 := cpuSeconds(), time.Now()
	time.Sleep(window)
	return (cpuSeconds() - c0) / time.Since(t0).Seconds()
}

// udpRcvbufErrors is the kernel's count of UDP datagrams dropped for a full
// receive buffer (Udp RcvbufErrors in /proc/net/snmp, this namespace).
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

// rssBytes is this process's resident set size (VmRSS), 0 when unknown.
func rssBytes() int64 {
	m, err := memStatus(os.Getpid())
	if err != nil {
		return 0
	}
	return m.RSS << 10
}

// heapText is the live heap (as of the last GC) and the heap in use now.
func heapText() string {
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	rtmetrics.Read(s)
	mib := func(v rtmetrics.Value) float64 {
		if v.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return float64(v.Uint64()) / (1 << 20)
	}
	return fmt.Sprintf("live %.0f MiB (in use %.0f), RSS %.0f MiB", mib(s[0].Value), mib(s[1].Value), float64(rssBytes())/(1<<20))
}

// logCounter is a slog.Handler that counts the simulated nodes' warnings
// and errors by kind (memberlist's failed probes, nodes marked failed,
// refutations, ...) instead of printing them.
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
	alarms int
}

func newLogCounter() *logCounter { return &logCounter{counts: map[string]int{}} }

func (l *logCounter) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo
}

// Handle counts warnings and errors, and memberlist's failure detector
// lines (logged at info).
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	k, alarm := logKind(r.Message)
	if r.Level < slog.LevelWarn && !alarm {
		return nil
	}
	l.mu.Lock()
	l.counts[k]++
	if alarm {
		l.alarms++
	}
	l.mu.Unlock()
	return nil
}

// falseAlarms counts failed probes and nodes declared failed so far: every
// simulated node stays up, so each is a false alarm of the failure detector.
func (l *logCounter) falseAlarms() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.alarms
}

func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }

func (l *logCounter) WithGroup(string) slog.Handler { return l }

// logKind names a memberlist message by its leading words, without the
// node names and addresses it carries; alarm marks the failure detector's
// verdicts (a probe failed, a node declared failed).
func logKind(msg string) (kind string, alarm bool) {
	switch {
	case strings.HasPrefix(msg, "Suspect ") && strings.Contains(msg, "has failed"):
		return "probe failed (Suspect … has failed)", true
	case strings.HasPrefix(msg, "Marking ") && strings.Contains(msg, "as failed"):
		return "node marked failed (suspicion timed out)", true
	case strings.HasPrefix(msg, "Refuting"):
		return "refuted a suspicion/death of itself", false
	}
	f := strings.Fields(msg)
	return strings.Join(f[:min(4, len(f))], " "), false
}

// snapshot returns the counts so far, most frequent first, as text.
func (l *logCounter) snapshot() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range l.counts {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	var parts []string
	for _, x := range all[:min(5, len(all))] {
		parts = append(parts, fmt.Sprintf("%d× %s", x.n, x.k))
	}
	if len(parts) == 0 {
		return "no warnings"
	}
	return strings.Join(parts, "; ")
}

// idleCost is what the simulation spent over an idle window.
type idleCost struct {
	udpKbit, tcpKbit float64 // per node
	cores            float64 // CPU of the whole process
	// push/pull exchanges the nodes started over a longer span (from the
	// end of the start through the window) and the TCP bytes sent in it
	// (both sides' state): the TCP cost at the production push/pull rate.
	pushPulls, pushPullBytes int64
}

// perPushPull is the TCP bytes of one push/pull exchange (both sides), 0
// when none was seen.
func (i idleCost) perPushPull() float64 {
	if i.pushPulls == 0 {
		return 0
	}
	return float64(i.pushPullBytes) / float64(i.pushPulls)
}

// pushPullInterval is memberlist's push/pull period at n nodes: the base
// interval (30 s in the LAN profile) times ceil(log2(n) - log2(32)) + 1
// above 32 nodes (memberlist's pushPullScale).
func pushPullInterval(base time.Duration, n int) time.Duration {
	if n <= 32 {
		return base
	}
	return time.Duration(math.Ceil(math.Log2(float64(n))-5)+1) * base
}

func (i idleCost) kbit() float64 { return i.udpKbit + i.tcpKbit }

func measureIdle(sink *byteSink, n int, window time.Duration) idleCost {
	u0, t0, c0, w0 := sink.udp.Load(), sink.tcp.Load(), cpuSeconds(), time.Now()
	time.Sleep(window)
	secs := time.Since(w0).Seconds()
	per := func(b int64) float64 { return float64(b) * 8 / float64(n) / secs / 1000 }
	return idleCost{udpKbit: per(sink.udp.Load() - u0), tcpKbit: per(sink.tcp.Load() - t0), cores: (cpuSeconds() - c0) / secs}
}

// settle waits, at most max, until the broadcasts of the last change have
// run out: the nodes' UDP send rate (gossip and probes; push/pull goes over
// TCP) per node is down to what the probes alone send, twice their estimated
// rate (2 kbit/s per node at one probe a second: a ping and an ack of about
// 120 bytes each). Every node retransmits each broadcast it learns
// RetransmitMult × ceil(log10(N+1)) times at most 12 messages per gossip
// round, so after many joins this drain takes tens of seconds of wall clock
// whatever the CPU. It returns how long it waited and whether the rate got
// there.
func settle(sink *byteSink, n int, probe time.Duration, max time.Duration) (time.Duration, bool) {
	if probe <= 0 {
		probe = time.Second
	}
	idleKbit := 2 * 2.0 / probe.Seconds()
	start := time.Now()
	for time.Since(start) < max {
		u, t := sink.udp.Load(), time.Now()
		time.Sleep(2 * time.Second)
		if kbit := float64(sink.udp.Load()-u) * 8 / float64(n) / time.Since(t).Seconds() / 1000; kbit < idleKbit {
			return time.Since(start), true
		}
	}
	return time.Since(start), false
}
