package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// runHelper runs one helper program (argv after "helper").
func runHelper(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: helper rr-server ADDR... | rr-client ADDR N | prober PERIOD ADDR... | until-ok ADDR PERIOD TIMEOUT | dial-times ADDR N refused|ok | sim-members ...")
	}
	switch args[0] {
	case "rr-server":
		return rrServer(args[1:])
	case "rr-client":
		if len(args) != 3 {
			return errors.New("usage: rr-client ADDR N")
		}
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		return rrClient(args[1], n)
	case "prober":
		return prober(args[1:])
	case "sim-members":
		return simMembers(args[1:])
	case "until-ok":
		return untilOK(args[1:])
	case "dial-times":
		return dialTimes(args[1:])
	case "stream-recv":
		return streamRecv(args[1:])
	case "stream-send":
		return streamSend(args[1:])
	case "conn-rate":
		return connRate(args[1:])
	}
	return fmt.Errorf("unknown helper %q", args[0])
}

// rrServer echoes every byte on every listen address until SIGTERM.
func rrServer(addrs []string) error {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = io.Copy(c, c)
				}()
			}
		}()
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

// rrClient prints the round-trip time (ms) of n 1-byte exchanges on one
// TCP connection, one per line.
func rrClient(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetNoDelay(true)
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	buf := []byte{1}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		fmt.Fprintf(w, "%.4f\n", float64(time.Since(t0).Nanoseconds())/1e6)
	}
	return nil
}

// prober dials every address (host:port) every period with a short timeout
// and prints "ADDR up UNIXNANO" when a dial first succeeds after failing
// (or at start) and "ADDR down UNIXNANO" when it first fails after
// succeeding, until SIGTERM.
func prober(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: prober PERIOD ADDR...")
	}
	period, err := time.ParseDuration(args[0])
	if err != nil {
		return err
	}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, a := range args[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			state := ""
			t := time.NewTicker(period)
			defer t.Stop()
			for {
				c, err := net.DialTimeout("tcp", a, 2*period)
				now := time.Now().UnixNano()
				s := "down"
				if err == nil {
					s = "up"
					_ = c.Close()
				}
				if s != state {
					state = s
					mu.Lock()
					fmt.Printf("%s %s %d\n", a, s, now)
					mu.Unlock()
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	close(stop)
	wg.Wait()
	return nil
}

// startCPUProfile writes a pprof CPU profile to path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// untilOK dials ADDR (TCP, a new socket each time) every PERIOD until a
// connection is accepted, at most TIMEOUT. It prints "refused" after the
// first refused attempt (with "-expect-refused": it must be refused first)
// and at the end "ok LAST OK N": the unix nanoseconds of the last refused
// attempt's start (0: none) and of the accepted connection, and the number
// of refused attempts.
func untilOK(args []string) error {
	expectRefused := len(args) > 0 && args[0] == "-expect-refused"
	if expectRefused {
		args = args[1:]
	}
	if len(args) != 3 {
		return errors.New("usage: until-ok [-expect-refused] ADDR PERIOD TIMEOUT")
	}
	period, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	timeout, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	start := time.Now()
	refused := 0
	var last int64
	for {
		t0 := time.Now()
		c, err := net.DialTimeout("tcp", args[0], time.Second)
		if err == nil {
			now := time.Now()
			_ = c.Close()
			if expectRefused && refused == 0 {
				return errors.New("accepted at once, want refused first")
			}
			fmt.Printf("ok %d %d %d\n", last, now.UnixNano(), refused)
			return nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("attempt %d: %w (want refused or accepted)", refused+1, err)
		}
		last = t0.UnixNano()
		refused++
		if refused == 1 {
			fmt.Println("refused")
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("not accepted within %s (%d refused)", timeout, refused)
		}
		time.Sleep(period)
	}
}

// dialTimes makes N TCP connections to ADDR one after the other and prints
// the duration (ms) of each Dial call; every one must end as WANT (refused:
// ECONNREFUSED, ok: accepted).
func dialTimes(args []string) error {
	if len(args) != 3 || (args[2] != "refused" && args[2] != "ok") {
		return errors.New("usage: dial-times ADDR N refused|ok")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	d := net.Dialer{Timeout: time.Second}
	for i := range n {
		t0 := time.Now()
		c, err := d.Dial("tcp", args[0])
		took := time.Since(t0)
		switch {
		case args[2] == "ok" && err == nil:
			_ = c.Close()
		case args[2] == "refused" && errors.Is(err, syscall.ECONNREFUSED):
		case err == nil:
			_ = c.Close()
			return fmt.Errorf("dial %d: accepted, want refused", i+1)
		default:
			return fmt.Errorf("dial %d: %w (after %v), want %s", i+1, err, took, args[2])
		}
		fmt.Fprintf(w, "%.4f\n", float64(took.Nanoseconds())/1e6)
	}
	return nil
}

// streamRecv accepts one TCP connection on ADDR, reads it until EOF and
// prints, per BUCKET of time, "UNIXNANO BYTES" (the bucket's start and the
// bytes read in it). It prints "ready" once listening.
func streamRecv(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: stream-recv ADDR BUCKET")
	}
	bucket, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	fmt.Println("ready")
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	var starts []int64
	var counts []int64
	for {
		n, err := c.Read(buf)
		now := time.Now().UnixNano()
		if n > 0 {
			b := now - now%int64(bucket)
			if len(starts) == 0 || starts[len(starts)-1] != b {
				starts = append(starts, b)
				counts = append(counts, 0)
			}
			counts[len(counts)-1] += int64(n)
		}
		if err != nil {
			break
		}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for i := range starts {
		fmt.Fprintf(w, "%d %d\n", starts[i], counts[i])
	}
	return nil
}

// streamSend connects to ADDR and writes as fast as it can for DURATION.
func streamSend(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: stream-send ADDR DURATION")
	}
	d, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", args[0], 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// connRate opens RATE new TCP connections a second to ADDR for DURATION
// (a new socket each: connect, write one byte, read the echo, close with
// SO_LINGER 0, so neither TIME_WAIT nor a lingering conntrack entry piles
// up), at most 512 at a time, and prints "made N failed F late L secs S":
// connections completed, failed, not started for want of a free slot, and
// the time taken.
func connRate(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: conn-rate ADDR RATE DURATION")
	}
	rate, err := strconv.Atoi(args[1])
	if err != nil || rate < 1 {
		return fmt.Errorf("rate %q", args[1])
	}
	d, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	var made, failed, late int64
	var mu sync.Mutex
	var firstErr error
	slots := make(chan struct{}, 512)
	var wg sync.WaitGroup
	one := func() {
		defer wg.Done()
		defer func() { <-slots }()
		c, err := net.DialTimeout("tcp", args[0], 2*time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			b := []byte{1}
			if _, err = c.Write(b); err == nil {
				_, err = io.ReadFull(c, b)
			}
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		made++
	}
	start := time.Now()
	for i := 0; ; i++ {
		// Connection i is due at start + i/rate.
		due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if due.Sub(start) >= d {
			break
		}
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		select {
		case slots <- struct{}{}:
			wg.Add(1)
			go one()
		default:
			late++
		}
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("made %d failed %d late %d secs %.3f\n", made, failed, late, secs)
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "first error: %v\n", firstErr)
	}
	return nil
}
