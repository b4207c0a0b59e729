package tui

import (
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// keyMap are the bindings outside filter editing.
var keys = struct {
	quit, next, prev, filter, clear, up, down, pgUp, pgDown, home, end, left, right key.Binding
	views                                                                           [numViews]key.Binding
}{
	quit:   key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	next:   key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next view")),
	prev:   key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous view")),
	filter: key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
	clear:  key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "clear filter")),
	up:     key.NewBinding(key.WithKeys("up", "k")),
	down:   key.NewBinding(key.WithKeys("down", "j")),
	pgUp:   key.NewBinding(key.WithKeys("pgup", "ctrl+b")),
	pgDown: key.NewBinding(key.WithKeys("pgdown", "ctrl+f", " ")),
	home:   key.NewBinding(key.WithKeys("home", "g")),
	end:    key.NewBinding(key.WithKeys("end", "G")),
	left:   key.NewBinding(key.WithKeys("left", "h")),
	right:  key.NewBinding(key.WithKeys("right", "l")),
	views: [numViews]key.Binding{
		key.NewBinding(key.WithKeys("1")),
		key.NewBinding(key.WithKeys("2")),
		key.NewBinding(key.WithKeys("3")),
		key.NewBinding(key.WithKeys("4")),
		key.NewBinding(key.WithKeys("5")),
	},
}

// handleKey applies one key press. Keys that arrive in one read (fast
// typing, paste, tmux send-keys) come as one multi-rune message: they are
// applied one by one, so "/app" opens the filter and types "app".
func (m *Model) handleKey(k tea.KeyMsg) tea.Cmd {
	if k.Type == tea.KeyRunes && len(k.Runes) > 1 {
		var cmds []tea.Cmd
		for _, r := range k.Runes {
			cmds = append(cmds, m.handleKey(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: k.Alt}))
		}
		return tea.Batch(cmds...)
	}
	if m.filtering {
		return m.filterKey(k)
	}
	for v := range numViews {
		if key.Matches(k, keys.views[v]) {
			m.view = v
			return nil
		}
	}
	page := max(1, m.bodyRows()-1)
	switch {
	case key.Matches(k, keys.quit):
		return tea.Quit
	case key.Matches(k, keys.next):
		m.view = (m.view + 1) % numViews
	case key.Matches(k, keys.prev):
		m.view = (m.view + numViews - 1) % numViews
	case key.Matches(k, keys.filter):
		m.filtering = true
	case key.Matches(k, keys.clear):
		m.filters[m.view] = ""
		m.scroll[m.view] = 0
	case key.Matches(k, keys.up):
		m.scrollBy(-1)
	case key.Matches(k, keys.down):
		m.scrollBy(1)
	case key.Matches(k, keys.pgUp):
		m.scrollBy(-page)
	case key.Matches(k, keys.pgDown):
		m.scrollBy(page)
	case key.Matches(k, keys.home):
		m.scroll[m.view] = 0
	case key.Matches(k, keys.end):
		m.scrollBy(1 << 30)
	case key.Matches(k, keys.left) && m.view == viewPolicy:
		m.colOffset = max(0, m.colOffset-1)
	case key.Matches(k, keys.right) && m.view == viewPolicy:
		if m.matrix != nil {
			m.colOffset = max(0, min(m.colOffset+1, len(matrixSegments(m.matrix))-1))
		}
	}
	return nil
}

// filterKey edits the current view's filter: typed text applies at once,
// enter keeps it, esc clears it, ctrl+c still quits.
func (m *Model) filterKey(k tea.KeyMsg) tea.Cmd {
	f := []rune(m.filters[m.view])
	switch k.Type {
	case tea.KeyCtrlC:
		return tea.Quit
	case tea.KeyEnter:
		m.filtering = false
	case tea.KeyEsc:
		m.filtering = false
		f = nil
	case tea.KeyBackspace:
		if len(f) > 0 {
			f = f[:len(f)-1]
		}
	case tea.KeyCtrlU:
		f = nil
	case tea.KeySpace:
		f = append(f, ' ')
	case tea.KeyRunes:
		f = append(f, k.Runes...)
	}
	m.filters[m.view] = string(f)
	m.scroll[m.view] = 0
	return nil
}

// scrollBy moves the current view's rows by n, within bounds.
func (m *Model) scrollBy(n int) {
	m.scroll[m.view] += n
	m.clampScroll()
}

// KeyHelp documents every binding above, for `segmesh top --help` and its
// man page (TestKeyHelpComplete keeps the two in step).
const KeyHelp = `Keys:
  1 2 3 4 5                  switch to that view
  tab, shift+tab             next, previous view
  up/k, down/j               scroll one row
  pgup/ctrl+b, pgdown/ctrl+f/space
                             scroll one page
  home/g, end/G              first, last row
  left/h, right/l            Policy view: scroll the matrix's columns
  /                          filter the view's rows: typing applies at once,
                             enter keeps the filter, esc clears it,
                             backspace and ctrl+u edit it
  esc                        clear the view's filter
  q, ctrl+c                  quit`
