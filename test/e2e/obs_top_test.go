package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/api"
)

// tmuxSession is a program running in a detached tmux session on a tmux
// server of its own (tmux -S with a socket in the test's temporary
// directory), so tests never touch the user's sessions and leave no socket.
type tmuxSession struct {
	tmux   string // tmux binary
	socket string // -S socket path
	name   string // session name
}

// Terminal size of the sessions.
const (
	termCols = 100
	termRows = 30
)

// startTmux runs argv in a new detached termCols x termRows session and
// kills the session's server when the test ends.
func startTmux(t *testing.T, argv ...string) *tmuxSession {
	t.Helper()
	tmux := requireTool(t, "tmux")
	s := &tmuxSession{tmux: tmux, socket: filepath.Join(t.TempDir(), "tmux.sock"), name: "top"}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	// No user config (-f /dev/null); a UTF-8 locale so box and arrow
	// characters reach the pane as they are.
	if out, err := s.run("-f", "/dev/null", "new-session", "-d", "-s", s.name,
		"-x", fmt.Sprint(termCols), "-y", fmt.Sprint(termRows), "-e", "LANG=C.UTF-8", strings.Join(quoted, " ")); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if screen, err := s.capture(); err == nil {
				t.Logf("tmux screen at the end:\n%s", screen)
			}
		}
		_, _ = s.run("kill-server") // fails when the session already ended: fine
	})
	return s
}

// run runs a tmux command against the session's server.
func (s *tmuxSession) run(args ...string) (string, error) {
	stdout, stderr, code, err := runCmd(10*time.Second, nil, append([]string{s.tmux, "-S", s.socket}, args...)...)
	if err == nil && code != 0 {
		err = fmt.Errorf("tmux %s: exit %d", strings.Join(args, " "), code)
	}
	return stdout + stderr, err
}

// keys sends keys to the pane (tmux key names, e.g. "Tab", "Enter", "q").
func (s *tmuxSession) keys(t *testing.T, keys ...string) {
	t.Helper()
	if out, err := s.run(append([]string{"send-keys", "-t", s.name}, keys...)...); err != nil {
		t.Fatalf("tmux send-keys %v: %v: %s", keys, err, out)
	}
}

// capture returns the pane's visible text.
func (s *tmuxSession) capture() (string, error) {
	out, err := s.run("capture-pane", "-p", "-t", s.name)
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return out, nil
}

// waitScreen polls the pane until cond accepts it; it returns the screen.
func (s *tmuxSession) waitScreen(t *testing.T, what string, timeout time.Duration, cond func(screen string) error) string {
	t.Helper()
	var screen string
	start := time.Now()
	err := waitUntil(timeout, 50*time.Millisecond, func() error {
		var err error
		if screen, err = s.capture(); err != nil {
			return err
		}
		return cond(screen)
	})
	if err != nil {
		t.Fatalf("segmesh top: %s: %v; screen:\n%s", what, err, screen)
	}
	t.Logf("segmesh top: %s after %v", what, time.Since(start).Round(time.Millisecond))
	return screen
}

// showing is a screen condition: every pattern matches and no pattern of
// absent does.
func showing(patterns []*regexp.Regexp, absent ...*regexp.Regexp) func(string) error {
	return func(screen string) error {
		for _, p := range patterns {
			if !p.MatchString(screen) {
				return fmt.Errorf("nothing matches %s", p)
			}
		}
		for _, p := range absent {
			if p.MatchString(screen) {
				return fmt.Errorf("%s still shows", p)
			}
		}
		return nil
	}
}

// waitUntil polls cond every interval until it returns nil or timeout
// passes (then it returns cond's last error).
func waitUntil(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// line builds a multi-line regexp matching one screen line whose fields,
// separated by blanks, are the given regexp fragments in order.
func line(fields ...string) *regexp.Regexp {
	return regexp.MustCompile(`(?m)^\s*` + strings.Join(fields, `\s+`) + `(\s|$)`)
}

// tab matches the tab bar with the named view selected, e.g. "[4 Flows]".
func tab(name string) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta("[" + name + "]"))
}

// TestObsTop runs `segmesh top` in a real terminal (tmux) against db1 of a
// live mesh: view 1 lists every segment with its member, view 4 shows the
// denied flow from web1 by name and a new one as it happens, Tab moves on
// to view 5 (the map of observed flows) and wraps around, / filters and q
// quits.
func TestObsTop(t *testing.T) {
	requireTool(t, "tmux")
	m := newObsMesh(t, obsPolicy, nil)
	web, app, db := m.web, m.app, m.db
	// web1's own egress check is off (root on web1): what it sends
	// reaches db1, whose ingress observations are under test.
	bypassEgress(t, web)
	m.warmUp(web, db)
	expectProbe(t, web, flow{"tcp", m.addr(db), 5432}, resTimeout)
	waitFlow(t, db.Socket, 10*time.Second, "web1 -> db1 tcp/5432 denied", m.flowFrom(web, "tcp", 5432, api.VerdictDenied))

	s := startTmux(t, bins.Segmesh, "top", "--socket", db.Socket)
	q := regexp.QuoteMeta
	webRow := line("web", q("role=web"), q(web.Name), q(m.addr(web).String()), "up")
	appRow := line("app", q("role=app"), q(app.Name), q(m.addr(app).String()), "up")
	dbRow := line("db", q("role=db"), q(db.Name+" (self)"), q(m.addr(db).String()), "up")
	s.keys(t, "1")
	s.waitScreen(t, "view 1 lists every segment and its member", 15*time.Second,
		showing([]*regexp.Regexp{tab("1 Segments"), webRow, appRow, dbRow}))
	s.keys(t, "4")
	s.waitScreen(t, "view 4 shows web1's denied flow by name", 10*time.Second,
		showing([]*regexp.Regexp{tab("4 Flows"),
			line("in", q(web.Name), q(m.addr(web).String()), q("web→db"), q("tcp/5432"), "denied", `\d+`)}))
	// A flow denied while the view is open arrives live (the stream).
	dial := probeAsync(web, flow{"tcp", m.addr(db), 5433})
	s.waitScreen(t, "view 4 shows a new denied flow live", 10*time.Second,
		showing([]*regexp.Regexp{line("in", q(web.Name), q(m.addr(web).String()), q("web→db"), q("tcp/5433"), "denied", `\d+`)}))
	if res := <-dial; res != resTimeout {
		t.Errorf("web1 -> db1 tcp/5433: %q, want %q (denied)", res, resTimeout)
	}
	// Tab moves on to view 5, the map of observed flows: web1's denials
	// to db1 are counted in row web (the legend names the colours).
	s.keys(t, "Tab")
	s.waitScreen(t, "Tab moves on to view 5, whose web row has a count", 10*time.Second,
		showing([]*regexp.Regexp{tab("5 Map"), regexp.MustCompile(`(?m)^FROM \\ TO\s.*\bdb\b`), line("web", `.*\d`),
			regexp.MustCompile(`denied\s+audited\s+allowed`)}))
	s.keys(t, "Tab")
	s.waitScreen(t, "Tab wraps around to view 1", 10*time.Second, showing([]*regexp.Regexp{tab("1 Segments")}))
	// One key at a time, as typed: keys written at once reach the program
	// as one read, which bubbletea turns into one multi-rune key ("/app").
	s.keys(t, "/")
	s.waitScreen(t, "/ opens the filter prompt", 10*time.Second,
		showing([]*regexp.Regexp{regexp.MustCompile(`(?m)^/\s+enter keep · esc clear`)}))
	s.keys(t, "app")
	s.waitScreen(t, "the filter prompt echoes /app", 10*time.Second,
		showing([]*regexp.Regexp{regexp.MustCompile(`(?m)^/app\s+enter keep`)}))
	s.keys(t, "Enter")
	s.waitScreen(t, "filter app keeps only segment app", 10*time.Second,
		showing([]*regexp.Regexp{appRow, regexp.MustCompile(`filter: app`)}, webRow, dbRow))
	s.keys(t, "q")
	if err := waitUntil(10*time.Second, 50*time.Millisecond, func() error {
		if _, err := s.run("has-session", "-t", s.name); err == nil {
			return fmt.Errorf("the session still runs")
		}
		return nil
	}); err != nil {
		t.Errorf("segmesh top did not quit on q: %v", err)
	}
}
