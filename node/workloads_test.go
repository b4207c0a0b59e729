package node

import (
	"fmt"
	"testing"

	"github.com/segmesh/segmesh/gossip"
)

func TestCheckWorkloads(t *testing.T) {
	rec := gossip.Record{Tags: map[string]string{"role": "app"}}
	for i := range 33 {
		rec.Workloads = append(rec.Workloads, gossip.Workload{Name: fmt.Sprintf("w%d", i), Tags: map[string]string{"svc": "x"}})
	}
	rec.Workloads[1] = gossip.Workload{Name: "Bad_Name"}
	rec.Workloads[2] = gossip.Workload{Name: "w0"}
	rec.Workloads[3] = gossip.Workload{Name: "redef", Tags: map[string]string{"role": "db"}}
	rec.Workloads[4] = gossip.Workload{Name: "badtag", Tags: map[string]string{"svc": "a b"}}
	ok, rejected := checkWorkloads(rec, false)
	want := map[int]string{
		1:  `name "Bad_Name" is not 1-32 of [a-z0-9-]`,
		2:  "name declared twice", // the first w0 counts
		3:  "tag role redefines a node tag",
		4:  `bad tag "svc": "a b"`,
		32: "more than 32 workloads",
	}
	if fmt.Sprint(rejected) != fmt.Sprint(want) {
		t.Errorf("rejected %v\nwant     %v", rejected, want)
	}
	if len(ok) != 33-5 || ok[0].Name != "w0" {
		t.Errorf("%d workloads count, first %q", len(ok), ok[0].Name)
	}
	// CA mode: certificates carry no workload tags yet, so none count.
	if ok, rejected := checkWorkloads(gossip.Record{Workloads: rec.Workloads[:1]}, true); len(ok) != 0 || rejected[0] == "" {
		t.Errorf("certified: %v counted, rejected %v", ok, rejected)
	}
}
