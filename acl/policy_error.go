package acl

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a policy file. Line and Col are 1-based; Col is 1
// when the position inside the line is unknown (YAML syntax errors).
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

// String gives "file:line:col: message" ("line:col: message" when File is
// empty).
func (e *Error) String() string {
	if e.File == "" {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Error implements error; it is the same as String.
func (e *Error) Error() string { return e.String() }

// ErrorList is every problem found in a policy file, sorted by position.
// Parse returns it as its error (never an empty list).
type ErrorList []*Error

// Error gives one problem per line, each "file:line:col: message".
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives the errors for errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// sortErrors orders errors by position and message and drops duplicates
// (an aliased YAML node is visited once per alias).
func sortErrors(l ErrorList) ErrorList {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col), strings.Compare(a.Msg, b.Msg))
	})
	return slices.CompactFunc(l, func(a, b *Error) bool {
		return a.Line == b.Line && a.Col == b.Col && a.Msg == b.Msg
	})
}
