// Package e2e runs the real segmesh binary in network namespaces (see
// test/harness). The tests need root; without it they skip, unless CI=true,
// where they fail. The config error tests need no root. TestMain builds the
// binaries once; SEGMESH_E2E_BIN=/path/to/segmesh tests a prebuilt one.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/segmesh/segmesh/test/harness"
)

// bins are built once for the whole package by TestMain.
var bins harness.Binaries

// binEnv names a prebuilt segmesh binary to test instead of building one.
const binEnv = "SEGMESH_E2E_BIN"

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "segmesh-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if prebuilt := os.Getenv(binEnv); prebuilt != "" {
		bins, err = harness.BuildTools(dir, harness.Binaries{Segmesh: prebuilt})
	} else {
		bins, err = harness.Build(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		return 1
	}
	return m.Run()
}
