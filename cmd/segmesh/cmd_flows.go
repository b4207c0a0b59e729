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
	Missing []missingNode `json:"missing"`
}

type missingNode struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// verdictWords maps --verdict to the flows' verdicts.
var verdictWords = map[string]string{"allow": api.VerdictAllowed, "deny": api.VerdictDenied, "audit": api.VerdictAudited}

func newFlows(g *globals) *cobra.Command {
	var asJSON bool
	var verdict, direction string
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Show the flows this node observed: allowed, denied and audited, in and out",
		Long: `Show the flow aggregates this node keeps: allowed flows into it (counted in
the kernel: exact connections, packets and bytes), denied and audited ones
into it and its local processes' egress denials (from the rate-limited
log: connections and packets are the logged attempts). Newest first.`,
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
			c := api.NewClient(g.socketPath())
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			all, err := c.Flows(cmd.Context())
			if err != nil {
				return err
			}
			out := flowsOutput{Flows: []api.Flow{}, Missing: []missingNode{}}
			for _, f := range all {
				if (want != "" && f.Verdict != want) || (direction != "" && f.Direction != direction) {
					continue
				}
				f.Node = st.Self.Name
				out.Flows = append(out.Flows, f)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			return formatFlows(cmd, out.Flows, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"flows": [...], "missing": [...]} as JSON`)
	cmd.Flags().StringVar(&verdict, "verdict", "", "only allow, deny or audit")
	cmd.Flags().StringVar(&direction, "direction", "", "only in (into this node) or out (its processes' egress denials)")
	return cmd
}

func formatFlows(cmd *cobra.Command, fs []api.Flow, now time.Time) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DIR\tVERDICT\tPEER\tSEGMENTS\tPORT\tWORKLOAD\tCONN\tPACKETS\tBYTES\tLAST")
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
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", f.Direction, f.Verdict, peer, segs, port, wl,
			f.Connections, f.Packets, f.Bytes, now.Sub(f.LastSeen).Round(time.Second))
	}
	return w.Flush()
}
