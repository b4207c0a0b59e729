// Package gossip is segmesh's membership layer on hashicorp/memberlist:
// encrypted, labelled gossip (never unencrypted), node records as node meta
// (with large records carried separately), documents (opaque versioned state
// such as the policy) by broadcast, direct send and push/pull, a persisted
// peer cache, and join/rejoin. It knows nothing of WireGuard or nftables.
package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// updateTimeout bounds how long UpdateLocal waits for memberlist to send the
// new meta; the update stays queued after it.
const updateTimeout = 5 * time.Second

// Gossip is one node's membership. Its methods are safe for concurrent use.
type Gossip struct {
	cfg     Config
	log     *slog.Logger
	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring
	tr      *transport
	queue   *memberlist.TransmitLimitedQueue
	addr    netip.AddrPort // advertised gossip address

	changes chan struct{}
	sendCh  chan sendJob
	rejoin  chan struct{} // capacity 1: the joiner retries at once (SetKeys changed the keyring)

	ctx    context.Context // cancelled by Shutdown (aborts dials)
	cancel context.CancelFunc
	stop   chan struct{}
	wg     sync.WaitGroup

	startOnce    sync.Once
	shutdownOnce sync.Once
	shutdownErr  error
	closed       atomic.Bool
	left         atomic.Bool
	lifeMu       sync.Mutex // serialises Leave and Shutdown (memberlist panics on leave after shutdown)

	live         atomic.Int64 // members alive or suspect (entry.live), changed under mu
	forwarded    atomic.Int64 // received documents re-broadcast or forwarded (tests)
	joinFailures atomic.Int64 // failed join attempts (tests)

	mu           sync.Mutex // guards the fields below; never held while calling memberlist
	local        localRecord
	members      map[string]*entry
	records      map[string]*storedRecord // full records by digest
	leaving      map[string]time.Time     // leave intents not yet matched with a dead/left event
	intents      map[intentID]time.Time   // leave intents handled
	cacheLoaded  []cachedPeer
	joinedOnce   bool
	cacheDirty   bool
	cacheWritten time.Time

	cacheLast []byte // last content written (watcher goroutine, then Shutdown)
}

// New creates the memberlist (bound, encrypted with cfg.Keys, labelled,
// verifying incoming and outgoing traffic) announcing local (at most 64 KiB
// encoded, see UpdateLocal). It does not join yet: Start does.
func New(cfg Config, local Record) (*Gossip, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	lr, err := splitRecord(local)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	keyring, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gossip{
		cfg:     cfg,
		log:     cfg.Logger,
		keyring: keyring,
		changes: make(chan struct{}, 1),
		sendCh:  make(chan sendJob, sendQueueLen),
		rejoin:  make(chan struct{}, 1),
		ctx:     ctx,
		cancel:  cancel,
		stop:    make(chan struct{}),
		local:   lr,
		members: map[string]*entry{},
		records: map[string]*storedRecord{},
		leaving: map[string]time.Time{},
		intents: map[intentID]time.Time{},
	}
	if lr.full != nil {
		g.records[lr.digest] = &storedRecord{data: lr.full, received: time.Now()}
	}
	g.queue = &memberlist.TransmitLimitedQueue{NumNodes: g.numNodes, RetransmitMult: cfg.RetransmitMult}

	mlLog := newMemberlistLogger(g.log, func(name string) { g.setLiveness(name, StateSuspect) }, g.closed.Load)
	g.tr, err = newTransport(ctx, cfg.BindAddr, cfg.BindPort, mlLog)
	if err != nil {
		cancel()
		return nil, err
	}
	port := g.tr.GetAutoBindPort()
	mc := cfg.memberlistConfig(port)
	mc.Transport = g.tr
	mc.Keyring = keyring
	mc.Logger = mlLog
	mc.Delegate = &delegate{g: g}
	mc.Events = &events{g: g}
	mc.Ping = &pings{g: g}
	g.addr = netip.AddrPortFrom(netip.MustParseAddr(cfg.AdvertiseAddr).Unmap(), uint16(mc.AdvertisePort))

	if cfg.CachePath != "" {
		peers, err := loadCache(cfg.CachePath, cfg.NodeName)
		if err != nil {
			g.log.Warn("ignoring peer cache", "path", cfg.CachePath, "err", err)
		}
		g.cacheLoaded = peers
	}

	g.ml, err = memberlist.Create(mc)
	if err != nil {
		cancel()
		_ = g.tr.Shutdown()
		return nil, fmt.Errorf("gossip: create memberlist: %w", err)
	}
	g.log.Info("gossip listening", "bind", fmt.Sprintf("%s:%d", cfg.BindAddr, port), "advertise", g.addr,
		"label", cfg.Label, "keys", len(cfg.Keys), "cached_peers", len(g.cacheLoaded))
	return g, nil
}

// Start starts the owned goroutines (joiner, watcher, sender). Calling it
// again, or after Shutdown, does nothing.
func (g *Gossip) Start() {
	g.startOnce.Do(func() {
		if g.closed.Load() {
			return
		}
		g.wg.Add(3)
		go g.runJoiner()
		go g.runWatcher()
		go g.runSender()
	})
}

// Addr is the gossip address this node advertises.
func (g *Gossip) Addr() netip.AddrPort { return g.addr }

// Members returns a snapshot of every known node except this one, including
// dead and left nodes until Forget or until they come back. Sorted by name;
// the caller owns the returned slices.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.members))
	for name, e := range g.members {
		out = append(out, g.memberLocked(name, e))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member returns the one known node named name as Members reports it
// (the caller owns Meta), and false when it is unknown or this node. It
// copies one record where Members copies them all.
func (g *Gossip) Member(name string) (Member, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.members[name]
	if e == nil {
		return Member{}, false
	}
	return g.memberLocked(name, e), true
}

// memberLocked is e as Members reports it, with a copy of its record.
// Callers hold mu.
func (g *Gossip) memberLocked(name string, e *entry) Member {
	return Member{Name: name, Addr: e.addr, Meta: bytes.Clone(g.resolveMetaLocked(e)), State: e.state, StateSince: e.since}
}

// Forget drops a dead or left node from Members (alive and suspect nodes
// stay). It reappears when it comes back alive.
func (g *Gossip) Forget(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.members[name]; e != nil && (e.state == StateDead || e.state == StateLeft) {
		delete(g.members, name)
		delete(g.leaving, name)
		g.cacheDirty = true
	}
}

// Changes signals (coalesced, capacity 1) joins, leaves, deaths, meta
// updates, alive<->suspect moves, full records arriving and accepted
// documents. Receivers re-read Members.
func (g *Gossip) Changes() <-chan struct{} { return g.changes }

func (g *Gossip) notify() {
	select {
	case g.changes <- struct{}{}:
	default:
	}
}

// NumMembers counts alive and suspect nodes, this one included.
func (g *Gossip) NumMembers() int { return g.ml.NumMembers() }

// numNodes sizes the broadcast retransmit limit: the members alive or
// suspect and this node. memberlist calls it for every gossip packet, so it
// reads a counter (our own view, no memberlist call, no lock).
func (g *Gossip) numNodes() int { return int(g.live.Load()) + 1 }

// UpdateLocal re-announces this node's record (memberlist UpdateNode). A
// record larger than MaxMetaSize is announced as a stub and its full form is
// sent separately; one larger than 64 KiB encoded is refused with an error
// (peers would drop it). It waits a few seconds at most for the update to go out;
// gossip and push/pull deliver it in any case.
func (g *Gossip) UpdateLocal(r Record) error {
	if g.closed.Load() {
		return errors.New("update record: gossip is shut down")
	}
	lr, err := splitRecord(r)
	if err != nil {
		return fmt.Errorf("update record: %w", err)
	}
	g.mu.Lock()
	if g.local.equal(lr) {
		g.mu.Unlock()
		return nil
	}
	g.local = lr
	if lr.full != nil {
		if _, ok := g.records[lr.digest]; !ok {
			g.records[lr.digest] = &storedRecord{data: lr.full, received: time.Now()}
		}
	}
	g.mu.Unlock()
	if lr.full != nil {
		// The full record goes first so receivers can resolve the stub.
		msg := encodeRecordMsg(lr.full)
		if len(msg) <= maxBroadcastSize {
			g.queue.QueueBroadcast(&broadcast{name: "rec:" + lr.digest, msg: msg})
		} else {
			g.enqueueSend(sendJob{all: true, msg: msg, what: "full record"})
		}
	}
	if err := g.ml.UpdateNode(updateTimeout); err != nil {
		g.log.Debug("record update still being gossiped", "err", err)
	}
	return nil
}

// SetKeys installs keys into the keyring: the first becomes primary, keys
// not listed are removed. When that changes the keyring, the joiner
// contacts its seeds and cached peers at once instead of at its next retry:
// a node started with a wrong cluster key joins as soon as a reload gives
// it the right one.
func (g *Gossip) SetKeys(keys [][]byte) error {
	if err := validateKeys(keys); err != nil {
		return fmt.Errorf("set keys: %w", err)
	}
	keys = copyKeys(keys)
	before := copyKeys(g.keyring.GetKeys())
	defer func() {
		after := g.keyring.GetKeys()
		if !slices.EqualFunc(before, after, bytes.Equal) {
			select {
			case g.rejoin <- struct{}{}:
			default:
			}
		}
	}()
	for _, k := range keys {
		if err := g.keyring.AddKey(k); err != nil {
			return fmt.Errorf("set keys: %w", err)
		}
	}
	if err := g.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("set keys: %w", err)
	}
	installed := copyKeys(g.keyring.GetKeys())
	for _, k := range installed {
		if !slices.ContainsFunc(keys, func(w []byte) bool { return bytes.Equal(w, k) }) {
			if err := g.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("set keys: %w", err)
			}
		}
	}
	return nil
}

func (g *Gossip) isStopped() bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

func (g *Gossip) hasLeft() bool { return g.left.Load() }

// Shutdown stops the goroutines, closes memberlist (without a leave: call
// Leave first for a graceful exit) and writes the peer cache. Idempotent.
func (g *Gossip) Shutdown() error {
	g.shutdownOnce.Do(func() {
		g.lifeMu.Lock()
		g.closed.Store(true)
		close(g.stop)
		g.cancel()
		if err := g.ml.Shutdown(); err != nil {
			g.shutdownErr = fmt.Errorf("gossip shutdown: %w", err)
		}
		g.lifeMu.Unlock()
		g.wg.Wait()
		g.flushCache(time.Now(), true)
	})
	return g.shutdownErr
}

// runWatcher does periodic housekeeping until Shutdown: debounced peer
// cache writes, expiry of unreferenced full records and old leave intents.
func (g *Gossip) runWatcher() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			g.mu.Lock()
			g.gcRecordsLocked(now)
			g.expireIntentsLocked(now)
			g.mu.Unlock()
			g.flushCache(now, false)
		}
	}
}
