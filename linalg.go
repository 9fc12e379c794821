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
		s0 += float64(xs[0] * ys[0])
		s1 += float64(xs[1] * ys[1])
		s2 += float64(xs[2] * ys[2])
		s3 += float64(xs[3] * ys[3])
	}
	s := (s0 + s1) + (s2 + s3)
	for ; i < n; i++ {
		s += float64(x[i] * y[i])
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
		s0 += float64(xs[0] * xs[0])
		s1 += float64(xs[1] * xs[1])
		s2 += float64(xs[2] * xs[2])
		s3 += float64(xs[3] * xs[3])
	}
	s := (s0 + s1) + (s2 + s3)
	for ; i < n; i++ {
		s += float64(x[i] * x[i])
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

var eigenvectorModeNames = [...]string{EigenvaluesOnly: "EigenvaluesOnly", FirstComponents: "FirstComponents", AllComponents: "AllComponents"}

// String returns the constant's name.
func (m EigenvectorMode) String() string {
	return enumString(eigenvectorModeNames[:], int(m), "EigenvectorMode")
}

// enumString returns names[v], or typ(v) for a value outside the table:
// the String method of the package's enumerated types.
func enumString(names []string, v int, typ string) string {
	if v < 0 || v >= len(names) {
		return fmt.Sprintf("%s(%d)", typ, v)
	}
	return names[v]
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
				b := float64(c * eb[j])
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
				s = float64(f * inv)
				c = float64(g * inv)
				g = db[j+1] - p
				// The conversions round each product (see rotateRows).
				r = float64((db[j]-g)*s) + float64(2*c*b)
				p = float64(s * r)
				db[j+1] = g + p
				g = float64(c*r) - b
				if j+1 < len(zb) { // m == 1 (zb is nil otherwise)
					a, bb := zb[j], zb[j+1]
					zb[j+1] = float64(s*a) + float64(c*bb)
					zb[j] = float64(c*a) - float64(s*bb)
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
// element-wise to two contiguous rows. The explicit conversions round each
// product before the sum: Go may fuse a product into the following addition
// (it does on arm64, ppc64 and s390x, and on amd64 from GOAMD64=v3), and
// fusing here but not in the first-components loop above would make the
// eigenvector modes disagree in the last bits; rounded products give the
// same numbers on every architecture.
func rotateRows(x, y []float64, c, s float64) {
	y = y[:len(x)]
	for j, a := range x {
		b := y[j]
		x[j] = float64(c*a) - float64(s*b)
		y[j] = float64(s*a) + float64(c*b)
	}
}

// hypotFast returns sqrt(a²+b²). The inputs are entries of a matrix scaled to
// norm < 1, so overflow is impossible; only when the plain formula may have
// underflowed does it fall back to math.Hypot.
func hypotFast(a, b float64) float64 {
	r := math.Sqrt(float64(a*a) + float64(b*b))
	if r < 0x1p-500 {
		return math.Hypot(a, b)
	}
	return r
}

// Dense matrix kernels behind the MLP's forward and reverse passes.
//
// All matrices are row-major []float64. The three products a dense layer
// needs are kept in the shapes where the innermost loop runs along
// contiguous rows:
//
//	matMulABt:    C  = A·Bᵀ   forward pre-activations H·Wᵀ (row–row dot products)
//	matMulAtBAdd: C += Aᵀ·B   weight gradient dW += δᵀ·H (row updates of dW)
//	matMulAB:     C  = A·B    input cotangent dH = δ·W (row updates of dH)
//
// Each kernel is register-blocked (several independent accumulators or
// several output rows per sweep, so every load feeds more than one multiply)
// and written so the compiler proves every index in range: rows are resliced
// to a common length before the inner loop, which ranges over one of them.
//
// The batch dimension is the leading dimension of A in matMulABt and
// matMulAB and of both operands in matMulAtBAdd, so a caller can split the
// batch rows into contiguous ranges handled by different goroutines: the
// first two kernels then write disjoint rows of C, and the third produces
// one partial weight gradient per range, to be reduced in a fixed order.
// Every element of C in matMulABt is a plain left-to-right sum over the inner
// index, so splitting rows never changes a forward result.

// matMulABt sets c = a·bᵀ, where a is m×k, b is n×k and c is m×n.
// Element (i, j) is the dot product of row i of a with row j of b, summed
// left to right over the inner index.
func matMulABt(c, a, b []float64, m, n, k int) {
	if m == 0 || n == 0 {
		return
	}
	c = c[:m*n]
	if k == 0 {
		clear(c)
		return
	}
	a = a[:m*k]
	b = b[:n*k]
	i := 0
	// 3 rows of a against 2 rows of b: 6 independent accumulators and 5
	// loads per 6 multiply–adds. Wider blocks (4×2, 2×4) measured slower:
	// the compiler spills their accumulators out of the 15 usable XMM
	// registers.
	for ; i+3 <= m; i += 3 {
		a0 := a[i*k : i*k+k]
		a1 := a[(i+1)*k : (i+1)*k+k]
		a2 := a[(i+2)*k : (i+2)*k+k]
		c0 := c[i*n : i*n+n]
		c1 := c[(i+1)*n : (i+1)*n+n]
		c2 := c[(i+2)*n : (i+2)*n+n]
		j := 0
		for ; j+2 <= n; j += 2 {
			b0 := b[j*k : j*k+k]
			b1 := b[(j+1)*k : (j+1)*k+k]
			b1 = b1[:len(b0)]
			x0, x1, x2 := a0[:len(b0)], a1[:len(b0)], a2[:len(b0)]
			var s00, s01, s10, s11, s20, s21 float64
			for p, w0 := range b0 {
				w1 := b1[p]
				u0, u1, u2 := x0[p], x1[p], x2[p]
				s00 += float64(u0 * w0)
				s01 += float64(u0 * w1)
				s10 += float64(u1 * w0)
				s11 += float64(u1 * w1)
				s20 += float64(u2 * w0)
				s21 += float64(u2 * w1)
			}
			c0[j], c0[j+1] = s00, s01
			c1[j], c1[j+1] = s10, s11
			c2[j], c2[j+1] = s20, s21
		}
		if j < n {
			b0 := b[j*k : j*k+k]
			x0, x1, x2 := a0[:len(b0)], a1[:len(b0)], a2[:len(b0)]
			var s0, s1, s2 float64
			for p, w0 := range b0 {
				s0 += float64(x0[p] * w0)
				s1 += float64(x1[p] * w0)
				s2 += float64(x2[p] * w0)
			}
			c0[j], c1[j], c2[j] = s0, s1, s2
		}
	}
	// Leftover rows: one row of a against 4 rows of b.
	for ; i < m; i++ {
		a0 := a[i*k : i*k+k]
		c0 := c[i*n : i*n+n]
		j := 0
		for ; j+4 <= n; j += 4 {
			b0 := b[j*k : j*k+k]
			b1 := b[(j+1)*k : (j+1)*k+k]
			b2 := b[(j+2)*k : (j+2)*k+k]
			b3 := b[(j+3)*k : (j+3)*k+k]
			x0 := a0[:len(b0)]
			b1, b2, b3 = b1[:len(b0)], b2[:len(b0)], b3[:len(b0)]
			var s0, s1, s2, s3 float64
			for p, u := range x0 {
				s0 += float64(u * b0[p])
				s1 += float64(u * b1[p])
				s2 += float64(u * b2[p])
				s3 += float64(u * b3[p])
			}
			c0[j], c0[j+1], c0[j+2], c0[j+3] = s0, s1, s2, s3
		}
		for ; j < n; j++ {
			b0 := b[j*k : j*k+k]
			x0 := a0[:len(b0)]
			var s float64
			for p, u := range x0 {
				s += float64(u * b0[p])
			}
			c0[j] = s
		}
	}
}

// matMulAtBAdd adds aᵀ·b to c, where a is m×n, b is m×k and c is n×k.
// Row r of c gains Σ_i a[i, r]·b[i, :]: with a = δ (batch × out) and b = H
// (batch × in) this accumulates the weight gradient dW += δᵀH of a layer.
func matMulAtBAdd(s *gemmScratch, c, a, b []float64, m, n, k int) {
	matMulAtBAddRows(s, c, a, b, m, n, k, 0, n)
}

// matMulAtBAddRows is matMulAtBAdd restricted to rows r0…r1−1 of c (the
// other rows are neither read nor written), so that the weight gradient can
// be split over output rows: each element is still the same sum over i in
// the same order, whichever range it falls in. s is the scratch of the
// assembly path (gemm); with s nil the Go kernel runs.
func matMulAtBAddRows(s *gemmScratch, c, a, b []float64, m, n, k, r0, r1 int) {
	if m == 0 || n == 0 || k == 0 || r0 >= r1 {
		return
	}
	if useFMA && s != nil {
		// C rows r0…r1−1 (n = k here) += Aᵀ·B: A(i, p) = a[p·n + r0 + i].
		gemm(s, c[r0*k:], k, a[r0:], 1, n, b, k, false, r1-r0, k, m, true)
		return
	}
	c = c[:n*k]
	a = a[:m*n]
	// C(r, :) += Σ_i A(i, r)·B(i, :): coefficient (row r, term i) is a[r + i·n].
	addRowCombinations(c, a, b, k, m, 1, n, r0, r1)
}

// matMulAB sets c = a·b, where a is m×n, b is n×k and c is m×k.
// Row i of c is Σ_r a[i, r]·b[r, :]: with a = δ (batch × out) and b = W
// (out × in) this is the input cotangent dH = δW of a layer. s is the
// scratch of the assembly path (gemm); with s nil the Go kernel runs.
func matMulAB(s *gemmScratch, c, a, b []float64, m, n, k int) {
	if m == 0 || k == 0 {
		return
	}
	if useFMA && s != nil {
		gemm(s, c, k, a, n, 1, b, k, false, m, k, n, false)
		return
	}
	c = c[:m*k]
	clear(c)
	a = a[:m*n]
	// C(i, :) += Σ_r A(i, r)·B(r, :): coefficient (row i, term r) is a[i·n + r].
	addRowCombinations(c, a, b, k, n, n, 1, 0, m)
}

// addRowCombinations is the pure-Go kernel of matMulAtBAdd and matMulAB:
// for rows q = q0…q1−1 of c (k long) it adds Σ_p A(q, p)·b[p·k : p·k+k]
// over p = 0…np−1, with the coefficient A(q, p) = a[q·qs + p·ps] read
// through two strides, so that the same loops serve Aᵀ·B (qs = 1) and A·B
// (ps = 1). Terms are added in increasing p, four per expression, so every
// element is the same sum whatever range of rows it falls in. Two rows of c
// are updated from four rows of b per sweep: 8 coefficients held in
// registers, 4 loads of b and 2 load–stores of c per 8 multiply–adds.
func addRowCombinations(c, a, b []float64, k, np, qs, ps, q0, q1 int) {
	if np == 0 {
		return
	}
	b = b[:np*k]
	q := q0
	for ; q+2 <= q1; q += 2 {
		c0 := c[q*k : q*k+k]
		c1 := c[(q+1)*k : (q+1)*k+k]
		p := 0
		// o0 and o1 walk the coefficients A(q, p) and A(q+1, p).
		o0, o1 := q*qs, (q+1)*qs
		for ; p+4 <= np; p, o0, o1 = p+4, o0+4*ps, o1+4*ps {
			d00, d01, d02, d03 := a[o0], a[o0+ps], a[o0+2*ps], a[o0+3*ps]
			d10, d11, d12, d13 := a[o1], a[o1+ps], a[o1+2*ps], a[o1+3*ps]
			h0 := b[p*k : p*k+k]
			h1 := b[(p+1)*k : (p+1)*k+k]
			h2 := b[(p+2)*k : (p+2)*k+k]
			h3 := b[(p+3)*k : (p+3)*k+k]
			h1, h2, h3 = h1[:len(h0)], h2[:len(h0)], h3[:len(h0)]
			y0, y1 := c0[:len(h0)], c1[:len(h0)]
			for j, x0 := range h0 {
				x1, x2, x3 := h1[j], h2[j], h3[j]
				y0[j] += float64(d00*x0) + float64(d01*x1) + float64(d02*x2) + float64(d03*x3)
				y1[j] += float64(d10*x0) + float64(d11*x1) + float64(d12*x2) + float64(d13*x3)
			}
		}
		for ; p < np; p, o0, o1 = p+1, o0+ps, o1+ps {
			d0, d1 := a[o0], a[o1]
			h0 := b[p*k : p*k+k]
			y0, y1 := c0[:len(h0)], c1[:len(h0)]
			for j, x0 := range h0 {
				y0[j] += float64(d0 * x0)
				y1[j] += float64(d1 * x0)
			}
		}
	}
	if q < q1 {
		c0 := c[q*k : q*k+k]
		p, o := 0, q*qs
		for ; p+4 <= np; p, o = p+4, o+4*ps {
			d0, d1, d2, d3 := a[o], a[o+ps], a[o+2*ps], a[o+3*ps]
			h0 := b[p*k : p*k+k]
			h1 := b[(p+1)*k : (p+1)*k+k]
			h2 := b[(p+2)*k : (p+2)*k+k]
			h3 := b[(p+3)*k : (p+3)*k+k]
			h1, h2, h3 = h1[:len(h0)], h2[:len(h0)], h3[:len(h0)]
			y0 := c0[:len(h0)]
			for j, x0 := range h0 {
				y0[j] += float64(d0*x0) + float64(d1*h1[j]) + float64(d2*h2[j]) + float64(d3*h3[j])
			}
		}
		for ; p < np; p, o = p+1, o+ps {
			d0 := a[o]
			h0 := b[p*k : p*k+k]
			y0 := c0[:len(h0)]
			for j, x0 := range h0 {
				y0[j] += float64(d0 * x0)
			}
		}
	}
}

// transposeRows writes rows r0…r1−1 of src (rows×cols, row-major)
// transposed into dst (cols×rows): dst[c·rows + r] = src[r·cols + c]. Eight
// rows of src are read together so that each write covers a whole 64-byte
// line of dst, which keeps the strided side of the copy from evicting lines
// before they are complete.
func transposeRows(dst, src []float64, rows, cols, r0, r1 int) {
	if r0 >= r1 || cols == 0 {
		return
	}
	src = src[:rows*cols]
	dst = dst[:rows*cols]
	r := r0
	for ; r+8 <= r1; r += 8 {
		s0 := src[r*cols : r*cols+cols]
		s1 := src[(r+1)*cols : (r+1)*cols+cols]
		s2 := src[(r+2)*cols : (r+2)*cols+cols]
		s3 := src[(r+3)*cols : (r+3)*cols+cols]
		s4 := src[(r+4)*cols : (r+4)*cols+cols]
		s5 := src[(r+5)*cols : (r+5)*cols+cols]
		s6 := src[(r+6)*cols : (r+6)*cols+cols]
		s7 := src[(r+7)*cols : (r+7)*cols+cols]
		s1, s2, s3, s4 = s1[:len(s0)], s2[:len(s0)], s3[:len(s0)], s4[:len(s0)]
		s5, s6, s7 = s5[:len(s0)], s6[:len(s0)], s7[:len(s0)]
		for c, v := range s0 {
			d := dst[c*rows+r : c*rows+r+8 : c*rows+r+8]
			d[0], d[1], d[2], d[3] = v, s1[c], s2[c], s3[c]
			d[4], d[5], d[6], d[7] = s4[c], s5[c], s6[c], s7[c]
		}
	}
	for ; r < r1; r++ {
		s0 := src[r*cols : r*cols+cols]
		for c, v := range s0 {
			dst[c*rows+r] = v
		}
	}
}

// Blocked products on the amd64 assembly kernels (AVX2 + FMA, and AVX-512).
//
// gemm computes C = A·B or C += A·B with the loop order of BLIS (Van Zee &
// van de Geijn, "BLIS: A Framework for Rapidly Instantiating BLAS
// Functionality", ACM TOMS 41(3), 2015): the inner index p is cut into
// blocks of gemmKC, and within a block every 6×8 tile of C is computed by
// gemmKernel6x8 from a 6-row sliver of A and an 8-column panel of B
// (kc×8 values, 16 KiB: it stays in L1 while the slivers of A stream past).
// B comes either as a plain row-major matrix or pre-packed into its panels
// (packB), which the MLP does once per solve for its weights; A is read in
// place through two strides, so that Aᵀ (the weight gradient's δᵀ) needs no
// copy either. On processors with AVX-512 (useAVX512), pairs of full panels
// run on gemmKernel8x16 instead, 8 doubles per register and 8-row tiles:
// twice the multiply–adds per instruction (about 100 GFLOP/s per core on
// the MLP's shapes against 50 for AVX2 on the same AMD family-26 core), and
// row blocks of a power-of-two batch split into whole tiles.
//
// Every element of C is the same computation wherever its tile lies and
// however the rows of C are split between calls: an accumulator starts at
// zero and takes one fused multiply–add per p in increasing order, and at
// the end of each KC block it is stored (first block, when not
// accumulating) or added to C. Edge tiles run the same kernel on zero-padded
// copies, so their valid elements follow the same sequence. The results
// therefore depend on the shapes only, never on the number of threads; they
// differ from the pure-Go kernels' in the last bits, since a fused
// multiply–add rounds once where the Go code rounds twice and the Go
// kernels group their sums differently (relative differences of a few
// units of 2⁻⁵³·Σ|a||b|; TestGemmMatchesGo).

const (
	gemmMR = 6 // rows of the register tile
	// gemmMRWide is the tile height on AVX-512: the 8×16 kernel, with
	// the 6-, 4- and 2-row ones for the last rows of a block.
	gemmMRWide = 8
	gemmNR     = 8   // columns of the register tile
	gemmKC     = 256 // inner block: a kc×8 panel of B is 16 KiB
	// gemmNC bounds the columns of B one sliver of A sweeps: a KC×NC block
	// of B is 256 KiB, which stays in L2 (512 KiB to 1 MiB per core on
	// AMD's Zen) while the slivers of A pass over it.
	gemmNC = 128
)

// useFMA selects the assembly kernels. It is haveFMA, a variable so that
// tests can run the pure-Go path on the same machine.
var useFMA = haveFMA

// useAVX512 lets gemm run pairs of full panels on the AVX-512 kernels,
// which doubles the multiply–adds per instruction; the tiles it computes
// are bit-identical to the 6×8 kernel's, so it changes speed only. A
// variable so that tests can run the AVX2 kernel alone on the same machine.
var useAVX512 = haveAVX512

// gemmScratch holds the zero-padded copies of edge tiles. One per
// goroutine: kept by the caller so that gemm neither allocates nor clears
// 28 KiB of stack per call.
type gemmScratch struct {
	// a: a packed sliver; the 6-row kernel that computes rows 6 and 7 of
	// an 8-row one reads (and discards) up to four rows past its end.
	a [gemmKC*gemmMRWide + gemmMRWide]float64
	b [gemmKC * gemmNR]float64
	c [gemmMRWide * 2 * gemmNR]float64 // an edge tile of any kernel
}

// workerScratch is one lazily allocated gemmScratch per pool worker, for
// the fields' parallel products (MLP and CNF alike).
type workerScratch [maxPoolWorkers]*gemmScratch

// get returns worker w's gemm scratch (nil on the pure-Go path, which
// needs none).
func (ws *workerScratch) get(w int) *gemmScratch {
	if !useFMA {
		return nil
	}
	if ws[w] == nil {
		ws[w] = new(gemmScratch)
	}
	return ws[w]
}

// packedLen returns the length of the packed form of a k×n matrix.
func packedLen(k, n int) int { return k * ((n + gemmNR - 1) / gemmNR * gemmNR) }

// packB writes panels q0…q1−1 (8 columns each) of the k×n matrix
// B(p, j) = src[p·rs + j·cs] into dst (length packedLen(k, n)) in the
// layout gemm reads: for each KC block starting at p0 (size kc), panel q is
// kc rows of 8 values at offset p0·npad + q·8·kc (npad = n rounded up to a
// multiple of 8), the columns past n zero. Splitting the panels over calls
// gives the same dst.
func packB(dst, src []float64, rs, cs, k, n, q0, q1 int) {
	npad := (n + gemmNR - 1) / gemmNR * gemmNR
	dst = dst[:k*npad]
	for p0 := 0; p0 < k; p0 += gemmKC {
		kc := min(gemmKC, k-p0)
		for q := q0; q < q1; q++ {
			j0 := q * gemmNR
			w := min(gemmNR, n-j0)
			d := dst[p0*npad+j0*kc : p0*npad+(j0+gemmNR)*kc]
			if cs == 1 {
				for p := 0; p < kc; p++ {
					row := d[p*gemmNR : p*gemmNR+gemmNR]
					s := src[(p0+p)*rs+j0 : (p0+p)*rs+j0+w]
					copy(row, s)
					clear(row[w:])
				}
				continue
			}
			// Transposed source (rs = 1): read each column of the panel
			// contiguously.
			for j := 0; j < gemmNR; j++ {
				if j >= w {
					for p := 0; p < kc; p++ {
						d[p*gemmNR+j] = 0
					}
					continue
				}
				off := (j0+j)*cs + p0*rs
				for p := 0; p < kc; p++ {
					d[p*gemmNR+j] = src[off+p*rs]
				}
			}
		}
	}
}

// packA copies the sliver A(i, p) = a[i·rs + p·cs], i < mr, p < kc
// (kc = len(dst)/stride) into dst, stride values per p (the tile height:
// 6, or 8 on AVX-512), rows mr…stride−1 zero. A sliver is read once per
// tile of C: a contiguous copy turns a transposed A's strided reads into
// one stream, and pads an edge sliver.
func packA(dst, a []float64, rs, cs, mr, stride int) {
	kc := len(dst) / stride
	if stride == gemmMRWide && mr == stride && rs == 1 {
		// Eight contiguous values per p (Aᵀ), assigned as below.
		for p := 0; p < kc; p++ {
			s := a[p*cs : p*cs+gemmMRWide : p*cs+gemmMRWide]
			d := dst[p*gemmMRWide : p*gemmMRWide+gemmMRWide : p*gemmMRWide+gemmMRWide]
			d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7] = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
		}
		return
	}
	if stride == gemmMR && mr == gemmMR && cs == 1 {
		r0, r1, r2 := a[:kc], a[rs:rs+kc], a[2*rs:2*rs+kc]
		r3, r4, r5 := a[3*rs:3*rs+kc], a[4*rs:4*rs+kc], a[5*rs:5*rs+kc]
		for p, v := range r0 {
			d := dst[p*gemmMR : p*gemmMR+gemmMR : p*gemmMR+gemmMR]
			d[0], d[1], d[2], d[3], d[4], d[5] = v, r1[p], r2[p], r3[p], r4[p], r5[p]
		}
		return
	}
	if stride == gemmMR && mr == gemmMR && rs == 1 {
		// Six contiguous values per p (Aᵀ): assigned, not copied, since a
		// call of copy per six values cost more than the moves.
		for p := 0; p < kc; p++ {
			s := a[p*cs : p*cs+gemmMR : p*cs+gemmMR]
			d := dst[p*gemmMR : p*gemmMR+gemmMR : p*gemmMR+gemmMR]
			d[0], d[1], d[2], d[3], d[4], d[5] = s[0], s[1], s[2], s[3], s[4], s[5]
		}
		return
	}
	for p := 0; p < kc; p++ {
		d := dst[p*stride : p*stride+stride]
		for i := range d {
			if i < mr {
				d[i] = a[i*rs+p*cs]
			} else {
				d[i] = 0
			}
		}
	}
}

// packRowsB writes rows r0…r1−1 of a row-major k×n matrix, given in src
// (row r0 first), into dst in packB's layout, so that the rows of a matrix
// produced in row blocks can be packed by the tasks that produce them.
func packRowsB(dst, src []float64, k, n, r0, r1 int) {
	npad := (n + gemmNR - 1) / gemmNR * gemmNR
	dst = dst[:k*npad]
	for p := r0; p < r1; p++ {
		p0 := p / gemmKC * gemmKC
		kc := min(gemmKC, k-p0)
		row := src[(p-r0)*n : (p-r0)*n+n]
		base := p0*npad + (p-p0)*gemmNR
		for j0 := 0; j0 < n; j0 += gemmNR {
			d := dst[base+j0*kc : base+j0*kc+gemmNR]
			w := copy(d, row[j0:])
			clear(d[w:])
		}
	}
}

// gemmWide computes the 8×16 tile of C at row i0, column j0 (mr valid
// rows) on gemmKernel8x16, from A at ap and B at bp (row stride bld, the
// second eight columns b2 elements after the first). A short sliver (the
// end of a row block) runs on the 6-, 4- or 2-row kernel, so that it costs
// its own rows rather than eight; an odd one goes through s.c on the next
// taller kernel.
func gemmWide(s *gemmScratch, c []float64, ldc int, ap *float64, ars, acs int, bp *float64, bld, b2 int, i0, j0, mr, kc int, accum bool) {
	const nw = 2 * gemmNR
	switch mr {
	case gemmMRWide:
		gemmKernel8x16(kc, ap, ars, acs, bp, bld, b2, &c[i0*ldc+j0], ldc, accum)
		return
	case gemmMR:
		gemmKernel6x16(kc, ap, ars, acs, bp, bld, b2, &c[i0*ldc+j0], ldc, accum)
		return
	case 4:
		gemmKernel4x16(kc, ap, ars, acs, bp, bld, b2, &c[i0*ldc+j0], ldc, accum)
		return
	case 2:
		gemmKernel2x16(kc, ap, ars, acs, bp, bld, b2, &c[i0*ldc+j0], ldc, accum)
		return
	}
	// One, three or five rows: the next taller kernel on a padded copy.
	t := s.c[:]
	if accum {
		loadTile(t, nw, c, ldc, i0, j0, mr, nw)
	}
	switch mr {
	case 1:
		gemmKernel2x16(kc, ap, ars, acs, bp, bld, b2, &t[0], nw, accum)
	case 3:
		gemmKernel4x16(kc, ap, ars, acs, bp, bld, b2, &t[0], nw, accum)
	case 5:
		gemmKernel6x16(kc, ap, ars, acs, bp, bld, b2, &t[0], nw, accum)
	default:
		gemmKernel8x16(kc, ap, ars, acs, bp, bld, b2, &t[0], nw, accum)
	}
	storeTile(c, ldc, i0, j0, t, nw, mr, nw)
}

// gemmPanel computes the mr×nr tile (mr ≤ 6, nr ≤ 8) of C at (i0, j0) on
// the AVX2 kernel, through a zero-padded copy unless it is a full 6×8 tile.
func gemmPanel(s *gemmScratch, c []float64, ldc int, ap *float64, ars, acs int, bp *float64, bld, i0, j0, mr, nr, kc int, accum bool) {
	mr = min(mr, gemmMR)
	if mr == gemmMR && nr == gemmNR {
		gemmKernel6x8(kc, ap, ars, acs, bp, bld, &c[i0*ldc+j0], ldc, accum)
		return
	}
	t := s.c[:]
	if accum {
		loadTile(t, gemmNR, c, ldc, i0, j0, mr, nr)
	}
	gemmKernel6x8(kc, ap, ars, acs, bp, bld, &t[0], gemmNR, accum)
	storeTile(c, ldc, i0, j0, t, gemmNR, mr, nr)
}

// loadTile copies the mr×w block of C at (i0, j0) into the zeroed tile t
// (row stride tw), for a kernel that accumulates into a padded edge tile.
func loadTile(t []float64, tw int, c []float64, ldc, i0, j0, mr, w int) {
	clear(t)
	for i := 0; i < mr; i++ {
		copy(t[i*tw:i*tw+w], c[(i0+i)*ldc+j0:(i0+i)*ldc+j0+w])
	}
}

// storeTile copies the valid mr×w part of the tile t back into C.
func storeTile(c []float64, ldc, i0, j0 int, t []float64, tw, mr, w int) {
	for i := 0; i < mr; i++ {
		copy(c[(i0+i)*ldc+j0:(i0+i)*ldc+j0+w], t[i*tw:i*tw+w])
	}
}

// gemm sets C = A·B (acc false) or adds A·B to C (acc true) for m×n C with
// row stride ldc, A(i, p) = a[i·rsA + p·csA] and B k×n, either row-major
// with row stride ldb (packed false) or in packB's layout (packed true,
// ldb ignored). It panics if a slice is too short. Only for useFMA.
func gemm(s *gemmScratch, c []float64, ldc int, a []float64, rsA, csA int, b []float64, ldb int, packed bool, m, n, k int, acc bool) {
	if m <= 0 || n <= 0 {
		return
	}
	_ = c[(m-1)*ldc+n-1]
	if k <= 0 {
		if !acc {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	_ = a[(m-1)*rsA+(k-1)*csA]
	npad := (n + gemmNR - 1) / gemmNR * gemmNR
	if packed {
		_ = b[k*npad-1]
	} else {
		_ = b[(k-1)*ldb+n-1]
	}
	nEdge := n % gemmNR
	nFull := n - nEdge
	// The AVX-512 kernels and their 8-row tiles serve products with at
	// least one pair of full panels; narrower ones (a layer of width 2)
	// keep the 6×8 tiles, which need no second call per sliver.
	wide := useAVX512 && n >= 2*gemmNR
	tile := gemmMR
	if wide {
		tile = gemmMRWide
	}
	for p0 := 0; p0 < k; p0 += gemmKC {
		kc := min(gemmKC, k-p0)
		accum := acc || p0 > 0
		if nEdge != 0 && !packed {
			// The last, partial panel of a row-major B, zero-padded.
			for p := 0; p < kc; p++ {
				row := s.b[p*gemmNR : p*gemmNR+gemmNR]
				copy(row, b[(p0+p)*ldb+nFull:(p0+p)*ldb+n])
				clear(row[nEdge:])
			}
		}
		for jc := 0; jc < n; jc += gemmNC {
			nc := min(gemmNC, n-jc)
			for i0 := 0; i0 < m; i0 += tile {
				mr := min(tile, m-i0)
				ap, ars, acs := &a[i0*rsA+p0*csA], rsA, csA
				// A transposed sliver (Aᵀ, the weight gradient's δᵀ: one
				// row of A per cache line touched) that serves more than
				// two 16-column tiles is copied first (see packA); for
				// fewer the copy costs more than it saves. Rows of a
				// row-major A are read in place: six or eight row streams
				// suit the L1 (48 KiB, 12-way on the benchmark core), and
				// copying them measured 5–10% slower on the MLP's shapes.
				// A short sliver is copied to pad it, except for an even
				// number of rows on the AVX-512 kernels, which have 2-, 4-
				// and 6-row variants (a batch of two against a 1000-wide
				// layer then reads its two rows in place).
				inPlace := mr == tile || (wide && mr%2 == 0)
				packedA := false
				if !inPlace || (n > 4*gemmNR && csA != 1) {
					packA(s.a[:kc*tile], a[i0*rsA+p0*csA:], rsA, csA, mr, tile)
					ap, ars, acs, packedA = &s.a[0], 1, tile, true
				}
				for j0 := jc; j0 < jc+nc; j0 += gemmNR {
					if wide && j0+2*gemmNR <= min(n, jc+nc) {
						// Two full panels on the AVX-512 kernel.
						if packed {
							gemmWide(s, c, ldc, ap, ars, acs, &b[p0*npad+j0*kc], gemmNR, gemmNR*kc, i0, j0, mr, kc, accum)
						} else {
							gemmWide(s, c, ldc, ap, ars, acs, &b[p0*ldb+j0], ldb, gemmNR, i0, j0, mr, kc, accum)
						}
						j0 += gemmNR
						continue
					}
					if !packedA && mr != gemmMR {
						// The AVX2 kernel below reads six rows: pad.
						packA(s.a[:kc*tile], a[i0*rsA+p0*csA:], rsA, csA, mr, tile)
						ap, ars, acs, packedA = &s.a[0], 1, tile, true
					}
					nr := min(gemmNR, n-j0)
					var bp *float64
					bld := gemmNR
					switch {
					case packed:
						bp = &b[p0*npad+j0*kc]
					case nr == gemmNR:
						bp, bld = &b[p0*ldb+j0], ldb
					default:
						bp = &s.b[0]
					}
					gemmPanel(s, c, ldc, ap, ars, acs, bp, bld, i0, j0, mr, nr, kc, accum)
					if mr > gemmMR {
						// Rows 6 and 7 of an 8-row sliver (packed above): the
						// AVX2 kernel has six.
						gemmPanel(s, c, ldc, &s.a[gemmMR], 1, tile, bp, bld, i0+gemmMR, j0, mr-gemmMR, nr, kc, accum)
					}
				}
			}
		}
	}
}
