package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/api"
)

// flowsOutput is `segmesh flows --json` (DESIGN.md "Observed flows").
type flowsOutput struct {
	Flows   []api.Flow    `json:"flows"`
	Missing []api.Missing `json:"missing"`
}

// verdictWords maps --verdict to the flows' verdicts.
var verdictWords = map[string]string{"allow": api.VerdictAllowed, "deny": api.VerdictDenied, "audit": api.VerdictAudited}

func newFlows(g *globals) *cobra.Command {
	var asJSON, fleet bool
	var verdict, direction string
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Show the flows this node observed: allowed, denied and audited, in and out",
		Long: `Show the flow aggregates this node keeps: allowed flows into it (counted in
the kernel: exact connections, packets and bytes), denied and audited ones
into it and its local processes' egress denials (from the rate-limited
log: connections and packets are the logged attempts). Newest first.
With --fleet, every node's flows (column NODE: the observing node).

` + fleetExit,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			want := ""
			if verdict != "" {
				var ok bool
				if want, ok = verdictWords[verdict]; !ok {
					return &exitError{code: 2, err: fmt.Errorf("--verdict %q: want allow, deny or audit", verdict)}
				}
			}
			if direction != "" && direction != api.DirectionIn && direction != api.DirectionOut {
				return &exitError{code: 2, err: fmt.Errorf("--direction %q: want in or out", direction)}
			}
			all, err := fetchFlows(cmd, g, fleet)
			if err != nil {
				return err
			}
			out := flowsOutput{Flows: []api.Flow{}, Missing: all.Missing}
			for _, f := range all.Flows {
				if (want != "" && f.Verdict != want) || (direction != "" && f.Direction != direction) {
					continue
				}
				out.Flows = append(out.Flows, f)
			}
			warnMissing(cmd.ErrOrStderr(), out.Missing)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			return formatFlows(cmd, out.Flows, time.Now(), fleet)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"flows": [...], "missing": [...]} as JSON`)
	cmd.Flags().BoolVar(&fleet, "fleet", false, fleetHelp)
	cmd.Flags().StringVar(&verdict, "verdict", "", "only allow, deny or audit")
	cmd.Flags().StringVar(&direction, "direction", "", "only in (into this node) or out (its processes' egress denials)")
	return withExitStatus(cmd, exitFleetOK, exitFailed, exitUsage)
}

// fetchFlows is this node's flows (each with Node set), or with fleet
// every node's and the missing ones.
func fetchFlows(cmd *cobra.Command, g *globals, fleet bool) (*api.FleetFlows, error) {
	c := api.NewClient(g.socketPath())
	if fleet {
		return c.FleetFlows(cmd.Context())
	}
	st, err := c.Status(cmd.Context())
	if err != nil {
		return nil, err
	}
	fl, err := c.Flows(cmd.Context())
	if err != nil {
		return nil, err
	}
	for i := range fl {
		fl[i].Node = st.Self.Name
	}
	return &api.FleetFlows{Flows: fl, Missing: []api.Missing{}}, nil
}

func formatFlows(cmd *cobra.Command, fs []api.Flow, now time.Time, withNode bool) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	head := "DIR\tVERDICT\tPEER\tSEGMENTS\tPORT\tWORKLOAD\tCONN\tPACKETS\tBYTES\tLAST"
	if withNode {
		head = "NODE\t" + head
	}
	fmt.Fprintln(w, head)
	for _, f := range fs {
		peer := f.Peer
		if peer == "" {
			peer = f.SrcAddr
			if f.Direction == api.DirectionOut {
				peer = f.DstAddr
			}
		}
		port := f.Proto
		if f.Port != 0 {
			port = fmt.Sprintf("%s/%d", f.Proto, f.Port)
		}
		wl := "-"
		if f.Direction == api.DirectionOut && f.Workload != "" {
			wl = f.Workload
		}
		segs := strings.Join(f.PeerSegments, ",")
		if segs == "" {
			segs = "-"
		}
		if withNode {
			fmt.Fprintf(w, "%s\t", f.Node)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", f.Direction, f.Verdict, peer, segs, port, wl,
			f.Connections, f.Packets, f.Bytes, now.Sub(f.LastSeen).Round(time.Second))
	}
	return w.Flush()
}
