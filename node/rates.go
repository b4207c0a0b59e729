package node

import (
	"time"

	"github.com/segmesh/segmesh/mesh"
)

// rateSample is a peer's byte counters at one moment.
type rateSample struct {
	at     time.Time
	rx, tx int64
	round  uint64 // the observe call that took it
}

// rates tracks per-peer byte rates from successive WireGuard readings.
type rates struct {
	last  map[mesh.Key]rateSample
	rx    map[mesh.Key]float64
	tx    map[mesh.Key]float64
	round uint64 // observe calls
}

func newRates() rates {
	return rates{last: map[mesh.Key]rateSample{}, rx: map[mesh.Key]float64{}, tx: map[mesh.Key]float64{}}
}

// observe folds in one reading; a counter that went down (peer re-added)
// restarts that peer's rate.
func (r *rates) observe(stats []mesh.PeerStats, now time.Time) {
	r.round++
	for _, s := range stats {
		prev, ok := r.last[s.PublicKey]
		r.last[s.PublicKey] = rateSample{at: now, rx: s.RxBytes, tx: s.TxBytes, round: r.round}
		dt := now.Sub(prev.at).Seconds()
		if !ok || dt <= 0 || s.RxBytes < prev.rx || s.TxBytes < prev.tx {
			r.rx[s.PublicKey], r.tx[s.PublicKey] = 0, 0
			continue
		}
		r.rx[s.PublicKey] = float64(s.RxBytes-prev.rx) / dt
		r.tx[s.PublicKey] = float64(s.TxBytes-prev.tx) / dt
	}
	for k, s := range r.last {
		if s.round != r.round {
			delete(r.last, k)
			delete(r.rx, k)
			delete(r.tx, k)
		}
	}
}
