package node

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/segmesh/segmesh/api"
)

const (
	streamMinInterval = 250 * time.Millisecond // at most ~4 status events a second
	streamMaxInterval = 2 * time.Second        // and at least one every 2 s (rates)
)

// serveStream is GET /v1/stream: NDJSON events, a status first, then status
// on changes and flows as they happen, until the client goes away.
func (n *Node) serveStream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeJSON(w, http.StatusInternalServerError, api.Error{Error: "streaming unsupported"})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(ev api.Event) bool {
		ev.Time = time.Now().UTC().Format(time.RFC3339Nano)
		if err := enc.Encode(ev); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	flows, stop := n.subscribeFlows()
	defer stop()
	tick := time.NewTicker(streamMaxInterval)
	defer tick.Stop()
	var last time.Time
	pending := true // the first status goes out at once
	for {
		if pending && time.Since(last) >= streamMinInterval {
			st := n.Status()
			if !send(api.Event{Type: api.EventStatus, Status: &st}) {
				return
			}
			last, pending = time.Now(), false
		}
		var wake <-chan time.Time
		if pending {
			wake = time.After(streamMinInterval - time.Since(last))
		}
		select {
		case <-r.Context().Done():
			return
		case <-n.changed.wait():
			pending = true
		case <-tick.C:
			pending = true
		case <-wake:
		case f, ok := <-flows:
			if !ok {
				flows = nil
				continue
			}
			if !send(api.Event{Type: api.EventFlow, Flow: &f}) {
				return
			}
		}
	}
}
