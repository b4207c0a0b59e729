package gossip

import (
	"fmt"
	"testing"
)

// BenchmarkGetBroadcasts1000 is what memberlist asks of this package on
// every gossip packet (several times a second per node) while broadcasts
// are pending, with 1,000 members known: the queued user broadcasts, whose
// retransmit limit is sized by the member count. Each round queues one
// small document version (replacing the previous) and takes the queue.
func BenchmarkGetBroadcasts1000(b *testing.B) {
	g := newNodeWithRecord(b, testConfig(b, "self"))
	ev := &events{g: g}
	for i := range 1000 {
		ev.NotifyJoin(mlTestNode(fmt.Sprintf("n%04d", i), nil))
	}
	if n := g.numNodes(); n != 1001 {
		b.Fatalf("numNodes = %d, want 1001", n)
	}
	d := &delegate{g: g}
	msg := encodeDocument("bench", []byte("v"))
	b.ReportAllocs()
	for b.Loop() {
		g.queue.QueueBroadcast(&broadcast{name: "doc:bench", msg: msg})
		if len(d.GetBroadcasts(2, 1400)) != 1 {
			b.Fatal("queued broadcast not handed out")
		}
	}
}
