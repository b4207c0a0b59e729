package tui

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when goroutines outlive them. teatest
// itself leaves one goroutine per test model waiting for SIGINT
// (NewTestModel's signal watcher is never stopped): a library leak, ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/charmbracelet/x/exp/teatest.NewTestModel.func2"))
}
