package gossip

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// A member holding the cluster key can send any user message and push/pull
// state (up to memberlist's 20 MiB per message). What it makes this node
// keep must stay bounded: full records in size and number, leave intents
// in number (with their re-broadcasts).

func quietNode(t *testing.T, name string) (*Gossip, *delegate) {
	t.Helper()
	cfg := testConfig(t, name)
	cfg.Logger = slog.New(slog.DiscardHandler)
	g := newNodeWithRecord(t, cfg)
	return g, &delegate{g: g}
}

func storedRecordBytes(g *Gossip) (n, size int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.records {
		n++
		size += len(r.data)
	}
	return n, size
}

// bigRecord is a valid full record of about size bytes.
func bigRecord(t *testing.T, i, size int) []byte {
	t.Helper()
	r := testRecord(fmt.Sprintf("insider-%d", i), map[string]string{"pad": strings.Repeat("x", size)})
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOversizedFullRecordsAreRefused(t *testing.T) {
	g, d := quietNode(t, "self")
	n0, _ := storedRecordBytes(g)
	// A record named by a member's stub is "referenced" and bypasses the
	// unreferenced count: size must still be bounded.
	huge := bigRecord(t, 0, 1<<20)
	ev := &events{g: g}
	stub := fmt.Appendf(nil, `{"v":1,"n":"m","k":"m","p":1,"x":%q}`, recordDigest(huge))
	ev.NotifyJoin(mlTestNode("m", stub))
	d.NotifyMsg(encodeRecordMsg(huge))
	d.MergeRemoteState(append([]byte{msgState}, stateBytes(msgRecord, "", bigRecord(t, 1, 2<<20))...), false)
	if n, size := storedRecordBytes(g); n != n0 || size > maxRecordSize {
		t.Fatalf("stored %d records (%d bytes) after oversized ones; want %d", n, size, n0)
	}
	// A record of a plausible size is still taken.
	ok := bigRecord(t, 2, 4<<10)
	d.NotifyMsg(encodeRecordMsg(ok))
	if n, _ := storedRecordBytes(g); n != n0+1 {
		t.Fatalf("a %d-byte record was refused", len(ok))
	}
	// And this node refuses to announce one it could not send.
	if _, err := splitRecord(testRecord("self", map[string]string{"pad": strings.Repeat("y", maxRecordSize)})); err == nil {
		t.Fatal("splitRecord accepted a record larger than maxRecordSize")
	}
}

func TestUnreferencedRecordsStayBounded(t *testing.T) {
	g, d := quietNode(t, "self")
	for i := range 3 * maxUnreferencedRecords / 2 {
		d.NotifyMsg(encodeRecordMsg(bigRecord(t, i, 8<<10)))
	}
	n, size := storedRecordBytes(g)
	if n > maxUnreferencedRecords+1 || size > (maxUnreferencedRecords+1)*maxRecordSize {
		t.Fatalf("%d unreferenced records kept (%d bytes)", n, size)
	}
	t.Logf("%d unreferenced records kept, %d KiB", n, size>>10)
}

func TestLeaveIntentFloodStaysBounded(t *testing.T) {
	g, d := quietNode(t, "self")
	ev := &events{g: g}
	ev.NotifyJoin(mlTestNode("victim", nil))
	for i := range 3 * maxLeaveIntents {
		d.NotifyMsg(encodeLeave(fmt.Sprintf("ghost-%d", i), uint64(i)))
		d.NotifyMsg(encodeLeave("victim", uint64(i))) // a fresh nonce each time
	}
	g.mu.Lock()
	intents, leaving := len(g.intents), len(g.leaving)
	g.mu.Unlock()
	if intents > maxLeaveIntents || leaving > maxLeaveIntents {
		t.Fatalf("%d leave intents, %d leaving entries kept after a flood", intents, leaving)
	}
	if q := g.queue.NumQueued(); q > maxLeaveIntents+16 {
		t.Fatalf("%d broadcasts queued after a flood of leave intents", q)
	}
}
