package gossip

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when goroutines outlive them: every
// goroutine has an owner that stops it (Close/Shutdown waits for it).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
