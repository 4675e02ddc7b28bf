package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// timeline is one failover run as the picture shows it. Times are seconds
// from the fault's injection.
type timeline struct {
	Fault string // scenario name ("kill")
	Desc  string // what was done to the holder, for people
	Run   string // "run 2 of 5"; empty for the demo
	// Window is the write-unavailability window (both paths merged),
	// VIPGap and ProxyGap per path; GapStart is where the window began,
	// GapKnown whether it is known.
	Window, VIPGap, ProxyGap float64
	GapStart                 float64
	GapKnown                 bool
	From, To                 string
	// Failed is the verification error, empty when the run verified.
	Failed string
	// Start and End are the x axis's range.
	Start, End float64
	Rates      []rate
	States     []nodeState
	Marks      []mark
}

// rate is the writes per second acknowledged through each path between
// two of the load generator's ticks, From and To.
type rate struct {
	From, To, VIP, Proxy float64
}

// nodeState is one sample of the pair: who holds the VIP ("" for nobody,
// "both"), and per node keepalived's state and read_only ("ON", "OFF",
// "?" for no answer).
type nodeState struct {
	T          float64
	Holder     string
	Keepalived map[string]string
	ReadOnly   map[string]string
}

// mark is a moment of the run drawn as a vertical line.
type mark struct {
	T     float64
	Label string
}

var pairNodes = []string{"db1", "db2"}

// Layout in px. The lane labels sit left of the plot.
const (
	svgW      = 960
	plotL     = 132
	plotR     = svgW - 24
	plotW     = plotR - plotL
	markTop   = 58 // first row of marker labels
	markRow   = 13
	markRows  = 3
	chartTop  = markTop + markRows*markRow + 6
	chartH    = 150
	chartBot  = chartTop + chartH
	laneTop   = chartBot + 18
	laneH     = 20
	laneGap   = 6
	laneCount = 5
	laneBot   = laneTop + laneCount*(laneH+laneGap) - laneGap
	axisY     = laneBot + 6
	svgH      = axisY + 58
	charW     = 6.2 // average width of an 11px sans-serif character
)

// Colours: one per path, one per keepalived state, one per read_only
// value, one per VIP holder.
const (
	colVIP    = "#1f6fb4"
	colProxy  = "#e8710a"
	colGap    = "#fde0dd"
	colMark   = "#555"
	colGrid   = "#e6e6e6"
	colNone   = "#f3f3f3"
	colBoth   = "#c62828"
	colMaster = "#2e7d32"
	colBackup = "#9ecae1"
	colFault  = "#d32f2f"
	colStop   = "#8d8d8d"
	colOther  = "#d9d9d9"
	colWrite  = "#2e7d32"
	colRO     = "#cfd8dc"
	colNoAns  = "#f9a825"
)

// halo keeps text over lines readable: a white outline under the glyphs.
const halo = ` stroke="#fff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"`

var holderColour = map[string]string{"db1": "#6a51a3", "db2": "#00897b", "both": colBoth, "": colNone}

// band is a stretch of a lane with one value.
type band struct {
	from, to    float64
	text, label string // label is drawn inside when it fits
	fill, ink   string
}

// svgTimeline renders tl as a self-contained SVG document.
func svgTimeline(tl timeline) []byte {
	start, end := clean(tl.Start), clean(tl.End)
	if end-start < 1 {
		end = start + 1
	}
	x := func(t float64) float64 {
		t = min(max(clean(t), start), end)
		return plotL + (t-start)/(end-start)*plotW
	}
	// Text over the plot goes last (over), so that no line crosses it.
	var b, over bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	po := func(format string, a ...any) { fmt.Fprintf(&over, format, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans,Helvetica,Arial,sans-serif" font-size="11">`+"\n",
		svgW, svgH, svgW, svgH)
	p(`<rect width="%d" height="%d" fill="#fff"/>`+"\n", svgW, svgH)

	title := "failover: " + tl.Fault
	if tl.Run != "" {
		title += ", " + tl.Run
	}
	p(`<text x="12" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", esc(title))
	sub := tl.Desc
	if tl.From != "" {
		sub += fmt.Sprintf(" (%s → %s)", tl.From, tl.To)
	}
	p(`<text x="12" y="40" fill="#333">%s</text>`+"\n", esc(sub))
	win := fmt.Sprintf("write-unavailability window %.2fs (through the VIP %.2fs, through HAProxy %.2fs)",
		clean(tl.Window), clean(tl.VIPGap), clean(tl.ProxyGap))
	winCol := "#333"
	if tl.Failed != "" {
		win = "VERIFICATION FAILED: " + tl.Failed
		winCol = colFault
	}
	p(`<text x="%d" y="22" text-anchor="end" font-size="12" fill="%s">%s</text>`+"\n", plotR, winCol, esc(clip(win, 84)))

	// Writes per second, with the window without any write shaded.
	if tl.GapKnown && tl.Window > 0 {
		x0, x1 := x(tl.GapStart), x(tl.GapStart+tl.Window)
		p(`<rect class="gap" x="%s" y="%d" width="%s" height="%d" fill="%s"/>`+"\n", f1(x0), chartTop, f1(max(0, x1-x0)), chartH, colGap)
		po(`<text x="%s" y="%d" text-anchor="middle" fill="%s"`+halo+`>no writes %.2fs</text>`+"\n", f1((x0+x1)/2), chartTop+chartH/2, colFault, clean(tl.Window))
	}
	top := niceCeil(maxRate(tl.Rates))
	y := func(v float64) float64 { return chartBot - min(max(clean(v), 0), top)/top*chartH }
	for i := range 5 {
		v := top * float64(i) / 4
		p(`<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="%s"/>`, plotL, f1(y(v)), plotR, f1(y(v)), colGrid)
		p(`<text x="%d" y="%s" text-anchor="end" fill="#555">%s</text>`+"\n", plotL-6, f1(y(v)+4), strconv.FormatFloat(v, 'f', -1, 64))
	}
	p(`<text x="14" y="%d" fill="#333">writes/s</text>`+"\n", chartTop+chartH/2)
	for _, s := range []struct{ name, col string }{{"vip", colVIP}, {"proxy", colProxy}} {
		var pts []string
		for _, r := range tl.Rates {
			v := r.VIP
			if s.name == "proxy" {
				v = r.Proxy
			}
			// Steps: each rate holds over its tick.
			pts = append(pts, f1(x(r.From))+","+f1(y(v)), f1(x(r.To))+","+f1(y(v)))
		}
		if len(pts) > 0 {
			p(`<polyline class="rate-%s" points="%s" fill="none" stroke="%s" stroke-width="1.6" stroke-linejoin="round"/>`+"\n",
				s.name, strings.Join(pts, " "), s.col)
		}
	}
	legend := [][2]string{{colVIP, "through the VIP"}, {colProxy, "through HAProxy"}}
	lx := float64(plotR - 250)
	for _, l := range legend {
		p(`<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="%s" stroke-width="2.5"/>`, f1(lx), chartTop+10, f1(lx+18), chartTop+10, l[0])
		p(`<text x="%s" y="%d">%s</text>`+"\n", f1(lx+22), chartTop+14, esc(l[1]))
		lx += 125
	}
	p(`<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", plotL, chartTop, plotW, chartH)

	// Lanes.
	type lane struct {
		name  string
		bands []band
	}
	lanes := []lane{{"VIP holder", merge(tl.States, end, func(s nodeState) string { return s.Holder }, holderBand)}}
	for _, n := range pairNodes {
		lanes = append(lanes,
			lane{n + " keepalived", merge(tl.States, end, func(s nodeState) string { return s.Keepalived[n] }, keepalivedBand)},
			lane{n + " read_only", merge(tl.States, end, func(s nodeState) string { return s.ReadOnly[n] }, readOnlyBand)})
	}
	for i, ln := range lanes {
		ly := laneTop + i*(laneH+laneGap)
		p(`<g class="lane" data-lane="%s">`, esc(ln.name))
		p(`<text x="%d" y="%d" text-anchor="end">%s</text>`, plotL-6, ly+laneH/2+4, esc(ln.name))
		p(`<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, plotL, ly, plotW, laneH, colNone)
		for _, bd := range ln.bands {
			x0, x1 := x(bd.from), x(bd.to)
			w := max(0, x1-x0)
			if w == 0 {
				continue
			}
			p(`<rect x="%s" y="%d" width="%s" height="%d" fill="%s"><title>%s</title></rect>`, f1(x0), ly, f1(w), laneH, bd.fill, esc(ln.name+": "+bd.text))
			if float64(len(bd.label))*charW+6 <= w {
				p(`<text x="%s" y="%d" text-anchor="middle" fill="%s">%s</text>`, f1((x0+x1)/2), ly+laneH/2+4, bd.ink, esc(bd.label))
			}
		}
		p("</g>\n")
	}

	// Markers over the chart and the lanes, their labels in rows above so
	// that close moments stay readable.
	rowEnd := make([]float64, markRows)
	for _, m := range tl.Marks {
		t := clean(m.T)
		if t < start || t > end {
			continue
		}
		mx := x(t)
		w := float64(len([]rune(m.Label)))*charW + 4
		anchor, lx0 := "start", mx+3
		if mx+3+w > svgW {
			anchor, lx0 = "end", mx-3-w
		}
		row := 0
		for row < markRows-1 && lx0 < rowEnd[row] {
			row++
		}
		rowEnd[row] = lx0 + w + 6
		ty := markTop + row*markRow + 9
		tx := mx + 3
		if anchor == "end" {
			tx = mx - 3
		}
		p(`<line class="mark" x1="%s" y1="%d" x2="%s" y2="%d" stroke="%s" stroke-dasharray="4 3"/>`+"\n", f1(mx), ty-9, f1(mx), laneBot, colMark)
		po(`<text class="mark-label" x="%s" y="%d" text-anchor="%s" fill="#222"`+halo+`>%s</text>`+"\n", f1(tx), ty, anchor, esc(m.Label))
	}

	// Time axis.
	step := niceStep((end - start) / 10)
	for i := math.Ceil(start / step); i*step <= end+1e-9; i++ {
		t := i * step
		tx := x(t)
		p(`<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="#999"/>`, f1(tx), axisY, f1(tx), axisY+4)
		p(`<text x="%s" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", f1(tx), axisY+16, secLabel(t))
	}
	p(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", plotL, axisY, plotR, axisY)
	p(`<text x="%d" y="%d" text-anchor="middle" fill="#333">seconds from the fault</text>`+"\n", plotL+plotW/2, axisY+32)
	p(`<text x="%d" y="%d" fill="#777" font-size="10">keepalived: MASTER green, BACKUP blue, FAULT red; read_only: OFF (writable) green, ON grey, no answer amber</text>`+"\n",
		plotL, axisY+50)
	b.Write(over.Bytes())
	p("</svg>\n")
	return b.Bytes()
}

// holderBand, keepalivedBand and readOnlyBand colour one lane's value.
func holderBand(v string) band {
	switch v {
	case "":
		return band{text: "VIP on no node", label: "none", fill: colNone, ink: "#777"}
	case "both":
		return band{text: "VIP on both nodes", label: "BOTH", fill: colBoth, ink: "#fff"}
	}
	c, ok := holderColour[v]
	if !ok {
		c = colOther
	}
	return band{text: "VIP on " + v, label: v, fill: c, ink: "#fff"}
}

func keepalivedBand(v string) band {
	bd := band{text: "keepalived " + v, label: v, fill: colOther, ink: "#333"}
	switch v {
	case "MASTER":
		bd.fill, bd.ink = colMaster, "#fff"
	case "BACKUP":
		bd.fill = colBackup
	case "FAULT":
		bd.fill, bd.ink = colFault, "#fff"
	case "STOPPED":
		bd.fill, bd.ink = colStop, "#fff"
	}
	return bd
}

func readOnlyBand(v string) band {
	switch v {
	case "OFF":
		return band{text: "read_only=OFF: writable", label: "writable", fill: colWrite, ink: "#fff"}
	case "ON":
		return band{text: "read_only=ON", label: "read-only", fill: colRO, ink: "#333"}
	}
	return band{text: "no answer", label: "no answer", fill: colNoAns, ink: "#333"}
}

// merge turns samples into bands: each sample holds until the next, the
// last until end; equal neighbours join.
func merge(states []nodeState, end float64, value func(nodeState) string, colour func(string) band) []band {
	var out []band
	for i, s := range states {
		to := end
		if i+1 < len(states) {
			to = states[i+1].T
		}
		bd := colour(value(s))
		bd.from, bd.to = clean(s.T), clean(to)
		if n := len(out); n > 0 && out[n-1].text == bd.text && out[n-1].fill == bd.fill {
			out[n-1].to = bd.to
			continue
		}
		out = append(out, bd)
	}
	return out
}

func maxRate(rs []rate) float64 {
	m := 0.0
	for _, r := range rs {
		m = max(m, clean(r.VIP), clean(r.Proxy))
	}
	return m
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// niceStep is the axis step near v: 0.1, 0.2, 0.5, 1, 2, 5, 10, ...
func niceStep(v float64) float64 {
	if v <= 0.1 {
		return 0.1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func secLabel(t float64) string {
	if math.Abs(t) < 1e-9 {
		return "0"
	}
	s := strconv.FormatFloat(t, 'f', -1, 64)
	if len(s) > 6 {
		s = strconv.FormatFloat(t, 'f', 1, 64)
	}
	if t > 0 {
		s = "+" + s
	}
	return s
}

// clean makes NaN and infinities 0, so that no coordinate is.
func clean(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func f1(v float64) string { return strconv.FormatFloat(clean(v), 'f', 1, 64) }

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
