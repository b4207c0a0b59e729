package gossip

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Leave leaves the mesh gracefully: others show this node as StateLeft
// rather than StateDead. It first sends a leave intent (directly over TCP to
// every alive member, for up to half the timeout, and by gossip), since
// memberlist v0.7.0 does not tell its event delegate whether a node left or
// failed; then it runs memberlist's Leave, which waits until the leave is
// gossiped or the rest of timeout (0: no limit) passes. The node stops
// rejoining; call Shutdown afterwards.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	if g.closed.Load() {
		return errors.New("leave: gossip is shut down")
	}
	start := time.Now()
	msg := encodeLeave(g.cfg.NodeName, rand.Uint64())
	g.queue.QueueBroadcast(&broadcast{name: "leave:" + g.cfg.NodeName, msg: msg})
	g.sendLeaveIntent(msg, timeout/2)
	g.left.Store(true)
	rest := time.Duration(0)
	if timeout > 0 {
		rest = max(timeout-time.Since(start), time.Millisecond)
	}
	if err := g.ml.Leave(rest); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}

// sendLeaveIntent sends msg to every alive member and waits up to budget
// (0: until done). Stragglers finish in the background; Shutdown waits for
// them. Callers hold lifeMu (so Shutdown is not waiting on wg yet).
func (g *Gossip) sendLeaveIntent(msg []byte, budget time.Duration) {
	nodes := g.aliveNodes()
	if len(nodes) == 0 {
		return
	}
	done := make(chan struct{})
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(done)
		g.deliver(sendJob{to: nodes, msg: msg, what: "leave intent"})
	}()
	if budget <= 0 {
		<-done
		return
	}
	t := time.NewTimer(budget)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		g.log.Debug("leave intent not yet delivered to every member; continuing")
	}
}
