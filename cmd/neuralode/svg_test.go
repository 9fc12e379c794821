package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// svgStats summarises a parsed SVG document.
type svgStats struct {
	width, height float64
	classes       map[string]int // element count per class attribute
	elements      map[string]int // element count per tag name
	texts         []string       // character data of <text> elements
	textPos       [][2]float64   // x, y of unrotated text elements
}

// parseSVG checks that data is well-formed XML with an <svg> root and
// collects element statistics.
func parseSVG(t *testing.T, data []byte) svgStats {
	t.Helper()
	st := svgStats{classes: map[string]int{}, elements: map[string]int{}}
	dec := xml.NewDecoder(bytes.NewReader(data))
	depth := 0
	inText := false
	var cur strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("malformed SVG: %v\n%s", err, data)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if e.Name.Local != "svg" {
					t.Fatalf("root element %q, want svg", e.Name.Local)
				}
				for _, a := range e.Attr {
					switch a.Name.Local {
					case "width":
						st.width, _ = strconv.ParseFloat(a.Value, 64)
					case "height":
						st.height, _ = strconv.ParseFloat(a.Value, 64)
					}
				}
			}
			depth++
			st.elements[e.Name.Local]++
			rotated := false
			var x, y float64
			for _, a := range e.Attr {
				switch a.Name.Local {
				case "class":
					st.classes[a.Value]++
				case "transform":
					rotated = true
				case "x":
					x, _ = strconv.ParseFloat(a.Value, 64)
				case "y":
					y, _ = strconv.ParseFloat(a.Value, 64)
				}
			}
			if e.Name.Local == "text" {
				inText = true
				cur.Reset()
				if !rotated {
					st.textPos = append(st.textPos, [2]float64{x, y})
				}
			}
		case xml.EndElement:
			depth--
			if e.Name.Local == "text" {
				inText = false
				st.texts = append(st.texts, cur.String())
			}
		case xml.CharData:
			if inText {
				cur.Write(e)
			}
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced document")
	}
	return st
}

// render writes a chart and parses it; it also checks that no unrotated text
// anchor lies outside the canvas.
func render(t *testing.T, ch interface {
	writeSVG(io.Writer, int, int) error
}, w, h int) (svgStats, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := ch.writeSVG(&buf, w, h); err != nil {
		t.Fatalf("WriteSVG: %v", err)
	}
	st := parseSVG(t, buf.Bytes())
	// Equal-aspect charts crop the canvas to their plot area's aspect;
	// every other chart fills it exactly.
	cropped := false
	if s, ok := ch.(*regionScatter); ok && s.EqualAspect {
		cropped = true
	}
	if cropped && (st.width > float64(w) || st.height > float64(h) || st.width < minCanvasWidth || st.height < minCanvasHeight) ||
		!cropped && (st.width != float64(w) || st.height != float64(h)) {
		t.Errorf("size %g×%g, want %d×%d (cropped: %v)", st.width, st.height, w, h, cropped)
	}
	w, h = int(st.width), int(st.height)
	for i, p := range st.textPos {
		if p[0] < 0 || p[0] > float64(w) || p[1] < 0 || p[1] > float64(h) {
			t.Errorf("text %d at (%g, %g) outside the %d×%d canvas", i, p[0], p[1], w, h)
		}
	}
	return st, buf.Bytes()
}

func isNiceStep(step float64) bool {
	e := math.Floor(math.Log10(step))
	m := step / math.Pow(10, e)
	for _, n := range []float64{1, 2, 5, 10} {
		if math.Abs(m-n) < 1e-9*n {
			return true
		}
	}
	return false
}

func TestNiceTicks(t *testing.T) {
	tests := []struct {
		lo, hi   float64
		target   int
		wantStep float64 // 0: only check the invariants
		wantLo   float64
		wantHi   float64
	}{
		{0, 1, 5, 0.2, 0, 1},
		{0, 2 * math.Pi, 7, 1, 0, 7},
		{-3.2, 4.7, 5, 2, -4, 6},
		{0, 300, 6, 50, 0, 300},
		{0.001, 0.0093, 4, 0.002, 0, 0.01},
		{1e6, 3.7e6, 5, 5e5, 1e6, 4e6},
		{-1e-7, 1e-7, 4, 5e-8, -1e-7, 1e-7},
		{2.5, 2.5, 5, 0, 0, 0}, // zero range: widened
		{0, 0, 5, 0, 0, 0},     // zero at zero
		{1, 1 + 1e-15, 5, 0, 0, 0},
		{7, 3, 4, 1, 3, 7}, // reversed
		{-1e308, 1e308, 5, 0, 0, 0},
		{0.1, 0.7, 1, 1, 0, 1},
		{12345.6, 12399.1, 6, 10, 12340, 12400},
	}
	for _, tc := range tests {
		name := fmt.Sprintf("%g_%g_%d", tc.lo, tc.hi, tc.target)
		t.Run(name, func(t *testing.T) {
			ticks, step := niceTicks(tc.lo, tc.hi, tc.target)
			if len(ticks) < 2 {
				t.Fatalf("%d ticks", len(ticks))
			}
			if !isNiceStep(step) {
				t.Errorf("step %g is not 1, 2 or 5 × 10^k", step)
			}
			lo, hi := math.Min(tc.lo, tc.hi), math.Max(tc.lo, tc.hi)
			tol := 1e-9 * step
			if ticks[0] > lo+tol && lo > -1e300 {
				t.Errorf("first tick %g above lo %g", ticks[0], lo)
			}
			if ticks[len(ticks)-1] < hi-tol && hi < 1e300 {
				t.Errorf("last tick %g below hi %g", ticks[len(ticks)-1], hi)
			}
			for i := 1; i < len(ticks); i++ {
				if d := ticks[i] - ticks[i-1]; !relClose(d, step, 1e-6) {
					t.Errorf("spacing %g at %d, want %g", d, i, step)
				}
			}
			if n := len(ticks) - 1; n > 2*max(tc.target, 1)+2 {
				t.Errorf("%d intervals for target %d", n, tc.target)
			}
			if tc.wantStep != 0 {
				if !relClose(step, tc.wantStep, 1e-12) {
					t.Errorf("step %g, want %g", step, tc.wantStep)
				}
				if math.Abs(ticks[0]-tc.wantLo) > tol || math.Abs(ticks[len(ticks)-1]-tc.wantHi) > tol {
					t.Errorf("ticks span [%g, %g], want [%g, %g]", ticks[0], ticks[len(ticks)-1], tc.wantLo, tc.wantHi)
				}
			}
		})
	}
	// NaN input falls back to a sane range.
	if ticks, _ := niceTicks(math.NaN(), 1, 5); len(ticks) < 2 {
		t.Errorf("NaN range: %v", ticks)
	}
}

func TestFormatTick(t *testing.T) {
	tests := []struct {
		v, step float64
		want    string
	}{
		{0, 0.2, "0"},
		{0.6000000000000001, 0.2, "0.6"},
		{-4, 2, "−4"},
		{0.003, 0.001, "0.003"},
		{2e6, 1e6, "2e6"},
		{1.5e7, 5e6, "1.5e7"},
		{-5e-8, 5e-8, "−5e−8"},
		{12350, 10, "12350"},
		{1e7, 5e6, "1e7"},
	}
	for _, tc := range tests {
		if got := formatTick(tc.v, tc.step); got != tc.want {
			t.Errorf("formatTick(%g, %g) = %q, want %q", tc.v, tc.step, got, tc.want)
		}
	}
}

func TestLogTicks(t *testing.T) {
	tests := []struct {
		lo, hi    float64
		maxLabels int
		wantLo    float64
		wantHi    float64
	}{
		{1e-6, 3e2, 20, 1e-6, 1e3},
		{2.3e-9, 4.1e3, 5, 1e-9, 1e4},
		{0.31, 0.35, 10, 0.1, 1},
		{1, 1, 10, 1, 10},
		{1000, 1000, 10, 1000, 1e4},
		{1e-300, 1e300, 8, 1e-300, 1e300},
		{-1, 5, 10, 1, 10}, // no positive range: fallback
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%g_%g", tc.lo, tc.hi), func(t *testing.T) {
			ticks, alo, ahi := logTicks(tc.lo, tc.hi, tc.maxLabels)
			if !relClose(alo, tc.wantLo, 1e-9) || !relClose(ahi, tc.wantHi, 1e-9) {
				t.Errorf("axis [%g, %g], want [%g, %g]", alo, ahi, tc.wantLo, tc.wantHi)
			}
			if len(ticks) < 2 {
				t.Fatalf("ticks %v", ticks)
			}
			if len(ticks) > tc.maxLabels+1 && len(ticks) > 7 {
				t.Errorf("%d labelled ticks for at most %d labels", len(ticks), tc.maxLabels)
			}
			decades := math.Round(math.Log10(ahi / alo))
			for i, v := range ticks {
				if v < alo*(1-1e-12) || v > ahi*(1+1e-12) {
					t.Errorf("tick %g outside axis", v)
				}
				if i > 0 && !(v > ticks[i-1]) {
					t.Errorf("ticks not increasing: %v", ticks)
				}
				e := math.Round(math.Log10(v))
				isPow := math.Abs(v/math.Pow(10, e)-1) < 1e-9
				if decades > 2 && !isPow {
					t.Errorf("tick %g is not a power of ten over %g decades", v, decades)
				}
			}
		})
	}
}

// TestLogSpanAxis: the data-fitted log axis covers its data, fills most of
// the plot with it (logAxis widens [6e-5, 1.2e-3] to three decades, less than
// half of them data), labels 1/2/5 multiples on short spans, thins to
// decades on long ones, and never has fewer than two labels.
func TestLogSpanAxis(t *testing.T) {
	tests := []struct {
		lo, hi   float64
		target   int
		minFill  float64
		decades  bool // labels only at powers of ten
		minTicks int
	}{
		{6e-5, 1.2e-3, 10, 0.9, false, 3},
		{3e-4, 3.2e-4, 10, 0.05, false, 2}, // widened to a third of a decade
		{1e-9, 1e3, 5, 0.9, true, 2},
		{0.02, 40, 12, 0.9, false, 5},
		{-1, 5, 10, 0.9, false, 2}, // no positive range: fallback [1, 10]
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%g_%g", tc.lo, tc.hi), func(t *testing.T) {
			a := logSpanAxis(tc.lo, tc.hi, tc.target)
			lo, hi := tc.lo, tc.hi
			if !(lo > 0) {
				lo, hi = 1, 10
			}
			if !a.log || a.lo > lo || a.hi < hi {
				t.Fatalf("axis [%g, %g] (log %v) does not cover [%g, %g]", a.lo, a.hi, a.log, lo, hi)
			}
			if fill := math.Log10(hi/lo) / math.Log10(a.hi/a.lo); fill < tc.minFill {
				t.Errorf("data fill %.2f of the axis, want ≥ %.2f", fill, tc.minFill)
			}
			if len(a.ticks) < tc.minTicks || len(a.ticks) != len(a.labels) {
				t.Fatalf("ticks %v labels %q", a.ticks, a.labels)
			}
			if len(a.ticks) > max(tc.target, 2)+1 {
				t.Errorf("%d labelled ticks for a target of %d: %q", len(a.ticks), tc.target, a.labels)
			}
			for i, v := range a.ticks {
				if v < a.lo || v > a.hi || (i > 0 && !(v > a.ticks[i-1])) {
					t.Errorf("tick %g outside [%g, %g] or out of order: %v", v, a.lo, a.hi, a.ticks)
				}
				e := math.Floor(math.Log10(v) + 1e-9)
				isPow := math.Abs(v/math.Pow(10, e)-1) < 1e-9
				if tc.decades && !isPow {
					t.Errorf("tick %g is not a power of ten", v)
				}
			}
			for _, v := range a.minor {
				if v < a.lo || v > a.hi {
					t.Errorf("minor tick %g outside the axis", v)
				}
			}
		})
	}
}

func lossCurves(methods []string, n int, seed uint64) []lineSeries {
	rng := rand.New(rand.NewPCG(seed, 7))
	var out []lineSeries
	for k, name := range methods {
		s := lineSeries{Name: name, X: make([]float64, n), Y: make([]float64, n)}
		rate := 0.02 + 0.008*float64(k)
		for i := range s.X {
			s.X[i] = float64(i)
			s.Y[i] = (2*math.Exp(-rate*float64(i)) + 1e-4*float64(k+1)) * math.Exp(0.15*rng.NormFloat64())
		}
		out = append(out, s)
	}
	return out
}

func TestPlotStructure(t *testing.T) {
	methods := []string{"direct", "adjoint", "seminorm adjoint", "GQ adjoint"}
	p := &lineChart{Title: "Training loss", XLabel: "iteration", YLabel: "loss", LogY: true,
		Series: lossCurves(methods, 200, 1)}
	p.Series = append(p.Series, lineSeries{X: []float64{0, 199}, Y: []float64{1e-3, 1e-3}, Dashed: true}) // unnamed: no legend
	p.Bands = []bandSeries{{Name: "spread", X: []float64{0, 100, 199}, Mean: []float64{1, 0.1, 0.01}, Std: []float64{0.1, 0.01, 0.001}}}
	st, data := render(t, p, 800, 500)
	if got := st.classes["series"]; got != 5 {
		t.Errorf("%d series paths, want 5", got)
	}
	if got := st.classes["band"]; got != 1 {
		t.Errorf("%d band paths, want 1", got)
	}
	if got := st.classes["legend-entry"]; got != 5 {
		t.Errorf("%d legend entries, want 5 (4 series + 1 band)", got)
	}
	for _, m := range methods {
		if !containsText(st.texts, m) {
			t.Errorf("legend text %q missing", m)
		}
	}
	if !strings.Contains(string(data), "stroke-dasharray") {
		t.Error("dashed series has no dash array")
	}
	// Log axis over decades: decade labels appear.
	if !containsText(st.texts, "0.01") || !containsText(st.texts, "1") {
		t.Errorf("log tick labels missing: %q", st.texts)
	}
}

func containsText(texts []string, s string) bool {
	for _, t := range texts {
		if t == s {
			return true
		}
	}
	return false
}

func TestPlotEscapesText(t *testing.T) {
	title := `a<b & "c" > 'd'` + "\x00"
	p := &lineChart{Title: title, XLabel: "x<y", YLabel: "&", Series: []lineSeries{{Name: "</text><script>", X: []float64{0, 1}, Y: []float64{0, 1}}}}
	st, _ := render(t, p, 400, 300)
	if !containsText(st.texts, `a<b & "c" > 'd'`+"\uFFFD") {
		t.Errorf("escaped title not round-tripped: %q", st.texts)
	}
	if !containsText(st.texts, "</text><script>") {
		t.Errorf("legend text not round-tripped: %q", st.texts)
	}
	if st.elements["script"] != 0 {
		t.Error("markup injected")
	}
}

func TestPlotDegenerate(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		p    lineChart
	}{
		{"empty", lineChart{}},
		{"empty series", lineChart{Series: []lineSeries{{Name: "a"}}}},
		{"single point", lineChart{Series: []lineSeries{{Name: "a", X: []float64{1}, Y: []float64{2}}}}},
		{"zero range", lineChart{Series: []lineSeries{{Name: "a", X: []float64{1, 1, 1}, Y: []float64{3, 3, 3}}}}},
		{"all NaN", lineChart{Series: []lineSeries{{Name: "a", X: []float64{nan, nan}, Y: []float64{nan, 1}}}}},
		{"NaN gap", lineChart{Series: []lineSeries{{Name: "a", X: []float64{0, 1, 2, 3, 4}, Y: []float64{1, nan, 2, inf, 3}}}}},
		{"log non-positive", lineChart{LogY: true, Series: []lineSeries{{Name: "a", X: []float64{0, 1, 2}, Y: []float64{-1, 0, 5}}}}},
		{"log all negative", lineChart{LogY: true, Series: []lineSeries{{Name: "a", X: []float64{0, 1}, Y: []float64{-1, -2}}}}},
		{"huge", lineChart{Series: []lineSeries{{Name: "a", X: []float64{-1e308, 1e308}, Y: []float64{-math.MaxFloat64, math.MaxFloat64}}}}},
		{"tiny", lineChart{Series: []lineSeries{{Name: "a", X: []float64{0, 1e-300}, Y: []float64{5e-324, 0}}}}},
		{"band zero std", lineChart{Bands: []bandSeries{{Name: "b", X: []float64{0, 1}, Mean: []float64{2, 2}, Std: []float64{0, 0}}}}},
		{"band NaN", lineChart{LogY: true, Bands: []bandSeries{{Name: "b", X: []float64{0, 1, 2}, Mean: []float64{1, nan, 1}, Std: []float64{5, 1, nan}}}}},
		{"many series", lineChart{Series: lossCurves([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}, 3, 2)}},
		{"long names", lineChart{Title: strings.Repeat("very long title ", 20), Series: []lineSeries{{Name: strings.Repeat("n", 300), X: []float64{0, 1}, Y: []float64{0, 1}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			render(t, &tc.p, 400, 300)
			render(t, &tc.p, minCanvasWidth, minCanvasHeight)
		})
	}
}

func TestPlotErrors(t *testing.T) {
	tests := []struct {
		name string
		ch   interface {
			writeSVG(io.Writer, int, int) error
		}
		w, h int
	}{
		{"canvas too small", &lineChart{}, 10, 10},
		{"canvas huge", &lineChart{}, 1 << 20, 300},
		{"series lengths", &lineChart{Series: []lineSeries{{X: []float64{1, 2}, Y: []float64{1}}}}, 400, 300},
		{"band lengths", &lineChart{Bands: []bandSeries{{X: []float64{1, 2}, Mean: []float64{1, 2}, Std: []float64{1}}}}, 400, 300},
		{"bar lengths", &barChart{Categories: []string{"a", "b"}, Series: []barSeries{{Values: []float64{1}}}}, 400, 300},
		{"scatter lengths", &regionScatter{X: []float64{1}, Y: []float64{1, 2}, Class: []int{0}}, 400, 300},
		{"scatter negative class", &regionScatter{X: []float64{1}, Y: []float64{1}, Class: []int{-1}}, 400, 300},
		{"grid size", &regionScatter{GridNX: 2, GridNY: 2, GridClass: []int{0, 1, 0}, GridXMax: 1, GridYMax: 1}, 400, 300},
		{"grid extent", &regionScatter{GridNX: 1, GridNY: 1, GridClass: []int{0}, GridXMax: math.NaN(), GridYMax: 1}, 400, 300},
		{"grid conf size", &regionScatter{GridNX: 1, GridNY: 1, GridClass: []int{0}, GridConf: []float64{1, 1}, GridXMax: 1, GridYMax: 1}, 400, 300},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := tc.ch.writeSVG(&buf, tc.w, tc.h)
			if !errors.Is(err, errPlotInput) {
				t.Fatalf("err = %v, want ErrPlotInput", err)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes on error", buf.Len())
			}
		})
	}
}

type failWriter struct{}

var errWrite = errors.New("write failed")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestPlotWriteError(t *testing.T) {
	p := &lineChart{Series: []lineSeries{{X: []float64{0, 1}, Y: []float64{0, 1}}}}
	if err := p.writeSVG(failWriter{}, 400, 300); !errors.Is(err, errWrite) {
		t.Errorf("err = %v, want the writer's error", err)
	}
}

func exampleBars() (*barChart, *barChart) {
	single := &barChart{
		Title: "Time per training iteration", YLabel: "seconds",
		Categories: []string{"direct", "adjoint", "seminorm", "GQ"},
		Series:     []barSeries{{Values: []float64{0.84, 2.31, 1.62, 0.97}}},
	}
	grouped := &barChart{
		Title: "Training time by problem size", XLabel: "problem size", YLabel: "seconds per iteration",
		Categories: []string{"batch 16, hidden 32", "batch 64, hidden 64", "batch 256, hidden 128"},
		Series: []barSeries{
			{Name: "direct", Values: []float64{0.12, 0.95, 7.8}},
			{Name: "adjoint", Values: []float64{0.31, 2.4, 19.6}},
			{Name: "seminorm adjoint", Values: []float64{0.22, 1.7, 13.1}},
			{Name: "GQ adjoint", Values: []float64{0.14, math.NaN(), 8.4}},
		},
	}
	return single, grouped
}

func TestBarChart(t *testing.T) {
	single, grouped := exampleBars()
	st, _ := render(t, single, 600, 400)
	if st.classes["bar"] != 4 || st.classes["value"] != 4 {
		t.Errorf("single: %d bars, %d value labels, want 4, 4", st.classes["bar"], st.classes["value"])
	}
	if st.classes["legend-entry"] != 0 {
		t.Errorf("single unnamed series has a legend")
	}
	for _, want := range []string{"0.84", "2.31", "GQ"} {
		if !containsText(st.texts, want) {
			t.Errorf("text %q missing from %q", want, st.texts)
		}
	}
	st, _ = render(t, grouped, 800, 450)
	if st.classes["bar"] != 11 || st.classes["legend-entry"] != 4 {
		t.Errorf("grouped: %d bars, %d legend entries, want 11, 4", st.classes["bar"], st.classes["legend-entry"])
	}
	grouped.LogY = true
	render(t, grouped, 800, 450)

	neg := &barChart{Categories: []string{"a", "b", "c"}, Series: []barSeries{{Values: []float64{-2, 0, 3}}}}
	st, _ = render(t, neg, 400, 300)
	if st.classes["bar"] != 3 {
		t.Errorf("negative: %d bars", st.classes["bar"])
	}
	for _, b := range []*barChart{{}, {Categories: []string{"x"}}, {Categories: []string{"x"}, Series: []barSeries{{Values: []float64{math.NaN()}}}},
		{Categories: []string{"x"}, LogY: true, Series: []barSeries{{Values: []float64{0}}}}} {
		render(t, b, 300, 200)
	}
}

// exampleSpheresPlot builds the scatter of a nested-spheres set over the
// decision regions of a radial logistic model.
func exampleSpheresPlot(t testing.TB) *regionScatter {
	d, err := nestedSpheres(rand.New(rand.NewPCG(3, 4)), 200, spheresAugment)
	if err != nil {
		t.Fatal(err)
	}
	s := &regionScatter{
		Title: "Nested spheres: data and decision regions", XLabel: "x₁", YLabel: "x₂",
		ClassNames: []string{"inner (r < 0.4)", "outer (0.7 < r < 0.9)"},
		X:          make([]float64, d.Batch), Y: make([]float64, d.Batch), Class: d.Labels,
		GridNX: 60, GridNY: 60, GridXMin: -1, GridXMax: 1, GridYMin: -1, GridYMax: 1,
		EqualAspect: true,
	}
	for b := 0; b < d.Batch; b++ {
		s.X[b], s.Y[b] = d.X[b*d.Dim], d.X[b*d.Dim+1]
	}
	s.GridClass = make([]int, 60*60)
	s.GridConf = make([]float64, 60*60)
	for j := 0; j < 60; j++ {
		for i := 0; i < 60; i++ {
			x := -1 + (float64(i)+0.5)/30
			y := -1 + (float64(j)+0.5)/30
			p1 := 1 / (1 + math.Exp(-25*(math.Hypot(x, y)-0.55)))
			k, conf := 0, 1-p1
			if p1 > 0.5 {
				k, conf = 1, p1
			}
			s.GridClass[j*60+i], s.GridConf[j*60+i] = k, conf
		}
	}
	return s
}

func TestScatterRegions(t *testing.T) {
	s := exampleSpheresPlot(t)
	st, _ := render(t, s, 700, 560)
	if got := st.elements["rect"]; got < 3600 {
		t.Errorf("%d rects, want ≥ 3600 region cells", got)
	}
	if st.classes["legend-entry"] != 3 {
		t.Errorf("%d legend entries, want 3", st.classes["legend-entry"])
	}
	if got := st.classes["point"]; got != 400 {
		t.Errorf("%d point markers, want 400", got)
	}
	// Points only, no grid, one class, NaN points.
	render(t, &regionScatter{X: []float64{0, math.NaN()}, Y: []float64{0, 1}, Class: []int{5, 0}}, 300, 200)
	render(t, &regionScatter{}, 300, 200)
}

func TestTint(t *testing.T) {
	if got := tint("#000000", 1); got != "#000000" {
		t.Errorf("tint full = %s", got)
	}
	if got := tint("#000000", 0); got != "#ffffff" {
		t.Errorf("tint none = %s", got)
	}
	if got := tint("#0072B2", 0.5); got != "#80b9d9" {
		t.Errorf("tint half = %s", got)
	}
	if got := tint("red", 0.5); got != "red" {
		t.Errorf("named colour changed: %s", got)
	}
}

// exampleOUPlot is a band chart of model vs data sample statistics with a few
// thin sample paths.
func exampleOUPlot() *lineChart {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 101
	ts := make([]float64, n)
	for i := range ts {
		ts[i] = 0.1 * float64(i)
	}
	band := func(name string, bias float64) bandSeries {
		b := bandSeries{Name: name, X: ts, Mean: make([]float64, n), Std: make([]float64, n)}
		for i, t := range ts {
			b.Mean[i] = 2*(1-math.Exp(-0.1*t))*t*0.5 + bias*t/10
			b.Std[i] = math.Sqrt(3 + (0.6+0.15*t)*(0.6+0.15*t)*t*0.5)
		}
		return b
	}
	p := &lineChart{Title: "Ornstein–Uhlenbeck: data vs model", XLabel: "time t", YLabel: "X(t)",
		Bands: []bandSeries{band("data", 0), band("model", 0.6)}}
	for k := 0; k < 3; k++ {
		s := lineSeries{X: ts, Y: make([]float64, n), Color: palette[0], Width: 1, Opacity: 0.5}
		x := 6*rng.Float64() - 3
		for i, t := range ts {
			s.Y[i] = x
			x += (0.2*t-0.1*x)*0.1 + (0.6+0.15*t)*math.Sqrt(0.1)*rng.NormFloat64()
		}
		if k == 0 {
			s.Name = "data sample paths"
		}
		p.Series = append(p.Series, s)
	}
	return p
}

// exampleSinesPlot compares targets (dashed, markers at observations) with
// model predictions (solid) for three series.
func exampleSinesPlot(t testing.TB) *lineChart {
	rng := rand.New(rand.NewPCG(8, 9))
	times, err := sineTimes(rng, 10, true)
	if err != nil {
		t.Fatal(err)
	}
	d, err := makeSines(rng, 3, times)
	if err != nil {
		t.Fatal(err)
	}
	p := &lineChart{Title: "Sines: targets vs predictions", XLabel: "t", YLabel: "y"}
	const n = 200
	for b := 0; b < 3; b++ {
		col := palette[b]
		obs := lineSeries{Name: fmt.Sprintf("series %d target", b+1), X: d.Times, Y: make([]float64, len(d.Times)), Color: col, NoLine: true}
		for i := range d.Times {
			obs.Y[i] = d.Obs[i*d.Batch+b]
		}
		truth := lineSeries{X: make([]float64, n), Y: make([]float64, n), Color: col, Dashed: true, Width: 1.5}
		pred := lineSeries{Name: fmt.Sprintf("series %d model", b+1), X: make([]float64, n), Y: make([]float64, n), Color: col}
		for i := 0; i < n; i++ {
			tt := 2 * math.Pi * float64(i) / (n - 1)
			truth.X[i], pred.X[i] = tt, tt
			truth.Y[i] = d.A[b]*math.Sin(tt) + d.B[b]*math.Cos(tt)
			pred.Y[i] = 1.08*d.A[b]*math.Sin(tt*0.97) + d.B[b]*math.Cos(tt*0.97)
		}
		p.Series = append(p.Series, truth, obs, pred)
	}
	return p
}

func TestBandAndSinesCharts(t *testing.T) {
	st, _ := render(t, exampleOUPlot(), 800, 480)
	if st.classes["band"] != 2 || st.classes["band-mean"] != 2 || st.classes["legend-entry"] != 3 {
		t.Errorf("OU: %d bands, %d means, %d legend entries; want 2, 2, 3",
			st.classes["band"], st.classes["band-mean"], st.classes["legend-entry"])
	}
	st, _ = render(t, exampleSinesPlot(t), 800, 480)
	// NoLine series have no path; 3 truth + 3 prediction paths.
	if st.classes["series"] != 6 || st.classes["legend-entry"] != 6 {
		t.Errorf("sines: %d paths, %d legend entries; want 6, 6", st.classes["series"], st.classes["legend-entry"])
	}
}

// TestGallery writes one example of every chart kind into the directory named
// by NEURALODE_SVG_DIR (for looking at them); without it the charts are only
// rendered and checked.
func TestGallery(t *testing.T) {
	dir := os.Getenv("NEURALODE_SVG_DIR")
	single, grouped := exampleBars()
	charts := map[string]interface {
		writeSVG(io.Writer, int, int) error
	}{
		"loss_log": &lineChart{Title: "Training loss (nested spheres)", XLabel: "iteration", YLabel: "cross-entropy loss", LogY: true,
			Series: lossCurves([]string{"direct", "adjoint", "seminorm adjoint", "GQ adjoint"}, 300, 1)},
		"sines":        exampleSinesPlot(t),
		"ou_band":      exampleOUPlot(),
		"spheres":      exampleSpheresPlot(t),
		"bars":         single,
		"bars_grouped": grouped,
		"bars_grouped_log": &barChart{Title: grouped.Title + " (log scale)", YLabel: grouped.YLabel, Categories: grouped.Categories,
			Series: grouped.Series, LogY: true},
		"bars_rotated": &barChart{Title: "Many categories", XLabel: "method", YLabel: "value",
			Categories: []string{"Dormand–Prince direct", "adjoint full norm", "seminorm adjoint", "GQ adjoint C=0.1",
				"GQ adjoint C=0.5", "interpolated GQ", "error-controlled GQ", "torchdiffeq compat"},
			Series: []barSeries{{Values: []float64{1234.5, 0.0012, 56.7, 8, -3.25, 1e7, 42, 0}}}},
		"bars_narrow": &barChart{Title: "Narrow bars", YLabel: "ms",
			Categories: []string{"8", "16", "32", "64", "128", "256"},
			Series: []barSeries{{Name: "direct", Values: []float64{1.2345, 2.5, 5.1, 10.2, 20.9, 41.5}},
				{Name: "adjoint", Values: []float64{3.1, 6.3, 12.8, 25.4, 51.2, 103.7}},
				{Name: "seminorm", Values: []float64{2.2, 4.1, 8.8, 17.4, 35.1, 70.9}},
				{Name: "GQ", Values: []float64{1.4, 2.8, 5.9, 11.5, 23.3, 47.2}}}},
		"many_small": &lineChart{Title: "Eleven series on a small canvas", XLabel: "x", YLabel: "y",
			Series: lossCurves([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}, 30, 2)},
		"single_point": &lineChart{Title: "Single point", Series: []lineSeries{{Name: "only", X: []float64{3}, Y: []float64{7}}}},
	}
	for name, ch := range charts {
		w, h := 800, 480
		if name == "many_small" || name == "bars_narrow" {
			w, h = 400, 300
		}
		st, data := render(t, ch, w, h)
		_ = st
		if dir != "" {
			if err := os.WriteFile(filepath.Join(dir, name+".svg"), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func BenchmarkPlotWriteSVG(b *testing.B) {
	p := &lineChart{Title: "loss", LogY: true, Series: lossCurves([]string{"a", "b", "c", "d"}, 1000, 1)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.writeSVG(io.Discard, 800, 480); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(4000*b.N)/b.Elapsed().Seconds()/1e6, "Mpoints/s")
}

func Example_niceTicks() {
	ticks, step := niceTicks(-3.2, 4.7, 5)
	fmt.Println(ticks, step)
	// Output: [-4 -2 0 2 4 6] 2
}

func Example_lineChart() {
	p := &lineChart{Title: "loss", XLabel: "iteration", YLabel: "loss", LogY: true,
		Series: []lineSeries{{Name: "GQ adjoint", X: []float64{0, 1, 2}, Y: []float64{1, 0.1, 0.01}}}}
	var buf bytes.Buffer
	err := p.writeSVG(&buf, 640, 400)
	fmt.Println(err, strings.HasPrefix(buf.String(), "<?xml"))
	// Output: <nil> true
}
