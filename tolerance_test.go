package neuralode

import "math"

// The tolerance measures the tests share: absolute, relative (to the scale
// of the reference, elementwise maximum or in the 2-norm), in units in the
// last place, and the convergence order fitted to an error sequence.

// maxAbsDiff returns max_i |a_i − b_i|.
func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// slope fits log(err) against log(h) by least squares.
func slope(hs, errs []float64) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(hs))
	for i := range hs {
		x, y := math.Log(hs[i]), math.Log(errs[i])
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// relErr returns ‖got − want‖₂ / ‖want‖₂ (the denominator bounded below
// by 1e−150).
func relErr(got, want []float64) float64 {
	var num, den float64
	for i := range got {
		d := got[i] - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	return math.Sqrt(num / math.Max(den, 1e-300))
}

// maxRelDiff returns max_i |x_i − y_i| / max(max_i |y_i|, tiny): an error
// relative to the scale of the reference y.
func maxRelDiff(x, y []float64) float64 {
	scale := 0.0
	for _, v := range y {
		scale = math.Max(scale, math.Abs(v))
	}
	if scale == 0 {
		scale = math.SmallestNonzeroFloat64
	}
	d := 0.0
	for i := range x {
		d = math.Max(d, math.Abs(x[i]-y[i]))
	}
	return d / scale
}

// ulpDiff returns the distance between x and y in units in the last place
// (the number of float64 values between them), 0 when both are the same
// NaN class, and a huge value when only one is NaN.
func ulpDiff(x, y float64) float64 {
	if math.IsNaN(x) || math.IsNaN(y) {
		if math.IsNaN(x) && math.IsNaN(y) {
			return 0
		}
		return math.Inf(1)
	}
	if x == y {
		return 0
	}
	ord := func(v float64) int64 {
		b := int64(math.Float64bits(v))
		if b < 0 {
			b = math.MinInt64 - b
		}
		return b
	}
	d := ord(x) - ord(y)
	if d < 0 {
		d = -d
	}
	return float64(d)
}
