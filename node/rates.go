package node

import (
	"time"

	"github.com/segmesh/segmesh/mesh"
)

// rateSample is a peer's byte counters at one moment.
type rateSample struct {
	at     time.Time
	rx, tx int64
}

// rates tracks per-peer byte rates from successive WireGuard readings.
type rates struct {
	last map[mesh.Key]rateSample
	rx   map[mesh.Key]float64
	tx   map[mesh.Key]float64
}

func newRates() rates {
	return rates{last: map[mesh.Key]rateSample{}, rx: map[mesh.Key]float64{}, tx: map[mesh.Key]float64{}}
}

// observe folds in one reading; a counter that went down (peer re-added)
// restarts that peer's rate.
func (r *rates) observe(stats []mesh.PeerStats, now time.Time) {
	seen := map[mesh.Key]bool{}
	for _, s := range stats {
		seen[s.PublicKey] = true
		prev, ok := r.last[s.PublicKey]
		r.last[s.PublicKey] = rateSample{at: now, rx: s.RxBytes, tx: s.TxBytes}
		dt := now.Sub(prev.at).Seconds()
		if !ok || dt <= 0 || s.RxBytes < prev.rx || s.TxBytes < prev.tx {
			r.rx[s.PublicKey], r.tx[s.PublicKey] = 0, 0
			continue
		}
		r.rx[s.PublicKey] = float64(s.RxBytes-prev.rx) / dt
		r.tx[s.PublicKey] = float64(s.TxBytes-prev.tx) / dt
	}
	for k := range r.last {
		if !seen[k] {
			delete(r.last, k)
			delete(r.rx, k)
			delete(r.tx, k)
		}
	}
}
