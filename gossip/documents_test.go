package gossip

import (
	"bytes"
	"crypto/rand"
	"maps"
	"sync"
	"testing"
	"time"
)

// memDocs is a DocumentHandler keeping the newest version of each kind; a
// document's first byte is its version.
type memDocs struct {
	mu      sync.Mutex
	docs    map[string][]byte
	offered map[string]int
	refuse  bool // MergeDocument always returns false
}

func newMemDocs() *memDocs {
	return &memDocs{docs: map[string][]byte{}, offered: map[string]int{}}
}

func (d *memDocs) MergeDocument(kind string, data []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.offered[kind]++
	if cur, ok := d.docs[kind]; d.refuse || len(data) == 0 || (ok && data[0] <= cur[0]) {
		return false
	}
	d.docs[kind] = data
	return true
}

func (d *memDocs) Documents() map[string][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.docs)
}

func (d *memDocs) set(kind string, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.docs[kind] = data
}

func (d *memDocs) get(kind string) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.docs[kind]
}

func (d *memDocs) offers(kind string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.offered[kind]
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func waitDoc(t *testing.T, who string, d *memDocs, kind string, want []byte) {
	t.Helper()
	waitFor(t, 15*time.Second, who+" to hold document "+kind, func() bool { return bytes.Equal(d.get(kind), want) })
}

func TestPublishSmallAndLargeDocuments(t *testing.T) {
	handlers := []*memDocs{newMemDocs(), newMemDocs(), newMemDocs()}
	nodes := startMesh(t, 3, func(i int, c *Config) { c.Documents = handlers[i] })

	small := []byte("\x01small policy")
	large := randomBytes(t, 100<<10) // > 64 KiB: TCP to every member
	large[0] = 1
	handlers[0].set("small", small)
	handlers[0].set("large", large)
	if err := nodes[0].Publish("small", small); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Publish("large", large); err != nil {
		t.Fatal(err)
	}
	for i, h := range handlers[1:] {
		waitDoc(t, nodes[i+1].cfg.NodeName, h, "small", small)
		waitDoc(t, nodes[i+1].cfg.NodeName, h, "large", large)
	}

	// A late joiner catches up through push/pull.
	late := newMemDocs()
	cfg := testConfig(t, "late", nodes[2].Addr())
	cfg.Documents = late
	startNode(t, cfg, testRecord("late", nil))
	waitDoc(t, "late", late, "small", small)
	waitDoc(t, "late", late, "large", large)

	// A newer version replaces the older one everywhere.
	small2 := []byte("\x02small policy")
	handlers[1].set("small", small2)
	if err := nodes[1].Publish("small", small2); err != nil {
		t.Fatal(err)
	}
	waitDoc(t, "n0", handlers[0], "small", small2)
	waitDoc(t, "late", late, "small", small2)
}

func TestRefusedDocumentIsNotRebroadcast(t *testing.T) {
	refuser := newMemDocs()
	refuser.refuse = true
	accepter := newMemDocs()
	nodes := startMesh(t, 3, func(i int, c *Config) {
		switch i {
		case 0:
			c.Documents = newMemDocs()
		case 1:
			c.Documents = refuser
		case 2:
			c.Documents = accepter
		}
	})
	doc := []byte("\x01doc")
	if err := nodes[0].Publish("p", doc); err != nil {
		t.Fatal(err)
	}
	waitDoc(t, "n2", accepter, "p", doc)
	waitFor(t, 15*time.Second, "n1 to be offered the document", func() bool { return refuser.offers("p") > 0 })
	if n := nodes[1].forwarded.Load(); n != 0 {
		t.Errorf("refusing node re-broadcast %d documents", n)
	}
	if n := nodes[2].forwarded.Load(); n == 0 {
		t.Error("accepting node did not re-broadcast the new document")
	}
}

func TestPublishValidates(t *testing.T) {
	g, err := New(testConfig(t, "a"), testRecord("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Shutdown() })
	if err := g.Publish("", []byte("x")); err == nil {
		t.Error("empty kind accepted")
	}
	if err := g.Publish(string(make([]byte, MaxKindLen+1)), []byte("x")); err == nil {
		t.Error("overlong kind accepted")
	}
	if err := g.Publish("k", make([]byte, MaxDocumentSize+1)); err == nil {
		t.Error("oversized document accepted")
	}
	if err := g.Publish("k", []byte{}); err != nil {
		t.Errorf("empty document: %v", err)
	}
}
