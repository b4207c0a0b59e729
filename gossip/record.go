package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
)

// RecordFormat is the node record format this build writes. Decoders accept
// any format >= 1 and ignore fields they do not know, so a rolling upgrade can
// add fields.
const RecordFormat = 1

// MaxMetaSize is memberlist's node meta limit.
const MaxMetaSize = 512

// Record is what a node announces about itself. It carries no trust by
// itself: receivers verify addresses against the key.
type Record struct {
	Format     int               `json:"v"`
	Name       string            `json:"n"`             // human name, may repeat
	PublicKey  string            `json:"k"`             // base64 WireGuard public key; equals the memberlist node name
	ListenPort int               `json:"p"`             // WireGuard UDP port
	Address4   netip.Addr        `json:"a4"`            // claimed overlay IPv4
	Claimed    int64             `json:"c"`             // unix nanoseconds when Address4 was first claimed
	Address6   netip.Addr        `json:"a6"`            // overlay IPv6 (hash of the key)
	Tags       map[string]string `json:"t,omitempty"`   // declared tags
	Cert       []byte            `json:"crt,omitempty"` // CA mode: the node's certificate (compact form)
	Workloads  []Workload        `json:"w,omitempty"`   // the node's declared workloads (DESIGN.md "Workloads")
	// Ext is set only in a node meta stub: when the encoded record does not
	// fit into memberlist's node meta (MaxMetaSize), the meta carries the
	// record without Tags and Workloads (and without Cert when that still does
	// not fit) and Ext holds the digest of the full record, which
	// travels separately (see package gossip). Member.Meta holds the full
	// record (Ext empty) once it has arrived and the stub until then, so a
	// decoded record with Ext set means "tags not known yet".
	Ext string `json:"x,omitempty"`
}

// Workload is one workload a node declares: its name and its own tags
// (its identity is the node's tags and these).
type Workload struct {
	Name string            `json:"n"`
	Tags map[string]string `json:"t,omitempty"`
}

// ErrBadRecord wraps every decode failure.
var ErrBadRecord = errors.New("bad node record")

// Encode returns the record's wire form.
func (r Record) Encode() ([]byte, error) {
	if r.Format == 0 {
		r.Format = RecordFormat
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode node record: %w", err)
	}
	return b, nil
}

// DecodeRecord parses a record; unknown fields are ignored.
func DecodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) == 0 {
		return r, fmt.Errorf("%w: empty", ErrBadRecord)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if r.Format < 1 {
		return r, fmt.Errorf("%w: format %d", ErrBadRecord, r.Format)
	}
	if r.PublicKey == "" {
		return r, fmt.Errorf("%w: no public key", ErrBadRecord)
	}
	if r.ListenPort < 1 || r.ListenPort > 65535 {
		return r, fmt.Errorf("%w: listen port %d", ErrBadRecord, r.ListenPort)
	}
	return r, nil
}
