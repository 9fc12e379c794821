package main

import (
	"io"
	"math"
)

// heatPanel is one square panel of a heatMaps figure: a grid of NX × NY
// cells over [XMin, XMax] × [YMin, YMax], cell (i, j) (column i from the
// left, row j from the bottom) at index j*NX + i of Values. Values are
// mapped linearly from [0, max] to the colour scale (NaN cells stay white),
// so densities and histograms of different totals share one look.
type heatPanel struct {
	Title                  string
	NX, NY                 int
	XMin, XMax, YMin, YMax float64
	Values                 []float64
}

// heatMaps draws panels side by side, each with its own axes, e.g. a data
// histogram beside a learned density and the model's samples.
type heatMaps struct {
	Title  string
	Panels []heatPanel
}

// viridis holds anchors of the viridis colour map (Smith & van der Walt),
// interpolated linearly; dark is low, yellow is high.
var viridis = [][3]float64{
	{68, 1, 84}, {72, 40, 120}, {62, 73, 137}, {49, 104, 142}, {38, 130, 142},
	{31, 158, 137}, {53, 183, 121}, {109, 205, 89}, {180, 222, 44}, {253, 231, 37},
}

// heatLevels is the number of colour levels; neighbouring cells of one
// level in a row are drawn as one rectangle, which keeps files small.
const heatLevels = 48

func heatColor(level int) string {
	x := float64(level) / float64(heatLevels-1) * float64(len(viridis)-1)
	i := min(int(x), len(viridis)-2)
	f := x - float64(i)
	var c [3]int
	for k := range c {
		c[k] = int(math.Round(viridis[i][k]*(1-f) + viridis[i+1][k]*f))
	}
	const hex = "0123456789abcdef"
	b := []byte{'#', 0, 0, 0, 0, 0, 0}
	for k, v := range c {
		b[1+2*k], b[2+2*k] = hex[v>>4], hex[v&15]
	}
	return string(b)
}

// WriteSVG renders the panels into a width × height SVG document.
func (h *heatMaps) WriteSVG(w io.Writer, width, height int) error {
	if err := checkCanvas(width, height); err != nil {
		return err
	}
	n := len(h.Panels)
	if n == 0 {
		return plotErrorf("heat map without panels")
	}
	for i, p := range h.Panels {
		if p.NX < 1 || p.NY < 1 || len(p.Values) != p.NX*p.NY {
			return plotErrorf("panel %d: %d values for a %d×%d grid", i, len(p.Values), p.NX, p.NY)
		}
		if !(p.XMax > p.XMin) || !(p.YMax > p.YMin) || !finite(p.XMin+p.XMax+p.YMin+p.YMax) {
			return plotErrorf("panel %d: empty or non-finite range", i)
		}
	}
	var c canvas
	c.open(width, height)
	W, H := float64(width), float64(height)
	top := 12.0
	if h.Title != "" {
		top += fontTitle + 14
	}
	pw := W / float64(n)
	for k, p := range h.Panels {
		m := baseMargins(p.Title, "", "")
		m.top += top - 12
		sub := frameIn(k, pw, H, m)
		xa := linearAxis(p.XMin, p.XMax, 5)
		ya := linearAxis(p.YMin, p.YMax, 5)
		// Square data area: shrink the longer side.
		side := math.Min(sub.x1-sub.x0, sub.y1-sub.y0)
		cx := (sub.x0 + sub.x1) / 2
		f := frame{x0: cx - side/2, x1: cx + side/2, y0: sub.y0, y1: sub.y0 + side}
		xa.lo, xa.hi, ya.lo, ya.hi = p.XMin, p.XMax, p.YMin, p.YMax
		vmax := 0.0
		for _, v := range p.Values {
			if finite(v) {
				vmax = math.Max(vmax, v)
			}
		}
		dx, dy := side/float64(p.NX), side/float64(p.NY)
		c.printf(`<g class="heat" shape-rendering="crispEdges">` + "\n")
		// The lowest level is the background, so the (usually large) empty
		// areas cost one rectangle.
		c.printf(`<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`+"\n", f.x0, f.y0, side, side, heatColor(0))
		for j := 0; j < p.NY; j++ {
			y := f.y1 - float64(j+1)*dy
			for i := 0; i < p.NX; {
				lv := heatLevel(p.Values[j*p.NX+i], vmax)
				i0 := i
				for i < p.NX && heatLevel(p.Values[j*p.NX+i], vmax) == lv {
					i++
				}
				if lv == 0 {
					continue
				}
				col := "#ffffff" // no value
				if lv > 0 {
					col = heatColor(lv)
				}
				c.printf(`<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>`+"\n",
					f.x0+float64(i0)*dx, y, float64(i-i0)*dx+0.3, dy+0.3, col)
			}
		}
		c.printf("</g>\n")
		xa.ticks, xa.labels = inRange(xa.ticks, xa.labels, p.XMin, p.XMax)
		ya.ticks, ya.labels = inRange(ya.ticks, ya.labels, p.YMin, p.YMax)
		c.drawFrame(f, &xa, &ya, "", "", "", W, H, true, false)
		if p.Title != "" {
			c.text((f.x0+f.x1)/2, top0(h.Title)+fontLabel, truncate(p.Title, fontLabel, pw-10), fontLabel, "middle", "")
		}
	}
	if h.Title != "" {
		c.text(W/2, 12+fontTitle*0.85, truncate(h.Title, fontTitle, W-16), fontTitle, "middle", ` font-weight="bold"`)
	}
	c.close()
	_, err := w.Write(c.b.Bytes())
	return err
}

// top0 is the y of the panel titles' band.
func top0(title string) float64 {
	if title != "" {
		return 12 + fontTitle + 14
	}
	return 12
}

// frameIn returns the area of panel k of width pw inside the margins m, with
// room on the left for tick labels.
func frameIn(k int, pw, H float64, m margins) frame {
	x0 := float64(k)*pw + m.left + 3*fontTick
	return frame{x0: x0, x1: float64(k+1)*pw - m.right, y0: m.top, y1: H - m.bottom}
}

// heatLevel maps v ∈ [0, top] to a colour level; −1 means no colour.
func heatLevel(v, top float64) int {
	if !finite(v) || top <= 0 {
		return -1
	}
	return clampInt(int(v/top*float64(heatLevels-1)+0.5), 0, heatLevels-1)
}

// inRange keeps the ticks (and labels) inside [lo, hi].
func inRange(ticks []float64, labels []string, lo, hi float64) ([]float64, []string) {
	var t []float64
	var l []string
	eps := 1e-9 * (hi - lo)
	for i, v := range ticks {
		if v >= lo-eps && v <= hi+eps {
			t = append(t, v)
			l = append(l, labels[i])
		}
	}
	return t, l
}
