package gossip

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// runJoiner joins the mesh through the seeds and the peer cache, retrying
// with jittered exponential backoff until one contact succeeds. Then, every
// RejoinInterval, it contacts the seed and cache addresses of nodes that are
// not alive, so a partition heals and dead peers are retried. A keyring
// change (SetKeys) cuts the wait short and restarts the backoff.
func (g *Gossip) runJoiner() {
	defer g.wg.Done()
	backoff := g.cfg.JoinBackoffMin
	for {
		if g.hasLeft() {
			return
		}
		if g.tryJoin(true) {
			break
		}
		ok, woken := g.sleepOrRejoin(jitter(backoff))
		if !ok {
			return
		}
		backoff = min(backoff*2, g.cfg.JoinBackoffMax)
		if woken {
			backoff = g.cfg.JoinBackoffMin
		}
	}
	for {
		if ok, _ := g.sleepOrRejoin(jitter(g.cfg.RejoinInterval)); !ok || g.hasLeft() {
			return
		}
		g.tryJoin(false)
	}
}

// tryJoin contacts candidates one at a time. The first join stops at the
// first success (one push/pull teaches memberlist the whole mesh); a rejoin
// round tries every candidate still not alive. It reports whether the node
// is now joined: a contact succeeded, one of its contacts is already a
// member (it joined us), or there is nobody to contact (this is the first
// node).
func (g *Gossip) tryJoin(initial bool) bool {
	cands := g.joinCandidates(initial)
	if len(cands) == 0 {
		if initial {
			g.log.Info("no seeds or cached peers to join; waiting for others to join")
			g.markJoined()
		}
		return true
	}
	if initial && g.ml.NumMembers() > 1 {
		// Another node joined us first: we are in a mesh, but maybe only
		// with nodes that know nobody else (two fresh nodes, one seeding
		// the other). The first join is over once a contact of ours is a
		// member; until then keep trying them (with backoff), not merely
		// every RejoinInterval.
		g.markJoined()
		for _, c := range cands {
			if g.candidateAlive(c) {
				return true
			}
		}
	}
	joined := false
	for _, c := range cands {
		if g.isStopped() || g.hasLeft() {
			return joined
		}
		if !initial && g.candidateAlive(c) {
			continue // became alive through an earlier contact this round
		}
		n, err := g.ml.Join([]string{c.addr})
		if err != nil || n == 0 || g.ml.NumMembers() < 2 {
			g.joinFailures.Add(1)
			g.log.Debug("join attempt failed", "addr", c.addr, "name", c.name, "err", err)
			continue
		}
		g.log.Info("joined the mesh", "via", c.addr, "members", g.ml.NumMembers())
		g.markJoined()
		joined = true
		if initial {
			g.syncWithOthers(c.addr)
			return true
		}
	}
	if initial && !joined {
		if g.ml.NumMembers() > 1 {
			g.log.Info("joined by others, but no seed or cached peer answers yet; retrying", "tried", len(cands), "members", g.ml.NumMembers())
		} else {
			g.log.Warn("cannot join the mesh yet; retrying", "tried", len(cands))
		}
	}
	return joined
}

// joinCandidate is an address to contact; name is set for cached or dead
// peers (then it is skipped while that node is alive).
type joinCandidate struct {
	addr string
	name string
}

// joinCandidates lists seeds first (in their order), then cached and dead
// peers (shuffled), without this node's own address. A rejoin round leaves
// out nodes that are alive.
func (g *Gossip) joinCandidates(initial bool) []joinCandidate {
	self := g.Addr()
	var out []joinCandidate
	seen := map[string]bool{self.String(): true}
	for _, s := range g.cfg.Seeds {
		if ap, err := netip.ParseAddrPort(s); err == nil && ap == self {
			continue
		}
		if seen[s] {
			continue
		}
		seen[s] = true
		c := joinCandidate{addr: s}
		if !initial && g.candidateAlive(c) {
			continue
		}
		out = append(out, c)
	}
	var peers []joinCandidate
	g.mu.Lock()
	if !g.joinedOnce {
		for _, p := range g.cacheLoaded {
			peers = append(peers, joinCandidate{addr: p.Addr, name: p.Name})
		}
	}
	for name, e := range g.members {
		if e.state == StateDead && e.addr.IsValid() {
			peers = append(peers, joinCandidate{addr: e.addr.String(), name: name})
		}
	}
	g.mu.Unlock()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	for _, p := range peers {
		if seen[p.addr] || (!initial && g.candidateAlive(p)) {
			continue
		}
		seen[p.addr] = true
		out = append(out, p)
	}
	return out
}

// candidateAlive: the named node is alive or suspect, or (for a seed) some
// alive member answers at the seed's address.
func (g *Gossip) candidateAlive(c joinCandidate) bool {
	if c.name != "" {
		g.mu.Lock()
		defer g.mu.Unlock()
		e := g.members[c.name]
		return e != nil && (e.state == StateAlive || e.state == StateSuspect)
	}
	addrs := g.resolve(c.addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range g.members {
		if e.state != StateAlive && e.state != StateSuspect {
			continue
		}
		for _, a := range addrs {
			if e.addr == a {
				return true
			}
		}
	}
	return false
}

// resolve turns a host:port seed into addresses (literal IPs without DNS).
func (g *Gossip) resolve(hostport string) []netip.AddrPort {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	}
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
	}
	return out
}

func (g *Gossip) markJoined() {
	g.mu.Lock()
	if !g.joinedOnce {
		g.joinedOnce = true
		g.cacheDirty = true // drop loaded entries nobody knows
	}
	g.mu.Unlock()
}

// sleepOrRejoin waits d, until SetKeys changed the keyring (woken), or
// until Shutdown (ok false: stop).
func (g *Gossip) sleepOrRejoin(d time.Duration) (ok, woken bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-g.stop:
		return false, false
	case <-g.rejoin:
		return true, true
	case <-t.C:
		return true, false
	}
}

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	span := int64(d) / 5
	if span == 0 {
		return d
	}
	return time.Duration(int64(d) - span + rand.Int64N(2*span+1))
}

// rejoinSyncs is how many other members a node push/pulls with right after
// its first join; in a mesh of at most syncAllBelow members it push/pulls
// with every one. There each node relays a newcomer's alive message only
// RetransmitMult × ceil(log10 N) = 4 times, to random members, so a member
// misses it with a chance of a few percent and would only learn of the
// newcomer at its next push/pull (30 s); the exchanges tell them all at once.
const (
	rejoinSyncs  = 3
	syncAllBelow = 10
)

// syncWithOthers push/pulls with a few members besides the first contact
// (with all of them in a small mesh, see syncAllBelow).
// A node that restarts and joins through a contact that never saw it die
// would otherwise not learn that the others still hold its death record
// (at a higher incarnation than its fresh alive messages), so they would
// ignore it until their next push/pull; one exchange with any of them hands
// it that record and it refutes it at once.
func (g *Gossip) syncWithOthers(contact string) {
	// Our own member table, not ml.Members(): memberlist updates the nodes
	// those pointers refer to without our lock.
	var addrs []string
	g.mu.Lock()
	for name, e := range g.members {
		a := e.addr.String()
		if name == g.cfg.NodeName || a == contact || !e.addr.IsValid() ||
			(e.state != StateAlive && e.state != StateSuspect) {
			continue
		}
		addrs = append(addrs, a)
	}
	g.mu.Unlock()
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	if len(addrs) > rejoinSyncs && len(addrs)+2 > syncAllBelow { // +2: the contact and this node
		addrs = addrs[:rejoinSyncs]
	}
	for _, a := range addrs {
		if g.isStopped() || g.hasLeft() {
			return
		}
		if _, err := g.ml.Join([]string{a}); err != nil {
			g.log.Debug("post-join sync failed", "addr", a, "err", err)
		}
	}
}
