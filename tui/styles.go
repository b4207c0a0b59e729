package tui

import (
	"github.com/charmbracelet/lipgloss"

	"github.com/segmesh/segmesh/api"
)

// styles are the looks of the UI, bound to one renderer (whose colour
// profile decides whether any escape sequences are written).
type styles struct {
	header    lipgloss.Style
	tab       lipgloss.Style
	tabActive lipgloss.Style
	title     lipgloss.Style
	dim       lipgloss.Style
	live      lipgloss.Style
	warn      lipgloss.Style
	bad       lipgloss.Style
	filter    lipgloss.Style
	self      lipgloss.Style
	banner    lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	return styles{
		header:    r.NewStyle().Bold(true),
		tab:       r.NewStyle().Faint(true),
		tabActive: r.NewStyle().Bold(true).Reverse(true),
		title:     r.NewStyle().Bold(true).Underline(true),
		dim:       r.NewStyle().Faint(true),
		live:      r.NewStyle().Foreground(lipgloss.Color("2")),
		warn:      r.NewStyle().Foreground(lipgloss.Color("3")),
		bad:       r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		filter:    r.NewStyle().Foreground(lipgloss.Color("6")),
		self:      r.NewStyle().Bold(true),
		banner:    r.NewStyle().Foreground(lipgloss.Color("1")).Bold(true).Reverse(true),
	}
}

// state styles a peer state.
func (s styles) state(state string) (lipgloss.Style, bool) {
	switch state {
	case api.StateUp:
		return s.live, true
	case api.StateSuspect:
		return s.warn, true
	case api.StateDead, api.StateUntrusted, api.StateQuarantined:
		return s.bad, true
	case api.StateLeft:
		return s.dim, true
	}
	return lipgloss.Style{}, false
}

// workload styles a workload state.
func (s styles) workload(state string) (lipgloss.Style, bool) {
	switch state {
	case api.WorkloadActive:
		return s.live, true
	case api.WorkloadMissing:
		return s.warn, true
	case api.WorkloadRejected:
		return s.bad, true
	}
	return lipgloss.Style{}, false
}

// verdict styles a flow verdict.
func (s styles) verdict(v string) (lipgloss.Style, bool) {
	switch v {
	case api.VerdictDenied:
		return s.bad, true
	case api.VerdictAudited:
		return s.warn, true
	}
	return lipgloss.Style{}, false
}

// cellVerdict styles a Map cell by its worst verdict: allowed green,
// audited yellow, denied red.
func (s styles) cellVerdict(v string) lipgloss.Style {
	switch v {
	case api.VerdictDenied:
		return s.bad
	case api.VerdictAudited:
		return s.warn
	}
	return s.live
}
