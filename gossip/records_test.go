package gossip

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// bigTags returns tags whose JSON is roughly size bytes.
func bigTags(prefix string, size int) map[string]string {
	tags := map[string]string{}
	for i := 0; len(tags)*40 < size; i++ {
		tags[fmt.Sprintf("%s-key-%03d", prefix, i)] = strings.Repeat("v", 24)
	}
	return tags
}

func TestSplitRecord(t *testing.T) {
	small := testRecord("a", map[string]string{"role": "db"})
	lr, err := splitRecord(small)
	if err != nil {
		t.Fatal(err)
	}
	if lr.full != nil || lr.digest != "" || metaExt(lr.meta) != "" {
		t.Fatalf("small record split: %+v", lr)
	}

	big := testRecord("a", bigTags("t", 2000))
	lr, err = splitRecord(big)
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.meta) > MaxMetaSize {
		t.Fatalf("stub is %d bytes", len(lr.meta))
	}
	stub, err := DecodeRecord(lr.meta)
	if err != nil {
		t.Fatal(err)
	}
	if stub.Ext == "" || stub.Ext != lr.digest || stub.Tags != nil || stub.PublicKey != "a" {
		t.Fatalf("stub = %+v", stub)
	}
	full, err := DecodeRecord(lr.full)
	if err != nil {
		t.Fatal(err)
	}
	if full.Ext != "" || len(full.Tags) != len(big.Tags) || recordDigest(lr.full) != lr.digest {
		t.Fatalf("full record wrong: ext %q, %d tags", full.Ext, len(full.Tags))
	}

	huge := testRecord(strings.Repeat("n", 600), nil)
	if _, err := splitRecord(huge); err == nil {
		t.Fatal("record whose stub exceeds the meta limit accepted")
	}
	if _, err := New(testConfig(t, "x"), huge); err == nil {
		t.Fatal("New accepted a record that cannot fit")
	}
}

func TestLargeRecordPropagatesInFull(t *testing.T) {
	tags := bigTags("big", 700) // > 512: stub + full record by broadcast
	a := startNode(t, testConfig(t, "a"), testRecord("a", tags))
	if meta := a.ml.LocalNode().Meta; len(meta) > MaxMetaSize || metaExt(meta) == "" {
		t.Fatalf("a announces %d bytes of meta, ext %q", len(meta), metaExt(meta))
	}
	b := startNode(t, testConfig(t, "b", a.Addr()), testRecord("b", nil))
	rec := waitRecord(t, b, "a", tagsEqual(tags))
	if rec.PublicKey != "a" {
		t.Fatalf("record = %+v", rec)
	}
	m, _ := member(b, "a")
	want, _ := testRecord("a", tags).Encode()
	if !bytes.Equal(m.Meta, want) {
		t.Fatalf("Member.Meta is not the full record:\n got %s\nwant %s", m.Meta, want)
	}

	// A late joiner learns it too (from a on join, and from push/pull).
	c := startNode(t, testConfig(t, "c", b.Addr()), testRecord("c", nil))
	waitRecord(t, c, "a", tagsEqual(tags))

	// Update to a record far above one gossip packet: sent over TCP.
	huge := bigTags("huge", 6000)
	if err := a.UpdateLocal(testRecord("a", huge)); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, b, "a", tagsEqual(huge))
	waitRecord(t, c, "a", tagsEqual(huge))

	// Back to a small record: plain meta again.
	if err := a.UpdateLocal(testRecord("a", map[string]string{"k": "v"})); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, c, "a", tagsEqual(map[string]string{"k": "v"}))
}

func TestLargeRecordOfJoinerReachesEveryone(t *testing.T) {
	nodes := startMesh(t, 3, nil)
	tags := bigTags("late", 3000)
	d := startNode(t, testConfig(t, "d", nodes[0].Addr()), testRecord("d", tags))
	for _, g := range nodes {
		waitRecord(t, g, "d", tagsEqual(tags))
	}
	waitConverged(t, append(nodes, d)...)
}

func TestStubShownUntilFullRecordArrives(t *testing.T) {
	g, err := New(testConfig(t, "a"), testRecord("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	lr, err := splitRecord(testRecord("x", bigTags("x", 1500)))
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{g: g}
	ev.NotifyJoin(mlTestNode("x", lr.meta))
	m, _ := member(g, "x")
	if !bytes.Equal(m.Meta, lr.meta) {
		t.Fatal("before the full record, Meta should be the stub")
	}
	(&delegate{g: g}).NotifyMsg(encodeRecordMsg(lr.full))
	m, _ = member(g, "x")
	if !bytes.Equal(m.Meta, lr.full) {
		t.Fatal("after the full record, Meta should be the full record")
	}
	// A record nobody refers to is accepted (it may precede the meta)...
	other, _ := splitRecord(testRecord("y", bigTags("y", 1500)))
	(&delegate{g: g}).NotifyMsg(encodeRecordMsg(other.full))
	g.mu.Lock()
	_, kept := g.records[other.digest]
	g.mu.Unlock()
	if !kept {
		t.Fatal("unreferenced full record dropped at once")
	}
	// ...and a stub pointing at it resolves right away.
	ev.NotifyJoin(mlTestNode("y", other.meta))
	if m, _ := member(g, "y"); !bytes.Equal(m.Meta, other.full) {
		t.Fatal("stub arriving after its full record not resolved")
	}
	// Garbage is not stored.
	(&delegate{g: g}).NotifyMsg(encodeRecordMsg([]byte(`{"v":1}`)))
	g.mu.Lock()
	n := len(g.records)
	g.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d records stored, want 2", n)
	}
}

// TestSplitRecordWorkloads: workloads travel with the full record; a
// record too large for node meta leaves them out of the stub, like tags.
func TestSplitRecordWorkloads(t *testing.T) {
	r := testRecord("app1", map[string]string{"role": "app"})
	for i := range 32 {
		r.Workloads = append(r.Workloads, Workload{Name: fmt.Sprintf("workload-%02d", i), Tags: map[string]string{"svc": "service-name"}})
	}
	lr, err := splitRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	if lr.full == nil || len(lr.meta) > MaxMetaSize {
		t.Fatalf("meta %d bytes, full record separate: %v", len(lr.meta), lr.full != nil)
	}
	stub, err := DecodeRecord(lr.meta)
	if err != nil || stub.Workloads != nil || stub.Tags != nil || stub.Ext == "" {
		t.Fatalf("stub %+v, %v", stub, err)
	}
	full, err := DecodeRecord(lr.full)
	if err != nil || len(full.Workloads) != 32 || full.Workloads[31].Name != "workload-31" || full.Workloads[0].Tags["svc"] != "service-name" {
		t.Fatalf("full record workloads %+v, %v", full.Workloads, err)
	}
	// A small record carries them in the meta itself.
	small := testRecord("app2", nil)
	small.Workloads = []Workload{{Name: "api", Tags: map[string]string{"svc": "api"}}}
	lr, err = splitRecord(small)
	if err != nil || lr.full != nil {
		t.Fatalf("small record split: %v, %v", lr.full != nil, err)
	}
	if got, err := DecodeRecord(lr.meta); err != nil || len(got.Workloads) != 1 || got.Workloads[0].Name != "api" {
		t.Fatalf("small record %+v, %v", got, err)
	}
}

// TestSplitRecordLargeCertificate: a certificate that keeps the stub over
// the meta limit (many tags or workload tags) is left out of the stub and
// travels in the full record; one that fits stays in the stub.
func TestSplitRecordLargeCertificate(t *testing.T) {
	small := testRecord("a", nil)
	small.Cert = bytes.Repeat([]byte{1}, 180)
	small.Workloads = []Workload{{Name: "api", Tags: bigTags("w", 600)}}
	lr, err := splitRecord(small)
	if err != nil {
		t.Fatal(err)
	}
	if stub, err := DecodeRecord(lr.meta); err != nil || stub.Ext == "" || !bytes.Equal(stub.Cert, small.Cert) {
		t.Fatalf("a certificate that fits stays in the stub: %v %+v", err, stub)
	}

	big := small
	big.Cert = bytes.Repeat([]byte{2}, 400)
	lr, err = splitRecord(big)
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.meta) > MaxMetaSize {
		t.Fatalf("stub is %d bytes", len(lr.meta))
	}
	stub, err := DecodeRecord(lr.meta)
	if err != nil || stub.Ext != lr.digest || stub.Cert != nil {
		t.Fatalf("stub: %v %+v", err, stub)
	}
	full, err := DecodeRecord(lr.full)
	if err != nil || !bytes.Equal(full.Cert, big.Cert) || len(full.Workloads) != 1 {
		t.Fatalf("full record: %v %+v", err, full)
	}
}
