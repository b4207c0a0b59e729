package gossip

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// entry is what this node remembers about another one.
type entry struct {
	addr  netip.AddrPort
	meta  []byte // as announced (record or stub)
	ext   string // full record digest when meta is a stub
	state State
	since time.Time
	live  bool // counted in Gossip.live (see setStateLocked)
}

// setStateLocked moves e to s since at, keeping g.live (the members alive
// or suspect) in step, so numNodes needs no walk over the member table.
// Every state change goes through it. g.mu must be held.
func (g *Gossip) setStateLocked(e *entry, s State, at time.Time) {
	e.state, e.since = s, at
	if live := s == StateAlive || s == StateSuspect; live != e.live {
		e.live = live
		if live {
			g.live.Add(1)
		} else {
			g.live.Add(-1)
		}
	}
}

// events is memberlist's EventDelegate. memberlist calls it with its node
// lock held: it only copies, records and signals (never calls memberlist).
type events struct {
	g *Gossip
}

var _ memberlist.EventDelegate = (*events)(nil)

// NotifyJoin: a node became alive (new, or back from dead/left).
func (ev *events) NotifyJoin(n *memberlist.Node) {
	g := ev.g
	if n.Name == g.cfg.NodeName {
		return
	}
	now := time.Now()
	g.mu.Lock()
	e := g.members[n.Name]
	if e == nil {
		e = &entry{}
		g.members[n.Name] = e
	}
	setNode(e, n)
	g.setStateLocked(e, StateAlive, now)
	delete(g.leaving, n.Name)
	g.cacheDirty = true
	var job *sendJob
	if g.local.full != nil {
		job = &sendJob{to: []memberlist.Node{mlNode(n.Name, e)}, msg: encodeRecordMsg(g.local.full), what: "full record"}
	}
	g.mu.Unlock()
	if job != nil {
		g.enqueueSend(*job)
	}
	g.notify()
}

// NotifyLeave: a node was declared dead, or left. memberlist v0.7.0 does not
// fill Node.State (its own state lives beside Node), so a leave is known from
// the leave intent the node sent before leaving (see Leave).
func (ev *events) NotifyLeave(n *memberlist.Node) {
	g := ev.g
	if n.Name == g.cfg.NodeName {
		return
	}
	now := time.Now()
	g.mu.Lock()
	e := g.members[n.Name]
	if e == nil {
		e = &entry{}
		g.members[n.Name] = e
		setNode(e, n)
	}
	state := StateDead
	if t, ok := g.leaving[n.Name]; (ok && now.Sub(t) < leaveIntentWindow) || n.State == memberlist.StateLeft {
		state = StateLeft
	}
	delete(g.leaving, n.Name)
	g.setStateLocked(e, state, now)
	g.cacheDirty = true
	g.mu.Unlock()
	g.notify()
}

// NotifyUpdate: an alive node changed its meta (or address).
func (ev *events) NotifyUpdate(n *memberlist.Node) {
	g := ev.g
	if n.Name == g.cfg.NodeName {
		return
	}
	now := time.Now()
	g.mu.Lock()
	e := g.members[n.Name]
	if e == nil {
		e = &entry{}
		g.members[n.Name] = e
		g.setStateLocked(e, StateAlive, now)
	}
	setNode(e, n)
	if e.state != StateAlive {
		g.setStateLocked(e, StateAlive, now)
	}
	g.cacheDirty = true
	g.mu.Unlock()
	g.notify()
}

func setNode(e *entry, n *memberlist.Node) {
	if a, ok := netip.AddrFromSlice(n.Addr); ok {
		e.addr = netip.AddrPortFrom(a.Unmap(), n.Port)
	}
	if !bytes.Equal(e.meta, n.Meta) {
		e.meta = bytes.Clone(n.Meta)
		e.ext = metaExt(e.meta)
	}
}

// pings is memberlist's PingDelegate: a direct probe ack proves a node alive.
type pings struct {
	g *Gossip
}

var _ memberlist.PingDelegate = (*pings)(nil)

func (p *pings) AckPayload() []byte { return nil }

func (p *pings) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	p.g.setLiveness(other.Name, StateAlive)
}

// setLiveness moves a member between alive and suspect. memberlist v0.7.0
// exposes no suspect state (Members() reports every non-dead node with a
// zero Node.State), so suspicion is taken from its log line "Suspect X has
// failed" (this node's probe failed) and cleared by a direct probe ack or an
// alive update.
func (g *Gossip) setLiveness(name string, s State) {
	g.mu.Lock()
	e := g.members[name]
	changed := e != nil && e.state != s && (e.state == StateAlive || e.state == StateSuspect)
	if changed {
		g.setStateLocked(e, s, time.Now())
	}
	g.mu.Unlock()
	if changed {
		g.notify()
	}
}

// leaveIntentWindow: a leave intent turns a dead declaration into "left"
// when the two arrive within this window, in either order.
const leaveIntentWindow = time.Minute

// maxLeaveIntents bounds the leave intents remembered (and re-broadcast)
// at once: a member flooding intents with fresh names or nonces cannot grow
// this node's memory or broadcast queue without limit. Beyond it, new
// intents are dropped: a leaving node then shows as dead instead of left.
const maxLeaveIntents = 4096

// leaveIntent records that name announced it is leaving. Each intent (name,
// nonce) is handled once and re-broadcast once.
func (g *Gossip) leaveIntent(name string, nonce uint64) {
	if name == g.cfg.NodeName {
		return
	}
	now := time.Now()
	id := intentID{name, nonce}
	g.mu.Lock()
	if _, seen := g.intents[id]; seen {
		g.mu.Unlock()
		return
	}
	if len(g.intents) >= maxLeaveIntents {
		g.mu.Unlock()
		g.log.Debug("dropping leave intent: too many recent ones", "name", name, "limit", maxLeaveIntents)
		return
	}
	g.intents[id] = now
	changed := false
	if e := g.members[name]; e != nil && e.state == StateDead && now.Sub(e.since) < leaveIntentWindow {
		// The failure detector or the leave's dead message came first.
		g.setStateLocked(e, StateLeft, e.since)
		changed = true
	} else {
		g.leaving[name] = now
	}
	g.mu.Unlock()
	g.queue.QueueBroadcast(&broadcast{name: "leave:" + name, msg: encodeLeave(name, nonce)})
	if changed {
		g.notify()
	}
}

type intentID struct {
	name  string
	nonce uint64
}

// expireLocked forgets old leave intents.
func (g *Gossip) expireIntentsLocked(now time.Time) {
	for id, t := range g.intents {
		if now.Sub(t) > 5*leaveIntentWindow {
			delete(g.intents, id)
		}
	}
	for name, t := range g.leaving {
		if now.Sub(t) > leaveIntentWindow {
			delete(g.leaving, name)
		}
	}
}
