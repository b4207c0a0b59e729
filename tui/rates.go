package tui

import (
	"time"

	"github.com/segmesh/segmesh/api"
)

// minRateWindow is the shortest interval a rate is computed over, so bursts
// of status events a few hundred milliseconds apart do not make it jumpy.
const minRateWindow = time.Second

type sample struct {
	at     time.Time
	rx, tx int64
}

type rate struct{ rx, tx float64 }

// rateTracker turns the byte counters of successive statuses into per-peer
// receive and transmit rates (bytes/s), keyed by public key.
type rateTracker struct {
	samples map[string]sample
	rates   map[string]rate
}

func newRateTracker() rateTracker {
	return rateTracker{samples: map[string]sample{}, rates: map[string]rate{}}
}

// update takes the counters of one status observed at t. A peer's rate is
// computed once its previous sample is at least minRateWindow old; a counter
// that went down (peer re-added, daemon restarted) restarts the peer.
func (r rateTracker) update(peers []api.Peer, t time.Time) {
	seen := make(map[string]bool, len(peers))
	for _, p := range peers {
		seen[p.PublicKey] = true
		cur := sample{at: t, rx: p.RxBytes, tx: p.TxBytes}
		prev, ok := r.samples[p.PublicKey]
		if !ok || cur.rx < prev.rx || cur.tx < prev.tx || t.Before(prev.at) {
			r.samples[p.PublicKey] = cur
			delete(r.rates, p.PublicKey)
			continue
		}
		dt := t.Sub(prev.at)
		if dt < minRateWindow {
			continue
		}
		r.rates[p.PublicKey] = rate{
			rx: float64(cur.rx-prev.rx) / dt.Seconds(),
			tx: float64(cur.tx-prev.tx) / dt.Seconds(),
		}
		r.samples[p.PublicKey] = cur
	}
	for k := range r.samples {
		if !seen[k] {
			delete(r.samples, k)
			delete(r.rates, k)
		}
	}
}

// get returns the peer's rate and whether one is known yet.
func (r rateTracker) get(key string) (rate, bool) {
	v, ok := r.rates[key]
	return v, ok
}
