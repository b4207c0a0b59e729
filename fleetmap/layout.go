package fleetmap

import (
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Layout constants (pixels).
const (
	boxH          = 44.0
	boxMinW       = 110.0
	boxMaxW       = 230.0
	boxPadX       = 12.0
	gapReal       = 28.0 // vertical gap between two boxes in a layer
	gapDummy      = 10.0 // vertical gap next to a dummy (edge) slot
	parallelStep  = 8.0  // offset between parallel edges
	labelH        = 16.0
	labelPadX     = 4.0
	labelFont     = 11.0
	nameFont      = 13.0
	membersFont   = 11.0
	loopBase      = 18.0 // height of the first self-loop above its box
	loopStep      = 12.0 // each further self-loop is this much higher
	gapMinX       = 90.0 // a gap without labels
	gapMaxX       = 360.0
	maxLabelRunes = 52
	maxNameRunes  = 28
	maxPortsShown = 4
	isolatedPer   = 8 // segments without edges per layer before a new one
	orderSweeps   = 24
	placeRounds   = 8
)

// lnode is a layout node: a segment box, or a dummy where a long edge
// crosses a layer.
type lnode struct {
	name     string
	dummy    bool
	layer    int
	pos      int
	w, h     float64 // box size; a dummy's h is its slot height
	top      float64 // room above the box for self-loops and their labels
	x, y     float64 // centre
	up, down []*lnode
	seg      Segment
	implied  bool
	loops    []item // self-loops
}

func (n *lnode) above() float64 { return n.h/2 + n.top }
func (n *lnode) below() float64 { return n.h / 2 }

// item is one drawn edge: an observed Edge or an unused Rule.
type item struct {
	from, to string
	colour   string
	verdict  string // "unused" for a rule
	dashed   bool
	label    string // shortened
	full     string // tooltip
}

// route is the chain of layout nodes between two segments (in layer
// order) and the items drawn along it.
type route struct {
	chain []*lnode
	items []item
}

// attachKey is one end (0: the chain's first node, 1: its last) of item i
// of a route.
type attachKey struct {
	r   *route
	i   int
	end int
}

type rect struct{ x0, y0, x1, y1 float64 }

func (a rect) overlaps(b rect) bool {
	return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1
}

// label is a placed edge label (centre x, y).
type label struct {
	x, y, w float64
	it      item
}

func (l label) rect() rect {
	return rect{l.x - l.w/2, l.y - labelH/2, l.x + l.w/2, l.y + labelH/2}
}

type layout struct {
	attach map[attachKey]float64 // y where an item meets a box side
	links  [][2]int              // scratch for crossingsBetween
	nodes  map[string]*lnode
	layers [][]*lnode
	routes []*route
	labels []label
	colX   []float64 // left edge of each layer's column
	colW   []float64
}

// textWidth estimates the rendered width of s in a sans-serif font.
func textWidth(s string, size float64) float64 {
	w := 0.0
	for _, r := range s {
		switch {
		case strings.ContainsRune("il.,:;'|!()[]{} tfrj", r):
			w += 0.34
		case strings.ContainsRune("mwMW@%", r):
			w += 0.9
		case r >= 'A' && r <= 'Z':
			w += 0.7
		case r >= 0x1100:
			w += 1.0
		default:
			w += 0.58
		}
	}
	return w * size
}

func shorten(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

func newLayout(n Map, imp map[string]bool) *layout {
	l := &layout{nodes: map[string]*lnode{}}
	for _, s := range n.Segments {
		w := max(textWidth(shorten(s.Name, maxNameRunes), nameFont), textWidth(members(s.Members), membersFont), textWidth("not a segment", membersFont)) + 2*boxPadX
		l.nodes[s.Name] = &lnode{name: s.Name, seg: s, implied: imp[s.Name], w: min(max(w, boxMinW), boxMaxW), h: boxH}
	}

	// Items, self-loops apart, grouped by unordered pair.
	var items []item
	for _, e := range n.Edges {
		items = append(items, item{from: e.From, to: e.To, colour: verdictColour(e.Verdict), verdict: e.Verdict,
			label: shorten(edgeLabel(e, maxPortsShown), maxLabelRunes), full: e.From + " → " + e.To + ": " + edgeLabel(e, 0)})
	}
	for _, r := range n.Unused {
		items = append(items, item{from: r.From, to: r.To, colour: colourUnused, verdict: "unused", dashed: true,
			label: shorten(ruleLabel(r, maxPortsShown), maxLabelRunes), full: r.From + " → " + r.To + ": " + ruleLabel(r, 0) + " (no observed traffic)"})
	}
	type pair struct{ a, b string }
	byPair := map[pair][]item{}
	var pairs []pair
	succ := map[string][]string{}
	for _, it := range items {
		if it.from == it.to {
			nd := l.nodes[it.from]
			nd.loops = append(nd.loops, it)
			continue
		}
		p := pair{min(it.from, it.to), max(it.from, it.to)}
		if _, ok := byPair[p]; !ok {
			pairs = append(pairs, p)
		}
		byPair[p] = append(byPair[p], it)
		if !slices.Contains(succ[it.from], it.to) {
			succ[it.from] = append(succ[it.from], it.to)
		}
	}
	slices.SortFunc(pairs, func(x, y pair) int { return strings.Compare(x.a+"\x00"+x.b, y.a+"\x00"+y.b) })
	for _, s := range succ {
		slices.Sort(s)
	}
	for _, nd := range l.nodes {
		if k := len(nd.loops); k > 0 {
			nd.top = loopBase + float64(k-1)*loopStep + 6 + float64(k)*(labelH+2)
		}
	}

	// 1. Break cycles: DFS in name order, edges back to the stack reversed.
	names := make([]string, 0, len(n.Segments))
	for _, s := range n.Segments {
		names = append(names, s.Name)
	}
	state := map[string]int{} // 0 new, 1 on stack, 2 done
	dag := map[pair]bool{}    // oriented (a → b) for the layout
	var dfs func(v string)
	dfs = func(v string) {
		state[v] = 1
		for _, w := range succ[v] {
			switch state[w] {
			case 0:
				dag[pair{v, w}] = true
				dfs(w)
			case 1:
				dag[pair{w, v}] = true // back edge: reversed
			default:
				dag[pair{v, w}] = true
			}
		}
		state[v] = 2
	}
	for _, v := range names {
		if state[v] == 0 {
			dfs(v)
		}
	}
	// One orientation per unordered pair (a 2-cycle gives both, one reversed).
	orient := map[pair]pair{}
	for _, p := range pairs {
		if dag[pair{p.a, p.b}] {
			orient[p] = pair{p.a, p.b}
		} else {
			orient[p] = pair{p.b, p.a}
		}
	}
	preds := map[string][]string{}
	dsucc := map[string][]string{}
	for _, p := range pairs {
		o := orient[p]
		dsucc[o.a] = append(dsucc[o.a], o.b)
		preds[o.b] = append(preds[o.b], o.a)
	}

	// 2. Longest-path layering in topological order (Kahn, name order).
	indeg := map[string]int{}
	for _, v := range names {
		indeg[v] = len(preds[v])
	}
	var queue, topo []string
	for _, v := range names {
		if indeg[v] == 0 {
			queue = append(queue, v)
		}
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		topo = append(topo, v)
		for _, w := range dsucc[v] {
			if indeg[w]--; indeg[w] == 0 {
				queue = append(queue, w)
			}
		}
	}
	for _, v := range topo {
		nd := l.nodes[v]
		for _, u := range preds[v] {
			nd.layer = max(nd.layer, l.nodes[u].layer+1)
		}
	}
	// Sources move next to their nearest successor (reverse topological
	// order, so chains of sources follow).
	for i := len(topo) - 1; i >= 0; i-- {
		nd := l.nodes[topo[i]]
		if len(preds[nd.name]) > 0 || len(dsucc[nd.name]) == 0 {
			continue
		}
		m := math.MaxInt
		for _, w := range dsucc[nd.name] {
			m = min(m, l.nodes[w].layer)
		}
		nd.layer = m - 1
	}
	nlayers := 0
	for _, nd := range l.nodes {
		if len(preds[nd.name])+len(dsucc[nd.name]) > 0 {
			nlayers = max(nlayers, nd.layer+1)
		}
	}
	count := make([]int, nlayers)
	for _, nd := range l.nodes {
		if len(preds[nd.name])+len(dsucc[nd.name]) > 0 {
			count[nd.layer]++
		}
	}
	for _, v := range names { // isolated segments fill the emptiest layers
		if len(preds[v])+len(dsucc[v]) > 0 {
			continue
		}
		best := -1
		for i, c := range count {
			if c < isolatedPer && (best < 0 || c < count[best]) {
				best = i
			}
		}
		if best < 0 {
			count = append(count, 0)
			best = len(count) - 1
		}
		l.nodes[v].layer = best
		count[best]++
	}
	l.layers = make([][]*lnode, len(count))
	for _, v := range names {
		nd := l.nodes[v]
		l.layers[nd.layer] = append(l.layers[nd.layer], nd)
	}

	// 3. Routes with dummies for long spans.
	for _, p := range pairs {
		o := orient[p]
		a, b := l.nodes[o.a], l.nodes[o.b]
		its := byPair[p]
		slot := float64(len(its))*parallelStep + 4
		r := &route{chain: []*lnode{a}, items: its}
		prev := a
		for k := a.layer + 1; k < b.layer; k++ {
			d := &lnode{name: o.a + "\x00" + o.b, dummy: true, layer: k, h: slot}
			l.layers[k] = append(l.layers[k], d)
			r.chain = append(r.chain, d)
			prev.down = append(prev.down, d)
			d.up = append(d.up, prev)
			prev = d
		}
		prev.down = append(prev.down, b)
		b.up = append(b.up, prev)
		r.chain = append(r.chain, b)
		l.routes = append(l.routes, r)
	}

	l.order()
	l.place()
	l.attachPoints()
	l.placeLabels()
	return l
}

func (l *layout) setPos() {
	for _, ly := range l.layers {
		for i, nd := range ly {
			nd.pos = i
		}
	}
}

func (l *layout) crossings() int {
	c := 0
	for k := 0; k+1 < len(l.layers); k++ {
		c += l.crossingsBetween(k)
	}
	return c
}

// crossingsBetween counts the crossing links between layers k and k+1.
func (l *layout) crossingsBetween(k int) int {
	if k < 0 || k+1 >= len(l.layers) {
		return 0
	}
	links := l.links[:0]
	defer func() { l.links = links[:0] }()
	for _, a := range l.layers[k] {
		for _, b := range a.down {
			links = append(links, [2]int{a.pos, b.pos})
		}
	}
	c := 0
	for i := range links {
		for j := i + 1; j < len(links); j++ {
			if (links[i][0]-links[j][0])*(links[i][1]-links[j][1]) < 0 {
				c++
			}
		}
	}
	return c
}

// transpose swaps neighbours within layers while that removes crossings.
func (l *layout) transpose() {
	for pass := 0; pass < 8; pass++ {
		improved := false
		for k, ly := range l.layers {
			for i := 0; i+1 < len(ly); i++ {
				before := l.crossingsBetween(k-1) + l.crossingsBetween(k)
				ly[i], ly[i+1] = ly[i+1], ly[i]
				ly[i].pos, ly[i+1].pos = i, i+1
				if l.crossingsBetween(k-1)+l.crossingsBetween(k) < before {
					improved = true
					continue
				}
				ly[i], ly[i+1] = ly[i+1], ly[i]
				ly[i].pos, ly[i+1].pos = i, i+1
			}
		}
		if !improved {
			return
		}
	}
}

func barySort(ly []*lnode, nb func(*lnode) []*lnode) {
	key := make(map[*lnode]float64, len(ly))
	for _, nd := range ly {
		ns := nb(nd)
		if len(ns) == 0 {
			key[nd] = float64(nd.pos)
			continue
		}
		s := 0.0
		for _, m := range ns {
			s += float64(m.pos)
		}
		key[nd] = s / float64(len(ns))
	}
	slices.SortStableFunc(ly, func(a, b *lnode) int {
		if key[a] != key[b] {
			if key[a] < key[b] {
				return -1
			}
			return 1
		}
		return a.pos - b.pos
	})
	for i, nd := range ly {
		nd.pos = i
	}
}

// order runs the barycentre sweeps, with neighbour transpositions, from
// two starting orders (names, and depth-first discovery from the sources),
// and keeps the order with the fewest crossings seen.
func (l *layout) order() {
	up := func(n *lnode) []*lnode { return n.up }
	down := func(n *lnode) []*lnode { return n.down }
	initial := l.snapshot()
	best, bestOrder := -1, initial
	for start := 0; start < 2 && best != 0; start++ {
		for k := range l.layers {
			l.layers[k] = slices.Clone(initial[k])
		}
		if start == 1 {
			l.dfsOrder()
		}
		l.setPos()
		for k := 1; k < len(l.layers); k++ {
			barySort(l.layers[k], up)
		}
		runBest, runOrder := l.crossings(), l.snapshot()
		for s := 1; s <= orderSweeps && runBest > 0; s++ {
			if s%2 == 1 {
				for k := len(l.layers) - 2; k >= 0; k-- {
					barySort(l.layers[k], down)
				}
			} else {
				for k := 1; k < len(l.layers); k++ {
					barySort(l.layers[k], up)
				}
			}
			if c := l.crossings(); c < runBest {
				runBest, runOrder = c, l.snapshot()
			}
		}
		for k := range l.layers {
			l.layers[k] = runOrder[k]
		}
		l.setPos()
		l.transpose()
		if c := l.crossings(); best < 0 || c < best {
			best, bestOrder = c, l.snapshot()
		}
	}
	for k := range l.layers {
		l.layers[k] = bestOrder[k]
	}
	l.setPos()
}

// dfsOrder orders every layer by depth-first discovery along the links,
// from the nodes without predecessors (by layer, then current order).
func (l *layout) dfsOrder() {
	seen := map[*lnode]int{}
	var visit func(n *lnode)
	visit = func(n *lnode) {
		if _, ok := seen[n]; ok {
			return
		}
		seen[n] = len(seen)
		for _, m := range n.down {
			visit(m)
		}
		for _, m := range n.up {
			visit(m)
		}
	}
	for _, ly := range l.layers {
		for _, n := range ly {
			if len(n.up) == 0 {
				visit(n)
			}
		}
	}
	for _, ly := range l.layers {
		slices.SortStableFunc(ly, func(a, b *lnode) int { return seen[a] - seen[b] })
	}
}

func (l *layout) snapshot() [][]*lnode {
	s := make([][]*lnode, len(l.layers))
	for k, ly := range l.layers {
		s[k] = slices.Clone(ly)
	}
	return s
}

func sep(a, b *lnode) float64 {
	g := gapReal
	if a.dummy || b.dummy {
		g = gapDummy
	}
	return a.below() + g + b.above()
}

// spread moves layer ly as close as it can to the wanted centres while
// keeping its order and separations: the mean of a forward pass (pushing
// down) and a backward pass (pushing up), each of which keeps them.
func spread(ly []*lnode, want []float64) {
	n := len(ly)
	if n == 0 {
		return
	}
	f := make([]float64, n)
	b := make([]float64, n)
	f[0] = want[0]
	for i := 1; i < n; i++ {
		f[i] = max(want[i], f[i-1]+sep(ly[i-1], ly[i]))
	}
	b[n-1] = want[n-1]
	for i := n - 2; i >= 0; i-- {
		b[i] = min(want[i], b[i+1]-sep(ly[i], ly[i+1]))
	}
	for i, nd := range ly {
		nd.y = (f[i] + b[i]) / 2
	}
}

// place assigns coordinates.
func (l *layout) place() {
	// Columns, each gap as wide as the widest label placed in it.
	gaps := make([]float64, len(l.layers))
	for _, r := range l.routes {
		g := labelGap(r)
		for _, it := range r.items {
			gaps[g] = max(gaps[g], textWidth(it.label, labelFont)+2*labelPadX)
		}
	}
	l.colX = make([]float64, len(l.layers))
	l.colW = make([]float64, len(l.layers))
	x := 0.0
	for k, ly := range l.layers {
		w := boxMinW
		for _, nd := range ly {
			if !nd.dummy {
				w = max(w, nd.w)
			}
		}
		l.colX[k], l.colW[k] = x, w
		for _, nd := range ly {
			nd.x = x + w/2
		}
		x += w + min(max(gaps[k]+40, gapMinX), gapMaxX)
	}

	// Initial stacks, centred on 0.
	for _, ly := range l.layers {
		want := make([]float64, len(ly))
		y := 0.0
		for i, nd := range ly {
			if i > 0 {
				y += sep(ly[i-1], nd)
			}
			want[i] = y
		}
		if len(ly) > 0 {
			mid := (want[0] - ly[0].above() + want[len(ly)-1] + ly[len(ly)-1].below()) / 2
			for i := range want {
				want[i] -= mid
			}
		}
		spread(ly, want)
	}
	pull := func(ly []*lnode, nb func(*lnode) []*lnode) {
		want := make([]float64, len(ly))
		for i, nd := range ly {
			ns := nb(nd)
			if len(ns) == 0 {
				want[i] = nd.y
				continue
			}
			s := 0.0
			for _, m := range ns {
				s += m.y
			}
			want[i] = s / float64(len(ns))
		}
		spread(ly, want)
	}
	for r := 0; r < placeRounds; r++ {
		for k := 1; k < len(l.layers); k++ {
			pull(l.layers[k], func(n *lnode) []*lnode { return n.up })
		}
		for k := len(l.layers) - 2; k >= 0; k-- {
			pull(l.layers[k], func(n *lnode) []*lnode { return n.down })
		}
	}
}

// box is a segment's rectangle.
func (n *lnode) box() rect {
	return rect{n.x - n.w/2, n.y - n.h/2, n.x + n.w/2, n.y + n.h/2}
}

// offset of item i of n parallel items where they cross a layer (a
// dummy's slot is n*parallelStep high).
func offset(i, n int) float64 {
	return (float64(i) - float64(n-1)/2) * parallelStep
}

// points is the polyline an item follows, from its source to its target:
// box sides, and for each dummy the column's two edges.
func (l *layout) points(r *route, i int) [][2]float64 {
	it := r.items[i]
	off := offset(i, len(r.items))
	var pts [][2]float64
	first, last := r.chain[0], r.chain[len(r.chain)-1]
	pts = append(pts, [2]float64{first.x + first.w/2, l.attach[attachKey{r, i, 0}]})
	for _, d := range r.chain[1 : len(r.chain)-1] {
		pts = append(pts, [2]float64{l.colX[d.layer], d.y + off}, [2]float64{l.colX[d.layer] + l.colW[d.layer], d.y + off})
	}
	pts = append(pts, [2]float64{last.x - last.w/2, l.attach[attachKey{r, i, 1}]})
	if it.from != first.name {
		// Drawn against the layout's orientation: from the source's left
		// side, through the dummies, into the target's right side.
		slices.Reverse(pts)
	}
	return pts
}

// attachPoints spreads the items meeting a box side over its height, in
// the order of where they come from, so they neither meet in one point nor
// cross at the box.
func (l *layout) attachPoints() {
	type end struct {
		key   attachKey
		other float64
	}
	type side struct {
		n     *lnode
		right bool
	}
	sides := map[side][]end{}
	var order []side
	add := func(sd side, e end) {
		if _, ok := sides[sd]; !ok {
			order = append(order, sd)
		}
		sides[sd] = append(sides[sd], e)
	}
	for _, r := range l.routes {
		a, b := r.chain[0], r.chain[len(r.chain)-1]
		na, nb := r.chain[1], r.chain[len(r.chain)-2]
		for i := range r.items {
			off := offset(i, len(r.items))
			add(side{a, true}, end{attachKey{r, i, 0}, na.y + off})
			add(side{b, false}, end{attachKey{r, i, 1}, nb.y + off})
		}
	}
	l.attach = map[attachKey]float64{}
	for _, sd := range order {
		es := sides[sd]
		slices.SortStableFunc(es, func(x, y end) int {
			if x.other < y.other {
				return -1
			}
			if x.other > y.other {
				return 1
			}
			return 0
		})
		k := float64(len(es))
		span := min(sd.n.h-12, k*parallelStep)
		for j, e := range es {
			y := sd.n.y
			if k > 1 {
				y = sd.n.y - span/2 + span*float64(j)/(k-1)
			}
			l.attach[e.key] = y
		}
	}
}

// labelGap is the gap (k: between layers k and k+1) where a route's labels
// go: the middle one it crosses.
func labelGap(r *route) int {
	a, b := r.chain[0], r.chain[len(r.chain)-1]
	return a.layer + (b.layer-a.layer-1)/2
}

// placeLabels puts each label at its route's middle gap and moves it
// vertically until it overlaps no box and no other label.
func (l *layout) placeLabels() {
	var obstacles []rect
	for _, ly := range l.layers {
		for _, nd := range ly {
			if !nd.dummy {
				b := nd.box()
				obstacles = append(obstacles, rect{b.x0 - 2, b.y0 - 2, b.x1 + 2, b.y1 + 2})
			}
		}
	}
	place := func(lb label) {
		base := lb.y
		for t := 0; t < 60; t++ {
			d := float64((t+1)/2) * (labelH/2 + 1)
			if t%2 == 1 {
				d = -d
			}
			lb.y = base + d
			r := lb.rect()
			if !slices.ContainsFunc(obstacles, r.overlaps) {
				break
			}
			if t == 59 {
				lb.y = base
			}
		}
		obstacles = append(obstacles, lb.rect())
		l.labels = append(l.labels, lb)
	}
	for _, r := range l.routes {
		g := labelGap(r) - r.chain[0].layer
		left, right := r.chain[g], r.chain[g+1]
		lx := left.x + l.colW[left.layer]/2
		rx := right.x - l.colW[right.layer]/2
		midY := (left.y + right.y) / 2
		n := len(r.items)
		for i, it := range r.items {
			y := midY + (float64(i)-float64(n-1)/2)*(labelH+2)
			place(label{x: (lx + rx) / 2, y: y, w: textWidth(it.label, labelFont) + 2*labelPadX, it: it})
		}
	}
	for _, ly := range l.layers {
		for _, nd := range ly {
			k := len(nd.loops)
			for j, it := range nd.loops {
				top := nd.y - nd.h/2 - (loopBase + float64(k-1)*loopStep) - 6
				y := top - labelH/2 - float64(k-1-j)*(labelH+2)
				place(label{x: nd.x, y: y, w: textWidth(it.label, labelFont) + 2*labelPadX, it: it})
			}
		}
	}
}
