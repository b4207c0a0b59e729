package gossip

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// A peer that accepts a stream and never reads must not hold a sender past
// Shutdown: cancelling the transport's context closes dialed streams.
func TestTransportShutdownUnblocksStalledStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // held open, never read
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &transport{ctx: ctx}
	conn, err := tr.DialTimeout(ln.Addr().String(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	defer peer.Close()

	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := conn.Write(buf)
			written.Add(int64(n))
			if err != nil {
				done <- err
				return
			}
		}
	}()
	waitFor(t, 10*time.Second, "the socket buffers to fill", func() bool { return written.Load() >= 1<<20 })
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write succeeded after shutdown")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stalled write not interrupted by shutdown")
	}
	if err := conn.Close(); err == nil {
		t.Log("close after shutdown returned nil") // already closed by shutdown: either is fine
	}
}

func TestTransportDropsBlockedDestinations(t *testing.T) {
	tr := &transport{ctx: context.Background()}
	block := map[string]bool{"127.0.0.1:9": true}
	tr.dropTo.Store(&block)
	if _, err := tr.DialTimeout("127.0.0.1:9", time.Second); err == nil {
		t.Fatal("dial to a blocked destination succeeded")
	}
	if _, err := tr.WriteTo([]byte("x"), "127.0.0.1:9"); err != nil {
		t.Fatalf("blocked packet write should be silently dropped: %v", err)
	}
}
