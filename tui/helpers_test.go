package tui

import (
	tea "github.com/charmbracelet/bubbletea"

	"github.com/segmesh/segmesh/api"
)

// loaded returns a model that has, without running any command, received
// the connection, both fixture statuses, the fetches and a flow event.
func loaded(w, h int) *Model {
	m := New(newFake(), testOptions())
	m.io.close() // commands are never run here
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	m.Update(connectedMsg{gen: 1})
	m.Update(eventMsg{gen: 1, ev: fixtureStatus(0)})
	m.Update(segmentsMsg{seq: m.seq.segments, segs: fixtureSegments()})
	m.Update(matrixMsg{seq: m.seq.matrix, pv: fixtureMatrix()})
	m.Update(flowsMsg{seq: m.seq.flows, flows: fixtureFlows()})
	m.Update(eventMsg{gen: 1, ev: fixtureStatus(1)})
	m.Update(eventMsg{gen: 1, ev: fixtureFlowEvent()})
	return m
}

func press(s string) tea.KeyMsg {
	switch s {
	case "tab":
		return tea.KeyMsg{Type: tea.KeyTab}
	case "shift+tab":
		return tea.KeyMsg{Type: tea.KeyShiftTab}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "backspace":
		return tea.KeyMsg{Type: tea.KeyBackspace}
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "right":
		return tea.KeyMsg{Type: tea.KeyRight}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

// quarantine puts web-2 and this node (db-1) in quarantine in a fixture
// status, as the daemon reports them.
func quarantine(ev api.Event) api.Event {
	s := *ev.Status
	s.Peers = append([]api.Peer(nil), s.Peers...)
	for i := range s.Peers {
		if s.Peers[i].Name == "web-2" {
			s.Peers[i].State = api.StateQuarantined
			s.Peers[i].Reason = "quarantined since 2026-03-01T11:40:00Z by bob@ops-1: INC-4710"
		}
	}
	s.Quarantined = []api.Quarantined{
		{Node: "web-2", PublicKey: keyWeb2, Since: "2026-03-01T11:40:00Z", Reason: "INC-4710", AllowFrom: []string{}, By: "bob@ops-1"},
		{Node: "db-1", PublicKey: keyDB1, Since: "2026-03-01T11:58:00Z", By: "alice@ops-1", Self: true,
			Reason: "INC-4711 exfiltration to 203.0.113.9 over tcp/443", AllowFrom: []string{"ops", "monitoring"}},
	}
	ev.Status = &s
	return ev
}

// loadedQuarantined is loaded, with this node and web-2 in quarantine.
func loadedQuarantined(w, h int) *Model {
	m := loaded(w, h)
	m.Update(eventMsg{gen: 1, ev: quarantine(fixtureStatus(1))})
	return m
}
