package neuralode

// Dense vector kernels used by the solvers, the norms and the gradient methods.
//
// The loops are written so the Go compiler can drop every bounds check inside
// them (the slices are resliced to a common length first; verify with
// go build -gcflags=-d=ssa/check_bce/debug=1) and so that reductions use four
// independent accumulators, which breaks the floating-point dependency chain.
//
// Summation order is fixed and documented, so a result never depends on the
// machine, the number of goroutines or the alignment of the data: element i
// goes to accumulator i mod 4, the accumulators are combined as
// (s0+s1)+(s2+s3), and the tail (the last len mod 4 elements) is added last,
// in order.

// Dot returns Σ x[i]·y[i]. It panics if len(y) < len(x).
func Dot(x, y []float64) float64 {
	n := len(x)
	y = y[:n]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i <= n-4; i += 4 {
		xs := x[i : i+4 : i+4]
		ys := y[i : i+4 : i+4]
		s0 += xs[0] * ys[0]
		s1 += xs[1] * ys[1]
		s2 += xs[2] * ys[2]
		s3 += xs[3] * ys[3]
	}
	s := (s0 + s1) + (s2 + s3)
	for ; i < n; i++ {
		s += x[i] * y[i]
	}
	return s
}

// SumSq returns Σ x[i]², with the same summation order as Dot.
func SumSq(x []float64) float64 {
	n := len(x)
	var s0, s1, s2, s3 float64
	i := 0
	for ; i <= n-4; i += 4 {
		xs := x[i : i+4 : i+4]
		s0 += xs[0] * xs[0]
		s1 += xs[1] * xs[1]
		s2 += xs[2] * xs[2]
		s3 += xs[3] * xs[3]
	}
	s := (s0 + s1) + (s2 + s3)
	for ; i < n; i++ {
		s += x[i] * x[i]
	}
	return s
}

// Axpy computes y += alpha·x. It panics if len(y) < len(x).
func Axpy(alpha float64, x, y []float64) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

// Scale computes x *= alpha.
func Scale(alpha float64, x []float64) {
	for i := range x {
		x[i] *= alpha
	}
}

// LinComb computes dst = base + Σ_j coef[j]·vecs[j] elementwise, or
// dst = Σ_j coef[j]·vecs[j] when base is nil. dst may alias base. Every
// vector must be at least len(dst) long; len(vecs) must equal len(coef).
//
// For each element the terms are added left to right: ((base + c0·v0) + c1·v1) + …
// This is the fused kernel behind Runge–Kutta stage values, step updates and
// error estimates: one pass over memory however many vectors are combined.
func LinComb(dst, base []float64, coef []float64, vecs [][]float64) {
	n := len(dst)
	if len(coef) != len(vecs) {
		panic("neuralode: LinComb: len(coef) != len(vecs)")
	}
	if n == 0 {
		return
	}
	if base == nil {
		if len(vecs) == 0 {
			clear(dst)
			return
		}
		// Start from the first term so that no zero vector is needed.
		v0 := vecs[0][:n]
		c0 := coef[0]
		for i := range dst {
			dst[i] = c0 * v0[i]
		}
		coef, vecs = coef[1:], vecs[1:]
		base = dst
	}
	base = base[:n]
	// Up to three vectors are fused per pass; longer combinations take
	// several passes over dst (still one read of each input vector).
	for len(vecs) > 0 {
		switch {
		case len(vecs) >= 3:
			a, b, c := vecs[0][:n], vecs[1][:n], vecs[2][:n]
			ca, cb, cc := coef[0], coef[1], coef[2]
			for i := range dst {
				dst[i] = ((base[i] + ca*a[i]) + cb*b[i]) + cc*c[i]
			}
			coef, vecs = coef[3:], vecs[3:]
		case len(vecs) == 2:
			a, b := vecs[0][:n], vecs[1][:n]
			ca, cb := coef[0], coef[1]
			for i := range dst {
				dst[i] = (base[i] + ca*a[i]) + cb*b[i]
			}
			coef, vecs = coef[2:], vecs[2:]
		default:
			a := vecs[0][:n]
			ca := coef[0]
			for i := range dst {
				dst[i] = base[i] + ca*a[i]
			}
			coef, vecs = coef[1:], vecs[1:]
		}
		base = dst
	}
	if &base[0] != &dst[0] { // no vectors: dst = base
		copy(dst, base)
	}
}
