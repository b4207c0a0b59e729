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
		return errors.New("usage: helper rr-server ADDR... | rr-client ADDR N | prober PERIOD ADDR... | sim-members ...")
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
