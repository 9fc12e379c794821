package neuralode

import (
	"fmt"
	"math"
	"sort"
)

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

// EigenvectorMode selects how much of each eigenvector SymTridiagEigen returns.
type EigenvectorMode int

const (
	// EigenvaluesOnly skips eigenvectors entirely; the vectors result is nil.
	EigenvaluesOnly EigenvectorMode = iota
	// FirstComponents returns only the first component of every normalised
	// eigenvector. This is what Golub–Welsch quadrature needs (w_k = μ₀·v_{1,k}²)
	// and costs O(n²) in total instead of the O(n³) of full eigenvectors.
	FirstComponents
	// AllComponents returns every normalised eigenvector (O(n³) work).
	AllComponents
)

// String returns the constant's name.
func (m EigenvectorMode) String() string {
	switch m {
	case EigenvaluesOnly:
		return "EigenvaluesOnly"
	case FirstComponents:
		return "FirstComponents"
	case AllComponents:
		return "AllComponents"
	}
	return fmt.Sprintf("EigenvectorMode(%d)", int(m))
}

// eigMaxIterPerValue bounds the QL iterations: the whole solve may spend at
// most this many implicit shifts per eigenvalue in total (LAPACK's dsteqr uses
// the same budget of 30·n). With Wilkinson shifts the observed average is
// below 2, so exhausting it means the input defeats the method, which is
// reported as ErrNoConvergence instead of looping for ever.
const eigMaxIterPerValue = 30

// SymTridiagEigen computes the eigenvalues and, on request, eigenvector
// components of the real symmetric tridiagonal matrix T with diagonal d
// (length n) and off-diagonal e (length n−1, T[i][i+1] = T[i+1][i] = e[i]).
// d and e are not modified.
//
// values holds the n eigenvalues in ascending order (repeated eigenvalues are
// repeated). vectors depends on mode:
//   - EigenvaluesOnly: nil.
//   - FirstComponents: length n; vectors[k] is the first component of the
//     normalised eigenvector belonging to values[k].
//   - AllComponents: length n·n; eigenvector k is the contiguous row
//     vectors[k·n : (k+1)·n], normalised to unit 2-norm.
//
// Eigenvector signs are fixed so that the first component is non-negative
// (when it is exactly zero the sign is whatever the iteration produced).
// Eigenvectors of a repeated eigenvalue form an orthonormal basis of its
// eigenspace, as for any symmetric eigensolver.
//
// The method is the implicit QL iteration with Wilkinson shifts (Golub & Van
// Loan, Matrix Computations, 4th ed., §8.3; Wilkinson, The Algebraic
// Eigenvalue Problem, 1965): the matrix is split wherever an off-diagonal is
// negligible, |e_i| ≤ ε(|d_i|+|d_{i+1}|), and each unreduced block is swept
// from the bottom with Givens rotations until its top off-diagonal vanishes.
// Only the requested eigenvector rows are rotated, so FirstComponents costs
// O(n²). The matrix is first scaled by a power of two (exactly) so that very
// large or very small entries neither overflow nor underflow.
//
// n = 0 gives empty results. Errors: an *InputError wrapping ErrInvalidInput
// when len(e) ≠ n−1 or mode is unknown, wrapping ErrNonFinite when an entry is
// NaN or ±Inf; ErrNoConvergence (wrapped) when the iteration budget of 30
// shifts per eigenvalue is exhausted.
func SymTridiagEigen(d, e []float64, mode EigenvectorMode) (values, vectors []float64, err error) {
	return symTridiagEigen(d, e, mode, eigMaxIterPerValue*len(d))
}

// symTridiagEigen is SymTridiagEigen with an explicit iteration budget, so
// tests can provoke the non-convergence path.
func symTridiagEigen(d, e []float64, mode EigenvectorMode, maxIter int) ([]float64, []float64, error) {
	n := len(d)
	if mode < EigenvaluesOnly || mode > AllComponents {
		return nil, nil, invalidf("mode", "unknown eigenvector mode %d", int(mode))
	}
	want := n - 1
	if n == 0 {
		want = 0
	}
	if len(e) != want {
		return nil, nil, invalidf("e", "length %d, want len(d)-1 = %d", len(e), want)
	}
	if err := checkFinite("d", d); err != nil {
		return nil, nil, err
	}
	if err := checkFinite("e", e); err != nil {
		return nil, nil, err
	}
	if n == 0 {
		if mode == EigenvaluesOnly {
			return []float64{}, nil, nil
		}
		return []float64{}, []float64{}, nil
	}

	// Components kept per eigenvector: 0, 1 or n.
	m := 0
	switch mode {
	case FirstComponents:
		m = 1
	case AllComponents:
		m = n
	}

	// Work on copies; e gets a trailing zero that ends every block search.
	w := make([]float64, n)
	ee := make([]float64, n)
	copy(w, d)
	copy(ee, e)

	// Scale by a power of two so that the largest entry lies in [0.5, 1):
	// exact, and keeps squares in the QL rotations clear of over/underflow.
	anorm := 0.0
	for i, v := range w {
		anorm = math.Max(anorm, math.Abs(v))
		anorm = math.Max(anorm, math.Abs(ee[i]))
	}
	scaleExp := 0
	if anorm > 0 {
		_, scaleExp = math.Frexp(anorm)
		if scaleExp != 0 {
			for i := range w {
				w[i] = math.Ldexp(w[i], -scaleExp)
				ee[i] = math.Ldexp(ee[i], -scaleExp)
			}
		}
	}

	// zt holds the transposed eigenvector matrix (eigenvector k in row k), or
	// just its first column; it starts as (the first column of) the identity.
	var zt []float64
	if m > 0 {
		zt = make([]float64, n*m)
		if m == 1 {
			zt[0] = 1
		} else {
			for i := 0; i < n; i++ {
				zt[i*n+i] = 1
			}
		}
	}

	if err := tridiagQL(w, ee, zt, m, maxIter); err != nil {
		return nil, nil, err
	}

	if scaleExp != 0 {
		for i := range w {
			w[i] = math.Ldexp(w[i], scaleExp)
		}
	}

	// Sort ascending, carrying eigenvector rows along. A stable sort keeps the
	// output deterministic for repeated eigenvalues.
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	sort.SliceStable(perm, func(a, b int) bool { return w[perm[a]] < w[perm[b]] })
	values := make([]float64, n)
	for k, p := range perm {
		values[k] = w[p]
	}
	if m == 0 {
		return values, nil, nil
	}
	vectors := make([]float64, n*m)
	for k, p := range perm {
		dst := vectors[k*m : (k+1)*m]
		copy(dst, zt[p*m:(p+1)*m])
		if dst[0] < 0 {
			for j := range dst {
				dst[j] = -dst[j]
			}
		}
	}
	return values, vectors, nil
}

// tridiagQL diagonalises the symmetric tridiagonal matrix (d, e) in place by
// implicit QL with Wilkinson shifts. On entry len(e) = len(d) = n with e[n−1]
// ignored (treated as zero); on return d holds the eigenvalues (unsorted) and
// e is destroyed. zt holds n rows of m components each (m = 0, 1 or n); every
// plane rotation applied to T from the right is applied to the pair of rows it
// touches, so with zt = I (or its first column) on entry, row k ends as
// (the first component of) the eigenvector for d[k].
//
// Derivation in brief (Golub & Van Loan §8.3.3, written for QL): for the
// unreduced block l…k, the shift μ is the eigenvalue of the leading 2×2 block
// [[d_l, e_l], [e_l, d_{l+1}]] closer to d_l (Wilkinson's choice, which makes
// the iteration globally and, for symmetric T, cubically convergent). One QL
// step on T − μI is carried out implicitly: a rotation in the plane (k−1, k)
// computed from d_k − μ and e_{k−1} creates a bulge, and rotations in the
// planes (i, i+1), i = k−2 … l, chase it to the top. The variables track the
// standard recurrence for the rotated entries: g is the entry that the next
// rotation must annihilate against, p the accumulated shift correction.
func tridiagQL(d, e, zt []float64, m, maxIter int) error {
	n := len(d)
	if n == 0 {
		return nil
	}
	e = e[:n]
	e[n-1] = 0
	const eps = 0x1p-53
	const tiny = 0x1p-1022
	iter := 0
	for l := 0; l < n; l++ {
		for {
			// Find the end k of the unreduced block starting at l.
			k := l
			for ; k < n-1; k++ {
				ek := math.Abs(e[k])
				if ek <= eps*(math.Abs(d[k])+math.Abs(d[k+1])) || ek < tiny {
					break
				}
			}
			if k == l {
				break // d[l] is an eigenvalue.
			}
			if iter >= maxIter {
				return fmt.Errorf("%w: symmetric tridiagonal QL iteration did not converge after %d shifts (eigenvalue %d of %d)",
					ErrNoConvergence, iter, l, n)
			}
			iter++

			// Wilkinson shift from the leading 2×2 block; g = d_k − μ.
			g := (d[l+1] - d[l]) / (2 * e[l])
			r := hypotFast(g, 1)
			g = d[k] - d[l] + e[l]/(g+math.Copysign(r, g))

			// The sweep works on the block's own sub-slices (local index
			// j = i − l) so that the compiler can drop the bounds checks.
			db := d[l : k+1]
			eb := e[l : k+1]
			eb = eb[:len(db)]
			var zb []float64
			if m == 1 {
				zb = zt[l : k+1]
				zb = zb[:len(db)]
			}
			s, c, p := 1.0, 1.0, 0.0
			j := len(db) - 2
			for ; j >= 0; j-- {
				f := s * eb[j]
				b := c * eb[j]
				r = hypotFast(f, g)
				eb[j+1] = r
				if r == 0 {
					// Both entries underflowed: e[l+j+1] is negligible, so the
					// block splits there; undo the partial shift and restart.
					db[j+1] -= p
					e[k] = 0
					break
				}
				inv := 1 / r
				s = f * inv
				c = g * inv
				g = db[j+1] - p
				r = (db[j]-g)*s + 2*c*b
				p = s * r
				db[j+1] = g + p
				g = c*r - b
				if j+1 < len(zb) { // m == 1 (zb is nil otherwise)
					a, bb := zb[j], zb[j+1]
					zb[j+1] = s*a + c*bb
					zb[j] = c*a - s*bb
				} else if m > 1 {
					i := l + j
					rotateRows(zt[i*m:(i+1)*m], zt[(i+1)*m:(i+2)*m], c, s)
				}
			}
			if j >= 0 {
				continue // underflow restart
			}
			d[l] -= p
			e[l] = g
			e[k] = 0
		}
	}
	return nil
}

// rotateRows applies the plane rotation (x, y) ← (c·x − s·y, s·x + c·y)
// element-wise to two contiguous rows.
func rotateRows(x, y []float64, c, s float64) {
	y = y[:len(x)]
	for j, a := range x {
		b := y[j]
		x[j] = c*a - s*b
		y[j] = s*a + c*b
	}
}

// hypotFast returns sqrt(a²+b²). The inputs are entries of a matrix scaled to
// norm < 1, so overflow is impossible; only when the plain formula may have
// underflowed does it fall back to math.Hypot.
func hypotFast(a, b float64) float64 {
	r := math.Sqrt(a*a + b*b)
	if r < 0x1p-500 {
		return math.Hypot(a, b)
	}
	return r
}
