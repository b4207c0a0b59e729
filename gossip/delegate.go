package gossip

import (
	"github.com/hashicorp/memberlist"
)

// delegate is memberlist's Delegate: node meta, user messages, broadcasts
// and push/pull state. Every method is called from memberlist goroutines.
type delegate struct {
	g *Gossip
}

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta returns this node's record (or stub); it always fits MaxMetaSize.
func (d *delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.local.meta) > limit {
		// Cannot happen: splitRecord guarantees MaxMetaSize. memberlist
		// panics on oversized meta, so announce nothing rather than crash.
		d.g.log.Error("node meta larger than memberlist's limit", "size", len(d.g.local.meta), "limit", limit)
		return nil
	}
	return append([]byte(nil), d.g.local.meta...)
}

// NotifyMsg receives user messages (gossip broadcasts and direct sends).
// memberlist may reuse buf after the call.
func (d *delegate) NotifyMsg(buf []byte) {
	d.g.handleMessage(buf)
}

// GetBroadcasts hands memberlist's gossip the queued user broadcasts.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

// LocalState is the push/pull state: documents and full records.
func (d *delegate) LocalState(join bool) []byte {
	return d.g.localState()
}

// MergeRemoteState merges a peer's push/pull state.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	d.g.mergeRemoteState(buf)
}

// broadcast is a queued user message. Messages with the same name replace
// each other in the queue (a newer document version drops the older one).
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	nb, ok := o.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// handleMessage dispatches one user message by its type byte. Undecodable
// or unknown messages are logged and dropped.
func (g *Gossip) handleMessage(buf []byte) {
	if len(buf) == 0 {
		g.log.Debug("dropping empty gossip message")
		return
	}
	body := buf[1:]
	switch buf[0] {
	case msgDocument:
		kind, data, err := decodeDocument(body)
		if err != nil {
			g.log.Warn("dropping undecodable document message", "err", err)
			return
		}
		g.acceptDocument(kind, data, false)
	case msgRecord:
		g.acceptRecord(body)
	case msgLeave:
		name, nonce, err := decodeLeave(body)
		if err != nil {
			g.log.Warn("dropping undecodable leave intent", "err", err)
			return
		}
		g.leaveIntent(name, nonce)
	default:
		g.log.Warn("dropping gossip message of unknown type", "type", buf[0], "size", len(buf))
	}
}

// localState encodes documents and referenced full records for push/pull.
func (g *Gossip) localState() []byte {
	enc := newStateEncoder()
	g.mu.Lock()
	records := g.referencedRecordsLocked()
	g.mu.Unlock()
	for _, r := range records {
		if !enc.add(msgRecord, "", r) {
			g.log.Error("push/pull state full: full node record left out", "size", len(r))
		}
	}
	if h := g.cfg.Documents; h != nil {
		docs := h.Documents()
		for _, kind := range sortedKeys(docs) {
			if len(kind) == 0 || len(kind) > MaxKindLen {
				g.log.Error("document with invalid kind left out of push/pull", "kind_len", len(kind))
				continue
			}
			if !enc.add(msgDocument, kind, docs[kind]) {
				g.log.Error("push/pull state full: document left out", "kind", kind, "size", len(docs[kind]))
			}
		}
	}
	return enc.bytes()
}

// mergeRemoteState offers a peer's documents and full records.
func (g *Gossip) mergeRemoteState(buf []byte) {
	if len(buf) == 0 {
		return
	}
	if buf[0] != msgState {
		g.log.Warn("dropping push/pull state of unknown type", "type", buf[0], "size", len(buf))
		return
	}
	entries, err := decodeState(buf[1:])
	if err != nil {
		g.log.Warn("push/pull state is malformed; using the entries before the error", "err", err, "entries", len(entries))
	}
	for _, e := range entries {
		switch e.typ {
		case msgDocument:
			if e.key == "" {
				g.log.Warn("dropping push/pull document with empty kind")
				continue
			}
			g.acceptDocument(e.key, e.value, true)
		case msgRecord:
			g.acceptRecord(e.value)
		default:
			g.log.Debug("skipping push/pull entry of unknown type", "type", e.typ)
		}
	}
}
