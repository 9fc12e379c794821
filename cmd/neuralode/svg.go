package main

// Hand-written SVG charts for the experiment reports: line charts (optionally
// log-scale y), mean ± k·sd band charts, scatter plots over decision regions and
// (grouped) bar charts. Everything is laid out from estimated text widths so that
// labels do not overlap and legends sit outside the data area.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// errPlotInput reports a malformed chart description: mismatched slice lengths,
// negative class labels, a canvas too small to draw on.
var errPlotInput = errors.New("plot: invalid input")

func plotErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errPlotInput, fmt.Sprintf(format, args...))
}

// palette is the Okabe–Ito colour-blind safe palette, ordered so that the
// first colours have the strongest contrast on white (yellow comes last).
var palette = []string{
	"#0072B2", // blue
	"#D55E00", // vermillion
	"#009E73", // bluish green
	"#CC79A7", // reddish purple
	"#E69F00", // orange
	"#56B4E9", // sky blue
	"#000000", // black
	"#F0E442", // yellow
}

// dashPatterns distinguish series once the palette wraps around.
var dashPatterns = []string{"", "7 4", "2 3", "9 3 2 3"}

const (
	minCanvasWidth  = 160
	minCanvasHeight = 120
	maxCanvasSide   = 20000

	fontTitle  = 16.0
	fontLabel  = 13.0
	fontTick   = 11.0
	fontLegend = 12.0
	tickLen    = 5.0
	charWidth  = 0.6 // average glyph advance in ems for a sans-serif font (conservative)
)

// lineSeries is one named curve of a line chart. Points whose X or Y is NaN or
// infinite (or Y ≤ 0 on a log axis) are skipped and break the line.
type lineSeries struct {
	Name    string    // legend text; empty means no legend entry
	X, Y    []float64 // equal lengths
	Color   string    // CSS colour; empty picks the next palette colour
	Dashed  bool      // draw a dashed line (e.g. targets vs solid predictions)
	Markers bool      // draw a marker at every point
	NoLine  bool      // draw markers only (implies Markers)
	Width   float64   // stroke width in px; 0 means 2
	Opacity float64   // stroke opacity in (0, 1]; 0 means 1
}

// bandSeries is a mean curve with a shaded region mean ± K·Std around it, e.g. the
// distribution of SDE sample paths over time.
type bandSeries struct {
	Name    string    // legend text; "(mean ± K sd)" is appended; empty means no entry
	X       []float64 // time points
	Mean    []float64 // same length as X
	Std     []float64 // same length as X, non-negative
	K       float64   // half-width in standard deviations; 0 means 2
	Color   string    // CSS colour; empty picks the next palette colour
	Dashed  bool      // dashed mean line
	Opacity float64   // fill opacity of the band; 0 means 0.15
}

// lineChart is a line / band chart. Bands are drawn first so that lines stay on top.
type lineChart struct {
	Title, XLabel, YLabel string
	LogY                  bool // logarithmic y axis (decade ticks)
	LogX                  bool // logarithmic x axis fitted to the data (logSpanAxis); X ≤ 0 is skipped
	Series                []lineSeries
	Bands                 []bandSeries
}

// barSeries is one group member of a bar chart: one value per category.
type barSeries struct {
	Name   string    // legend text (a legend is drawn when there are several series or a name)
	Values []float64 // one per category; NaN leaves a gap
	Color  string    // CSS colour; empty picks the next palette colour
}

// barChart draws one bar per category, or a group of bars per category when
// there are several series (e.g. sizes on the axis, one bar per method).
// Every bar carries its value as a label.
type barChart struct {
	Title, XLabel, YLabel string
	Categories            []string
	Series                []barSeries
	LogY                  bool                 // logarithmic y axis; non-positive values are marked "n/a"
	Format                func(float64) string // value label format; nil means 3 significant digits
}

// regionScatter draws 2-D points coloured (and shaped) by class over a
// background heatmap of the classifier's decision regions.
//
// The region grid has GridNX × GridNY cells covering [GridXMin, GridXMax] ×
// [GridYMin, GridYMax]; cell (i, j) (column i from the left, row j from the
// bottom) is at index j*GridNX + i of GridClass and GridConf. The cell colour is
// the class colour, pale where the classifier is unsure: GridConf holds the
// probability of the predicted class (nil means fully confident).
type regionScatter struct {
	Title, XLabel, YLabel string
	ClassNames            []string  // legend text per class; missing names become "class k"
	X, Y                  []float64 // point coordinates
	Class                 []int     // class per point, ≥ 0

	GridNX, GridNY                         int
	GridXMin, GridXMax, GridYMin, GridYMax float64
	GridClass                              []int     // predicted class per cell, len GridNX*GridNY
	GridConf                               []float64 // optional probability of the predicted class per cell

	EqualAspect bool // same scale on both axes (circles look round)
}

// ---------------------------------------------------------------------------
// Ticks

// niceTicks returns ticks at multiples of a "nice" step (1, 2 or 5 times a
// power of ten) covering [lo, hi]: the first tick is ≤ lo and the last ≥ hi.
// Among the nice steps near (hi − lo)/target it picks the one whose number of
// intervals is closest to target; ties go to fewer intervals, then to the
// tighter range. Degenerate ranges
// are widened first; it never returns fewer than two ticks.
func niceTicks(lo, hi float64, target int) (ticks []float64, step float64) {
	lo, hi = sanitizeRange(lo, hi)
	if target < 1 {
		target = 1
	}
	base := niceStep((hi - lo) / float64(target))
	e := math.Floor(math.Log10(base) + 1e-9)
	bestDiff, bestN := math.Inf(1), math.Inf(1)
	var i0, i1 float64
	for j := 1.0; j >= -1; j-- {
		p := math.Pow(10, e+j)
		for _, m := range [...]float64{5, 2, 1} {
			s := m * p
			a := math.Floor(lo/s + 1e-9)
			b := math.Ceil(hi/s - 1e-9)
			n := b - a
			d := math.Abs(n - float64(target))
			if d < bestDiff || (d == bestDiff && (n < bestN || (n == bestN && s < step))) {
				bestDiff, bestN, step, i0, i1 = d, n, s, a, b
			}
		}
	}
	n := int(i1-i0) + 1
	if n < 2 || n > 1000 || math.IsNaN(i0) || math.IsNaN(i1) {
		return []float64{lo, hi}, hi - lo
	}
	ticks = make([]float64, n)
	for k := range ticks {
		t := (i0 + float64(k)) * step
		if math.Abs(t) < step*1e-9 {
			t = 0 // avoid "-0" and 1e-17 residue
		}
		ticks[k] = t
	}
	return ticks, step
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) || math.IsInf(raw, 0) {
		return 1
	}
	e := math.Floor(math.Log10(raw))
	p := math.Pow(10, e)
	f := raw / p
	switch {
	case f <= 1+1e-9:
		return p
	case f <= 2+1e-9:
		return 2 * p
	case f <= 5+1e-9:
		return 5 * p
	}
	return 10 * p
}

// sanitizeRange turns any (lo, hi) pair, including NaN, infinite, reversed or
// equal ends, into a finite interval of positive width.
func sanitizeRange(lo, hi float64) (float64, float64) {
	const big = 1e300
	if math.IsNaN(lo) || math.IsNaN(hi) {
		return 0, 1
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	lo = math.Max(lo, -big)
	hi = math.Min(hi, big)
	scale := math.Max(math.Abs(lo), math.Abs(hi))
	if hi-lo <= 1e-12*scale || hi-lo < 1e-300 {
		if scale < 1e-300 {
			return -1, 1
		}
		mid := lo
		return mid - 0.1*math.Abs(mid), mid + 0.1*math.Abs(mid)
	}
	return lo, hi
}

// formatTick labels a linear-axis tick at a precision matched to the step.
func formatTick(v, step float64) string {
	if v == 0 {
		return "0"
	}
	se := int(math.Floor(math.Log10(step) + 1e-9))
	av := math.Abs(v)
	var s string
	if av >= 1e6 || step < 1e-4 {
		e := int(math.Floor(math.Log10(av) + 1e-9))
		m := v / math.Pow(10, float64(e))
		dec := e - se
		if dec < 0 {
			dec = 0
		}
		if dec > 6 {
			dec = 6
		}
		ms := strconv.FormatFloat(m, 'f', dec, 64)
		if strings.Contains(ms, ".") {
			ms = strings.TrimRight(strings.TrimRight(ms, "0"), ".")
		}
		s = ms + "e" + strconv.Itoa(e)
	} else {
		dec := -se
		if dec < 0 {
			dec = 0
		}
		s = strconv.FormatFloat(v, 'f', dec, 64)
	}
	return strings.ReplaceAll(s, "-", "−")
}

// formatValue prints a value with three significant digits without exponent
// notation for ordinary magnitudes (bar labels).
func formatValue(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	if v == 0 {
		return "0"
	}
	av := math.Abs(v)
	var s string
	if av >= 1e6 || av < 1e-3 {
		s = strconv.FormatFloat(v, 'e', 2, 64)
		s = strings.Replace(s, "e+0", "e", 1)
		s = strings.Replace(s, "e-0", "e-", 1)
		s = strings.Replace(s, "e+", "e", 1)
	} else {
		e := int(math.Floor(math.Log10(av)))
		dec := 2 - e
		if dec < 0 {
			dec = 0
		}
		s = strconv.FormatFloat(v, 'f', dec, 64)
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
	}
	return strings.ReplaceAll(s, "-", "−")
}

var superscripts = map[rune]rune{'0': '⁰', '1': '¹', '2': '²', '3': '³', '4': '⁴',
	'5': '⁵', '6': '⁶', '7': '⁷', '8': '⁸', '9': '⁹', '-': '⁻'}

// formatLog labels a log-axis tick m·10^e: plain decimals for moderate values,
// "10⁻⁵" / "2×10⁻⁵" otherwise.
func formatLog(m float64, e int) string {
	if e >= -3 && e <= 4 {
		v := m * math.Pow(10, float64(e))
		dec := -e
		if dec < 0 {
			dec = 0
		}
		return strconv.FormatFloat(v, 'f', dec, 64)
	}
	var b strings.Builder
	if m != 1 {
		b.WriteString(strconv.FormatFloat(m, 'f', -1, 64))
		b.WriteString("×")
	}
	b.WriteString("10")
	for _, r := range strconv.Itoa(e) {
		b.WriteRune(superscripts[r])
	}
	return b.String()
}

// axis maps data values to [0, 1] along one direction.
type axis struct {
	lo, hi float64
	log    bool
	ticks  []float64 // labelled ticks with grid lines
	labels []string
	minor  []float64 // unlabelled short ticks (log axes)
}

func (a *axis) frac(v float64) float64 {
	if a.log {
		return (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	}
	return (v - a.lo) / (a.hi - a.lo)
}

// linearAxis builds nice ticks for [lo, hi] with about target intervals; the
// axis range is extended to the outer ticks.
func linearAxis(lo, hi float64, target int) axis {
	ticks, step := niceTicks(lo, hi, target)
	a := axis{lo: ticks[0], hi: ticks[len(ticks)-1], ticks: ticks}
	a.labels = make([]string, len(ticks))
	for i, t := range ticks {
		a.labels[i] = formatTick(t, step)
	}
	return a
}

// logTicks returns the labelled ticks of a logarithmic axis covering the
// positive range [lo, hi]: powers of ten from the decade at or below lo to the
// decade at or above hi (every k-th decade when more than maxLabels would be
// needed), plus 2 and 5 multiples when the range spans at most two decades.
// It also returns the axis limits.
func logTicks(lo, hi float64, maxLabels int) (ticks []float64, axisLo, axisHi float64) {
	a := logAxis(lo, hi, maxLabels)
	return a.ticks, a.lo, a.hi
}

// logSpanAxis is a logarithmic axis over [lo, hi] itself, padded by 4% of
// its log span (and at least a third of a decade wide), instead of being
// widened to whole decades as logAxis is: a time axis whose data span one
// decade would otherwise use a third of the plot. Labelled ticks are at 1, 2
// and 5 times powers of ten; only the powers (every k-th) when those are
// more than target, every multiple when they are fewer than two. The other
// integer multiples are minor ticks.
func logSpanAxis(lo, hi float64, target int) axis {
	if !(lo > 0) || !(hi > 0) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		lo, hi = 1, 10
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	l0, l1 := math.Log10(math.Max(lo, 1e-300)), math.Log10(math.Min(hi, 1e300))
	if l1-l0 < 1.0/3 {
		mid := (l0 + l1) / 2
		l0, l1 = mid-1.0/6, mid+1.0/6
	}
	pad := 0.04 * (l1 - l0)
	l0, l1 = l0-pad, l1+pad
	a := axis{lo: math.Pow(10, l0), hi: math.Pow(10, l1), log: true}
	dlo, dhi := int(math.Floor(l0)), int(math.Ceil(l1))
	// The multiples in range for a set of labelled mantissas.
	count := func(labelled func(m, d int) bool) int {
		k := 0
		for d := dlo; d <= dhi; d++ {
			for m := 1; m <= 9; m++ {
				if v := float64(m) * math.Pow(10, float64(d)); labelled(m, d) && v >= a.lo && v <= a.hi {
					k++
				}
			}
		}
		return k
	}
	target = max(target, 2)
	labelled := func(m, d int) bool { return m == 1 || m == 2 || m == 5 }
	decades := func(m, d int) bool { return m == 1 }
	switch n := count(labelled); {
	case n > target && count(decades) >= 2:
		every := (count(decades) + target - 1) / target
		labelled = func(m, d int) bool { return m == 1 && (d-dlo)%every == 0 }
	case n < 2:
		labelled = func(m, d int) bool { return true }
	}
	for d := dlo; d <= dhi; d++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow(10, float64(d))
			if v < a.lo || v > a.hi {
				continue
			}
			if labelled(m, d) {
				a.ticks = append(a.ticks, v)
				a.labels = append(a.labels, formatLog(float64(m), d))
			} else {
				a.minor = append(a.minor, v)
			}
		}
	}
	return a
}

func logAxis(lo, hi float64, maxLabels int) axis {
	if !(lo > 0) || !(hi > 0) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		lo, hi = 1, 10
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	lo = math.Max(lo, 1e-300)
	hi = math.Min(hi, 1e300)
	dlo := int(math.Floor(math.Log10(lo) + 1e-9))
	dhi := int(math.Ceil(math.Log10(hi) - 1e-9))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	a := axis{lo: math.Pow(10, float64(dlo)), hi: math.Pow(10, float64(dhi)), log: true}
	nd := dhi - dlo
	if maxLabels < 2 {
		maxLabels = 2
	}
	every := (nd + maxLabels - 1) / maxLabels
	if every < 1 {
		every = 1
	}
	for d := dlo; d <= dhi; d++ {
		p := math.Pow(10, float64(d))
		if (d-dlo)%every == 0 {
			a.ticks = append(a.ticks, p)
			a.labels = append(a.labels, formatLog(1, d))
		} else {
			a.minor = append(a.minor, p)
		}
		if d == dhi {
			break
		}
		for m := 2; m <= 9; m++ {
			if nd <= 2 && (m == 2 || m == 5) {
				a.ticks = append(a.ticks, float64(m)*p)
				a.labels = append(a.labels, formatLog(float64(m), d))
			} else if nd <= 6 && every == 1 {
				a.minor = append(a.minor, float64(m)*p)
			}
		}
	}
	return a
}

// ---------------------------------------------------------------------------
// Drawing helpers

// canvas accumulates the SVG document; it is written out in one call.
type canvas struct {
	b bytes.Buffer
}

func (c *canvas) printf(format string, args ...any) { fmt.Fprintf(&c.b, format, args...) }

func (c *canvas) num(v float64) {
	var tmp [32]byte
	c.b.Write(strconv.AppendFloat(tmp[:0], v, 'f', 2, 64))
}

func (c *canvas) open(w, h int) {
	c.printf(`<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" `+
		`font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`+"\n", w, h, w, h)
	c.printf(`<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", w, h)
}

func (c *canvas) close() { c.printf("</svg>\n") }

// text writes a text element; anchor is start, middle or end.
func (c *canvas) text(x, y float64, s string, size float64, anchor, extra string) {
	c.printf(`<text x="%.2f" y="%.2f" font-size="%g" text-anchor="%s"%s>%s</text>`+"\n",
		x, y, size, anchor, extra, esc(s))
}

func (c *canvas) line(x1, y1, x2, y2 float64, stroke string, width float64, dash string) {
	c.printf(`<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f" stroke="%s" stroke-width="%g"%s/>`+"\n",
		x1, y1, x2, y2, stroke, width, dashAttr(dash))
}

func dashAttr(dash string) string {
	if dash == "" {
		return ""
	}
	return ` stroke-dasharray="` + dash + `"`
}

// esc escapes text for XML character data and attribute values; invalid
// characters become U+FFFD.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// textWidth estimates the rendered width of s at the given font size.
func textWidth(s string, size float64) float64 {
	return float64(utf8.RuneCountInString(s)) * size * charWidth
}

// truncate shortens s with an ellipsis so that it fits in maxW pixels. Half
// a pixel of slack: a legend sized to its longest name gets back, after
// adding and subtracting its padding, a width a rounding error short of
// that name, which would otherwise lose its last letters ("gq-adaptiv…").
func truncate(s string, size, maxW float64) string {
	if textWidth(s, size) <= maxW+0.5 {
		return s
	}
	n := int(maxW/(size*charWidth)) - 1
	if n < 1 {
		n = 1
	}
	r := []rune(s)
	if n > len(r) {
		n = len(r)
	}
	return string(r[:n]) + "…"
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// extent tracks the finite range of a set of values.
type extent struct {
	lo, hi float64
	ok     bool
}

func (e *extent) add(v float64) {
	if !finite(v) {
		return
	}
	if !e.ok {
		e.lo, e.hi, e.ok = v, v, true
		return
	}
	e.lo = math.Min(e.lo, v)
	e.hi = math.Max(e.hi, v)
}

func (e *extent) get() (float64, float64) {
	if !e.ok {
		return 0, 1
	}
	return e.lo, e.hi
}

// legendEntry is one row of a legend.
type legendEntry struct {
	name    string
	color   string
	dash    string
	line    bool    // draw a line sample
	marker  int     // marker shape + 1; 0 = none
	band    float64 // fill opacity of a band swatch; 0 = none
	opacity float64
}

const legendRow = 20.0

func legendWidth(entries []legendEntry, maxW float64) float64 {
	if len(entries) == 0 {
		return 0
	}
	w := 0.0
	for _, e := range entries {
		w = math.Max(w, textWidth(e.name, fontLegend))
	}
	w = math.Min(w, maxW)
	return 12 + 30 + 6 + w + 4
}

// drawLegend draws the legend entries in a column starting at (x, y), inside a
// framed box of the given width.
func (c *canvas) drawLegend(entries []legendEntry, x, y, width, canvasH float64) {
	if len(entries) == 0 {
		return
	}
	// Entries that do not fit above the bottom edge are summarised.
	if rows := int((canvasH - y - 12) / legendRow); len(entries) > rows {
		rows = max(rows, 1)
		more := len(entries) - rows + 1
		entries = append(entries[:rows-1:rows-1], legendEntry{name: fmt.Sprintf("+%d more", more), color: "#888888"})
	}
	h := legendRow*float64(len(entries)) + 8
	c.printf(`<g class="legend">` + "\n")
	c.printf(`<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="#ffffff" stroke="#bbbbbb" stroke-width="1" rx="3"/>`+"\n",
		x, y, width, h)
	maxText := width - 12 - 30 - 6 - 4
	for i, e := range entries {
		cy := y + 4 + legendRow*(float64(i)+0.5)
		sx := x + 8
		c.printf(`<g class="legend-entry">`)
		if e.band > 0 {
			c.printf(`<rect x="%.2f" y="%.2f" width="30" height="12" fill="%s" fill-opacity="%g"/>`,
				sx, cy-6, e.color, e.band)
		}
		if e.line {
			op := ""
			if e.opacity > 0 && e.opacity < 1 {
				op = fmt.Sprintf(` stroke-opacity="%g"`, e.opacity)
			}
			c.printf(`<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f" stroke="%s" stroke-width="2.5"%s%s/>`,
				sx, cy, sx+30, cy, e.color, dashAttr(e.dash), op)
		}
		if e.marker > 0 {
			c.marker(e.marker-1, sx+15, cy, 4, e.color, "#ffffff", "")
		}
		c.printf(`<text x="%.2f" y="%.2f" font-size="%g" dy="0.35em">%s</text>`,
			sx+36, cy, fontLegend, esc(truncate(e.name, fontLegend, maxText)))
		c.printf("</g>\n")
	}
	c.printf("</g>\n")
}

// marker draws one of four shapes (circle, square, triangle, diamond) so that
// classes differ in shape as well as colour.
func (c *canvas) marker(shape int, x, y, r float64, fill, stroke, class string) {
	sw := ` stroke="` + stroke + `" stroke-width="0.8"`
	if class != "" {
		sw += ` class="` + class + `"`
	}
	switch shape % 4 {
	case 0:
		c.printf(`<circle cx="%.2f" cy="%.2f" r="%.2f" fill="%s"%s/>`, x, y, r, fill, sw)
	case 1:
		s := r * 0.9
		c.printf(`<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"%s/>`, x-s, y-s, 2*s, 2*s, fill, sw)
	case 2:
		s := r * 1.25
		c.printf(`<path d="M%.2f %.2fL%.2f %.2fL%.2f %.2fZ" fill="%s"%s/>`,
			x, y-s, x+s*0.866, y+s*0.5, x-s*0.866, y+s*0.5, fill, sw)
	default:
		s := r * 1.2
		c.printf(`<path d="M%.2f %.2fL%.2f %.2fL%.2f %.2fL%.2f %.2fZ" fill="%s"%s/>`,
			x, y-s, x+s, y, x, y+s, x-s, y, fill, sw)
	}
}

// frame is the plot area in pixels: x from x0 to x1, y from y0 (top) to y1 (bottom).
type frame struct {
	x0, x1, y0, y1 float64
}

func (f frame) px(a *axis, v float64) float64 { return f.x0 + a.frac(v)*(f.x1-f.x0) }
func (f frame) py(a *axis, v float64) float64 { return f.y1 - a.frac(v)*(f.y1-f.y0) }

// margins computed for the common chart frame.
type margins struct {
	top, bottom, left, right float64
}

func baseMargins(title, xlabel, ylabel string) margins {
	m := margins{top: 12, bottom: 10 + tickLen + 4 + fontTick, left: 10, right: 14}
	if title != "" {
		m.top += fontTitle + 14
	}
	if xlabel != "" {
		m.bottom += fontLabel + 10
	}
	if ylabel != "" {
		m.left += fontLabel + 10
	}
	return m
}

// buildAxes chooses y ticks for the available height, widens the left margin
// to fit their labels, then chooses x ticks whose labels do not collide.
func buildAxes(w, h float64, m margins, ylo, yhi float64, logY bool,
	xAxis func(target int) axis) (frame, axis, axis) {
	plotH := h - m.top - m.bottom
	var ya axis
	if logY {
		ya = logAxis(ylo, yhi, int(plotH/24))
	} else {
		ya = linearAxis(ylo, yhi, clampInt(int(plotH/45), 2, 10))
	}
	maxW := 0.0
	for _, l := range ya.labels {
		maxW = math.Max(maxW, textWidth(l, fontTick))
	}
	m.left += maxW + tickLen + 5
	f := frame{x0: m.left, x1: w - m.right, y0: m.top, y1: h - m.bottom}
	plotW := f.x1 - f.x0
	target := clampInt(int(plotW/70), 2, 12)
	var xa axis
	for {
		xa = xAxis(target)
		lw := 0.0
		for _, l := range xa.labels {
			lw = math.Max(lw, textWidth(l, fontTick))
		}
		if target <= 2 || float64(len(xa.ticks))*(lw+12) <= plotW {
			break
		}
		target--
	}
	return f, xa, ya
}

func clampInt(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// drawFrame draws grid lines, the axis box, ticks, tick labels, axis labels and
// the title.
func (c *canvas) drawFrame(f frame, xa, ya *axis, title, xlabel, ylabel string, w, h float64, xticks, grid bool) {
	c.printf(`<g class="grid" stroke="#e6e6e6" stroke-width="1">` + "\n")
	for _, t := range ya.ticks {
		if !grid {
			break
		}
		y := f.py(ya, t)
		c.printf(`<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f"/>`+"\n", f.x0, y, f.x1, y)
	}
	if xticks && grid {
		for _, t := range xa.ticks {
			x := f.px(xa, t)
			c.printf(`<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f"/>`+"\n", x, f.y0, x, f.y1)
		}
	}
	c.printf("</g>\n")
	c.printf(`<g class="axes" stroke="#333333" stroke-width="1">` + "\n")
	c.printf(`<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="none"/>`+"\n", f.x0, f.y0, f.x1-f.x0, f.y1-f.y0)
	for _, t := range ya.ticks {
		y := f.py(ya, t)
		c.printf(`<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f"/>`+"\n", f.x0-tickLen, y, f.x0, y)
	}
	for _, t := range ya.minor {
		y := f.py(ya, t)
		c.printf(`<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f"/>`+"\n", f.x0-tickLen*0.6, y, f.x0, y)
	}
	if xticks {
		for _, t := range xa.ticks {
			x := f.px(xa, t)
			c.printf(`<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f"/>`+"\n", x, f.y1, x, f.y1+tickLen)
		}
		for _, t := range xa.minor {
			x := f.px(xa, t)
			c.printf(`<line x1="%.2f" y1="%.2f" x2="%.2f" y2="%.2f"/>`+"\n", x, f.y1, x, f.y1+tickLen*0.6)
		}
	}
	c.printf("</g>\n")
	c.printf(`<g class="tick-labels" fill="#222222">` + "\n")
	for i, t := range ya.ticks {
		c.text(f.x0-tickLen-3, f.py(ya, t), ya.labels[i], fontTick, "end", ` dy="0.35em"`)
	}
	if xticks {
		for i, t := range xa.ticks {
			c.text(f.px(xa, t), f.y1+tickLen+3+fontTick*0.8, xa.labels[i], fontTick, "middle", "")
		}
	}
	c.printf("</g>\n")
	c.drawTitles(f, title, xlabel, ylabel, w, h)
}

// drawTitles draws the title (centred over the plot area, shrunk to fit) and
// the axis labels.
func (c *canvas) drawTitles(f frame, title, xlabel, ylabel string, w, h float64) {
	if title != "" {
		size := fontTitle
		for size > 10 && textWidth(title, size) > w-16 {
			size--
		}
		title = truncate(title, size, w-16)
		cx := (f.x0 + f.x1) / 2
		tw := textWidth(title, size)
		cx = math.Max(cx, 8+tw/2)
		cx = math.Min(cx, w-8-tw/2)
		c.text(cx, 12+fontTitle*0.85, title, size, "middle", ` font-weight="bold"`)
	}
	if xlabel != "" {
		c.text((f.x0+f.x1)/2, h-12, truncate(xlabel, fontLabel, f.x1-f.x0), fontLabel, "middle", "")
	}
	if ylabel != "" {
		cy := (f.y0 + f.y1) / 2
		x := 10 + fontLabel*0.8
		c.printf(`<text x="%.2f" y="%.2f" font-size="%g" text-anchor="middle" transform="rotate(-90 %.2f %.2f)">%s</text>`+"\n",
			x, cy, fontLabel, x, cy, esc(truncate(ylabel, fontLabel, f.y1-f.y0)))
	}
}

func (c *canvas) clip(id string, f frame) {
	c.printf(`<defs><clipPath id="%s"><rect x="%.2f" y="%.2f" width="%.2f" height="%.2f"/></clipPath></defs>`+"\n",
		id, f.x0, f.y0, f.x1-f.x0, f.y1-f.y0)
}

func checkCanvas(width, height int) error {
	if width < minCanvasWidth || height < minCanvasHeight || width > maxCanvasSide || height > maxCanvasSide {
		return plotErrorf("canvas %d×%d outside [%d, %d]×[%d, %d]", width, height,
			minCanvasWidth, maxCanvasSide, minCanvasHeight, maxCanvasSide)
	}
	return nil
}

// colorPicker hands out palette colours in order, switching dash pattern each
// time the palette wraps.
type colorPicker struct{ n int }

func (p *colorPicker) next(explicit string) (color, dash string) {
	if explicit != "" {
		return explicit, ""
	}
	i := p.n
	p.n++
	return palette[i%len(palette)], dashPatterns[(i/len(palette))%len(dashPatterns)]
}

// style is next with the dash pattern forced to "7 4" for a line the
// caller marked dashed (bands and series alike).
func (p *colorPicker) style(explicit string, dashed bool) (color, dash string) {
	color, dash = p.next(explicit)
	if dashed {
		dash = "7 4"
	}
	return color, dash
}

// ---------------------------------------------------------------------------
// Paths and markers shared by the charts

// Size caps: however many points a chart is given, its SVG stays small
// (a path of 2000 points is finer than any canvas this package draws, and
// more markers than that only overlap).
const (
	maxPathPoints = 2000
	maxMarkers    = 1000
	markerPad     = 8.0 // px the marker clip extends beyond the plot area
)

// strideFor returns the step that thins n points to at most limit.
func strideFor(n, limit int) int {
	return max(1, (n+limit-1)/limit)
}

// strided calls visit for i = lo, lo+stride, … and always for the last
// index hi−1, in reverse order when rev.
func strided(lo, hi, stride int, rev bool, visit func(i int)) {
	if hi <= lo {
		return
	}
	if !rev {
		for i := lo; i < hi; i += stride {
			visit(i)
		}
		if (hi-1-lo)%stride != 0 {
			visit(hi - 1)
		}
		return
	}
	for i := hi - 1; i >= lo; i -= stride {
		visit(i)
	}
	if (hi-1-lo)%stride != 0 {
		visit(lo)
	}
}

// pathPoints writes path data through the points at(i) for i in [lo, hi),
// thinned to maxPathPoints, in reverse order when rev. A point with ok(i)
// false breaks the line; the first point moves the pen ("M") unless cont,
// which continues the current subpath ("L").
func (c *canvas) pathPoints(lo, hi int, rev, cont bool, ok func(int) bool, at func(int) (x, y float64)) {
	pen := cont
	strided(lo, hi, strideFor(hi-lo, maxPathPoints), rev, func(i int) {
		if ok != nil && !ok(i) {
			pen = false
			return
		}
		if pen {
			c.b.WriteByte('L')
		} else {
			c.b.WriteByte('M')
		}
		x, y := at(i)
		c.num(x)
		c.b.WriteByte(' ')
		c.num(y)
		pen = true
	})
}

// markerClip defines the clip of the marker groups: the plot area widened by
// markerPad, so a marker on the edge of the data range is drawn whole.
func (c *canvas) markerClip(f frame) {
	c.clip("markerarea", frame{x0: f.x0 - markerPad, x1: f.x1 + markerPad, y0: f.y0 - markerPad, y1: f.y1 + markerPad})
}

// finish closes the document and writes it.
func (c *canvas) finish(w io.Writer) error {
	c.close()
	_, err := w.Write(c.b.Bytes())
	return err
}

// ---------------------------------------------------------------------------
// Line and band chart

// writeSVG renders the chart as a width × height pixel SVG document.
func (p *lineChart) writeSVG(w io.Writer, width, height int) error {
	if err := p.check(width, height); err != nil {
		return err
	}
	W, H := float64(width), float64(height)
	ex, ey := p.extents()
	st := p.styles()
	m := baseMargins(p.Title, p.XLabel, p.YLabel)
	lw := legendWidth(st.entries, 0.3*W)
	if lw > 0 {
		m.right += lw + 4
	}
	xlo, xhi := ex.get()
	ylo, yhi := ey.get()
	if p.LogY && !ey.ok {
		ylo, yhi = 1, 10
	}
	if p.LogX && !ex.ok {
		xlo, xhi = 1, 10
	}
	f, xa, ya := buildAxes(W, H, m, ylo, yhi, p.LogY, func(t int) axis {
		if p.LogX {
			return logSpanAxis(xlo, xhi, t)
		}
		return linearAxis(xlo, xhi, t)
	})

	var c canvas
	c.open(width, height)
	c.drawFrame(f, &xa, &ya, p.Title, p.XLabel, p.YLabel, W, H, true, true)
	c.clip("plotarea", f)
	c.markerClip(f)
	c.printf(`<g clip-path="url(#plotarea)">` + "\n")
	// y values outside the axis (e.g. non-positive band edges on a log axis)
	// are clamped to just beyond the plot area; the clip path hides the rest.
	yclamp := func(v float64) float64 {
		if p.LogY && !(v > 0) {
			return f.y1 + 2
		}
		y := f.py(&ya, v)
		return math.Max(math.Min(y, f.y1+1e4), f.y0-1e4)
	}
	for i, b := range p.Bands {
		c.drawBand(f, &xa, yclamp, b, st.bandColors[i], st.bandDash[i])
	}
	for i, s := range p.Series {
		c.drawSeries(f, &xa, &ya, p.LogY, s, st.seriesColors[i], st.seriesDash[i])
	}
	c.printf("</g>\n")
	c.printf(`<g class="markers" clip-path="url(#markerarea)">` + "\n")
	for i, s := range p.Series {
		c.drawMarkers(f, &xa, &ya, p.LogY, s, st.seriesColors[i])
	}
	c.printf("</g>\n")
	c.drawLegend(st.entries, f.x1+12, f.y0, lw, H)
	return c.finish(w)
}

// check validates the canvas and the slice lengths.
func (p *lineChart) check(width, height int) error {
	if err := checkCanvas(width, height); err != nil {
		return err
	}
	for i, s := range p.Series {
		if len(s.X) != len(s.Y) {
			return plotErrorf("series %d (%q): len(X)=%d, len(Y)=%d", i, s.Name, len(s.X), len(s.Y))
		}
	}
	for i, b := range p.Bands {
		if len(b.Mean) != len(b.X) || len(b.Std) != len(b.X) {
			return plotErrorf("band %d (%q): len(X)=%d, len(Mean)=%d, len(Std)=%d", i, b.Name, len(b.X), len(b.Mean), len(b.Std))
		}
	}
	return nil
}

// extents returns the data ranges; on a log axis only positive values count.
func (p *lineChart) extents() (ex, ey extent) {
	addY := func(v float64) {
		if !p.LogY || v > 0 {
			ey.add(v)
		}
	}
	for _, s := range p.Series {
		for i := range s.X {
			if finite(s.X[i]) && finite(s.Y[i]) && (!p.LogY || s.Y[i] > 0) && (!p.LogX || s.X[i] > 0) {
				ex.add(s.X[i])
				ey.add(s.Y[i])
			}
		}
	}
	for _, b := range p.Bands {
		k := bandK(b)
		for i := range b.X {
			if finite(b.X[i]) && finite(b.Mean[i]) {
				ex.add(b.X[i])
				addY(b.Mean[i])
				if finite(b.Std[i]) {
					addY(b.Mean[i] + k*math.Abs(b.Std[i]))
					addY(b.Mean[i] - k*math.Abs(b.Std[i]))
				}
			}
		}
	}
	return ex, ey
}

// lineStyles are the colours and dash patterns of a chart's bands and
// series, and its legend.
type lineStyles struct {
	bandColors, bandDash     []string
	seriesColors, seriesDash []string
	entries                  []legendEntry
}

func (p *lineChart) styles() lineStyles {
	var pick colorPicker
	st := lineStyles{bandColors: make([]string, len(p.Bands)), bandDash: make([]string, len(p.Bands)),
		seriesColors: make([]string, len(p.Series)), seriesDash: make([]string, len(p.Series))}
	for i, b := range p.Bands {
		col, dash := pick.style(b.Color, b.Dashed)
		st.bandColors[i], st.bandDash[i] = col, dash
		if b.Name != "" {
			st.entries = append(st.entries, legendEntry{
				name:  fmt.Sprintf("%s (mean ± %g sd)", b.Name, bandK(b)),
				color: col, dash: dash, line: true, band: bandOpacity(b) + 0.07,
			})
		}
	}
	for i, s := range p.Series {
		col, dash := pick.style(s.Color, s.Dashed)
		st.seriesColors[i], st.seriesDash[i] = col, dash
		if s.Name != "" {
			e := legendEntry{name: s.Name, color: col, dash: dash, line: !s.NoLine, opacity: s.Opacity}
			if s.Markers || s.NoLine {
				e.marker = 1
			}
			st.entries = append(st.entries, e)
		}
	}
	return st
}

func bandK(b bandSeries) float64 {
	if b.K > 0 && finite(b.K) {
		return b.K
	}
	return 2
}

func bandOpacity(b bandSeries) float64 {
	if b.Opacity > 0 && b.Opacity <= 1 {
		return b.Opacity
	}
	return 0.15
}

func seriesWidth(s lineSeries) float64 {
	if s.Width > 0 {
		return s.Width
	}
	return 2
}

// drawSeries draws one polyline, broken at skipped points.
func (c *canvas) drawSeries(f frame, xa, ya *axis, logY bool, s lineSeries, col, dash string) {
	if s.NoLine {
		return
	}
	op := ""
	if s.Opacity > 0 && s.Opacity < 1 {
		op = fmt.Sprintf(` stroke-opacity="%g"`, s.Opacity)
	}
	ok := func(i int) bool {
		return finite(s.X[i]) && finite(s.Y[i]) && (!logY || s.Y[i] > 0) && (!xa.log || s.X[i] > 0)
	}
	c.printf(`<g class="series-group"><path class="series" fill="none" stroke="%s" stroke-width="%g" stroke-linejoin="round" stroke-linecap="round"%s%s d="`,
		col, seriesWidth(s), dashAttr(dash), op)
	c.pathPoints(0, len(s.X), false, false, ok, func(i int) (float64, float64) { return f.px(xa, s.X[i]), f.py(ya, s.Y[i]) })
	c.printf(`"/></g>` + "\n")
}

// drawMarkers draws the markers of a series: every point of a marker series
// (thinned to maxMarkers), and isolated points of a line.
func (c *canvas) drawMarkers(f frame, xa, ya *axis, logY bool, s lineSeries, col string) {
	ok := func(i int) bool {
		return finite(s.X[i]) && finite(s.Y[i]) && (!logY || s.Y[i] > 0) && (!xa.log || s.X[i] > 0)
	}
	all := s.Markers || s.NoLine
	r := 2.2 + seriesWidth(s)*0.6
	n := len(s.X)
	stride := 1
	if all {
		stride = strideFor(n, maxMarkers)
	}
	drawn := 0
	strided(0, n, stride, false, func(i int) {
		if !ok(i) || drawn >= maxMarkers {
			return
		}
		isolated := (i == 0 || !ok(i-1)) && (i == n-1 || !ok(i+1))
		if all || isolated {
			c.marker(0, f.px(xa, s.X[i]), f.py(ya, s.Y[i]), r, col, "#ffffff", "marker")
			drawn++
		}
	})
}

// drawBand draws the shaded mean ± K·sd region (one polygon per run of valid
// points) and the mean line.
func (c *canvas) drawBand(f frame, xa *axis, py func(float64) float64, b bandSeries, col, dash string) {
	k := bandK(b)
	ok := func(i int) bool { return finite(b.X[i]) && finite(b.Mean[i]) && finite(b.Std[i]) }
	edge := func(sign float64) func(int) (float64, float64) {
		return func(q int) (float64, float64) { return f.px(xa, b.X[q]), py(b.Mean[q] + sign*k*math.Abs(b.Std[q])) }
	}
	c.printf(`<g class="band-group">`)
	for i := 0; i < len(b.X); {
		if !ok(i) {
			i++
			continue
		}
		j := i
		for j < len(b.X) && ok(j) {
			j++
		}
		c.printf(`<path class="band" fill="%s" fill-opacity="%g" stroke="none" d="`, col, bandOpacity(b))
		c.pathPoints(i, j, false, false, nil, edge(1))
		c.pathPoints(i, j, true, true, nil, edge(-1))
		c.printf(`Z"/>`)
		// Thin edge lines keep overlapping bands distinguishable.
		for _, sign := range [...]float64{1, -1} {
			c.printf(`<path class="band-edge" fill="none" stroke="%s" stroke-width="1" stroke-opacity="0.7" d="`, col)
			c.pathPoints(i, j, false, false, nil, edge(sign))
			c.printf(`"/>`)
		}
		i = j
	}
	c.printf(`<path class="band-mean" fill="none" stroke="%s" stroke-width="2.2" stroke-linejoin="round"%s d="`, col, dashAttr(dash))
	c.pathPoints(0, len(b.X), false, false, func(i int) bool { return finite(b.X[i]) && finite(b.Mean[i]) },
		func(i int) (float64, float64) { return f.px(xa, b.X[i]), py(b.Mean[i]) })
	c.printf(`"/></g>` + "\n")
}

// ---------------------------------------------------------------------------
// Scatter over decision regions

// writeSVG renders the scatter plot as an SVG document of at most width ×
// height pixels: with EqualAspect the canvas is cropped to the plot area's
// aspect, so no empty band is left under the title or beside the legend.
func (s *regionScatter) writeSVG(w io.Writer, width, height int) error {
	if err := checkCanvas(width, height); err != nil {
		return err
	}
	nClass, err := s.check()
	if err != nil {
		return err
	}
	entries := s.legend(nClass)
	W, H := float64(width), float64(height)
	m := baseMargins(s.Title, s.XLabel, s.YLabel)
	lw := legendWidth(entries, 0.3*W)
	m.right += lw + 4
	xlo, xhi, ylo, yhi := s.extents()
	f, xa, ya := buildAxes(W, H, m, ylo, yhi, false, func(t int) axis { return linearAxis(xlo, xhi, t) })
	if s.EqualAspect {
		f, W, H = equalAspect(f, &xa, &ya, W, H)
	}
	var c canvas
	c.open(int(math.Ceil(W)), int(math.Ceil(H)))
	c.clip("plotarea", f)
	c.markerClip(f)
	if s.hasGrid() {
		c.drawRegions(f, &xa, &ya, s, nClass)
	}
	c.drawFrame(f, &xa, &ya, s.Title, s.XLabel, s.YLabel, W, H, true, false)
	c.printf(`<g class="points" clip-path="url(#markerarea)">` + "\n")
	stride := strideFor(len(s.X), maxMarkers*5)
	strided(0, len(s.X), stride, false, func(i int) {
		if !finite(s.X[i]) || !finite(s.Y[i]) {
			return
		}
		k := s.Class[i]
		c.marker(k%4, f.px(&xa, s.X[i]), f.py(&ya, s.Y[i]), 3, palette[k%len(palette)], "#ffffff", "point")
		c.b.WriteByte('\n')
	})
	c.printf("</g>\n")
	c.drawLegend(entries, f.x1+12, f.y0, lw, H)
	return c.finish(w)
}

func (s *regionScatter) hasGrid() bool {
	return s.GridNX > 0 || s.GridNY > 0 || len(s.GridClass) > 0
}

// check validates the points and the grid and returns the number of classes.
func (s *regionScatter) check() (int, error) {
	if len(s.X) != len(s.Y) || len(s.X) != len(s.Class) {
		return 0, plotErrorf("scatter: len(X)=%d, len(Y)=%d, len(Class)=%d", len(s.X), len(s.Y), len(s.Class))
	}
	nClass := len(s.ClassNames)
	for i, k := range s.Class {
		if k < 0 {
			return 0, plotErrorf("scatter: Class[%d]=%d is negative", i, k)
		}
		nClass = max(nClass, k+1)
	}
	if !s.hasGrid() {
		return nClass, nil
	}
	n := s.GridNX * s.GridNY
	if s.GridNX <= 0 || s.GridNY <= 0 || len(s.GridClass) != n || (s.GridConf != nil && len(s.GridConf) != n) {
		return 0, plotErrorf("scatter: grid %d×%d with len(GridClass)=%d, len(GridConf)=%d",
			s.GridNX, s.GridNY, len(s.GridClass), len(s.GridConf))
	}
	if !finite(s.GridXMin) || !finite(s.GridXMax) || !finite(s.GridYMin) || !finite(s.GridYMax) ||
		!(s.GridXMax > s.GridXMin) || !(s.GridYMax > s.GridYMin) {
		return 0, plotErrorf("scatter: grid extent [%g, %g]×[%g, %g] is not a finite box",
			s.GridXMin, s.GridXMax, s.GridYMin, s.GridYMax)
	}
	for i, k := range s.GridClass {
		if k < 0 {
			return 0, plotErrorf("scatter: GridClass[%d]=%d is negative", i, k)
		}
		nClass = max(nClass, k+1)
	}
	return nClass, nil
}

// extents returns the range of the points and the grid.
func (s *regionScatter) extents() (xlo, xhi, ylo, yhi float64) {
	var ex, ey extent
	for i := range s.X {
		if finite(s.X[i]) && finite(s.Y[i]) {
			ex.add(s.X[i])
			ey.add(s.Y[i])
		}
	}
	if s.hasGrid() {
		ex.add(s.GridXMin)
		ex.add(s.GridXMax)
		ey.add(s.GridYMin)
		ey.add(s.GridYMax)
	}
	xlo, xhi = ex.get()
	ylo, yhi = ey.get()
	return xlo, xhi, ylo, yhi
}

func (s *regionScatter) legend(nClass int) []legendEntry {
	var entries []legendEntry
	for k := 0; k < nClass; k++ {
		name := fmt.Sprintf("class %d", k)
		if k < len(s.ClassNames) && s.ClassNames[k] != "" {
			name = s.ClassNames[k]
		}
		entries = append(entries, legendEntry{name: name, color: palette[k%len(palette)], marker: k%4 + 1})
	}
	if s.hasGrid() {
		entries = append(entries, legendEntry{name: "shade: predicted class", color: "#888888", band: 0.35})
	}
	return entries
}

// equalAspect shrinks one side of the plot area so that one data unit has
// the same length in pixels on both axes (the ticks stay valid), and crops
// the canvas by the same amount.
func equalAspect(f frame, xa, ya *axis, W, H float64) (frame, float64, float64) {
	sx := (f.x1 - f.x0) / (xa.hi - xa.lo)
	sy := (f.y1 - f.y0) / (ya.hi - ya.lo)
	if sx > sy {
		d := (f.x1 - f.x0) - sy*(xa.hi-xa.lo)
		f.x1 -= d
		W = math.Max(W-d, minCanvasWidth)
	} else {
		d := (f.y1 - f.y0) - sx*(ya.hi-ya.lo)
		f.y1 -= d
		H = math.Max(H-d, minCanvasHeight)
	}
	return f, W, H
}

// drawRegions draws the decision-region heatmap.
func (c *canvas) drawRegions(f frame, xa, ya *axis, s *regionScatter, nClass int) {
	c.printf(`<g class="regions" clip-path="url(#plotarea)">` + "\n")
	dx := (s.GridXMax - s.GridXMin) / float64(s.GridNX)
	dy := (s.GridYMax - s.GridYMin) / float64(s.GridNY)
	for j := 0; j < s.GridNY; j++ {
		for i := 0; i < s.GridNX; i++ {
			idx := j*s.GridNX + i
			k := s.GridClass[idx]
			conf := 1.0
			if s.GridConf != nil {
				conf = s.GridConf[idx]
			}
			x0 := f.px(xa, s.GridXMin+float64(i)*dx)
			x1 := f.px(xa, s.GridXMin+float64(i+1)*dx)
			y0 := f.py(ya, s.GridYMin+float64(j+1)*dy)
			y1 := f.py(ya, s.GridYMin+float64(j)*dy)
			// Opaque pre-blended tint (equivalent to a transparent fill on
			// white) with a half-pixel overlap, so no seams appear between cells.
			c.printf(`<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`+"\n",
				x0, y0, x1-x0+0.5, y1-y0+0.5, tint(palette[k%len(palette)], regionAlpha(conf, nClass)))
		}
	}
	c.printf("</g>\n")
}

// regionAlpha maps the predicted-class probability to a tint strength: pale at
// chance level (the decision boundary), strongest when certain.
func regionAlpha(conf float64, nClass int) float64 {
	if !finite(conf) {
		return 0.05
	}
	chance := 1 / float64(max(nClass, 2))
	u := (conf - chance) / (1 - chance)
	u = math.Max(0, math.Min(1, u))
	return 0.06 + 0.30*u
}

// tint blends a #rrggbb colour with white at the given alpha.
func tint(col string, alpha float64) string {
	if len(col) != 7 || col[0] != '#' {
		return col
	}
	v, err := strconv.ParseUint(col[1:], 16, 32)
	if err != nil {
		return col
	}
	ch := func(shift uint) int {
		c := float64((v >> shift) & 0xff)
		return int(math.Round(255 + alpha*(c-255)))
	}
	return fmt.Sprintf("#%02x%02x%02x", ch(16), ch(8), ch(0))
}

// ---------------------------------------------------------------------------
// Bar chart

// writeSVG renders the bar chart as a width × height pixel SVG document.
func (b *barChart) writeSVG(w io.Writer, width, height int) error {
	if err := checkCanvas(width, height); err != nil {
		return err
	}
	nc := len(b.Categories)
	for i, s := range b.Series {
		if len(s.Values) != nc {
			return plotErrorf("bar series %d (%q): %d values for %d categories", i, s.Name, len(s.Values), nc)
		}
	}
	format := b.Format
	if format == nil {
		format = formatValue
	}
	W, H := float64(width), float64(height)
	colors, entries := b.legend()
	m := baseMargins(b.Title, b.XLabel, b.YLabel)
	m.top += fontTick + 4 // room for the value label of the tallest bar
	lw := legendWidth(entries, 0.3*W)
	if lw > 0 {
		m.right += lw + 4
	}
	rotate := b.categoryLayout(&m, W, H)
	ylo, yhi := b.yRange()
	f, _, ya := buildAxes(W, H, m, ylo, yhi, b.LogY, func(int) axis { return axis{lo: 0, hi: 1} })
	xa := axis{lo: 0, hi: float64(max(nc, 1))}

	var c canvas
	c.open(width, height)
	c.drawFrame(f, &xa, &ya, b.Title, b.XLabel, b.YLabel, W, H, false, true)
	// Baseline: zero on a linear axis, the bottom on a log axis.
	base := f.y1
	if !b.LogY {
		base = f.py(&ya, 0)
	}
	c.drawBars(b, f, &ya, base, colors, format)
	if !b.LogY && ya.lo < 0 {
		c.line(f.x0, base, f.x1, base, "#333333", 1, "")
	}
	c.drawCategoryLabels(b.Categories, f, H, rotate)
	c.drawLegend(entries, f.x1+12, f.y0, lw, H)
	return c.finish(w)
}

// legend picks the series colours and builds the legend (drawn when there
// are several series or a named one).
func (b *barChart) legend() ([]string, []legendEntry) {
	var pick colorPicker
	ns := len(b.Series)
	colors := make([]string, ns)
	var entries []legendEntry
	for i, s := range b.Series {
		colors[i], _ = pick.next(s.Color)
		if ns > 1 || s.Name != "" {
			name := s.Name
			if name == "" {
				name = fmt.Sprintf("series %d", i+1)
			}
			entries = append(entries, legendEntry{name: name, color: colors[i], band: 1})
		}
	}
	return colors, entries
}

// categoryLayout decides whether the category labels are rotated (when they
// would not fit their slot) and makes room for them in the margins.
func (b *barChart) categoryLayout(m *margins, W, H float64) bool {
	nc := len(b.Categories)
	plotWGuess := W - m.left - m.right - 50
	slot := plotWGuess / float64(max(nc, 1))
	maxCat := 0.0
	for _, s := range b.Categories {
		maxCat = math.Max(maxCat, textWidth(s, fontTick))
	}
	maxCat = math.Min(maxCat, 0.3*H)
	rotate := maxCat > slot-6
	if rotate {
		m.bottom += maxCat*0.71 + 2
		// The first label extends down-left of its slot centre.
		if nc > 0 {
			first := math.Min(textWidth(b.Categories[0], fontTick), 0.3*H)
			m.left = math.Max(m.left, first*0.71-slot/2+4)
		}
	}
	return rotate
}

// yRange is the value range, with zero on a linear axis and headroom so
// that value labels stay inside the frame.
func (b *barChart) yRange() (float64, float64) {
	var ey extent
	if !b.LogY {
		ey.add(0)
	}
	for _, s := range b.Series {
		for _, v := range s.Values {
			if !b.LogY || v > 0 {
				ey.add(v)
			}
		}
	}
	ylo, yhi := ey.get()
	if !b.LogY {
		span := yhi - ylo
		if yhi > 0 {
			yhi += 0.06 * span
		}
		if ylo < 0 {
			ylo -= 0.06 * span
		}
	}
	return ylo, yhi
}

// drawBars draws every bar with its value label (vertical when the labels
// would not fit the bar width), and "n/a" for missing values.
func (c *canvas) drawBars(b *barChart, f frame, ya *axis, base float64, colors []string, format func(float64) string) {
	nc, ns := len(b.Categories), len(b.Series)
	slotW := (f.x1 - f.x0) / float64(max(nc, 1))
	groupW := slotW * 0.8
	barW := groupW / float64(max(ns, 1))
	labelSize := fontTick
	maxVal := 0.0
	for _, s := range b.Series {
		for _, v := range s.Values {
			maxVal = math.Max(maxVal, textWidth(format(v), 1))
		}
	}
	rotLabels := maxVal*labelSize > barW+4
	if rotLabels {
		for labelSize > 8 && maxVal*labelSize > barW+4 {
			labelSize--
		}
		rotLabels = maxVal*labelSize > barW+4
	}
	c.printf(`<g class="bars">` + "\n")
	for si, s := range b.Series {
		for ci, v := range s.Values {
			x := f.x0 + slotW*float64(ci) + (slotW-groupW)/2 + barW*float64(si)
			if !finite(v) || (b.LogY && v <= 0) {
				// Say that the value is missing rather than leave a silent gap.
				if barW >= textWidth("n/a", 9) {
					c.printf(`<text class="value-missing" x="%.2f" y="%.2f" font-size="9" fill="#777777" text-anchor="middle">n/a</text>`+"\n",
						x+barW/2, base-3)
				}
				continue
			}
			y := f.py(ya, v)
			top, bot := math.Min(y, base), math.Max(y, base)
			c.printf(`<rect class="bar" x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s" stroke="#ffffff" stroke-width="0.8"/>`+"\n",
				x, top, barW, bot-top, colors[si])
			c.barLabel(format(v), x+barW/2, top, bot, v < 0, labelSize, rotLabels)
		}
	}
	c.printf("</g>\n")
}

// barLabel writes a bar's value just above it (below a negative bar),
// vertical when rotated.
func (c *canvas) barLabel(label string, cx, top, bot float64, negative bool, size float64, rotated bool) {
	if rotated {
		ly, anchor := top-4, "start"
		if negative {
			ly, anchor = bot+4, "end"
		}
		c.printf(`<text class="value" x="%.2f" y="%.2f" font-size="%g" text-anchor="%s" dy="0.35em" transform="rotate(-90 %.2f %.2f)">%s</text>`+"\n",
			cx, ly, size, anchor, cx, ly, esc(label))
		return
	}
	ly := top - 4
	if negative {
		ly = bot + size
	}
	c.printf(`<text class="value" x="%.2f" y="%.2f" font-size="%g" text-anchor="middle">%s</text>`+"\n",
		cx, ly, size, esc(label))
}

// drawCategoryLabels writes the category names under their slots, rotated
// by 45° when they would not fit.
func (c *canvas) drawCategoryLabels(cats []string, f frame, H float64, rotate bool) {
	slotW := (f.x1 - f.x0) / float64(max(len(cats), 1))
	c.printf(`<g class="category-labels" fill="#222222">` + "\n")
	for ci, name := range cats {
		cx := f.x0 + slotW*(float64(ci)+0.5)
		name = truncate(name, fontTick, 0.3*H)
		if rotate {
			y := f.y1 + tickLen + 4
			c.printf(`<text x="%.2f" y="%.2f" font-size="%g" text-anchor="end" dy="0.35em" transform="rotate(-45 %.2f %.2f)">%s</text>`+"\n",
				cx, y, fontTick, cx, y, esc(name))
		} else {
			c.text(cx, f.y1+tickLen+3+fontTick*0.8, name, fontTick, "middle", "")
		}
		c.line(cx, f.y1, cx, f.y1+tickLen, "#333333", 1, "")
	}
	c.printf("</g>\n")
}
