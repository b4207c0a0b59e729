package api

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// FormatStatus writes the human form of `segmesh status`: a summary of this
// node and an aligned table of peers.
func FormatStatus(w io.Writer, s *Status, now time.Time) error {
	pv := "none (all inbound mesh traffic denied)"
	if s.Policy.Version > 0 {
		pv = fmt.Sprintf("v%d %s (%s)", s.Policy.Version, s.Policy.Hash, s.Policy.Mode)
	}
	fmt.Fprintf(w, "node      %s  %s\n", s.Self.Name, s.Self.PublicKey)
	fmt.Fprintf(w, "address   %s  %s  endpoint %s\n", s.Self.Address, s.Self.Address6, s.Self.Endpoint)
	fmt.Fprintf(w, "tags      %s   segments %s\n", FormatTags(s.Self.Tags), dash(strings.Join(s.Self.Segments, ",")))
	fmt.Fprintf(w, "interface %s (%s)   mesh %d members   trust %s\n", s.Interface, s.Backend, s.Members, s.Trust)
	fmt.Fprintf(w, "policy    %s\n\n", pv)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tADDRESS\tADDRESS6\tENDPOINT\tSEGMENTS\tTAGS\tHANDSHAKE\tRX\tTX\tRX/s\tTX/s\tREASON")
	for _, p := range s.Peers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.State, dash(p.Address), dash(p.Address6),
			dash(p.Endpoint), dash(strings.Join(p.Segments, ",")), FormatTags(p.Tags), handshakeAge(p.LastHandshake, now),
			byteSize(p.RxBytes), byteSize(p.TxBytes), byteSize(int64(p.RxRate)), byteSize(int64(p.TxRate)), dash(p.Reason))
	}
	if len(s.Peers) == 0 {
		fmt.Fprintln(tw, "(no peers)")
	}
	return tw.Flush()
}

// FormatTags renders tags as k=v,k=v sorted by key.
func FormatTags(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + t[k]
	}
	return dash(strings.Join(parts, ","))
}

func handshakeAge(ts *string, now time.Time) string {
	if ts == nil {
		return "never"
	}
	t, err := time.Parse(time.RFC3339, *ts)
	if err != nil {
		return *ts
	}
	return now.Sub(t).Truncate(time.Second).String() + " ago"
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Marks of policy explain's text output.
const (
	markOK   = "\u2713" // ✓
	markFail = "\u2717" // ✗
)

func mark(ok bool) string {
	if ok {
		return markOK
	}
	return markFail
}

// FormatExplanation writes policy explain's text form: the verdict, both
// nodes' (or workloads', as NODE/WORKLOAD) segments, the notes, the
// allowing rules, then every rule with its from and to
// segments (each selector term matched or not, with the node's tag when
// not) and the port entry that matched (naming its service).
func FormatExplanation(out io.Writer, e *Explanation) {
	port := e.Port
	if e.Service != "" {
		port += " (service " + e.Service + ")"
	}
	from, to := withWorkload(e.From, e.FromWorkload), withWorkload(e.To, e.ToWorkload)
	fmt.Fprintf(out, "%s: %s -> %s %s (policy v%d, %s mode)\n", strings.ToUpper(e.Verdict), from, to, port, e.Version, e.Mode)
	fmt.Fprintf(out, "  %s segments: %s\n  %s segments: %s\n", from, noneIfEmpty(e.FromSegments), to, noneIfEmpty(e.ToSegments))
	for _, n := range e.Notes {
		fmt.Fprintf(out, "  note: %s\n", n)
	}
	if len(e.Rules) > 0 {
		fmt.Fprintf(out, "  allowed by: %s\n", strings.Join(e.Rules, ", "))
	} else {
		fmt.Fprintln(out, "  no rule allows it (default deny)")
	}
	if len(e.Considered) == 0 {
		return
	}
	fmt.Fprintln(out, "  rules:")
	for _, r := range e.Considered {
		verdict := "does not apply"
		if r.Allow {
			verdict = "allows it"
		}
		fmt.Fprintf(out, "    %s: %s\n", r.Rule, verdict)
		fmt.Fprintf(out, "      from %s\n", explainedSegments(r.From))
		fmt.Fprintf(out, "      to %s\n", explainedSegments(r.To))
		switch {
		case r.Service != "":
			fmt.Fprintf(out, "      port %s %s (service %s)\n", e.Port, markOK, r.Service)
		case r.PortMatch != "":
			fmt.Fprintf(out, "      port %s %s (%s)\n", e.Port, markOK, r.PortMatch)
		default:
			fmt.Fprintf(out, "      port %s %s (ports: %s)\n", e.Port, markFail, strings.Join(r.Ports, ", "))
		}
	}
}

// withWorkload is node, or node/workload when workload is set.
func withWorkload(node, workload string) string {
	if workload == "" {
		return node
	}
	return node + "/" + workload
}

// explainedSegments gives a rule's from or to list, e.g.
// "prod-db ✗: env: [prod, staging] ✗ (env=dev), role: db ✓"; several
// segments are separated by " | ".
func explainedSegments(segs []ExplainedSegment) string {
	parts := make([]string, len(segs))
	for i, s := range segs {
		switch {
		case s.Segment == "*":
			parts[i] = "*" + " " + mark(s.Match) + " (any node)"
		case len(s.Terms) == 0:
			parts[i] = s.Segment + " " + mark(s.Match) + " (no selector)"
		default:
			terms := make([]string, len(s.Terms))
			for j, t := range s.Terms {
				terms[j] = t.Term + " " + mark(t.Match)
				switch {
				case t.Match:
				case t.Present:
					terms[j] += " (" + t.Tag + "=" + t.Value + ")"
				default:
					terms[j] += " (" + t.Tag + " absent)"
				}
			}
			parts[i] = s.Segment + " " + mark(s.Match) + ": " + strings.Join(terms, ", ")
		}
	}
	return strings.Join(parts, " | ")
}

// noneIfEmpty joins s with ", ", or gives "(none)".
func noneIfEmpty(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
