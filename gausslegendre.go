package neuralode

import (
	"fmt"
	"math"
	"sync"
)

// MaxGaussLegendreNodes is the largest rule size GaussLegendre and
// NewGaussLegendre accept. Construction is O(n²); at this size it takes a
// fraction of a second once, after which the cached rule is free.
const MaxGaussLegendreNodes = 4096

// GaussLegendreRule is an n-point Gauss–Legendre rule on [−1, 1]:
//
//	∫₋₁¹ f(x) dx ≈ Σₖ Weights[k]·f(Nodes[k]),
//
// exact for every polynomial of degree ≤ 2n−1. Nodes are strictly ascending
// and exactly symmetric (Nodes[k] = −Nodes[n−1−k], Weights[k] =
// Weights[n−1−k]); the middle node of an odd rule is exactly 0.
//
// A rule returned by GaussLegendre is shared by every caller and must be
// treated as read-only; all its methods only read it and are safe for
// concurrent use.
type GaussLegendreRule struct {
	Nodes   []float64 // ascending nodes in (−1, 1)
	Weights []float64 // positive weights, summing to 2
}

// Len returns the number of nodes n.
func (r *GaussLegendreRule) Len() int { return len(r.Nodes) }

// glCacheEntry memoises one rule size; once guarantees it is computed once
// even when many goroutines ask for it at the same time.
type glCacheEntry struct {
	once sync.Once
	rule *GaussLegendreRule
	err  error
}

// glCache is indexed by n. Entries are zero until first use, so the table
// costs nothing until touched, and a look-up after the first is a single
// atomic load inside sync.Once (no lock, no allocation).
var glCache [MaxGaussLegendreNodes + 1]glCacheEntry

// GaussLegendre returns the n-point Gauss–Legendre rule on [−1, 1], computing
// it on first request and serving it from a process-wide cache afterwards. It
// is safe for concurrent use; later calls for the same n do not allocate. The
// returned rule is shared: do not modify its slices (use MapTo to obtain
// nodes and weights for an interval).
//
// n < 1 or n > MaxGaussLegendreNodes gives an *InputError wrapping
// ErrInvalidInput.
func GaussLegendre(n int) (*GaussLegendreRule, error) {
	if n < 1 || n > MaxGaussLegendreNodes {
		return nil, glSizeError(n)
	}
	c := &glCache[n]
	c.once.Do(func() { c.rule, c.err = NewGaussLegendre(n) })
	return c.rule, c.err
}

func glSizeError(n int) error {
	return invalidf("n", "Gauss–Legendre rule size %d outside [1, %d]", n, MaxGaussLegendreNodes)
}

// NewGaussLegendre computes a fresh n-point Gauss–Legendre rule on [−1, 1]
// (no caching; the caller owns the result).
//
// Construction (Golub & Welsch, Math. Comp. 23 (1969) 221–230): the nodes are
// the eigenvalues of the Jacobi matrix J of the Legendre three-term
// recurrence, zero diagonal and off-diagonal β_k = k/√(4k²−1), k = 1…n−1.
// Because the diagonal is zero the spectrum is symmetric, and J² decouples
// into its even- and odd-indexed rows; the odd block is a tridiagonal matrix
// of size ⌊n/2⌋ whose eigenvalues are exactly the squares of the positive
// nodes (see jacobiSquaredOddBlock). SymTridiagEigen solves that block, which
// is four times cheaper than the full J and gives exact symmetry for free.
//
// √λ has an absolute error of order ε/x for small nodes, so each node is then
// polished by one Newton step on P_n, with P_n and P_{n−1} evaluated by the
// three-term recurrence in double-double arithmetic (legendreNodeWeight); the
// weight comes from w = 2/((1−x²)P′_n(x)²) (Abramowitz & Stegun 25.4.29) at
// the same evaluation. This is far more accurate than Golub–Welsch's
// eigenvector formula w = 2v₁², whose absolute error of order ε becomes a
// large relative error for the small weights near ±1 (compare
// TestGolubWelschEigenvectorWeights). The negative half of the rule is the
// exact mirror image of the positive half; the middle node of an odd rule is
// exactly 0.
//
// n < 1 or n > MaxGaussLegendreNodes gives an *InputError wrapping
// ErrInvalidInput; an eigensolver failure (not expected for this matrix) is
// returned wrapping ErrNoConvergence.
func NewGaussLegendre(n int) (*GaussLegendreRule, error) {
	if n < 1 || n > MaxGaussLegendreNodes {
		return nil, glSizeError(n)
	}
	nodes := make([]float64, n)
	weights := make([]float64, n)
	m := n / 2
	if m > 0 {
		d, e := jacobiSquaredOddBlock(n)
		squares, _, err := SymTridiagEigen(d, e, EigenvaluesOnly)
		if err != nil {
			return nil, err
		}
		// squares is ascending, so positive node j goes to index n−m+j.
		root := func(j int) float64 { return math.Sqrt(math.Max(squares[j], 0)) }
		j := 0
		for ; j+1 < m; j += 2 {
			x, wx, y, wy := legendreNodeWeight2(n, root(j), root(j+1))
			nodes[n-m+j], nodes[m-1-j] = x, -x
			weights[n-m+j], weights[m-1-j] = wx, wx
			nodes[n-m+j+1], nodes[m-2-j] = y, -y
			weights[n-m+j+1], weights[m-2-j] = wy, wy
		}
		if j < m {
			x, w := legendreNodeWeight(n, root(j))
			nodes[n-m+j], nodes[m-1-j] = x, -x
			weights[n-m+j], weights[m-1-j] = w, w
		}
	}
	if n%2 == 1 {
		nodes[m] = 0
		_, weights[m] = legendreNodeWeight(n, 0)
	}
	// Guard against garbage: a rule that is not strictly ascending inside
	// (−1, 1) with positive weights means the construction failed.
	for k, x := range nodes {
		w := weights[k]
		if !(x > -1 && x < 1) || !(w > 0 && w <= 2) || (k > 0 && !(x > nodes[k-1])) {
			return nil, fmt.Errorf("%w: Gauss–Legendre construction for n=%d produced node %d = %v, weight %v",
				ErrNoConvergence, n, k, x, w)
		}
	}
	return &GaussLegendreRule{Nodes: nodes, Weights: weights}, nil
}

// jacobiSquaredOddBlock returns the diagonal and off-diagonal of the odd
// block of J², where J is the n×n Legendre Jacobi matrix (zero diagonal,
// J_{i,i+1} = β_{i+1} with 0-based i, β_k = k/√(4k²−1), β_k = 0 for k ≥ n).
// With a zero diagonal, (J²)_{i,i+1} = 0 and J² couples only indices of equal
// parity; restricted to i = 1, 3, 5, … it is the tridiagonal matrix
//
//	O_{jj} = β²_{2j+1} + β²_{2j+2},  O_{j,j+1} = β_{2j+2}·β_{2j+3},  j = 0 … ⌊n/2⌋−1.
//
// O = BᵀB for the bidiagonal B that maps odd to even coordinates, so its
// eigenvalues are the squared singular values of B, i.e. the squares of the
// ⌊n/2⌋ positive eigenvalues of J (the even block carries the same values,
// plus 0 when n is odd). β_k² = k²/(4k²−1) is formed directly, not by
// squaring a rounded root.
func jacobiSquaredOddBlock(n int) (d, e []float64) {
	m := n / 2
	beta2 := func(k int) float64 {
		if k >= n {
			return 0
		}
		fk := float64(k)
		return fk * fk / (4*fk*fk - 1)
	}
	d = make([]float64, m)
	e = make([]float64, m-1)
	for j := 0; j < m; j++ {
		d[j] = beta2(2*j+1) + beta2(2*j+2)
		if j+1 < m {
			e[j] = math.Sqrt(beta2(2*j+2) * beta2(2*j+3))
		}
	}
	return d, e
}

// legendreNodeWeight polishes an approximate positive Gauss–Legendre node x0
// (or 0 for the middle node of an odd rule) and returns the node and its
// weight. P_n(x0) and P_{n−1}(x0) are evaluated by the three-term recurrence
// (k+1)P_{k+1} = (2k+1)xP_k − kP_{k−1} in double-double arithmetic, so the
// residual P_n(x0) is known to far below ε·|P′_n| even where the recurrence
// is ill-conditioned in float64 (its relative error grows like nε there).
// With P′_n(x) = n(xP_n − P_{n−1})/(x²−1) (A&S 22.8.5):
//
//   - Newton step: x* ≈ x0 + δ, δ = −P_n/P′_n = P_n(1−x0²)/(n(x0P_n − P_{n−1}));
//     from a start within ~10⁻¹³ the quadratic error term is below 10⁻²⁵.
//   - Weight: w(x0) = 2(1−x0²)/(n(x0P_n − P_{n−1}))², in double-double, then
//     moved to x* to first order. At a root of P_n the Legendre equation
//     gives P″_n = 2xP′_n/(1−x²), hence d log w/dx = −2x/(1−x²) and
//     w(x*) = w(x0)(1 − 2x0δ/(1−x0²)) = w(x0)(1 − 2x0·P_n/dp) with
//     dp = n(x0P_n − P_{n−1}); the neglected terms are O(n²δ²/(1−x²)).
//
// Evaluating the weight at x* rather than at the rounded node matters near
// ±1, where |d log w/dx| ≈ n² and half an ulp of node error would otherwise
// cost 10⁻¹³ of relative weight accuracy at n = 64.
func legendreNodeWeight(n int, x0 float64) (x, w float64) {
	x, w, _, _ = legendreNodeWeight2(n, x0, x0)
	return x, w
}

// legendreNodeWeight2 is legendreNodeWeight for two nodes at once. The two
// double-double recurrences are independent, so interleaving them in one
// loop hides the latency of each step's long dependency chain; the step is
// written out by hand because a helper function would not be inlined.
//
// The high parts of products are converted to float64 explicitly: the
// error-free transformations need fl(a·b) itself, and Go may otherwise fuse
// the product into the subtraction that follows (it does on arm64), which
// breaks the two-sums (measured: 3-ulp weights on arm64 before).
//
// One step computes P_{k+1} = ((2k+1)·x·P_k − k·P_{k−1})/(k+1) from
// P_k = (ph, pl) and P_{k−1} = (qh, ql): the products (2k+1)·x·P_k and
// k·P_{k−1} are formed with their FMA rounding errors, their difference with
// a two-sum, and the division by k+1 as an approximate quotient plus the
// exact FMA remainder.
func legendreNodeWeight2(n int, x0, y0 float64) (x, wx, y, wy float64) {
	// P_0 = 1 and P_1 = x0 (resp. y0), as double-double pairs (hi, lo).
	qh, ql, ph, pl := 1.0, 0.0, x0, 0.0
	sh, sl, rh, rl := 1.0, 0.0, y0, 0.0
	for k := 1; k < n; k++ {
		c1 := float64(2*k + 1)
		c2 := float64(k)
		dv := float64(k + 1)
		inv := 1 / dv

		cxh := float64(c1 * x0)
		cxl := math.FMA(c1, x0, -cxh)
		cyh := float64(c1 * y0)
		cyl := math.FMA(c1, y0, -cyh)

		ah := float64(cxh * ph)
		al := math.FMA(cxh, ph, -ah) + (cxh*pl + cxl*ph)
		a2h := float64(cyh * rh)
		a2l := math.FMA(cyh, rh, -a2h) + (cyh*rl + cyl*rh)

		bh := float64(c2 * qh)
		bl := math.FMA(c2, qh, -bh) + c2*ql
		b2h := float64(c2 * sh)
		b2l := math.FMA(c2, sh, -b2h) + c2*sl

		uh := ah - bh
		z := uh - ah
		ue := (ah - (uh - z)) - (bh + z) + (al - bl)
		u2h := a2h - b2h
		z2 := u2h - a2h
		u2e := (a2h - (u2h - z2)) - (b2h + z2) + (a2l - b2l)

		vh := uh + ue
		vl := ue - (vh - uh)
		v2h := u2h + u2e
		v2l := u2e - (v2h - u2h)

		th := float64(vh * inv)
		tl := float64((math.FMA(-th, dv, vh) + vl) * inv)
		t2h := float64(v2h * inv)
		t2l := float64((math.FMA(-t2h, dv, v2h) + v2l) * inv)

		qh, ql = ph, pl
		ph = th + tl
		pl = tl - (ph - th)
		sh, sl = rh, rl
		rh = t2h + t2l
		rl = t2l - (rh - t2h)
	}
	x, wx = polishNodeWeight(n, x0, ph, pl, qh, ql)
	y, wy = polishNodeWeight(n, y0, rh, rl, sh, sl)
	return x, wx, y, wy
}

// polishNodeWeight applies the Newton step and the weight formula described
// at legendreNodeWeight, given P_n(x0) = (ph, pl) and P_{n−1}(x0) = (qh, ql).
func polishNodeWeight(n int, x0, ph, pl, qh, ql float64) (x, w float64) {
	nf := float64(n)

	// dp = n(x0·P_n − P_{n−1}) in double-double.
	t := float64(x0 * ph)
	tl := math.FMA(x0, ph, -t) + x0*pl
	sh, se := twoSum(t, -qh)
	se += tl - ql
	dph, dpl := fastTwoSum(sh, se)
	dph, dpl = ddMulFloat(dph, dpl, nf)

	// 1 − x0² in double-double.
	x2h, x2l := twoProd(x0, x0)
	omh, oml := twoSum(1, -x2h)
	omh, oml = fastTwoSum(omh, oml-x2l)

	// w(x0) = 2(1 − x0²)/dp².
	d2h, d2l := ddMul(dph, dpl, dph, dpl)
	wh, wl := ddDiv(2*omh, 2*oml, d2h, d2l)

	// First-order move of the weight from x0 to x* (see legendreNodeWeight),
	// then round; the node moves by δ = P_n(1−x0²)/dp.
	r := ph / dph
	w = wh + (wl - float64(wh*float64(2*x0*r)))
	x = x0 + float64(r*omh)
	return x, w
}

// twoSum returns s = fl(a+b) and the exact rounding error e, a+b = s+e
// (Knuth's branch-free TwoSum).
func twoSum(a, b float64) (s, e float64) {
	s = a + b
	z := s - a
	e = (a - (s - z)) + (b - z)
	return s, e
}

// fastTwoSum is twoSum for |a| ≥ |b| (Dekker).
func fastTwoSum(a, b float64) (s, e float64) {
	s = a + b
	e = b - (s - a)
	return s, e
}

// twoProd returns p = fl(a·b) and the exact error e = a·b − p, via FMA.
func twoProd(a, b float64) (p, e float64) {
	p = float64(a * b)
	e = math.FMA(a, b, -p)
	return p, e
}

// ddMul multiplies two double-double numbers (relative error ≈ 2⁻¹⁰⁴).
func ddMul(ah, al, bh, bl float64) (h, l float64) {
	p, e := twoProd(ah, bh)
	e += ah*bl + al*bh
	return fastTwoSum(p, e)
}

// ddMulFloat multiplies a double-double number by a float64.
func ddMulFloat(ah, al, b float64) (h, l float64) {
	p, e := twoProd(ah, b)
	e += al * b
	return fastTwoSum(p, e)
}

// ddDiv divides two double-double numbers: one quotient digit, the exact
// remainder via FMA, and a correction digit.
func ddDiv(ah, al, bh, bl float64) (h, l float64) {
	q := ah / bh
	r := math.FMA(-q, bh, ah) + al - q*bl
	return fastTwoSum(q, r/bh)
}

// MapTo writes the rule mapped affinely onto [a, b] into nodes and weights,
// which must each have length at least n (only the first n entries are
// written; nothing is allocated):
//
//	nodes[k] = (a+b)/2 + (b−a)/2·x_k,  weights[k] = (b−a)/2·w_k,
//
// so that Σ weights[k]·f(nodes[k]) ≈ ∫_a^b f(t) dt. b < a is allowed (a
// backward solve): the weights are then negative, preserving the orientation
// convention ∫_a^b = −∫_b^a, and the nodes run from a towards b (descending).
// a = b gives zero weights.
//
// Errors (buffers untouched): an *InputError wrapping ErrNonFinite when a or
// b is NaN or ±Inf, wrapping ErrInvalidInput when a buffer is too short.
func (r *GaussLegendreRule) MapTo(a, b float64, nodes, weights []float64) error {
	n := len(r.Nodes)
	if err := r.check(); err != nil {
		return err
	}
	if err := checkInterval(a, b); err != nil {
		return err
	}
	if len(nodes) < n {
		return invalidf("nodes", "buffer length %d < rule size %d", len(nodes), n)
	}
	if len(weights) < n {
		return invalidf("weights", "buffer length %d < rule size %d", len(weights), n)
	}
	r.mapTo(a, b, nodes[:n], weights[:n])
	return nil
}

// mapTo is MapTo without checks; len(nodes) = len(weights) = n.
func (r *GaussLegendreRule) mapTo(a, b float64, nodes, weights []float64) {
	mid, h := 0.5*a+0.5*b, 0.5*b-0.5*a
	xs := r.Nodes
	ws := r.Weights[:len(xs)]
	nodes = nodes[:len(xs)]
	weights = weights[:len(xs)]
	for k, x := range xs {
		nodes[k] = mid + h*x
		weights[k] = h * ws[k]
	}
}

// check rejects a hand-built rule whose slices disagree in length, so that
// the methods return an error instead of panicking.
func (r *GaussLegendreRule) check() error {
	if len(r.Weights) != len(r.Nodes) {
		return invalidf("GaussLegendreRule", "%d nodes but %d weights", len(r.Nodes), len(r.Weights))
	}
	return nil
}

func checkInterval(a, b float64) error {
	if math.IsNaN(a) || math.IsInf(a, 0) {
		return &InputError{Field: "a", Reason: "interval end is not finite", Err: ErrNonFinite}
	}
	if math.IsNaN(b) || math.IsInf(b, 0) {
		return &InputError{Field: "b", Reason: "interval end is not finite", Err: ErrNonFinite}
	}
	return nil
}

// Integrate returns the rule's approximation of ∫_a^b f(t) dt (negative of
// ∫_b^a when b < a). f is called once per node, in ascending node order on
// [−1, 1]. Nothing is allocated. NaN or ±Inf in a, b or f's values propagate
// to the result; use MapTo for checked inputs. A hand-built rule with
// mismatched slices is summed over the shorter one.
func (r *GaussLegendreRule) Integrate(f func(float64) float64, a, b float64) float64 {
	mid, h := 0.5*a+0.5*b, 0.5*b-0.5*a
	xs := r.Nodes
	ws := r.Weights
	// Two accumulators: shorter dependency chain and a little less rounding.
	var s0, s1 float64
	for len(xs) >= 2 && len(ws) >= 2 {
		s0 += ws[0] * f(mid+h*xs[0])
		s1 += ws[1] * f(mid+h*xs[1])
		xs, ws = xs[2:], ws[2:]
	}
	if len(xs) > 0 && len(ws) > 0 {
		s0 += ws[0] * f(mid+h*xs[0])
	}
	return h * (s0 + s1)
}

// IntegrateSamples returns Σ weights[k]·samples[k] for the rule mapped onto
// [a, b], where samples[k] is the integrand at the k-th node written by
// MapTo(a, b, …). len(samples) must equal n. Nothing is allocated.
//
// Errors: an *InputError wrapping ErrInvalidInput for a length mismatch,
// ErrNonFinite for a non-finite a or b.
func (r *GaussLegendreRule) IntegrateSamples(samples []float64, a, b float64) (float64, error) {
	if err := r.check(); err != nil {
		return 0, err
	}
	if err := checkInterval(a, b); err != nil {
		return 0, err
	}
	if len(samples) != len(r.Nodes) {
		return 0, invalidf("samples", "length %d, want rule size %d", len(samples), len(r.Nodes))
	}
	return (0.5*b - 0.5*a) * Dot(r.Weights, samples), nil
}

// MapToPartition writes the composite rule over the partition
// t₀, t₁, …, t_m (strictly increasing or strictly decreasing, m ≥ 1): the
// rule mapped onto each [t_{j}, t_{j+1}] in turn, n nodes per sub-interval,
// into nodes and weights, which must each hold at least m·n entries. Nothing
// is allocated. For a decreasing partition the weights are negative (see
// MapTo), so the composite sum approximates ∫_{t₀}^{t_m}.
//
// Errors (buffers untouched): an *InputError wrapping ErrNonFinite for a
// non-finite point, ErrInvalidInput for fewer than two points, a partition
// that is not strictly monotone, or buffers that are too short.
func (r *GaussLegendreRule) MapToPartition(partition, nodes, weights []float64) error {
	if err := r.check(); err != nil {
		return err
	}
	if err := checkPartition(partition); err != nil {
		return err
	}
	n := len(r.Nodes)
	total := (len(partition) - 1) * n
	if len(nodes) < total {
		return invalidf("nodes", "buffer length %d < %d sub-intervals × %d nodes", len(nodes), len(partition)-1, n)
	}
	if len(weights) < total {
		return invalidf("weights", "buffer length %d < %d sub-intervals × %d nodes", len(weights), len(partition)-1, n)
	}
	for j := 0; j+1 < len(partition); j++ {
		r.mapTo(partition[j], partition[j+1], nodes[j*n:(j+1)*n], weights[j*n:(j+1)*n])
	}
	return nil
}

// IntegrateComposite returns the composite-rule approximation of
// ∫_{t₀}^{t_m} f(t) dt over the partition t₀, …, t_m (strictly monotone, either
// direction), summing the sub-interval integrals in order. Nothing is
// allocated. Partition errors are those of MapToPartition.
func (r *GaussLegendreRule) IntegrateComposite(f func(float64) float64, partition []float64) (float64, error) {
	if err := checkPartition(partition); err != nil {
		return 0, err
	}
	sum := 0.0
	for j := 0; j+1 < len(partition); j++ {
		sum += r.Integrate(f, partition[j], partition[j+1])
	}
	return sum, nil
}

func checkPartition(p []float64) error {
	_, err := validateTimes("partition", p, 2, false)
	return err
}

// GaussKronrodRule is the (2n+1)-point Gauss–Kronrod extension of the
// n-point Gauss–Legendre rule on [−1, 1]: the n Gauss nodes plus n+1 new
// nodes interlacing them, with a second set of weights, so that
//
//	G = Σₖ GaussWeights[k]·f(Nodes[k])  (Gauss nodes only, exact to degree 2n−1)
//	K = Σₖ Weights[k]·f(Nodes[k])       (all 2n+1 nodes, exact to degree 3n+1)
//
// share every evaluation of f at the Gauss nodes, and |K − G| estimates the
// error of G at the cost of n+1 extra evaluations (Kronrod 1964; Laurie,
// Math. Comp. 66 (1997) 1133–1145). Nodes are ascending; IsGauss[k] marks
// the Gauss nodes, whose GaussWeights are the Gauss–Legendre weights (zero
// at the Kronrod nodes). The rule is symmetric like GaussLegendreRule.
//
// A rule returned by GaussKronrod is shared and must be treated as read-only.
type GaussKronrodRule struct {
	Nodes        []float64 // 2n+1 ascending nodes in (−1, 1)
	Weights      []float64 // Kronrod weights, positive, summing to 2
	GaussWeights []float64 // Gauss–Legendre weights at the Gauss nodes, 0 elsewhere
	IsGauss      []bool    // Nodes[k] is a node of the n-point Gauss rule
}

// MaxGaussKronrodNodes is the largest Gauss rule size n that GaussKronrod
// and NewGaussKronrod extend. The construction is exact in exact
// arithmetic for every n; in float64 the eigenvector weights keep about 14
// digits up to this size.
const MaxGaussKronrodNodes = 100

var gkCache [MaxGaussKronrodNodes + 1]struct {
	once sync.Once
	rule *GaussKronrodRule
	err  error
}

// GaussKronrod returns the Gauss–Kronrod extension of the n-point
// Gauss–Legendre rule, computed on first request and cached process-wide
// (later calls do not allocate). n < 1 or n > MaxGaussKronrodNodes gives an
// *InputError wrapping ErrInvalidInput.
func GaussKronrod(n int) (*GaussKronrodRule, error) {
	if n < 1 || n > MaxGaussKronrodNodes {
		return nil, invalidf("n", "Gauss–Kronrod rule size %d outside [1, %d]", n, MaxGaussKronrodNodes)
	}
	c := &gkCache[n]
	c.once.Do(func() { c.rule, c.err = NewGaussKronrod(n) })
	return c.rule, c.err
}

// NewGaussKronrod computes a fresh Gauss–Kronrod extension of the n-point
// Gauss–Legendre rule (no caching).
//
// Construction (Laurie 1997): the Kronrod rule is the Gauss rule of a
// (2n+1)×(2n+1) symmetric tridiagonal "Jacobi–Kronrod" matrix whose first
// ⌈3n/2⌉+1 recurrence coefficients are those of the Legendre weight; the
// remaining ones follow from the requirement that its trailing n×n block
// has the same eigenvalues as the leading one (so that the Gauss nodes are
// kept), which Laurie turns into a recurrence for mixed moments σ_{k,l}
// run over two sweeps of the (k, l) grid. The eigenvalues are the nodes and
// the weights are 2·v₁² (Golub–Welsch). The nodes that coincide with the
// Gauss nodes are then replaced by the accurate Gauss–Legendre nodes, the
// Kronrod nodes polished by symmetry (x_k = −x_{2n−k}, middle node 0), and
// the weights symmetrised. For the Legendre weight the Kronrod extension
// exists with real interlacing nodes and positive weights for every n
// (Szegő; Monegato, SIAM Rev. 24 (1982)); a construction that violates this
// is reported as ErrNoConvergence.
func NewGaussKronrod(n int) (*GaussKronrodRule, error) {
	if n < 1 || n > MaxGaussKronrodNodes {
		return nil, invalidf("n", "Gauss–Kronrod rule size %d outside [1, %d]", n, MaxGaussKronrodNodes)
	}
	gl, err := GaussLegendre(n)
	if err != nil {
		return nil, err
	}
	a, b := laurieKronrodRecurrence(n)
	m := 2*n + 1
	e := make([]float64, m-1)
	for k := 1; k < m; k++ {
		if !(b[k] > 0) {
			return nil, fmt.Errorf("%w: Gauss–Kronrod recurrence for n=%d has b[%d] = %v ≤ 0", ErrNoConvergence, n, k, b[k])
		}
		e[k-1] = math.Sqrt(b[k])
	}
	x, v, err := SymTridiagEigen(a, e, FirstComponents)
	if err != nil {
		return nil, err
	}
	r := &GaussKronrodRule{Nodes: x, Weights: make([]float64, m), GaussWeights: make([]float64, m), IsGauss: make([]bool, m)}
	for k := range x {
		r.Weights[k] = 2 * v[k] * v[k]
	}
	// Gauss and Kronrod nodes interlace: odd positions are the Gauss nodes.
	for k := 0; k < n; k++ {
		j := 2*k + 1
		if math.Abs(x[j]-gl.Nodes[k]) > 1e-10 {
			return nil, fmt.Errorf("%w: Gauss–Kronrod node %d = %v does not reproduce Gauss node %v (n=%d)", ErrNoConvergence, j, x[j], gl.Nodes[k], n)
		}
		x[j] = gl.Nodes[k]
		r.IsGauss[j] = true
		r.GaussWeights[j] = gl.Weights[k]
	}
	for k := 0; k < n; k++ { // exact symmetry
		j := m - 1 - k
		xs := 0.5 * (x[j] - x[k])
		x[k], x[j] = -xs, xs
		ws := 0.5 * (r.Weights[k] + r.Weights[j])
		r.Weights[k], r.Weights[j] = ws, ws
	}
	x[n] = 0
	for k, xk := range x {
		if !(xk > -1 && xk < 1) || !(r.Weights[k] > 0) || (k > 0 && !(xk > x[k-1])) {
			return nil, fmt.Errorf("%w: Gauss–Kronrod construction for n=%d produced node %d = %v, weight %v",
				ErrNoConvergence, n, k, xk, r.Weights[k])
		}
	}
	return r, nil
}

// laurieKronrodRecurrence returns the diagonal a (length 2n+1) and the
// squared off-diagonal b (b[k] couples rows k−1 and k, b[0] unused) of the
// Jacobi–Kronrod matrix of the Legendre weight, by Laurie's mixed-moment
// recurrence (Math. Comp. 66 (1997), §4). The monic Legendre recurrence has
// a_k = 0 and b_k = k²/(4k²−1).
func laurieKronrodRecurrence(n int) (a, b []float64) {
	m := 2*n + 1
	a = make([]float64, m)
	b = make([]float64, m)
	leg := func(k int) float64 { fk := float64(k); return fk * fk / (4*fk*fk - 1) }
	b[0] = 2
	for k := 1; k <= (3*n+1)/2 && k < m; k++ {
		b[k] = leg(k)
	}
	// s and t hold two consecutive anti-diagonals of the mixed moments,
	// offset by one so that index 0 is the zero boundary value.
	s := make([]float64, n/2+2)
	t := make([]float64, n/2+2)
	t[1] = b[n+1]
	for k := 0; k <= n-2; k++ {
		u := 0.0
		for j := (k + 1) / 2; j >= 0; j-- {
			l := k - j
			u += float64((a[j+n+1]-a[l])*t[j+1]) + float64(b[j+n+1]*s[j]) - float64(b[l]*s[j+1])
			s[j+1] = u
		}
		s, t = t, s
	}
	for j := n / 2; j >= 0; j-- {
		s[j+1] = s[j]
	}
	for k := n - 1; k <= 2*n-3; k++ {
		u := 0.0
		j := 0
		for i := k + 1 - n; i <= (k-1)/2; i++ {
			l := k - i
			j = n - 1 - l
			u += float64(-(a[i+n+1]-a[l])*t[j+1]) - float64(b[i+n+1]*s[j+1]) + float64(b[l]*s[j+2])
			s[j+1] = u
		}
		if k%2 == 0 {
			i := k / 2
			a[i+n+1] = a[i] + (s[j+1]-float64(b[i+n+1]*s[j+2]))/t[j+2]
		} else {
			i := (k + 1) / 2
			b[i+n+1] = s[j+1] / s[j+2]
		}
		s, t = t, s
	}
	a[2*n] = a[n-1] - float64(b[2*n]*s[1]/t[1])
	return a, b
}
