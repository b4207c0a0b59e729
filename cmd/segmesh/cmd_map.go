package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/api"
	"github.com/segmesh/segmesh/ca"
	"github.com/segmesh/segmesh/fleetmap"
)

// mapFormats are the values of `segmesh map --format`.
var mapFormats = []string{"mermaid", "dot", "svg", "json"}

func newMap(g *globals) *cobra.Command {
	var fleet bool
	var format, out string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "map",
		Short: "Draw the application dependency map: segments and the observed traffic between them",
		Long: `Draw the application dependency map from the observed flows: one box per
segment (with its member count), one edge per observed segment pair and
verdict (allowed, denied, audited) with its ports and connections, and a
dashed edge for every policy rule no observed allowed traffic used.

Formats: mermaid (default; pastes into Markdown), dot (for Graphviz:
dot -Tsvg), svg (drawn by segmesh itself; opens in a browser) and json
({"segments", "edges", "unused", "missing", "since"}).

Without --fleet only this node's flows count; with --fleet every up peer
is asked over the mesh through its peer API (2 s each). Exit 2 on a bad
flag.

` + fleetExit + `

--since keeps only flows last seen within that window (0: every kept
flow). --out writes the file atomically (mode 0644) instead of printing to
stdout.

See docs/map.md.`,
		Example: `  segmesh map --fleet > map.mmd
  segmesh map --fleet --format svg --out map.svg
  segmesh map --fleet --format dot | dot -Tsvg > map.svg
  segmesh map --since 15m --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(mapFormats, format) {
				return &exitError{code: 2, err: fmt.Errorf("--format %q: want %s", format, strings.Join(mapFormats, ", "))}
			}
			if since < 0 {
				return &exitError{code: 2, err: fmt.Errorf("--since %s: want a positive duration (or 0 for all)", since)}
			}
			in, err := fetchMapInput(cmd.Context(), api.NewClient(g.socketPath()), fleet)
			if err != nil {
				return err
			}
			in.Since, in.Now = since, time.Now()
			m := buildMap(in)
			data, err := renderMap(m, format)
			if err != nil {
				return err
			}
			warnMissing(cmd.ErrOrStderr(), in.Missing)
			if out == "" {
				_, err := cmd.OutOrStdout().Write(data)
				return err
			}
			return ca.WriteFile(out, data, 0o644, true)
		},
	}
	cmd.Flags().BoolVar(&fleet, "fleet", false, fleetHelp)
	cmd.Flags().StringVar(&format, "format", "mermaid", "output format: "+strings.Join(mapFormats, ", "))
	cmd.Flags().StringVar(&out, "out", "", "write to FILE (atomically, mode 0644) instead of stdout")
	cmd.Flags().DurationVar(&since, "since", 0, "only flows last seen within this window, e.g. 15m (0: all kept flows)")
	return withExitStatus(cmd, exitFleetOK, exitFailed, exitUsage)
}

// fetchMapInput asks the daemon for the segments, the active policy, its
// name and the flows: its own, or with fleet every node's and the nodes that
// did not answer.
func fetchMapInput(ctx context.Context, c *api.Client, fleet bool) (mapInput, error) {
	var in mapInput
	st, err := c.Status(ctx)
	if err != nil {
		return in, err
	}
	in.Local = st.Self.Name
	if in.Segments, err = c.Segments(ctx); err != nil {
		return in, fmt.Errorf("segments: %w", err)
	}
	doc, err := c.Policy(ctx)
	if err != nil {
		return in, fmt.Errorf("policy: %w", err)
	}
	if doc.Version > 0 && doc.Content != "" {
		if in.Policy, err = acl.Parse(fmt.Sprintf("policy v%d", doc.Version), []byte(doc.Content)); err != nil {
			return in, fmt.Errorf("active policy: %w", err)
		}
	}
	if fleet {
		ff, err := c.FleetFlows(ctx)
		if err != nil {
			return in, fmt.Errorf("fleet flows: %w", err)
		}
		in.Flows, in.Missing = ff.Flows, ff.Missing
		return in, nil
	}
	if in.Flows, err = c.Flows(ctx); err != nil {
		return in, fmt.Errorf("flows: %w", err)
	}
	for i := range in.Flows {
		in.Flows[i].Node = in.Local
	}
	return in, nil
}

func renderMap(m fleetmap.Map, format string) ([]byte, error) {
	switch format {
	case "dot":
		return []byte(m.DOT()), nil
	case "svg":
		return m.SVG(), nil
	case "json":
		b, err := m.JSON()
		if err != nil {
			return nil, fmt.Errorf("encode map: %w", err)
		}
		return b, nil
	}
	return []byte(m.Mermaid()), nil
}
