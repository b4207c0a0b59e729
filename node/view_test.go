package node

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

var (
	net4 = netip.MustParsePrefix("100.80.0.0/16")
	net6 = netip.MustParsePrefix("fd5e:6d00::/48")
	t0   = time.Unix(1_700_000_000, 0)
)

type testNode struct {
	priv, pub mesh.Key
}

func newTestNode(t *testing.T) testNode {
	t.Helper()
	k, err := mesh.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return testNode{priv: k, pub: k.PublicKey()}
}

// member returns a gossip member announcing a genuine record of n.
func (n testNode) member(name string, state gossip.State, claimed time.Time) gossip.Member {
	rec := gossip.Record{
		Format: 1, Name: name, PublicKey: n.pub.String(), ListenPort: 51820,
		Address4: mesh.Candidate4(net4, n.pub, 0), Claimed: claimed.UnixNano(),
		Address6: mesh.Address6(net6, n.pub), Tags: map[string]string{"role": name},
	}
	return n.withRecord(rec, state)
}

func (n testNode) withRecord(rec gossip.Record, state gossip.State) gossip.Member {
	b, _ := rec.Encode()
	return gossip.Member{Name: n.pub.String(), Addr: netip.MustParseAddrPort("192.0.2.20:7946"), Meta: b, State: state, StateSince: t0}
}

func input(self testNode, now time.Time, members ...gossip.Member) viewInput {
	return viewInput{
		self: self.pub, selfAddr4: mesh.Candidate4(net4, self.pub, 0), selfEffective: t0,
		net4: net4, net6: net6, members: members, now: now, grace: time.Minute,
		effective: func(_ string, r gossip.Record) time.Time { return time.Unix(0, r.Claimed) },
	}
}

func TestViewStatesAndGrace(t *testing.T) {
	self, a, s, d, l, old := newTestNode(t), newTestNode(t), newTestNode(t), newTestNode(t), newTestNode(t), newTestNode(t)
	now := t0.Add(30 * time.Second)
	oldDead := old.member("old", gossip.StateDead, t0)
	oldDead.StateSince = now.Add(-2 * time.Minute)
	v := computeView(input(self, now,
		a.member("a", gossip.StateAlive, t0), s.member("s", gossip.StateSuspect, t0),
		d.member("d", gossip.StateDead, t0), l.member("l", gossip.StateLeft, t0), oldDead))

	want := map[string]struct {
		state      string
		configured bool
	}{"a": {api.StateUp, true}, "s": {api.StateSuspect, true}, "d": {api.StateDead, true}, "l": {api.StateLeft, false}}
	if len(v.peers) != len(want) {
		t.Fatalf("peers: %+v", v.peers)
	}
	for _, p := range v.peers {
		w := want[p.rec.Name]
		if p.state != w.state || p.configured != w.configured {
			t.Errorf("%s: state %s configured %v, want %+v", p.rec.Name, p.state, p.configured, w)
		}
	}
	if len(v.forget) != 1 || v.forget[0] != old.pub.String() {
		t.Fatalf("dead past grace must be forgotten: %v", v.forget)
	}
	if got := len(v.wgPeers()); got != 3 {
		t.Fatalf("wireguard peers: %d, want 3 (alive, suspect, dead in grace)", got)
	}
}

func TestViewRejectsForgedRecords(t *testing.T) {
	self, victim, forger := newTestNode(t), newTestNode(t), newTestNode(t)
	base := func() gossip.Record {
		return gossip.Record{Format: 1, Name: "forger", PublicKey: forger.pub.String(), ListenPort: 51820,
			Address4: mesh.Candidate4(net4, forger.pub, 0), Address6: mesh.Address6(net6, forger.pub), Claimed: t0.UnixNano()}
	}
	cases := map[string]func(r *gossip.Record) (gossip.Member, string){
		"another node's ipv4": func(r *gossip.Record) (gossip.Member, string) {
			r.Address4 = mesh.Candidate4(net4, victim.pub, 0)
			return forger.withRecord(*r, gossip.StateAlive), ReasonAddress4Mismatch
		},
		"another node's ipv6": func(r *gossip.Record) (gossip.Member, string) {
			r.Address6 = mesh.Address6(net6, victim.pub)
			return forger.withRecord(*r, gossip.StateAlive), ReasonAddress6Mismatch
		},
		"outside the network": func(r *gossip.Record) (gossip.Member, string) {
			r.Address4 = netip.MustParseAddr("10.0.0.1")
			return forger.withRecord(*r, gossip.StateAlive), ReasonAddress4Mismatch
		},
		"key is not the node name": func(r *gossip.Record) (gossip.Member, string) {
			m := forger.withRecord(*r, gossip.StateAlive)
			m.Name = victim.pub.String()
			return m, ReasonNameKeyMismatch
		},
		"undecodable": func(r *gossip.Record) (gossip.Member, string) {
			m := forger.withRecord(*r, gossip.StateAlive)
			m.Meta = []byte("{garbage")
			return m, ReasonBadRecord
		},
		"our own key": func(r *gossip.Record) (gossip.Member, string) {
			r.PublicKey = self.pub.String()
			m := forger.withRecord(*r, gossip.StateAlive)
			m.Name = self.pub.String()
			return m, ReasonSelfKey
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			r := base()
			m, reason := mk(&r)
			v := computeView(input(self, t0, m))
			if len(v.peers) != 1 {
				t.Fatalf("peers: %+v", v.peers)
			}
			p := v.peers[0]
			if p.state != api.StateUntrusted || p.configured || p.rejected == nil || p.rejected.reason != reason {
				t.Fatalf("got state %s configured %v rejection %v, want untrusted/%s", p.state, p.configured, p.rejected, reason)
			}
			if !strings.HasPrefix(p.reason, reason) || len(v.wgPeers()) != 0 {
				t.Fatalf("reason %q, wg peers %d", p.reason, len(v.wgPeers()))
			}
		})
	}
}

// clashing returns a node whose candidate 0 equals target's candidate 0 by
// searching keys: address clashes must be possible to test deterministically.
func clashing(t *testing.T, target mesh.Key, network netip.Prefix) testNode {
	t.Helper()
	want := mesh.Candidate4(network, target, 0)
	for i := 0; i < 200000; i++ {
		n := newTestNode(t)
		if mesh.Candidate4(network, n.pub, 0) == want {
			return n
		}
	}
	t.Fatal("no clashing key found")
	return testNode{}
}

func TestViewClashEarlierClaimKeeps(t *testing.T) {
	small := netip.MustParsePrefix("100.80.0.0/26") // 62 hosts: clashes are cheap to find
	self := newTestNode(t)
	other := clashing(t, self.pub, small)
	in := input(self, t0)
	in.net4, in.selfAddr4 = small, mesh.Candidate4(small, self.pub, 0)
	rec := func(claimed time.Time) gossip.Member {
		r := gossip.Record{Format: 1, Name: "other", PublicKey: other.pub.String(), ListenPort: 51820,
			Address4: mesh.Candidate4(small, other.pub, 0), Address6: mesh.Address6(net6, other.pub), Claimed: claimed.UnixNano()}
		return other.withRecord(r, gossip.StateAlive)
	}

	in.members = []gossip.Member{rec(t0.Add(time.Minute))} // the newcomer claimed later
	v := computeView(in)
	if v.selfLoses {
		t.Fatal("a live node must not be renumbered by a later claim")
	}
	p := v.peers[0]
	if len(p.allowed) != 1 || !p.allowed[0].Addr().Is6() || !strings.Contains(p.reason, "address conflict") {
		t.Fatalf("loser must keep only its IPv6: %+v", p)
	}

	in.members = []gossip.Member{rec(t0.Add(-time.Minute))} // an earlier claim
	v = computeView(in)
	if !v.selfLoses || !v.held[in.selfAddr4] {
		t.Fatalf("the earlier claim keeps the address: %+v", v)
	}
	next, ok := nextFree(small, self.pub, v.held)
	if !ok || next == in.selfAddr4 || mesh.CandidateIndex(small, self.pub, next) < 1 {
		t.Fatalf("next free candidate: %v %v", next, ok)
	}
}

func TestTrackerNewcomerCannotBackdate(t *testing.T) {
	tr := newTracker()
	est, late := newTestNode(t), newTestNode(t)
	tr.observe([]gossip.Member{est.member("est", gossip.StateAlive, t0)}, t0.Add(time.Hour))
	join := t0.Add(2 * time.Hour)
	backdated := late.member("late", gossip.StateAlive, t0.Add(-24*time.Hour))
	tr.observe([]gossip.Member{est.member("est", gossip.StateAlive, t0), backdated}, join)
	rec, _ := gossip.DecodeRecord(backdated.Meta)
	if got := tr.effective(late.pub.String(), rec); !got.Equal(join) {
		t.Fatalf("newcomer's claim counts from when it was first seen: got %v want %v", got, join)
	}
	estRec, _ := gossip.DecodeRecord(est.member("est", gossip.StateAlive, t0).Meta)
	if got := tr.effective(est.pub.String(), estRec); !got.Equal(t0) {
		t.Fatalf("established member keeps its claim time: %v", got)
	}
	if !tr.countRejection("x", "r") || tr.countRejection("x", "r") || tr.counts["r"] != 1 {
		t.Fatal("a rejection is counted once per member and reason")
	}
}

func TestKeepalivesOneInitiator(t *testing.T) {
	a, b := newTestNode(t), newTestNode(t)
	lo, hi := a, b
	if bytes.Compare(a.pub[:], b.pub[:]) > 0 {
		lo, hi = b, a
	}
	at := func(tr *tracker, self, peer mesh.Key, d time.Duration) (time.Duration, bool) {
		ps := []mesh.Peer{{PublicKey: peer}}
		pending := tr.keepalives(self, ps, t0.Add(d))
		return ps[0].Keepalive, pending
	}
	trLo, trHi := newTracker(), newTracker()
	for _, step := range []struct {
		tr          *tracker
		self, peer  mesh.Key
		d           time.Duration
		want        time.Duration
		wantPending bool
	}{
		{&trLo, lo.pub, hi.pub, 0, 0, true},
		{&trHi, hi.pub, lo.pub, 0, 0, true},
		{&trLo, lo.pub, hi.pub, initiatorDelay, mesh.Keepalive, false},
		{&trHi, hi.pub, lo.pub, initiatorDelay, 0, true},
		{&trHi, hi.pub, lo.pub, responderDelay, mesh.Keepalive, false},
	} {
		got, pending := at(step.tr, step.self, step.peer, step.d)
		if got != step.want || pending != step.wantPending {
			t.Fatalf("at %v: keepalive %v pending %v, want %v %v", step.d, got, pending, step.want, step.wantPending)
		}
	}
	trHi.keepalives(hi.pub, nil, t0.Add(time.Hour))
	if len(trHi.configured) != 0 {
		t.Fatal("departed peers are forgotten")
	}
}

func TestRates(t *testing.T) {
	r := newRates()
	k := newTestNode(t).pub
	r.observe([]mesh.PeerStats{{PublicKey: k, RxBytes: 1000, TxBytes: 500}}, t0)
	r.observe([]mesh.PeerStats{{PublicKey: k, RxBytes: 3000, TxBytes: 1500}}, t0.Add(2*time.Second))
	if r.rx[k] != 1000 || r.tx[k] != 500 {
		t.Fatalf("rates rx %v tx %v, want 1000 and 500 B/s", r.rx[k], r.tx[k])
	}
	r.observe([]mesh.PeerStats{{PublicKey: k, RxBytes: 10}}, t0.Add(3*time.Second))
	if r.rx[k] != 0 {
		t.Fatal("a counter that went down restarts the rate")
	}
	r.observe(nil, t0.Add(4*time.Second))
	if len(r.last) != 0 || len(r.rx) != 0 {
		t.Fatal("departed peers are dropped")
	}
}

func TestMergeObserved(t *testing.T) {
	in := []acl.Observed{
		{SrcName: "web1", DstName: "db1", Proto: "tcp", Port: 5432, Count: 6, Audited: true},
		{SrcName: "web1", DstName: "db1", Proto: "tcp", Port: 5432, Count: 1},
		{SrcName: "web1", DstName: "db1", Proto: "udp", Port: 54, Count: 1},
	}
	out := mergeObserved(in)
	if len(out) != 2 || out[0].Count != 7 || !out[0].Audited || out[1].Proto != "udp" {
		t.Fatalf("merged: %+v", out)
	}
}
