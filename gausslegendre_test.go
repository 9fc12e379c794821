package neuralode

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"slices"
	"sync"
	"testing"
)

// glReference is testdata/gauss_legendre_reference.json: 30-digit nodes and
// weights computed independently at 50 digits.
type glReference struct {
	Rules []struct {
		N       int      `json:"n"`
		Nodes   []string `json:"nodes"`
		Weights []string `json:"weights"`
	} `json:"rules"`
}

const glRefPrec = 256 // bits; far more than the table's 30 digits

func loadGLReference(t testing.TB) glReference {
	t.Helper()
	raw, err := os.ReadFile("testdata/gauss_legendre_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref glReference
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Rules) < 60 {
		t.Fatalf("reference holds only %d rules", len(ref.Rules))
	}
	return ref
}

func parseBig(t testing.TB, s string) *big.Float {
	t.Helper()
	f, _, err := big.ParseFloat(s, 10, glRefPrec, big.ToNearestEven)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return f
}

// errVsRef returns got − ref, evaluated exactly (the float64 is exact in
// big.Float) and then rounded: the reference's own rounding to float64 does
// not enter the measured error.
func errVsRef(got float64, ref *big.Float) float64 {
	d := new(big.Float).SetPrec(glRefPrec).SetFloat64(got)
	d.Sub(d, ref)
	f, _ := d.Float64()
	return f
}

// TestGaussLegendreReference checks every rule of the reference table with
// the accuracy targets of the issue: nodes to 2.3e-16 absolute, weights to
// 3e-16 absolute and 1e-13 (n ≤ 64) or 2e-12 (n ≤ 256) relative.
func TestGaussLegendreReference(t *testing.T) {
	ref := loadGLReference(t)
	var worstNode, worstW, worstWRel float64
	for _, rr := range ref.Rules {
		r, err := NewGaussLegendre(rr.N)
		if err != nil {
			t.Fatalf("n=%d: %v", rr.N, err)
		}
		if r.Len() != rr.N || len(rr.Nodes) != rr.N || len(rr.Weights) != rr.N {
			t.Fatalf("n=%d: sizes %d, %d, %d", rr.N, r.Len(), len(rr.Nodes), len(rr.Weights))
		}
		relTol := 1e-13
		if rr.N > 64 {
			relTol = 2e-12
		}
		for k := 0; k < rr.N; k++ {
			ex := math.Abs(errVsRef(r.Nodes[k], parseBig(t, rr.Nodes[k])))
			wRef := parseBig(t, rr.Weights[k])
			ew := math.Abs(errVsRef(r.Weights[k], wRef))
			wf, _ := wRef.Float64()
			rel := ew / wf
			if ex > 2.3e-16 {
				t.Errorf("n=%d node %d: error %.3g > 2.3e-16", rr.N, k, ex)
			}
			if ew > 3e-16 || rel > relTol {
				t.Errorf("n=%d weight %d: abs error %.3g (≤ 3e-16), rel %.3g (≤ %g)", rr.N, k, ew, rel, relTol)
			}
			worstNode = math.Max(worstNode, ex)
			worstW = math.Max(worstW, ew)
			worstWRel = math.Max(worstWRel, rel)
		}
	}
	t.Logf("worst over the table: node %.3g, weight abs %.3g, weight rel %.3g", worstNode, worstW, worstWRel)
}

// TestGolubWelschEigenvectorWeights checks the classical Golub–Welsch route
// (eigenvalues of the full Jacobi matrix, w = 2v₁² from FirstComponents)
// against the table. It is accurate in absolute terms only; the relative
// weight error near ±1 is what NewGaussLegendre's polish removes.
func TestGolubWelschEigenvectorWeights(t *testing.T) {
	ref := loadGLReference(t)
	worstRel := 0.0
	for _, rr := range ref.Rules {
		n := rr.N
		d := make([]float64, n)
		e := make([]float64, n-1)
		for k := 1; k < n; k++ {
			fk := float64(k)
			e[k-1] = fk / math.Sqrt(4*fk*fk-1)
		}
		vals, v, err := SymTridiagEigen(d, e, FirstComponents)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < n; k++ {
			if ex := math.Abs(errVsRef(vals[k], parseBig(t, rr.Nodes[k]))); ex > 2e-15 {
				t.Errorf("n=%d eigenvalue %d: error %.3g", n, k, ex)
			}
			wRef := parseBig(t, rr.Weights[k])
			ew := math.Abs(errVsRef(2*v[k]*v[k], wRef))
			if ew > 4e-15 {
				t.Errorf("n=%d GW weight %d: error %.3g", n, k, ew)
			}
			wf, _ := wRef.Float64()
			worstRel = math.Max(worstRel, ew/wf)
		}
	}
	t.Logf("Golub–Welsch eigenvector weights: worst relative error %.3g", worstRel)
}

func checkRuleShape(t *testing.T, r *GaussLegendreRule) {
	t.Helper()
	n := r.Len()
	if len(r.Weights) != n {
		t.Fatalf("n=%d: %d weights", n, len(r.Weights))
	}
	for k := 0; k < n; k++ {
		x, w := r.Nodes[k], r.Weights[k]
		if !(x > -1 && x < 1) || !(w > 0) {
			t.Fatalf("n=%d: node %d = %g, weight %g", n, k, x, w)
		}
		if k > 0 && !(x > r.Nodes[k-1]) {
			t.Fatalf("n=%d: nodes not strictly ascending at %d", n, k)
		}
		if r.Nodes[n-1-k] != -x || r.Weights[n-1-k] != w {
			t.Fatalf("n=%d: not exactly symmetric at %d: %g/%g vs %g/%g", n, k, x, w, r.Nodes[n-1-k], r.Weights[n-1-k])
		}
	}
	if n%2 == 1 && math.Float64bits(r.Nodes[n/2]) != 0 {
		t.Fatalf("n=%d: middle node %g is not +0", n, r.Nodes[n/2])
	}
}

// neumaierSum adds with a running compensation, so the test measures the
// rule, not float64 summation error.
func neumaierSum(xs []float64) float64 {
	s, c := 0.0, 0.0
	for _, x := range xs {
		t := s + x
		if math.Abs(s) >= math.Abs(x) {
			c += (s - t) + x
		} else {
			c += (x - t) + s
		}
		s = t
	}
	return s + c
}

// TestGaussLegendreExactness: Σw = 2, every monomial up to degree 2n−1 is
// integrated exactly (to 1e-14 relative to ∫|x^k| = 2/(k+1)), and degree 2n
// is not: the degree-2n polynomial P_n² vanishes at every node, so the rule
// gives ≈ 0 instead of 2/(2n+1), and for small n the deficit on x^{2n} equals
// the Gauss error term ∫π_n² = 2^{2n+1}(n!)⁴/((2n+1)((2n)!)²) (π_n monic).
func TestGaussLegendreExactness(t *testing.T) {
	ref := loadGLReference(t)
	worst := 0.0
	for _, rr := range ref.Rules {
		n := rr.N
		r, err := GaussLegendre(n)
		if err != nil {
			t.Fatal(err)
		}
		checkRuleShape(t, r)
		if s := neumaierSum(r.Weights); math.Abs(s-2) > 4e-15 {
			t.Errorf("n=%d: Σw = %.17g", n, s)
		}
		terms := make([]float64, n)
		for k := 0; k <= 2*n-1; k++ {
			got := quadMonomialDD(r, k)
			scale := 2 / float64(k+1) // ∫₋₁¹ |x^k| dx
			want := 0.0
			if k%2 == 0 {
				want = scale
			}
			rel := math.Abs(got-want) / scale
			worst = math.Max(worst, rel)
			if rel > 1e-14 {
				t.Errorf("n=%d: ∫x^%d = %.17g, want %.17g (rel. error %.3g)", n, k, got, want, rel)
			}
		}

		// Degree 2n: P_n² is zero at the nodes.
		for j, x := range r.Nodes {
			pn, _ := legendreFloat(n, x)
			terms[j] = r.Weights[j] * pn * pn
		}
		exact := 2 / float64(2*n+1)
		if got := neumaierSum(terms); math.Abs(got) > 1e-20 || math.Abs(got-exact) < 0.99*exact {
			t.Errorf("n=%d: rule gives %.3g for ∫P_n² = %.6g; the degree is not exactly 2n−1", n, got, exact)
		}
		if n <= 12 {
			for j, x := range r.Nodes {
				terms[j] = r.Weights[j] * math.Pow(x, float64(2*n))
			}
			deficit := exact - neumaierSum(terms)
			want := monicLegendreNormSq(n)
			if math.Abs(deficit-want) > 1e-14*exact+1e-6*want {
				t.Errorf("n=%d: ∫x^{2n} − Q(x^{2n}) = %.6g, want Gauss error %.6g", n, deficit, want)
			}
		}
	}
	t.Logf("worst monomial error relative to ∫|x^k|: %.3g", worst)
}

// quadMonomialDD returns Σ w_j x_j^k for the float64 rule, evaluated in
// double-double arithmetic (test-only helpers below), so that what is measured
// is the rule's own error, not that of math.Pow and float64 summation.
func quadMonomialDD(r *GaussLegendreRule, k int) float64 {
	sh, sl := 0.0, 0.0
	for j, x := range r.Nodes {
		// x^k by binary powering in double-double.
		ph, pl := 1.0, 0.0
		bh, bl := x, 0.0
		for e := k; e > 0; e >>= 1 {
			if e&1 == 1 {
				ph, pl = testDDMul(ph, pl, bh, bl)
			}
			bh, bl = testDDMul(bh, bl, bh, bl)
		}
		th, tl := testDDMul(ph, pl, r.Weights[j], 0)
		// (sh, sl) += (th, tl)
		s := sh + th
		z := s - sh
		e := (sh - (s - z)) + (th - z) + sl + tl
		sh = s + e
		sl = e - (sh - s)
	}
	return sh + sl
}

func testDDMul(ah, al, bh, bl float64) (float64, float64) {
	p := ah * bh
	e := math.FMA(ah, bh, -p) + (ah*bl + al*bh)
	h := p + e
	return h, e - (h - p)
}

// legendreFloat evaluates P_n and P_{n−1} by the plain float64 recurrence
// (an independent, simpler implementation for tests).
func legendreFloat(n int, x float64) (pn, pn1 float64) {
	p0, p1 := 1.0, x
	for k := 1; k < n; k++ {
		p0, p1 = p1, (float64(2*k+1)*x*p1-float64(k)*p0)/float64(k+1)
	}
	return p1, p0
}

// monicLegendreNormSq returns ∫₋₁¹ π_n(x)² dx for the monic Legendre
// polynomial, 2^{2n+1}(n!)⁴/((2n+1)((2n)!)²), via big.Float.
func monicLegendreNormSq(n int) float64 {
	num := new(big.Int).Lsh(big.NewInt(1), uint(2*n+1))
	nf := new(big.Int).MulRange(1, int64(n))
	nf4 := new(big.Int).Exp(nf, big.NewInt(4), nil)
	num.Mul(num, nf4)
	den := new(big.Int).MulRange(1, int64(2*n))
	den.Mul(den, den)
	den.Mul(den, big.NewInt(int64(2*n+1)))
	q, _ := new(big.Rat).SetFrac(num, den).Float64()
	return q
}

// bigLegendreCorrection returns, in 256-bit arithmetic, the Newton
// correction δ = −P_n(x)/P′_n(x) (so x+δ is the true node to ~1e-30) and
// the weight 2/((1−y²)P′_n(y)²) at y = x+δ.
func bigLegendreCorrection(n int, x float64) (delta, weight float64) {
	const prec = 256
	nb := func() *big.Float { return new(big.Float).SetPrec(prec) }
	eval := func(x *big.Float) (pn, dp *big.Float) {
		p0, p1 := nb().SetInt64(1), nb().Set(x)
		for k := 1; k < n; k++ {
			a := nb().Mul(x, p1)
			a.Mul(a, nb().SetInt64(int64(2*k+1)))
			a.Sub(a, nb().Mul(p0, nb().SetInt64(int64(k))))
			a.Quo(a, nb().SetInt64(int64(k+1)))
			p0, p1 = p1, a
		}
		// P′_n = n(xP_n − P_{n−1})/(x²−1)
		num := nb().Mul(x, p1)
		num.Sub(num, p0)
		num.Mul(num, nb().SetInt64(int64(n)))
		den := nb().Mul(x, x)
		den.Sub(den, nb().SetInt64(1))
		return p1, num.Quo(num, den)
	}
	X := nb().SetFloat64(x)
	pn, dp := eval(X)
	d := nb().Quo(pn, dp)
	d.Neg(d)
	Y := nb().Add(X, d)
	_, dpy := eval(Y)
	w := nb().Mul(Y, Y)
	w.Sub(nb().SetInt64(1), w)
	w.Mul(w, dpy)
	w.Mul(w, dpy)
	w.Quo(nb().SetInt64(2), w)
	delta, _ = d.Float64()
	weight, _ = w.Float64()
	return delta, weight
}

// TestGaussLegendreLargeN covers sizes beyond the table: exact symmetry,
// strict ordering, Σw = 2, interlacing of the zeros of P_n and P_{n+1}, and,
// at sampled nodes, a 256-bit Newton check of the node and weight. The
// pair (4095, 4096) reaches MaxGaussLegendreNodes.
func TestGaussLegendreLargeN(t *testing.T) {
	sizes := []int{1000, 2000, 4095}
	if testing.Short() {
		sizes = []int{1000}
	}
	for _, n := range sizes {
		r, err := NewGaussLegendre(n)
		if err != nil {
			t.Fatal(err)
		}
		r1, err := NewGaussLegendre(n + 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, rule := range []*GaussLegendreRule{r, r1} {
			checkRuleShape(t, rule)
			if s := neumaierSum(rule.Weights); math.Abs(s-2) > 4e-15 {
				t.Errorf("n=%d: Σw − 2 = %.3g", rule.Len(), s-2)
			}
		}
		// Zeros of P_n and P_{n+1} strictly interlace.
		for k := 0; k < n; k++ {
			if !(r1.Nodes[k] < r.Nodes[k] && r.Nodes[k] < r1.Nodes[k+1]) {
				t.Fatalf("n=%d: interlacing fails at %d: %v < %v < %v", n, k, r1.Nodes[k], r.Nodes[k], r1.Nodes[k+1])
			}
		}
		// Sampled nodes (both ends, the middle, a spread) against 256-bit Newton.
		for _, k := range []int{n - 1, n - 2, n - 3, n - 10, n/2 + n/4, n/2 + 1, (n + 1) / 2} {
			x := r.Nodes[k]
			delta, w := bigLegendreCorrection(n, x)
			if math.Abs(delta) > 2.3e-16 {
				t.Errorf("n=%d node %d = %.17g: distance to true zero %.3g", n, k, x, delta)
			}
			if rel := math.Abs(r.Weights[k]-w) / w; rel > 1e-15 {
				t.Errorf("n=%d weight %d = %.17g, want %.17g (rel %.3g)", n, k, r.Weights[k], w, rel)
			}
		}
	}
}

func TestGaussLegendreSizeErrors(t *testing.T) {
	for _, n := range []int{0, -1, math.MinInt, MaxGaussLegendreNodes + 1, math.MaxInt} {
		for name, f := range map[string]func(int) (*GaussLegendreRule, error){
			"GaussLegendre": GaussLegendre, "NewGaussLegendre": NewGaussLegendre,
		} {
			r, err := f(n)
			var ie *InputError
			if r != nil || !errors.Is(err, ErrInvalidInput) || !errors.As(err, &ie) || ie.Field != "n" {
				t.Errorf("%s(%d) = %v, %v; want InputError on n", name, n, r, err)
			}
		}
	}
}

func TestGaussLegendreSmallExact(t *testing.T) {
	r, _ := GaussLegendre(1)
	if r.Nodes[0] != 0 || r.Weights[0] != 2 {
		t.Errorf("n=1: %v %v", r.Nodes, r.Weights)
	}
	r, _ = GaussLegendre(2)
	// 1/√3 = 0.57735026918962576451…, correctly rounded.
	if r.Weights[0] != 1 || r.Weights[1] != 1 || r.Nodes[1] != 0.577350269189625764509148780502 {
		t.Errorf("n=2: %v %v, want ±1/√3, 1", r.Nodes, r.Weights)
	}
	r, _ = GaussLegendre(3)
	if math.Abs(r.Nodes[2]-math.Sqrt(0.6)) > 1e-16 || math.Abs(r.Weights[1]-8.0/9) > 1e-16 || math.Abs(r.Weights[0]-5.0/9) > 1e-16 {
		t.Errorf("n=3: %v %v", r.Nodes, r.Weights)
	}
}

// TestGaussLegendreCache: one rule per n, identical to a fresh construction,
// under concurrent first requests, and look-ups do not allocate.
func TestGaussLegendreCache(t *testing.T) {
	sizes := []int{3, 17, 64, 129, 300}
	got := make([][]*GaussLegendreRule, 8)
	var wg sync.WaitGroup
	for g := range got {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for _, n := range sizes {
				r, err := GaussLegendre(n)
				if err != nil {
					t.Error(err)
					return
				}
				got[g] = append(got[g], r)
			}
		}(g)
	}
	wg.Wait()
	for i, n := range sizes {
		fresh, _ := NewGaussLegendre(n)
		for g := range got {
			if got[g][i] != got[0][i] {
				t.Errorf("n=%d: goroutine %d got a different rule pointer", n, g)
			}
		}
		if !slices.Equal(got[0][i].Nodes, fresh.Nodes) || !slices.Equal(got[0][i].Weights, fresh.Weights) {
			t.Errorf("n=%d: cached rule differs from a fresh one", n)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = GaussLegendre(17) }); a != 0 {
		t.Errorf("cached look-up allocates %v times", a)
	}
}

func TestGaussLegendreMapTo(t *testing.T) {
	r, _ := GaussLegendre(5)
	nodes, weights := make([]float64, 6), make([]float64, 6)
	nodes[5], weights[5] = -7, -7 // beyond n: must stay untouched
	integ := func(f func(float64) float64) float64 {
		s := 0.0
		for k := 0; k < 5; k++ {
			s += weights[k] * f(nodes[k])
		}
		return s
	}
	cube := func(t float64) float64 { return t*t*t - 2*t }
	cases := []struct{ a, b, want float64 }{
		{2, 5, (625.0-16)/4 - (25 - 4)},
		{5, 2, -((625.0-16)/4 - (25 - 4))},
		{-1, 1, 0},
		{3, 3, 0},
	}
	for _, c := range cases {
		if err := r.MapTo(c.a, c.b, nodes, weights); err != nil {
			t.Fatal(err)
		}
		if got := integ(cube); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("[%g,%g]: ∫ = %.17g, want %.17g", c.a, c.b, got, c.want)
		}
		if got := neumaierSum(weights[:5]); math.Abs(got-(c.b-c.a)) > 1e-15*math.Abs(c.b-c.a) {
			t.Errorf("[%g,%g]: Σw = %g, want %g", c.a, c.b, got, c.b-c.a)
		}
		for k := 1; k < 5; k++ {
			if (c.b > c.a && !(nodes[k] > nodes[k-1])) || (c.b < c.a && !(nodes[k] < nodes[k-1])) {
				t.Errorf("[%g,%g]: nodes do not run from a to b: %v", c.a, c.b, nodes[:5])
			}
			if c.b < c.a && !(weights[k] < 0) {
				t.Errorf("[%g,%g]: weight %d = %g, want negative", c.a, c.b, k, weights[k])
			}
		}
		if nodes[5] != -7 || weights[5] != -7 {
			t.Errorf("MapTo wrote beyond n")
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = r.MapTo(0, 1, nodes, weights) }); a != 0 {
		t.Errorf("MapTo allocates %v times", a)
	}
}

func TestGaussLegendreMapToErrors(t *testing.T) {
	r, _ := GaussLegendre(4)
	nan, inf := math.NaN(), math.Inf(-1)
	for _, c := range []struct {
		a, b   float64
		nn, nw int
		want   error
	}{
		{0, 1, 3, 4, ErrInvalidInput},
		{0, 1, 4, 0, ErrInvalidInput},
		{nan, 1, 4, 4, ErrNonFinite},
		{0, inf, 4, 4, ErrNonFinite},
	} {
		nodes, weights := make([]float64, c.nn), make([]float64, c.nw)
		for i := range nodes {
			nodes[i] = 42
		}
		for i := range weights {
			weights[i] = 42
		}
		err := r.MapTo(c.a, c.b, nodes, weights)
		var ie *InputError
		if !errors.Is(err, c.want) || !errors.As(err, &ie) {
			t.Errorf("%+v: err %v, want %v", c, err, c.want)
		}
		for _, v := range append(nodes, weights...) {
			if v != 42 {
				t.Errorf("%+v: buffers modified on failure", c)
				break
			}
		}
	}
}

func TestGaussLegendreMalformedRule(t *testing.T) {
	bad := &GaussLegendreRule{Nodes: []float64{-0.5, 0.5}, Weights: []float64{1}}
	buf := make([]float64, 4)
	if err := bad.MapTo(0, 1, buf, buf); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("MapTo: %v", err)
	}
	if _, err := bad.IntegrateSamples(buf[:2], 0, 1); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("IntegrateSamples: %v", err)
	}
	if err := bad.MapToPartition([]float64{0, 1}, buf, buf); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("MapToPartition: %v", err)
	}
	_ = bad.Integrate(math.Exp, 0, 1) // must not panic
}

func TestGaussLegendreIntegrate(t *testing.T) {
	r, _ := GaussLegendre(12)
	cases := []struct {
		name string
		f    func(float64) float64
		a, b float64
		want float64
	}{
		{"sin on [0,π]", math.Sin, 0, math.Pi, 2},
		{"exp backwards", math.Exp, 1, 0, -(math.E - 1)},
		{"1/(1+t²) on [0,1]", func(t float64) float64 { return 1 / (1 + t*t) }, 0, 1, math.Pi / 4},
		{"empty interval", math.Exp, 2, 2, 0},
		{"degree 23 exact", func(t float64) float64 { return 24 * math.Pow(t, 23) }, 0, 1, 1},
	}
	for _, c := range cases {
		got := r.Integrate(c.f, c.a, c.b)
		if math.Abs(got-c.want) > 2e-15 {
			t.Errorf("%s: %.17g, want %.17g", c.name, got, c.want)
		}
		nodes, weights, samples := make([]float64, 12), make([]float64, 12), make([]float64, 12)
		if err := r.MapTo(c.a, c.b, nodes, weights); err != nil {
			t.Fatal(err)
		}
		for k, x := range nodes {
			samples[k] = c.f(x)
		}
		got2, err := r.IntegrateSamples(samples, c.a, c.b)
		if err != nil || math.Abs(got2-c.want) > 2e-15 {
			t.Errorf("%s samples: %.17g (%v), want %.17g", c.name, got2, err, c.want)
		}
	}
	if _, err := r.IntegrateSamples(make([]float64, 11), 0, 1); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("short samples: %v", err)
	}
	if _, err := r.IntegrateSamples(make([]float64, 12), math.NaN(), 1); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN interval: %v", err)
	}
	samples := make([]float64, 12)
	if a := testing.AllocsPerRun(100, func() {
		_ = r.Integrate(math.Cos, 0, 1)
		_, _ = r.IntegrateSamples(samples, 0, 1)
	}); a != 0 {
		t.Errorf("Integrate/IntegrateSamples allocate %v times", a)
	}
}

func TestGaussLegendreComposite(t *testing.T) {
	r, _ := GaussLegendre(10)
	part := []float64{0, 0.25, 1, 2.5, 3}
	want := math.Exp(3) - 1
	got, err := r.IntegrateComposite(math.Exp, part)
	if err != nil || math.Abs(got-want) > 1e-13 {
		t.Errorf("composite ∫exp = %.17g (%v), want %.17g", got, err, want)
	}
	rev := slices.Clone(part)
	slices.Reverse(rev)
	got, err = r.IntegrateComposite(math.Exp, rev)
	if err != nil || math.Abs(got+want) > 1e-13 {
		t.Errorf("reversed composite = %.17g (%v), want %.17g", got, err, -want)
	}
	m := len(part) - 1
	nodes, weights := make([]float64, m*10), make([]float64, m*10)
	if err := r.MapToPartition(part, nodes, weights); err != nil {
		t.Fatal(err)
	}
	s := 0.0
	for k := range nodes {
		s += weights[k] * math.Exp(nodes[k])
		if j := k / 10; !(nodes[k] > part[j] && nodes[k] < part[j+1]) {
			t.Errorf("node %d = %g outside sub-interval %d", k, nodes[k], j)
		}
	}
	if math.Abs(s-want) > 1e-13 {
		t.Errorf("MapToPartition sum %.17g, want %.17g", s, want)
	}
	if a := testing.AllocsPerRun(50, func() {
		_ = r.MapToPartition(part, nodes, weights)
		_, _ = r.IntegrateComposite(math.Exp, part)
	}); a != 0 {
		t.Errorf("composite helpers allocate %v times", a)
	}
	for _, c := range []struct {
		p    []float64
		nb   int
		want error
	}{
		{[]float64{1}, 10, ErrInvalidInput},
		{[]float64{0, 1, 1}, 20, ErrInvalidInput},
		{[]float64{0, 2, 1}, 20, ErrInvalidInput},
		{[]float64{0, math.NaN()}, 10, ErrNonFinite},
		{[]float64{0, 1, 2}, 19, ErrInvalidInput},
	} {
		nodes, weights := make([]float64, c.nb), make([]float64, c.nb)
		if err := r.MapToPartition(c.p, nodes, weights); !errors.Is(err, c.want) {
			t.Errorf("MapToPartition(%v): %v, want %v", c.p, err, c.want)
		}
		if c.nb >= 10*(len(c.p)-1) {
			if _, err := r.IntegrateComposite(math.Exp, c.p); !errors.Is(err, c.want) {
				t.Errorf("IntegrateComposite(%v): %v, want %v", c.p, err, c.want)
			}
		}
	}
}

func ExampleGaussLegendre() {
	r, err := GaussLegendre(3)
	if err != nil {
		fmt.Println(err)
		return
	}
	for k := range r.Nodes {
		fmt.Printf("x = %+.15f  w = %.15f\n", r.Nodes[k], r.Weights[k])
	}
	// Output:
	// x = -0.774596669241483  w = 0.555555555555556
	// x = +0.000000000000000  w = 0.888888888888889
	// x = +0.774596669241483  w = 0.555555555555556
}

func ExampleGaussLegendreRule_Integrate() {
	r, _ := GaussLegendre(10)
	fmt.Printf("%.15f\n", r.Integrate(math.Sin, 0, math.Pi))
	// Backward interval: the sign follows ∫_b^a = −∫_a^b.
	fmt.Printf("%.15f\n", r.Integrate(math.Sin, math.Pi, 0))
	// Output:
	// 2.000000000000000
	// -2.000000000000000
}

func ExampleGaussLegendreRule_MapTo() {
	r, _ := GaussLegendre(2)
	nodes, weights := make([]float64, 2), make([]float64, 2)
	if err := r.MapTo(3, 1, nodes, weights); err != nil { // a backward interval
		fmt.Println(err)
		return
	}
	fmt.Printf("nodes %.6f, weights %.1f\n", nodes, weights)
	// Output:
	// nodes [2.577350 1.422650], weights [-1.0 -1.0]
}

func ExampleGaussLegendreRule_IntegrateComposite() {
	r, _ := GaussLegendre(8)
	v, err := r.IntegrateComposite(math.Exp, []float64{0, 0.5, 1})
	fmt.Printf("%.12f %v\n", v, err)
	// Output:
	// 1.718281828459 <nil>
}

func BenchmarkNewGaussLegendre(b *testing.B) {
	for _, n := range []int{16, 64, 256, 1024, 4096} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := NewGaussLegendre(n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGaussLegendreCached(b *testing.B) {
	if _, err := GaussLegendre(64); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := GaussLegendre(64); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGaussLegendreMapTo(b *testing.B) {
	r, _ := GaussLegendre(64)
	nodes, weights := make([]float64, 64), make([]float64, 64)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := r.MapTo(0.5, -1.25, nodes, weights); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzGaussLegendre: any n gives ErrInvalidInput or a rule that is sorted,
// symmetric, inside (−1, 1), with weights summing to 2, and that maps onto
// any finite interval without allocating surprises.
func FuzzGaussLegendre(f *testing.F) {
	for _, n := range []int{-1, 0, 1, 2, 7, 64, 65, 500, MaxGaussLegendreNodes, MaxGaussLegendreNodes + 1} {
		f.Add(n, 0.0, 1.0)
	}
	f.Fuzz(func(t *testing.T, n int, a, b float64) {
		if n > 600 && n <= MaxGaussLegendreNodes {
			n = 600 + n%7 // keep uncached construction cheap
		}
		r, err := GaussLegendre(n)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("n=%d: untyped error %v", n, err)
			}
			return
		}
		if len(r.Nodes) != n || len(r.Weights) != n {
			t.Fatalf("n=%d: %d nodes, %d weights", n, len(r.Nodes), len(r.Weights))
		}
		sum := 0.0
		for i, x := range r.Nodes {
			if !(x > -1 && x < 1) || (i > 0 && !(x > r.Nodes[i-1])) || x != -r.Nodes[n-1-i] || r.Weights[i] != r.Weights[n-1-i] || !(r.Weights[i] > 0) {
				t.Fatalf("n=%d: node %d = %v, weight %v breaks order, symmetry or positivity", n, i, x, r.Weights[i])
			}
			sum += r.Weights[i]
		}
		if math.Abs(sum-2) > 1e-13 {
			t.Fatalf("n=%d: weights sum to %v", n, sum)
		}
		nodes, weights := make([]float64, n), make([]float64, n)
		if err := r.MapTo(a, b, nodes, weights); err != nil {
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrNonFinite) {
				t.Fatalf("MapTo(%v, %v): untyped error %v", a, b, err)
			}
			return
		}
		ws := 0.0
		for _, w := range weights {
			ws += w
		}
		if d := b - a; !math.IsInf(d, 0) && math.Abs(ws-d) > 1e-12*math.Max(1, math.Abs(d)) {
			t.Fatalf("mapped weights sum to %v, interval length %v", ws, d)
		}
	})
}

// ExampleGaussLegendreRule_MapToPartition places the nodes of a composite
// rule once, evaluates the integrand at all of them together (as a batched
// field would), and sums the weighted samples.
func ExampleGaussLegendreRule_MapToPartition() {
	r, _ := GaussLegendre(4)
	partition := []float64{0, 1, 2}
	nodes, weights := make([]float64, 8), make([]float64, 8)
	if err := r.MapToPartition(partition, nodes, weights); err != nil {
		fmt.Println(err)
		return
	}
	sum := 0.0
	for k, x := range nodes {
		sum += weights[k] * x * x * x // exact: four nodes integrate degree 7
	}
	fmt.Printf("∫_0^2 x³ dx = %.12f\n", sum)
	// Output: ∫_0^2 x³ dx = 4.000000000000
}

// ExampleGaussLegendreRule_IntegrateSamples integrates samples taken at the
// nodes MapTo placed.
func ExampleGaussLegendreRule_IntegrateSamples() {
	r, _ := GaussLegendre(6)
	nodes, weights := make([]float64, 6), make([]float64, 6)
	_ = r.MapTo(0, math.Pi/2, nodes, weights)
	samples := make([]float64, 6)
	for k, x := range nodes {
		samples[k] = math.Cos(x)
	}
	v, err := r.IntegrateSamples(samples, 0, math.Pi/2)
	fmt.Printf("%.10f %v\n", v, err)
	// Output: 1.0000000000 <nil>
}

// TestGaussKronrodExactness: the (2n+1)-point Kronrod rule integrates x^d
// exactly for d ≤ 3n+1 and not for d = 3n+2 (n even, so that the degree is
// even and symmetry does not make it exact); it keeps the Gauss nodes and
// weights bit for bit, interlaces them, and is symmetric with positive weights.
func TestGaussKronrodExactness(t *testing.T) {
	for n := 1; n <= 40; n++ {
		r, err := GaussKronrod(n)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		gl, _ := GaussLegendre(n)
		m := 2*n + 1
		if len(r.Nodes) != m || len(r.Weights) != m || len(r.GaussWeights) != m || len(r.IsGauss) != m {
			t.Fatalf("n=%d: lengths %d %d %d %d", n, len(r.Nodes), len(r.Weights), len(r.GaussWeights), len(r.IsGauss))
		}
		for k := range r.Nodes {
			if r.IsGauss[k] != (k%2 == 1) {
				t.Fatalf("n=%d: node %d Gauss=%v, want interlacing", n, k, r.IsGauss[k])
			}
			if r.IsGauss[k] && (r.Nodes[k] != gl.Nodes[k/2] || r.GaussWeights[k] != gl.Weights[k/2]) {
				t.Fatalf("n=%d: Gauss node %d is %v/%v, want %v/%v", n, k, r.Nodes[k], r.GaussWeights[k], gl.Nodes[k/2], gl.Weights[k/2])
			}
			if !r.IsGauss[k] && r.GaussWeights[k] != 0 {
				t.Fatalf("n=%d: Kronrod node %d has Gauss weight %v", n, k, r.GaussWeights[k])
			}
			if r.Nodes[k] != -r.Nodes[m-1-k] || r.Weights[k] != r.Weights[m-1-k] || !(r.Weights[k] > 0) {
				t.Fatalf("n=%d: node %d not symmetric or weight %v ≤ 0", n, k, r.Weights[k])
			}
		}
		// moment(d) is the rule's error on the Legendre polynomial P_d
		// (∫P_0 = 2, ∫P_d = 0 otherwise), which, unlike x^d, is of order
		// one at every degree the rule misses.
		moment := func(d int) float64 {
			s := 0.0
			for k, x := range r.Nodes {
				p0, p1 := 1.0, x
				if d == 0 {
					p1 = 1
				}
				for j := 1; j < d; j++ {
					p0, p1 = p1, (float64(2*j+1)*x*p1-float64(j)*p0)/float64(j+1)
				}
				s += r.Weights[k] * p1
			}
			if d == 0 {
				return s - 2
			}
			return s
		}
		for d := 0; d <= 3*n+1; d++ {
			if e := math.Abs(moment(d)); e > 1e-14 {
				t.Errorf("n=%d: ∫x^%d error %g", n, d, e)
			}
		}
		// The degree is 3n+1, or 3n+2 when that is odd (symmetry makes
		// every odd degree exact); the next even degree must fail.
		first := 3*n + 2
		for math.Abs(moment(first)) < 1e-6 && first < 3*n+8 {
			first++
		}
		if first > 3*n+4 {
			t.Errorf("n=%d: exact up to degree %d: not the Kronrod degree", n, first-1)
		}
	}
}

// TestGaussKronrod15: the 7-point Gauss / 15-point Kronrod pair against
// the values tabulated by Kronrod (Nodes and Weights for Quadrature
// Formulae, 1965), as printed in Piessens et al., QUADPACK (1983).
func TestGaussKronrod15(t *testing.T) {
	nodes := []float64{0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
		0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
		0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
		0.207784955007898467600689403773245, 0}
	weights := []float64{0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
		0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
		0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
		0.204432940075298892414161999234649, 0.209482141084727828012999174891714}
	r, err := GaussKronrod(7)
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		k := 14 - i // descending positive nodes
		if e := math.Abs(r.Nodes[k] - nodes[i]); e > 1e-15 {
			t.Errorf("node %d: %v, want %v", k, r.Nodes[k], nodes[i])
		}
		if e := math.Abs(r.Weights[k]-weights[i]) / weights[i]; e > 5e-14 {
			t.Errorf("weight %d: %v, want %v (rel %g)", k, r.Weights[k], weights[i], e)
		}
	}
}

func TestGaussKronrodErrors(t *testing.T) {
	for _, n := range []int{0, -1, MaxGaussKronrodNodes + 1} {
		if _, err := GaussKronrod(n); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("n=%d: %v, want ErrInvalidInput", n, err)
		}
		if _, err := NewGaussKronrod(n); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewGaussKronrod(%d): %v, want ErrInvalidInput", n, err)
		}
	}
	if _, err := GaussKronrod(MaxGaussKronrodNodes); err != nil {
		t.Errorf("largest rule: %v", err)
	}
}

// ExampleGaussKronrod integrates Runge's function 1/(1+25x²) on [−1, 1]
// with the 7-point Gauss rule and its 15-point Kronrod extension from the
// same evaluations; |K − G| estimates the Gauss rule's error.
func ExampleGaussKronrod() {
	r, err := GaussKronrod(7)
	if err != nil {
		panic(err)
	}
	var g, k float64
	for i, x := range r.Nodes {
		f := 1 / (1 + 25*x*x)
		g += r.GaussWeights[i] * f
		k += r.Weights[i] * f
	}
	exact := 0.4 * math.Atan(5)
	fmt.Printf("Gauss error %.1e, estimate |K−G| %.1e, Kronrod error %.1e\n", math.Abs(g-exact), math.Abs(k-g), math.Abs(k-exact))
	// Output: Gauss error 6.7e-02, estimate |K−G| 6.3e-02, Kronrod error 3.3e-03
}
