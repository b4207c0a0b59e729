package tui

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

func TestTabAndDigitsSwitchViews(t *testing.T) {
	m := loaded(80, 24)
	want := []viewID{viewPeers, viewPolicy, viewFlows, viewMap, viewSegments, viewPeers}
	for i, w := range want {
		m.Update(press("tab"))
		if m.view != w {
			t.Fatalf("tab %d: view %v, want %v", i+1, m.view, w)
		}
	}
	m.Update(press("shift+tab"))
	if m.view != viewSegments {
		t.Fatalf("shift+tab: view %v, want segments", m.view)
	}
	for d, w := range map[string]viewID{"3": viewPolicy, "1": viewSegments, "5": viewMap, "4": viewFlows, "2": viewPeers} {
		m.Update(press(d))
		if m.view != w {
			t.Fatalf("key %s: view %v, want %v", d, m.view, w)
		}
		if !strings.Contains(m.View(), "["+d+" "+viewNames[w]+"]") {
			t.Fatalf("key %s: tab not marked active:\n%s", d, m.View())
		}
	}
}

func TestFilter(t *testing.T) {
	m := loaded(80, 24)
	m.Update(press("2"))
	m.Update(press("/"))
	if !m.filtering {
		t.Fatal("/ did not start filtering")
	}
	for _, r := range "WEB" {
		m.Update(press(string(r)))
	}
	v := m.View()
	if !strings.Contains(v, "web-1") || !strings.Contains(v, "web-2") || strings.Contains(v, "app-1") {
		t.Fatalf("filter WEB (case-insensitive) on peers:\n%s", v)
	}
	if !strings.Contains(lastLine(v), "/WEB") {
		t.Fatalf("footer does not show the filter being typed:\n%s", v)
	}
	// q is text while filtering, not quit.
	if _, cmd := m.Update(press("q")); cmd != nil {
		t.Fatal("q while filtering returned a command")
	}
	m.Update(press("backspace"))
	m.Update(press("enter"))
	if m.filtering || m.filters[viewPeers] != "WEB" {
		t.Fatalf("enter: filtering=%v filter=%q, want kept WEB", m.filtering, m.filters[viewPeers])
	}
	if !strings.Contains(strings.Split(m.View(), "\n")[1], "filter: WEB") {
		t.Fatalf("tabs line does not show the kept filter:\n%s", m.View())
	}
	// Filters are per view.
	m.Update(press("1"))
	if !strings.Contains(m.View(), "app-2") {
		t.Fatalf("peers filter leaked into segments:\n%s", m.View())
	}
	m.Update(press("2"))
	m.Update(press("esc"))
	if m.filters[viewPeers] != "" || !strings.Contains(m.View(), "app-1") {
		t.Fatalf("esc did not clear the filter:\n%s", m.View())
	}
	// Esc while typing clears too; a filter matching nothing says so.
	m.Update(press("/"))
	m.Update(press("zzz"))
	if !strings.Contains(m.View(), `no rows match "zzz"`) {
		t.Fatalf("empty filter result not explained:\n%s", m.View())
	}
	m.Update(press("esc"))
	if m.filtering || m.filters[viewPeers] != "" {
		t.Fatal("esc while typing did not clear")
	}
}

func TestFilterSegmentsKeepsGroupName(t *testing.T) {
	m := loaded(80, 24)
	m.filters[viewSegments] = "suspect"
	lines := m.body(80).lines
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "web ") || !strings.Contains(lines[0], "web-2") {
		t.Fatalf("filtered segment rows: %q", lines)
	}
}

func TestQuitCommands(t *testing.T) {
	for _, k := range []string{"q", "ctrl+c"} {
		m := loaded(80, 24)
		_, cmd := m.Update(press(k))
		if cmd == nil {
			t.Fatalf("%s: no command", k)
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Fatalf("%s: command is not tea.Quit", k)
		}
	}
	m := loaded(80, 24)
	m.Update(press("/"))
	_, cmd := m.Update(press("ctrl+c"))
	if cmd == nil {
		t.Fatal("ctrl+c while filtering: no command")
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("ctrl+c while filtering does not quit")
	}
}

func TestScrollAndPolicyColumns(t *testing.T) {
	m := loaded(80, 8) // 3 body rows
	m.Update(press("1"))
	m.Update(press("down"))
	m.Update(press("down"))
	if m.scroll[viewSegments] != 2 {
		t.Fatalf("scroll %d, want 2", m.scroll[viewSegments])
	}
	m.Update(press("G"))
	if got, want := m.scroll[viewSegments], len(m.body(80).lines)-3; got != want {
		t.Fatalf("end: scroll %d, want %d", got, want)
	}
	if !strings.Contains(lastLine(m.View()), "9-11/11") { // 2 workloads, blank, segment titles, 7 rows
		t.Fatalf("footer position: %q", lastLine(m.View()))
	}
	m.Update(press("g"))
	if m.scroll[viewSegments] != 0 {
		t.Fatal("home did not scroll to top")
	}
	m.Update(tea.WindowSizeMsg{Width: 50, Height: 24})
	m.Update(press("3"))
	m.Update(press("right"))
	if m.colOffset != 1 || !strings.Contains(m.View(), "columns 2-") {
		t.Fatalf("right: offset %d\n%s", m.colOffset, m.View())
	}
	m.Update(press("h"))
	if m.colOffset != 0 {
		t.Fatal("left did not scroll back")
	}
}

func lastLine(s string) string {
	l := strings.Split(s, "\n")
	return l[len(l)-1]
}

func TestKeyBurstsApplyOneByOne(t *testing.T) {
	m := loaded(120, 40)
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("2/app")})
	if m.view != viewPeers || !m.filtering || m.filters[viewPeers] != "app" {
		t.Fatalf("view %d filtering %v filter %q", m.view, m.filtering, m.filters[viewPeers])
	}
	m.Update(press("enter"))
	m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("14")})
	if m.view != 3 {
		t.Fatalf("\"14\" must end on view 4, got %d", m.view+1)
	}
}

// TestKeyHelpComplete fails when a key is bound but not in KeyHelp (the
// help and man page of `segmesh top` would hide it).
func TestKeyHelpComplete(t *testing.T) {
	all := []key.Binding{keys.quit, keys.next, keys.prev, keys.filter, keys.clear, keys.up, keys.down,
		keys.pgUp, keys.pgDown, keys.home, keys.end, keys.left, keys.right}
	all = append(all, keys.views[:]...)
	if len(all) != reflect.TypeOf(keys).NumField()-1+int(numViews) {
		t.Fatalf("keys has bindings this test does not list")
	}
	for _, b := range all {
		for _, k := range b.Keys() {
			if k == " " {
				k = "space"
			}
			if !regexp.MustCompile(`(^|[\s,/])` + regexp.QuoteMeta(k) + `($|[\s,/])`).MatchString(KeyHelp) {
				t.Errorf("key %q is bound but not in KeyHelp", k)
			}
		}
	}
}
