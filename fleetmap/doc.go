// Package fleetmap renders the application dependency map of a segmesh
// fleet (`segmesh map`): which segments talk to which, with what verdict,
// on which ports, how often, and which policy rules no traffic used.
//
// # Model
//
// A Map is a plain value, independent of the daemon: Segments (one box
// each, with its member count), Edges (observed traffic per segment pair
// and verdict: allowed, denied or audited, with ports and connection
// counts; Unknown names a source in no segment), Unused (policy rules, as
// segment pairs, that no observed allowed edge used; drawn dashed), Missing
// (fleet mode: nodes that did not answer, and why) and Since (the window;
// 0 for all kept observations). The caller may fill it in any order and
// with duplicates: every renderer first takes Normalize's canonical form
// (sorted, duplicates merged, implied segments added), so the output is
// deterministic and can be committed and compared.
//
// Build makes a Map from segments, Observations (flow aggregates reduced
// to source segments, destination segments, verdict, port and connections)
// and the policy's rules as segment pairs; UnusedRules is its rule-port
// matching on its own. Both are meant to run over the whole fleet's
// observations, after the fan-out.
//
// # Formats
//
// Mermaid (a "flowchart LR" for Markdown), DOT (for Graphviz), JSON (the
// normalized model, snake_case keys) and SVG, drawn by this package alone.
//
// # SVG layout
//
// The SVG is a layered (Sugiyama-style) drawing, left to right:
//
//  1. Cycles are broken by a depth-first search in name order: edges to a
//     node on the search stack are reversed for the layout only (they are
//     still drawn with their real direction).
//  2. Layers by longest path from the sources; a source is then pulled to
//     the layer just before its nearest successor, and segments without
//     edges fill the emptiest layers (a new layer once every layer holds
//     eight).
//  3. Edges spanning several layers get a dummy node per crossed layer, so
//     they are routed through gaps between boxes rather than across them.
//  4. Order within layers by the barycentre heuristic, sweeping down and up
//     (24 sweeps) from two starting orders (names, and depth-first discovery
//     from the sources), each best order refined by swapping neighbours
//     while that removes crossings; the order with the fewest crossings
//     wins.
//  5. Vertical positions: every layer is pulled towards the mean of its
//     neighbours' positions, then pushed apart to the minimum separation (the
//     mean of a forward and a backward pass, each of which keeps the order
//     and separation), so boxes in a column never overlap; columns are as
//     wide as their widest box and separated by gaps wide enough for the
//     labels, so boxes never overlap across columns either.
//
// Edges are cubic paths with arrowheads (one <marker> per colour), coloured
// by verdict; edges between the same two segments (either direction) are
// offset from each other and their labels stacked; labels sit at the
// midpoint of the edge's middle gap and are moved vertically, if needed,
// until they overlap neither a box nor another label. Self-loops (From ==
// To) are loops above their box. A legend explains colours and dashes;
// nodes that did not answer are listed below the drawing. All text is
// XML-escaped; long names and labels are shortened with the full text in a
// <title> tooltip.
package fleetmap
