package gossip

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Large records. memberlist caps node meta at MaxMetaSize bytes. A record
// that does not fit is announced as a stub (no tags and workloads, and no
// certificate when even that does not fit; Ext = digest of the full record) and the full record travels as a user message: broadcast when small,
// sent over TCP to every member when large, sent to every node that joins,
// and carried in push/pull state. Receivers keep full records by digest and
// show a member's full record once its stub's digest matches.

const (
	// recordTTL is how long an unreferenced full record is kept (it may
	// arrive before the meta that names it).
	recordTTL = 2 * time.Minute
	// maxUnreferencedRecords bounds full records no member refers to.
	maxUnreferencedRecords = 1024
	// maxRecordSize bounds a full record (tags and certificate included):
	// larger ones are refused from the mesh and never announced, so a
	// member cannot make others keep megabytes per record.
	maxRecordSize = 64 << 10
)

// localRecord is this node's announcement in both forms.
type localRecord struct {
	meta   []byte // what memberlist announces (record or stub)
	full   []byte // full record when meta is a stub, else nil
	digest string // digest of full, "" when not extended
}

// storedRecord is a full record received from the mesh.
type storedRecord struct {
	data     []byte
	received time.Time
}

// splitRecord encodes r as node meta, with a stub and a separate full
// record when it exceeds MaxMetaSize.
func splitRecord(r Record) (localRecord, error) {
	r.Ext = ""
	full, err := r.Encode()
	if err != nil {
		return localRecord{}, err
	}
	if len(full) > maxRecordSize {
		return localRecord{}, fmt.Errorf("node record is %d bytes, more than %d (too many tags or workloads?)", len(full), maxRecordSize)
	}
	if len(full) <= MaxMetaSize {
		return localRecord{meta: full}, nil
	}
	stub := r
	stub.Tags, stub.Workloads = nil, nil
	stub.Ext = recordDigest(full)
	meta, err := stub.Encode()
	if err != nil {
		return localRecord{}, err
	}
	if len(meta) > MaxMetaSize && len(stub.Cert) > 0 {
		// A certificate with many tags or workload tags: the stub goes
		// without it and CA-mode receivers wait for the full record.
		stub.Cert = nil
		if meta, err = stub.Encode(); err != nil {
			return localRecord{}, err
		}
	}
	if len(meta) > MaxMetaSize {
		return localRecord{}, fmt.Errorf("node record without tags and workloads is %d bytes, more than %d", len(meta), MaxMetaSize)
	}
	return localRecord{meta: meta, full: full, digest: stub.Ext}, nil
}

// recordDigest names a full record: hex of the first 16 bytes of SHA-256.
func recordDigest(full []byte) string {
	sum := sha256.Sum256(full)
	return hex.EncodeToString(sum[:16])
}

// metaExt returns the Ext digest of a meta stub, "" for a full record or
// undecodable meta.
func metaExt(meta []byte) string {
	var v struct {
		Ext string `json:"x"`
	}
	if len(meta) == 0 || json.Unmarshal(meta, &v) != nil {
		return ""
	}
	return v.Ext
}

func (l localRecord) equal(o localRecord) bool {
	return bytes.Equal(l.meta, o.meta) && bytes.Equal(l.full, o.full)
}

// storeRecordLocked keeps a full record received from the mesh. It returns
// whether it was new, and whether a known member (or this node) refers to it.
// g.mu must be held.
func (g *Gossip) storeRecordLocked(full []byte, now time.Time) (isNew, referenced bool, err error) {
	if len(full) > maxRecordSize {
		return false, false, fmt.Errorf("%w: full record of %d bytes, more than %d", ErrBadRecord, len(full), maxRecordSize)
	}
	r, err := DecodeRecord(full)
	if err != nil {
		return false, false, err
	}
	if r.Ext != "" {
		return false, false, fmt.Errorf("%w: full record carries an extension digest", ErrBadRecord)
	}
	d := recordDigest(full)
	if _, ok := g.records[d]; ok {
		return false, false, nil
	}
	referenced = d == g.local.digest
	for _, e := range g.members {
		if e.ext == d {
			referenced = true
			break
		}
	}
	if !referenced && len(g.records) >= len(g.members)+1+maxUnreferencedRecords {
		return false, false, fmt.Errorf("too many unreferenced full records (%d)", len(g.records))
	}
	g.records[d] = &storedRecord{data: bytes.Clone(full), received: now}
	return true, referenced, nil
}

// acceptRecord handles a full record from a message or push/pull.
func (g *Gossip) acceptRecord(full []byte) {
	g.mu.Lock()
	isNew, referenced, err := g.storeRecordLocked(full, time.Now())
	g.mu.Unlock()
	if err != nil {
		g.log.Warn("dropping full node record", "err", err)
		return
	}
	if !isNew {
		return
	}
	if msg := encodeRecordMsg(full); len(msg) <= maxBroadcastSize {
		g.queue.QueueBroadcast(&broadcast{name: "rec:" + recordDigest(full), msg: msg})
	}
	if referenced {
		g.notify()
	}
}

// gcRecordsLocked drops full records nobody refers to any more.
func (g *Gossip) gcRecordsLocked(now time.Time) {
	if len(g.records) == 0 {
		return
	}
	used := make(map[string]bool, len(g.members)+1)
	used[g.local.digest] = true
	for _, e := range g.members {
		if e.ext != "" {
			used[e.ext] = true
		}
	}
	for d, r := range g.records {
		if !used[d] && now.Sub(r.received) > recordTTL {
			delete(g.records, d)
		}
	}
}

// resolveMetaLocked returns the bytes Members shows for e: the full record
// when known, else the meta as announced. g.mu must be held.
func (g *Gossip) resolveMetaLocked(e *entry) []byte {
	if e.ext != "" {
		if r, ok := g.records[e.ext]; ok {
			return r.data
		}
	}
	return e.meta
}

// referencedRecordsLocked returns the full records push/pull should carry:
// this node's and every known member's.
func (g *Gossip) referencedRecordsLocked() [][]byte {
	var out [][]byte
	seen := map[string]bool{}
	add := func(d string) {
		if d == "" || seen[d] {
			return
		}
		seen[d] = true
		if r, ok := g.records[d]; ok {
			out = append(out, r.data)
		}
	}
	add(g.local.digest)
	for _, e := range g.members {
		add(e.ext)
	}
	return out
}
