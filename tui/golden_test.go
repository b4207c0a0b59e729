package tui

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/exp/teatest"

	"github.com/segmesh/segmesh/api"
)

// startProgram runs a model on src in a teatest program of size w×h; the
// program is quit and the model closed when the test ends.
func startProgram(t *testing.T, src Source, w, h int) *teatest.TestModel {
	t.Helper()
	return startProgramModel(t, New(src, testOptions()), w, h)
}

func startProgramModel(t *testing.T, m *Model, w, h int) *teatest.TestModel {
	t.Helper()
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(w, h))
	t.Cleanup(func() {
		_ = tm.Quit()
		tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
		m.Close()
	})
	return tm
}

// waitOutput waits until everything rendered since the last call contains
// all markers.
func waitOutput(t *testing.T, tm *teatest.TestModel, markers ...string) {
	t.Helper()
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool {
		for _, mk := range markers {
			if !bytes.Contains(b, []byte(mk)) {
				return false
			}
		}
		return true
	}, teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(5*time.Millisecond))
}

// finalView quits with the q key and returns the last screen.
func finalView(t *testing.T, tm *teatest.TestModel) []byte {
	t.Helper()
	tm.Type("q")
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
	return []byte(fm.(*Model).View())
}

// TestViewsGolden renders every view at 80×24 and 120×40 from the fake
// source: first status, the three fetches (each waited for on its view),
// then a flow event and a second status two seconds later (rates).
func TestViewsGolden(t *testing.T) {
	for _, sz := range [][2]int{{80, 24}, {120, 40}} {
		for v := range numViews {
			name := fmt.Sprintf("%s_%dx%d", strings.ToLower(viewNames[v]), sz[0], sz[1])
			t.Run(name, func(t *testing.T) {
				f := newFake()
				f.send(fixtureStatus(0))
				tm := startProgram(t, f, sz[0], sz[1])
				waitOutput(t, tm, "● live", "5 members", "role=web")
				tm.Type("3")
				waitOutput(t, tm, "[3 Policy]", "tcp/5432")
				tm.Type("4")
				waitOutput(t, tm, "[4 Flows]", "100.80.9.9")
				tm.Type(fmt.Sprint(int(v) + 1))
				f.send(fixtureFlowEvent(), fixtureStatus(1))
				waitOutput(t, tm, "6 members")
				out := finalView(t, tm)
				if !bytes.Contains(out, []byte("["+fmt.Sprint(int(v)+1)+" "+viewNames[v]+"]")) {
					t.Fatalf("view %s not active:\n%s", viewNames[v], out)
				}
				teatest.RequireEqualOutput(t, out)
			})
		}
	}
}

// TestReconnectingGolden shows the header and footer while the daemon
// cannot be reached.
func TestReconnectingGolden(t *testing.T) {
	f := newFake()
	f.refuse(errRefused)
	tm := startProgram(t, f, 80, 24)
	waitOutput(t, tm, "reconnecting…", "connection refused")
	teatest.RequireEqualOutput(t, finalView(t, tm))
}

// TestReconnect: refused connections are retried with backoff; when the
// stream ends the UI says so, reconnects by itself, refetches and goes live.
func TestReconnect(t *testing.T) {
	f := newFake()
	f.refuse(errRefused)
	tm := startProgram(t, f, 80, 24)
	waitOutput(t, tm, "reconnecting…")
	waitCond(t, "three connection attempts", func() bool { return f.count("stream") >= 3 })

	f.refuse(nil)
	f.send(fixtureStatus(0))
	waitOutput(t, tm, "● live", "5 members")
	waitCond(t, "first fetches", func() bool { return f.count("segments") >= 1 && f.count("flows") >= 1 })
	streams, segs, mats := f.count("stream"), f.count("segments"), f.count("matrix")

	f.end(io.ErrUnexpectedEOF)
	waitOutput(t, tm, "reconnecting…", "unexpected EOF")
	f.send(fixtureStatus(1))
	waitOutput(t, tm, "● live", "6 members")
	if f.count("stream") <= streams {
		t.Errorf("stream opened %d times, want more than %d", f.count("stream"), streams)
	}
	waitCond(t, "refetch after reconnect", func() bool {
		return f.count("segments") > segs && f.count("matrix") > mats
	})
}

// TestPolicyChangeRefetches: a status with a new policy hash makes the UI
// fetch the matrix again and show it.
func TestPolicyChangeRefetches(t *testing.T) {
	f := newFake()
	f.send(fixtureStatus(0))
	tm := startProgram(t, f, 80, 24)
	tm.Type("3")
	waitOutput(t, tm, "● live", "[3 Policy]", "tcp/5432")
	mats := f.count("matrix")

	pv := fixtureMatrix()
	pv.Version, pv.Hash = 4, "sha256:99887766aabb"
	pv.Matrix = append(pv.Matrix, api.MatrixCell{From: "web", To: "db", Ports: []string{"tcp/6543"}, Rules: []string{"new"}})
	f.setMatrix(pv)
	ev := fixtureStatus(1)
	ev.Status.Policy = api.Policy{Version: 4, Hash: pv.Hash, Mode: "enforce"}
	f.send(ev)
	waitOutput(t, tm, "policy v4 99887766", "tcp/6543")
	if f.count("matrix") <= mats {
		t.Fatalf("matrix fetched %d times, want more than %d", f.count("matrix"), mats)
	}
}

// TestQuitKeys: q and ctrl+c end the program.
func TestQuitKeys(t *testing.T) {
	for _, k := range []string{"q", "ctrl+c"} {
		t.Run(k, func(t *testing.T) {
			f := newFake()
			f.send(fixtureStatus(0))
			m := New(f, testOptions())
			defer m.Close()
			tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
			waitOutput(t, tm, "● live")
			tm.Send(press(k))
			tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
		})
	}
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestQuarantineGolden renders every view on a quarantined node (db-1)
// that also sees web-2 quarantined: the banner above every view, the count
// in the header, web-2's state in the peers view.
func TestQuarantineGolden(t *testing.T) {
	for _, sz := range [][2]int{{80, 24}, {120, 40}} {
		for v := range numViews {
			t.Run(fmt.Sprintf("%s_%dx%d", strings.ToLower(viewNames[v]), sz[0], sz[1]), func(t *testing.T) {
				m := loadedQuarantined(sz[0], sz[1])
				defer m.Close()
				m.Update(press(fmt.Sprint(int(v) + 1)))
				out := m.View()
				lines := strings.Split(out, "\n")
				if !strings.HasPrefix(lines[0], "QUARANTINED since 11:58Z (2m00s ago) — mesh traffic only from: ops,monitoring") {
					t.Fatalf("no banner on top of %s:\n%s", viewNames[v], out)
				}
				if !strings.Contains(lines[1], "1 quarantined") {
					t.Fatalf("no quarantined count in the header:\n%s", out)
				}
				if len(lines) != sz[1] {
					t.Fatalf("%d lines, want %d", len(lines), sz[1])
				}
				teatest.RequireEqualOutput(t, []byte(out))
			})
		}
	}
}
