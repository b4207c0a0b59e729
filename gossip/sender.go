package gossip

import (
	"sync"

	"github.com/hashicorp/memberlist"
)

const (
	sendQueueLen    = 256
	sendParallelism = 8
)

// sendJob is a message for SendReliable (TCP): to the listed nodes, or to
// every member alive when the job runs.
type sendJob struct {
	to   []memberlist.Node
	all  bool
	msg  []byte
	what string // for logs
}

// enqueueSend hands a job to the sender goroutine; it never blocks and
// returns false (logging why) when the queue is full.
func (g *Gossip) enqueueSend(j sendJob) bool {
	select {
	case g.sendCh <- j:
		return true
	default:
		g.log.Warn("gossip send queue full: dropping; push/pull will catch up", "what", j.what)
		return false
	}
}

// runSender delivers queued jobs until Shutdown.
func (g *Gossip) runSender() {
	defer g.wg.Done()
	for {
		select {
		case <-g.stop:
			return
		case j := <-g.sendCh:
			g.deliver(j)
		}
	}
}

// deliver sends one job, a few nodes at a time, and waits for all sends.
func (g *Gossip) deliver(j sendJob) {
	targets := j.to
	if j.all {
		targets = g.aliveNodes()
	}
	sem := make(chan struct{}, sendParallelism)
	var wg sync.WaitGroup
	for i := range targets {
		select {
		case <-g.stop:
			wg.Wait()
			return
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func(n *memberlist.Node) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := g.ml.SendReliable(n, j.msg); err != nil {
				g.log.Debug("direct send failed; push/pull will catch up", "what", j.what, "to", n.Name, "addr", n.Address(), "err", err)
			}
		}(&targets[i])
	}
	wg.Wait()
}

// aliveNodes returns memberlist nodes for every member alive or suspect.
func (g *Gossip) aliveNodes() []memberlist.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]memberlist.Node, 0, len(g.members))
	for name, e := range g.members {
		if e.state == StateAlive || e.state == StateSuspect {
			out = append(out, mlNode(name, e))
		}
	}
	return out
}

func mlNode(name string, e *entry) memberlist.Node {
	return memberlist.Node{Name: name, Addr: e.addr.Addr().AsSlice(), Port: e.addr.Port()}
}
