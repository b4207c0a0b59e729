package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// Publish sends a document to the mesh. Documents that fit one gossip packet
// (about 1000 bytes with headers) are queued for UDP gossip, which receivers
// re-broadcast when new; larger ones are sent over TCP to every alive member
// by a background sender. Publish returns once the document is queued; a
// member it does not reach (down, partitioned, joining later) gets it through
// push/pull, which carries DocumentHandler.Documents. Publish does not offer
// the document to the local handler: the caller already holds it.
func (g *Gossip) Publish(kind string, data []byte) error {
	if g.closed.Load() {
		return errors.New("publish: gossip is shut down")
	}
	if kind == "" || len(kind) > MaxKindLen {
		return fmt.Errorf("publish: document kind must be 1..%d bytes", MaxKindLen)
	}
	if len(data) > MaxDocumentSize {
		return fmt.Errorf("publish %s: document is %d bytes, more than %d", kind, len(data), MaxDocumentSize)
	}
	msg := encodeDocument(kind, data)
	if len(msg) <= maxBroadcastSize {
		g.queue.QueueBroadcast(&broadcast{name: "doc:" + kind, msg: msg})
		return nil
	}
	if !g.enqueueSend(sendJob{all: true, msg: msg, what: "document " + kind}) {
		return fmt.Errorf("publish %s: send queue full", kind)
	}
	return nil
}

// PublishUrgent is Publish for documents that must reach every member at
// once (an operator's quarantine, policy, revocation or node removal): it is gossiped as Publish does and, whatever its
// size, also sent over TCP to every alive member, so a lost gossip packet
// does not leave a member waiting for push/pull.
func (g *Gossip) PublishUrgent(kind string, data []byte) error {
	if err := g.Publish(kind, data); err != nil {
		return err
	}
	msg := encodeDocument(kind, data)
	if len(msg) > maxBroadcastSize {
		return nil // Publish sent it to everybody already
	}
	if !g.enqueueSend(sendJob{all: true, msg: msg, what: "document " + kind}) {
		return fmt.Errorf("publish %s: send queue full", kind)
	}
	return nil
}

// acceptDocument offers a received document to the handler. A new small
// document is re-broadcast; a new large one learned through push/pull is
// forwarded to every member (one sent directly by its publisher already went
// to everybody).
func (g *Gossip) acceptDocument(kind string, data []byte, viaPushPull bool) {
	h := g.cfg.Documents
	if h == nil {
		g.log.Debug("dropping document: no handler", "kind", kind)
		return
	}
	data = bytes.Clone(data)
	if data == nil {
		data = []byte{}
	}
	if !h.MergeDocument(kind, data) {
		return
	}
	g.notify()
	msg := encodeDocument(kind, data)
	switch {
	case len(msg) <= maxBroadcastSize:
		g.queue.QueueBroadcast(&broadcast{name: "doc:" + kind, msg: msg})
		g.forwarded.Add(1)
	case viaPushPull:
		if g.enqueueSend(sendJob{all: true, msg: msg, what: "document " + kind}) {
			g.forwarded.Add(1)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
