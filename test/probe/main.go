// Command segmesh-probe is an end-to-end test tool that opens and checks
// connections between network namespaces.
//
//	segmesh-probe serve [-addr IP] [-tcp 22,8080] [-udp 53,54] [-banner TEXT]
//	    TCP and UDP echo servers on each port (all addresses, IPv4 and IPv6,
//	    unless -addr names one); with -banner a TCP connection is first sent
//	    "TEXT\n". Prints "ready" once every port is bound,
//	    then one line per accepted connection or received datagram:
//	    "tcp LOCAL REMOTE" / "udp LOCAL REMOTE". Runs until SIGTERM.
//
//	segmesh-probe dial [-timeout 1s] PROTO ADDR:PORT [PROTO ADDR:PORT ...]
//	    PROTO is tcp or udp. TCP: connect, send a line, read it back. UDP:
//	    send a datagram on a connected socket and read the echo. The targets
//	    are tried concurrently; one line per target in argument order:
//	    "PROTO ADDR:PORT RESULT [detail]". The exit code is that of the first
//	    target that is not ok (0 when all are ok):
//	        0 ok, 1 other error, 2 refused (RST or ICMP port unreachable),
//	        3 timed out, 4 connected but no echo, 5 unreachable (ICMP),
//	        6 filtered (the own firewall refused the send), 7 reset after
//	        the connection was accepted.
//
//	segmesh-probe stream [-interval 50ms] [-timeout 2s] ADDR:PORT
//	    Connects over TCP (exit codes as dial), then sends "N\n" every
//	    interval and prints "echo N UNIXNANO" for every line echoed back.
//	    Prints "error ..." and exits 1 when the connection fails. Runs until
//	    SIGTERM.
//
//	segmesh-probe banner [-timeout 2s] ADDR:PORT
//	    Connects over TCP (exit codes as dial) and prints the first line the
//	    server sends (a serve -banner): which server answered.
//
//	segmesh-probe get [-timeout 2s] URL
//	    HTTP GET of URL (e.g. a node's metrics endpoint inside its
//	    namespace). Prints the body on stdout and exits 0 for a 2xx answer;
//	    otherwise prints the status or error on stderr and exits 1.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exit codes and result words of dial.
const (
	codeOK          = 0
	codeError       = 1
	codeRefused     = 2
	codeTimeout     = 3
	codeNoEcho      = 4
	codeUnreachable = 5
	codeFiltered    = 6 // EPERM/EACCES: the sender's own firewall refused the packet
	codeReset       = 7 // ECONNRESET: accepted, then reset unanswered
)

var resultWords = map[int]string{
	codeOK: "ok", codeError: "error", codeRefused: "refused",
	codeTimeout: "timeout", codeNoEcho: "noecho", codeUnreachable: "unreachable", codeFiltered: "filtered",
	codeReset: "reset",
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var code int
	switch os.Args[1] {
	case "serve":
		code = serve(os.Args[2:])
	case "dial":
		code = dialCmd(os.Args[2:])
	case "stream":
		code = stream(os.Args[2:])
	case "get":
		code = get(os.Args[2:])
	case "banner":
		code = bannerCmd(os.Args[2:])
	case "early":
		code = earlyCmd(os.Args[2:])
	case "send":
		code = sendCmd(os.Args[2:])
	default:
		usage()
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: segmesh-probe serve|dial|stream|banner|get|early ... (see the package doc)")
	os.Exit(codeError)
}

// ports parses "22,8080".
func ports(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("bad port %q", f)
		}
		out = append(out, p)
	}
	return out, nil
}

// out serializes lines on stdout.
var outMu sync.Mutex

func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "", "bind address (default: every address, IPv4 and IPv6)")
	tcpList := fs.String("tcp", "", "comma-separated TCP ports")
	udpList := fs.String("udp", "", "comma-separated UDP ports")
	banner := fs.String("banner", "", "first line sent on every TCP connection")
	_ = fs.Parse(args)
	tcpPorts, err := ports(*tcpList)
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return codeError
	}
	udpPorts, err := ports(*udpList)
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return codeError
	}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	for _, p := range tcpPorts {
		l, err := net.Listen("tcp", net.JoinHostPort(*addr, strconv.Itoa(p)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			return codeError
		}
		closers = append(closers, l)
		go acceptLoop(l, *banner)
	}
	for _, p := range udpPorts {
		c, err := net.ListenPacket("udp", net.JoinHostPort(*addr, strconv.Itoa(p)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			return codeError
		}
		closers = append(closers, c)
		go udpLoop(c)
	}
	say("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return codeOK
}

func acceptLoop(l net.Listener, banner string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed at exit
		}
		say("tcp %s %s", c.LocalAddr(), c.RemoteAddr())
		go func() {
			defer c.Close()
			if banner != "" {
				if _, err := fmt.Fprintln(c, banner); err != nil {
					return
				}
			}
			_, _ = io.Copy(c, c)
		}()
	}
}

func udpLoop(c net.PacketConn) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return // closed at exit
		}
		say("udp %s %s", c.LocalAddr(), from)
		_, _ = c.WriteTo(buf[:n], from)
	}
}

// classify maps a connection error to an exit code.
func classify(err error) int {
	var ne net.Error
	switch {
	case err == nil:
		return codeOK
	case errors.Is(err, syscall.ECONNREFUSED):
		return codeRefused
	case errors.Is(err, syscall.ECONNRESET):
		return codeReset
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return codeUnreachable
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return codeFiltered
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return codeTimeout
	}
	return codeError
}

// dialOne checks one target; see the package doc.
// holdFor is dial -hold: how long a socket stays open after its result.
var holdFor time.Duration

func dialOne(proto, target string, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	switch proto {
	case "tcp":
		c, err := net.DialTimeout("tcp", target, timeout)
		if err != nil {
			return classify(err), err
		}
		defer c.Close()
		return echo(c, deadline, codeNoEcho)
	case "udp":
		c, err := net.Dial("udp", target)
		if err != nil {
			return classify(err), err
		}
		defer c.Close()
		code, err := echo(c, deadline, codeTimeout)
		time.Sleep(holdFor) // the result line waits for it (results print together)
		return code, err
	}
	return codeError, fmt.Errorf("unknown protocol %q (want tcp or udp)", proto)
}

// echo writes a line on c and reads it back before deadline. A timeout
// reports timeoutCode.
func echo(c net.Conn, deadline time.Time, timeoutCode int) (int, error) {
	if err := c.SetDeadline(deadline); err != nil {
		return codeError, err
	}
	msg := []byte("segmesh-probe\n")
	if _, err := c.Write(msg); err != nil {
		return classify(err), err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		code := classify(err)
		if code == codeTimeout {
			code = timeoutCode
		}
		return code, err
	}
	if string(buf) != string(msg) {
		return codeError, fmt.Errorf("echo %q, sent %q", buf, msg)
	}
	return codeOK, nil
}

func dialCmd(args []string) int {
	fs := flag.NewFlagSet("dial", flag.ExitOnError)
	timeout := fs.Duration("timeout", time.Second, "connect and echo timeout per target")
	hold := fs.Duration("hold", 0, "keep each socket (and the process) this long after its result")
	_ = fs.Parse(args)
	rest := fs.Args()
	if len(rest) == 0 || len(rest)%2 != 0 {
		fmt.Fprintln(os.Stderr, "dial: want PROTO ADDR:PORT pairs")
		return codeError
	}
	holdFor = *hold
	type result struct {
		code int
		err  error
		dur  time.Duration
	}
	results := make([]result, len(rest)/2)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			code, err := dialOne(rest[2*i], rest[2*i+1], *timeout)
			results[i] = result{code, err, time.Since(start)}
		}()
	}
	wg.Wait()
	exit := codeOK
	for i, r := range results {
		detail := ""
		if r.err != nil {
			detail = " " + strings.ReplaceAll(r.err.Error(), "\n", " ")
		}
		say("%s %s %s%s (in %s)", rest[2*i], rest[2*i+1], resultWords[r.code], detail, r.dur)
		if exit == codeOK {
			exit = r.code
		}
	}
	return exit
}

func stream(args []string) int {
	fs := flag.NewFlagSet("stream", flag.ExitOnError)
	interval := fs.Duration("interval", 50*time.Millisecond, "time between messages")
	timeout := fs.Duration("timeout", 2*time.Second, "connect timeout")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "stream: want ADDR:PORT")
		return codeError
	}
	c, err := net.DialTimeout("tcp", fs.Arg(0), *timeout)
	if err != nil {
		say("error %v", err)
		return classify(err)
	}
	defer c.Close()
	say("connected %s %s", c.LocalAddr(), c.RemoteAddr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	failed := make(chan error, 2)
	go func() {
		t := time.NewTicker(*interval)
		defer t.Stop()
		for n := 1; ; n++ {
			if _, err := fmt.Fprintf(c, "%d\n", n); err != nil {
				failed <- fmt.Errorf("write: %w", err)
				return
			}
			<-t.C
		}
	}()
	go func() {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			say("echo %s %d", sc.Text(), time.Now().UnixNano())
		}
		failed <- fmt.Errorf("read: %v", sc.Err())
	}()
	select {
	case <-sig:
		return codeOK
	case err := <-failed:
		say("error %v", err)
		return codeError
	}
}

func get(args []string) int {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "whole request timeout")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "get: want URL")
		return codeError
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "get:", err)
		return codeError
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintln(os.Stderr, "get: read body:", err)
		return codeError
	}
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(os.Stderr, "get %s: %s: %s\n", fs.Arg(0), resp.Status, strings.TrimSpace(string(body)))
		return codeError
	}
	if _, err := os.Stdout.Write(body); err != nil {
		fmt.Fprintln(os.Stderr, "get: write:", err)
		return codeError
	}
	return codeOK
}

// bannerCmd prints the first line a TCP server sends; see the package doc.
func bannerCmd(args []string) int {
	fs := flag.NewFlagSet("banner", flag.ExitOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "connect and read timeout")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "banner: want ADDR:PORT")
		return codeError
	}
	c, err := net.DialTimeout("tcp", fs.Arg(0), *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "banner:", err)
		return classify(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(*timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Fprintln(os.Stderr, "banner: read:", err)
		if code := classify(err); code != codeOK {
			return code
		}
		return codeNoEcho
	}
	say("%s", strings.TrimSpace(line))
	return codeOK
}

// earlyCmd: open a TCP socket, print "ready", wait until the file -wait
// exists, then connect that socket and a new one to ADDR:PORT and print
// "early RESULT" and "fresh RESULT". A socket keeps the cgroup it was
// created in: moved into a workload's cgroup in between, only the fresh
// socket has the workload's access.
func earlyCmd(args []string) int {
	fs := flag.NewFlagSet("early", flag.ExitOnError)
	wait := fs.String("wait", "", "file whose existence releases the connects")
	timeout := fs.Duration("timeout", 2*time.Second, "connect timeout")
	_ = fs.Parse(args)
	if fs.NArg() != 1 || *wait == "" {
		fmt.Fprintln(os.Stderr, "early: want -wait FILE ADDR:PORT")
		return codeError
	}
	target := fs.Arg(0)
	var d net.Dialer
	d.Timeout = *timeout
	early, err := earlySocket(target)
	if err != nil {
		say("error %v", err)
		return codeError
	}
	say("ready")
	for {
		if _, err := os.Stat(*wait); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	errEarly := early()
	say("early %s", resultWords[classify(errEarly)])
	c, err := d.Dial("tcp", target)
	if err == nil {
		_ = c.Close()
	}
	say("fresh %s", resultWords[classify(err)])
	return codeOK
}

// sendCmd: connect to ADDR:PORT (an echo server), write -bytes zero bytes,
// read them back, print "sent N".
func sendCmd(args []string) int {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	n := fs.Int("bytes", 1<<20, "bytes to send")
	timeout := fs.Duration("timeout", 10*time.Second, "whole transfer timeout")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "send: want ADDR:PORT")
		return codeError
	}
	c, err := net.DialTimeout("tcp", fs.Arg(0), *timeout)
	if err != nil {
		say("error %v", err)
		return classify(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(*timeout))
	// The server echoes: read it all back before closing (a close with
	// unread data would reset the connection and cut the transfer).
	back := make(chan error, 1)
	go func() { _, err := io.CopyN(io.Discard, c, int64(*n)); back <- err }()
	w, err := c.Write(make([]byte, *n))
	if err == nil {
		err = <-back
	}
	if err != nil {
		say("error %v", err)
		return classify(err)
	}
	say("sent %d", w)
	return codeOK
}
