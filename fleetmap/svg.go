package fleetmap

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
)

const (
	svgMargin  = 24.0
	svgHeaderH = 64.0
	svgFont    = "Helvetica, Arial, sans-serif"
)

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(clean(s)))
	return b.String()
}

func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

// markerID names the arrowhead of a colour class.
func markerID(verdict string) string {
	switch verdict {
	case VerdictAllowed, VerdictDenied, VerdictAudited, "unused":
		return "fm-arrow-" + verdict
	}
	return "fm-arrow-other"
}

// SVG draws the map as a standalone SVG document (see the package
// documentation for the layout). Segment boxes are <rect class="segment">,
// edges <path class="edge">, labels <text class="edge-label">; the output
// is deterministic.
func (m Map) SVG() []byte {
	n := m.Normalize()
	l := newLayout(n, implied(m, n))

	// Bounding box of the drawing, then shifted below the header.
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	grow := func(r rect) {
		minX, minY = min(minX, r.x0), min(minY, r.y0)
		maxX, maxY = max(maxX, r.x1), max(maxY, r.y1)
	}
	for _, ly := range l.layers {
		for _, nd := range ly {
			b := nd.box()
			if nd.dummy {
				b.x0, b.x1 = nd.x, nd.x
			}
			b.y0 -= nd.top
			grow(b)
		}
	}
	for _, lb := range l.labels {
		grow(lb.rect())
	}
	if math.IsInf(minX, 1) {
		minX, minY, maxX, maxY = 0, 0, 0, 0
	}
	dx, dy := svgMargin-minX, svgHeaderH+12-minY
	for _, ly := range l.layers {
		for _, nd := range ly {
			nd.x += dx
			nd.y += dy
		}
	}
	for k := range l.colX {
		l.colX[k] += dx
	}
	for k := range l.attach {
		l.attach[k] += dy
	}
	for i := range l.labels {
		l.labels[i].x += dx
		l.labels[i].y += dy
	}

	title := fmt.Sprintf("segmesh map: %s · %s, %s", sinceText(n.Since), plural(len(n.Segments), "segment"), plural(len(n.Edges), "edge"))
	if len(n.Unused) > 0 {
		title += ", " + plural(len(n.Unused), "unused rule")
	}
	legend := []struct {
		name, verdict, colour string
		dashed                bool
	}{
		{"allowed", VerdictAllowed, colourAllowed, false},
		{"audited", VerdictAudited, colourAudited, false},
		{"denied", VerdictDenied, colourDenied, false},
		{"unused rule (dashed)", "unused", colourUnused, true},
	}
	legendW := 0.0
	for _, e := range legend {
		legendW += 40 + textWidth(e.name, 12) + 20
	}
	width := max(maxX-minX+2*svgMargin, legendW+2*svgMargin, textWidth(title, 14)+2*svgMargin, 320)
	height := svgHeaderH + 12 + (maxY - minY) + svgMargin
	missingY := height
	if len(n.Missing) > 0 {
		height += 22 + float64(len(n.Missing))*18
		for _, x := range n.Missing {
			width = max(width, textWidth("• "+x.Node+": "+x.Reason, 12)+2*svgMargin)
		}
	}
	if len(n.Segments) == 0 {
		height += 30
	}

	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="%s">`+"\n",
		num(width), num(height), num(width), num(height), svgFont)
	b.WriteString("<title>" + esc(title) + "</title>\n<defs>\n")
	for _, mk := range []struct{ verdict, colour string }{
		{VerdictAllowed, colourAllowed}, {VerdictAudited, colourAudited}, {VerdictDenied, colourDenied},
		{"unused", colourUnused}, {"other", colourOther},
	} {
		fmt.Fprintf(&b, `<marker id="%s" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="%s"/></marker>`+"\n",
			markerID(mk.verdict), mk.colour)
	}
	b.WriteString("</defs>\n")
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%s" height="%s" fill="#ffffff"/>`+"\n", num(width), num(height))
	fmt.Fprintf(&b, `<text class="title" x="%s" y="26" font-size="14" font-weight="bold" fill="#263238">%s</text>`+"\n", num(svgMargin), esc(title))

	// Legend.
	b.WriteString(`<g class="legend" font-size="12">` + "\n")
	x := svgMargin
	for _, e := range legend {
		dash := ""
		if e.dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<line x1="%s" y1="46" x2="%s" y2="46" stroke="%s" stroke-width="2"%s marker-end="url(#%s)"/>`,
			num(x), num(x+32), e.colour, dash, markerID(e.verdict))
		fmt.Fprintf(&b, `<text x="%s" y="50" fill="#37474f">%s</text>`+"\n", num(x+40), esc(e.name))
		x += 40 + textWidth(e.name, 12) + 20
	}
	b.WriteString("</g>\n")

	// Edges, behind the boxes.
	b.WriteString(`<g class="edges" fill="none">` + "\n")
	for _, r := range l.routes {
		for i, it := range r.items {
			pts := l.points(r, i)
			var d strings.Builder
			fmt.Fprintf(&d, "M%s,%s", num(pts[0][0]), num(pts[0][1]))
			for j := 1; j < len(pts); j++ {
				p, q := pts[j-1], pts[j]
				h := (q[0] - p[0]) / 2
				fmt.Fprintf(&d, " C%s,%s %s,%s %s,%s", num(p[0]+h), num(p[1]), num(q[0]-h), num(q[1]), num(q[0]), num(q[1]))
			}
			writeEdge(&b, it, d.String())
		}
	}
	for _, ly := range l.layers {
		for _, nd := range ly {
			y0 := nd.y - nd.h/2
			for j, it := range nd.loops {
				x1, x2 := nd.x-14-float64(j)*8, nd.x+14+float64(j)*8
				cy := y0 - (loopBase+float64(j)*loopStep)*4/3
				d := fmt.Sprintf("M%s,%s C%s,%s %s,%s %s,%s", num(x1), num(y0), num(x1-10), num(cy), num(x2+10), num(cy), num(x2), num(y0))
				writeEdge(&b, it, d)
			}
		}
	}
	b.WriteString("</g>\n")

	// Boxes.
	b.WriteString(`<g class="segments">` + "\n")
	for _, ly := range l.layers {
		for _, nd := range ly {
			if nd.dummy {
				continue
			}
			bx := nd.box()
			sub := members(nd.seg.Members)
			dash, fill := "", "#f5f7fa"
			if nd.implied {
				sub, dash, fill = "not a segment", ` stroke-dasharray="5 3"`, "#fafafa"
				if nd.name == "*" {
					sub = "any node"
				}
			}
			fmt.Fprintf(&b, `<g class="segment-box"><title>%s</title>`, esc(nd.name+": "+sub))
			fmt.Fprintf(&b, `<rect class="segment" x="%s" y="%s" width="%s" height="%s" rx="6" fill="%s" stroke="#37474f" stroke-width="1.5"%s/>`,
				num(bx.x0), num(bx.y0), num(nd.w), num(nd.h), fill, dash)
			fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle" font-size="%s" font-weight="bold" fill="#263238">%s</text>`,
				num(nd.x), num(nd.y-3), num(nameFont), esc(shorten(nd.name, maxNameRunes)))
			fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle" font-size="%s" fill="#546e7a">%s</text></g>`+"\n",
				num(nd.x), num(nd.y+13), num(membersFont), esc(sub))
		}
	}
	b.WriteString("</g>\n")

	// Labels, on top.
	fmt.Fprintf(&b, `<g class="labels" font-size="%s" text-anchor="middle">`+"\n", num(labelFont))
	for _, lb := range l.labels {
		r := lb.rect()
		fmt.Fprintf(&b, `<g><title>%s</title><rect x="%s" y="%s" width="%s" height="%s" rx="3" fill="#ffffff" fill-opacity="0.9"/>`,
			esc(lb.it.full), num(r.x0), num(r.y0), num(lb.w), num(labelH))
		fmt.Fprintf(&b, `<text class="edge-label" x="%s" y="%s" fill="%s">%s</text></g>`+"\n",
			num(lb.x), num(lb.y+4), lb.it.colour, esc(lb.it.label))
	}
	b.WriteString("</g>\n")

	if len(n.Segments) == 0 {
		fmt.Fprintf(&b, `<text x="%s" y="%s" font-size="13" fill="#546e7a">no segments or flows observed</text>`+"\n", num(svgMargin), num(svgHeaderH+30))
	}
	if len(n.Missing) > 0 {
		fmt.Fprintf(&b, `<g class="missing" font-size="12" fill="#b45309"><text x="%s" y="%s" font-weight="bold">%s</text>`,
			num(svgMargin), num(missingY+14), esc(fmt.Sprintf("No answer from %d node(s); the map lacks their observations:", len(n.Missing))))
		for i, x := range n.Missing {
			fmt.Fprintf(&b, `<text x="%s" y="%s">%s</text>`, num(svgMargin+8), num(missingY+32+float64(i)*18), esc("• "+x.Node+": "+x.Reason))
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func writeEdge(b *bytes.Buffer, it item, d string) {
	dash := ""
	if it.dashed {
		dash = ` stroke-dasharray="6 4"`
	}
	fmt.Fprintf(b, `<path class="edge" data-from="%s" data-to="%s" data-verdict="%s" d="%s" stroke="%s" stroke-width="%s"%s marker-end="url(#%s)"><title>%s</title></path>`+"\n",
		esc(it.from), esc(it.to), esc(it.verdict), d, it.colour, map[bool]string{false: "2", true: "1.5"}[it.dashed], dash, markerID(it.verdict), esc(it.full))
}
