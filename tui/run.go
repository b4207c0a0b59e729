package tui

import (
	"context"
	"errors"
	"fmt"

	tea "github.com/charmbracelet/bubbletea"
)

// Run shows the UI full screen (alternate screen) until the user quits, the
// program gets SIGINT/SIGTERM or ctx is done; the terminal is restored
// before it returns. Extra program options (input, output) come last.
func Run(ctx context.Context, src Source, opt Options, extra ...tea.ProgramOption) error {
	m := New(src, opt)
	defer m.Close()
	opts := append([]tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx)}, extra...)
	_, err := tea.NewProgram(m, opts...).Run()
	switch {
	case err == nil, errors.Is(err, tea.ErrInterrupted):
		return nil
	case errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil:
		return nil
	default:
		return fmt.Errorf("terminal ui: %w", err)
	}
}
