package tui

import (
	tea "github.com/charmbracelet/bubbletea"
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
