package neuralode

import (
	"errors"
	"fmt"
	"math"
	mrand "math/rand"
	"math/rand/v2"
	"testing"
)

// ---------------------------------------------------------------------------
// Test fields

// sdeGBM returns the Stratonovich geometric Brownian motion dZ = μZ dt + σZ ∘ dW
// (D = 1). Its solution is Z(t) = Z(0)·exp(μt + σW(t)).
func sdeGBM(mu, sigma float64) SDE {
	f, g := gbmFields(mu, sigma)
	return SDE{Drift: f, Diffusion: g}
}

// testParams is the parameter plumbing of the hand-written test fields:
// dimension d and n parameters p, bound by reference.
type testParams struct {
	d, n int
	p    []float64
}

func (c *testParams) Dim() int          { return c.d }
func (c *testParams) Params() []float64 { return c.p }
func (c *testParams) BindParams(p []float64) error {
	if len(p) != c.n {
		return fmt.Errorf("want %d parameters, got %d", c.n, len(p))
	}
	c.p = p
	return nil
}

// sdeCoupledDrift is f_i = p0·tanh(z_i) + p1·sin(t)·z_i + p2·z_{i+1 mod D}
// (within each sample), with hand-written VJPs and bindable parameters.
type sdeCoupledDrift struct{ testParams }

func newCoupledDrift(d int, p []float64) *sdeCoupledDrift {
	return &sdeCoupledDrift{testParams{d: d, n: 3, p: p}}
}

func (c *sdeCoupledDrift) NewEvaluator() Evaluator { return c }
func (c *sdeCoupledDrift) next(i int) int          { b, d := i/c.d, i%c.d; return b*c.d + (d+1)%c.d }
func (c *sdeCoupledDrift) prev(i int) int          { b, d := i/c.d, i%c.d; return b*c.d + (d+c.d-1)%c.d }
func (c *sdeCoupledDrift) Eval(t float64, z, dz []float64) {
	for i := range dz {
		dz[i] = c.p[0]*math.Tanh(z[i]) + c.p[1]*math.Sin(t)*z[i] + c.p[2]*z[c.next(i)]
	}
}
func (c *sdeCoupledDrift) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	if f != nil {
		c.Eval(t, z, f)
	}
	var st float64
	for i := range a {
		th := math.Tanh(z[i])
		if gz != nil {
			gz[i] = a[i]*(c.p[0]*(1-th*th)+c.p[1]*math.Sin(t)) + c.p[2]*a[c.prev(i)]
		}
		if gp != nil {
			gp[0] += a[i] * th
			gp[1] += a[i] * math.Sin(t) * z[i]
			gp[2] += a[i] * z[c.next(i)]
		}
		st += a[i] * c.p[1] * math.Cos(t) * z[i]
	}
	if gt != nil {
		*gt = st
	}
}

// sdeSoftDiffusion is the diagonal g_i = q0·sqrt(1 + z_i²) + q1·cos(t).
type sdeSoftDiffusion struct{ testParams }

func newSoftDiffusion(d int, q []float64) *sdeSoftDiffusion {
	return &sdeSoftDiffusion{testParams{d: d, n: 2, p: q}}
}

func (s *sdeSoftDiffusion) NewEvaluator() Evaluator { return s }
func (s *sdeSoftDiffusion) Eval(t float64, z, dz []float64) {
	for i := range dz {
		dz[i] = s.p[0]*math.Sqrt(1+z[i]*z[i]) + s.p[1]*math.Cos(t)
	}
}
func (s *sdeSoftDiffusion) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	if f != nil {
		s.Eval(t, z, f)
	}
	var st float64
	for i := range a {
		r := math.Sqrt(1 + z[i]*z[i])
		if gz != nil {
			gz[i] = a[i] * s.p[0] * z[i] / r
		}
		if gp != nil {
			gp[0] += a[i] * r
			gp[1] += a[i] * math.Cos(t)
		}
		st -= a[i] * s.p[1] * math.Sin(t)
	}
	if gt != nil {
		*gt = st
	}
}

// sdeTanhField is a cheap nonlinear field x ↦ tanh(W x + b) + c·x with a fixed
// random D×D matrix, used by the benchmarks and the allocation tests.
func sdeTanhField(d int, scale float64, seed uint64) *FuncField {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float64, d*d)
	for i := range w {
		w[i] = r.NormFloat64() / math.Sqrt(float64(d))
	}
	bias := make([]float64, d)
	for i := range bias {
		bias[i] = 0.1 * r.NormFloat64()
	}
	eval := func(z, dz []float64) {
		for s := 0; s+d <= len(z); s += d {
			zs, out := z[s:s+d], dz[s:s+d]
			for i := 0; i < d; i++ {
				row := w[i*d : (i+1)*d]
				acc := bias[i]
				for j, v := range row {
					acc += v * zs[j]
				}
				out[i] = scale*math.Tanh(acc) - 0.1*zs[i]
			}
		}
	}
	return &FuncField{D: d, Autonomous: true,
		F: func(t float64, z, _, dz []float64) { eval(z, dz) },
		VJPFunc: func(t float64, z, _, a, f, gz, gp []float64, gt *float64) {
			for s := 0; s+d <= len(z); s += d {
				zs, as := z[s:s+d], a[s:s+d]
				var gzs []float64
				if gz != nil {
					gzs = gz[s : s+d]
					for j := range gzs {
						gzs[j] = -0.1 * as[j]
					}
				}
				for i := 0; i < d; i++ {
					row := w[i*d : (i+1)*d]
					acc := bias[i]
					for j, v := range row {
						acc += v * zs[j]
					}
					th := math.Tanh(acc)
					if f != nil {
						f[s+i] = scale*th - 0.1*zs[i]
					}
					if gzs != nil {
						c := as[i] * scale * (1 - th*th)
						for j, v := range row {
							gzs[j] += c * v
						}
					}
				}
			}
			if gt != nil {
				*gt = 0
			}
		}}
}

// ---------------------------------------------------------------------------
// Helpers

func sdeMeanVar(x []float64) (m, v float64) {
	for _, v := range x {
		m += v
	}
	m /= float64(len(x))
	for _, xv := range x {
		v += (xv - m) * (xv - m)
	}
	return m, v / float64(len(x)-1)
}

// sdeRK4 integrates dz/dt = F(t, z) with the classical Runge–Kutta method over
// each piece [grid[i], grid[i+1]] in sub equal steps, selecting the piece on
// evaluators that implement PieceSelector when selectPieces is set.
func sdeRK4(f VectorField, z []float64, grid []float64, sub int, selectPieces bool) {
	e := f.NewEvaluator()
	n := len(z)
	k1, k2, k3, k4, tmp := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for p := 0; p+1 < len(grid); p++ {
		if ps, ok := e.(PieceSelector); ok && selectPieces {
			ps.SelectPiece(grid[p], grid[p+1])
		}
		h := (grid[p+1] - grid[p]) / float64(sub)
		for s := 0; s < sub; s++ {
			t := grid[p] + float64(s)*h
			if s == sub-1 {
				h = grid[p+1] - t
			}
			e.Eval(t, z, k1)
			for i := range tmp {
				tmp[i] = z[i] + 0.5*h*k1[i]
			}
			e.Eval(t+0.5*h, tmp, k2)
			for i := range tmp {
				tmp[i] = z[i] + 0.5*h*k2[i]
			}
			e.Eval(t+0.5*h, tmp, k3)
			for i := range tmp {
				tmp[i] = z[i] + h*k3[i]
			}
			e.Eval(t+h, tmp, k4)
			for i := range z {
				z[i] += h / 6 * (k1[i] + 2*k2[i] + 2*k3[i] + k4[i])
			}
		}
	}
}

func sdeLinspace(a, b float64, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = a + float64(i)*(b-a)/float64(n-1)
	}
	x[n-1] = b
	return x
}

// ---------------------------------------------------------------------------
// Brownian tree

func TestBrownianTreeReproducibleAndConsistent(t *testing.T) {
	const size = 5
	a, _ := NewBrownianTree(0.5, 2.5, size, 8, 42)
	b, _ := NewBrownianTree(0.5, 2.5, size, 8, 42)
	times := []float64{2.5, 0.5, 1.3, 0.51, 1.75, 0.5 + 2.0/8/64*3, 2.1234567, 1.0, 0.9999}
	// Same seed, queries in opposite orders: identical bits.
	va := make([][]float64, len(times))
	for i, tm := range times {
		va[i] = make([]float64, size)
		if err := a.Value(tm, va[i]); err != nil {
			t.Fatal(err)
		}
	}
	v := make([]float64, size)
	for i := len(times) - 1; i >= 0; i-- {
		if err := b.Value(times[i], v); err != nil {
			t.Fatal(err)
		}
		for j := range v {
			if v[j] != va[i][j] {
				t.Fatalf("W(%g)[%d]: %v after other queries, %v before", times[i], j, v[j], va[i][j])
			}
		}
	}
	// W(t0) = 0.
	_ = a.Value(0.5, v)
	for _, x := range v {
		if x != 0 {
			t.Fatalf("W(t0) = %v, want 0", v)
		}
	}
	// Increments telescope: step h and h/2 see the same path (dyadic sub-steps).
	whole, half1, half2 := make([]float64, size), make([]float64, size), make([]float64, size)
	for _, st := range []struct{ s, m, e float64 }{{0.5, 0.625, 0.75}, {0.75, 0.78125, 0.8125}, {1.0, 1.4, 2.5}, {0.6, 0.61, 0.62}} {
		_ = a.Increment(st.s, st.e, whole)
		_ = a.Increment(st.s, st.m, half1)
		_ = a.Increment(st.m, st.e, half2)
		for j := range whole {
			if d := whole[j] - half1[j] - half2[j]; math.Abs(d) > 1e-13 {
				t.Errorf("[%g,%g] split at %g: whole %v ≠ %v + %v", st.s, st.e, st.m, whole[j], half1[j], half2[j])
			}
		}
		// Antisymmetry.
		_ = a.Increment(st.e, st.s, half1)
		for j := range whole {
			if whole[j] != -half1[j] {
				t.Errorf("Increment(%g,%g) ≠ −Increment(%g,%g)", st.s, st.e, st.e, st.s)
			}
		}
	}
	// Reseed changes the path; reseeding back restores it.
	a.Reseed(43)
	_ = a.Value(1.3, v)
	if v[0] == va[2][0] {
		t.Error("Reseed(43) gave the same value as seed 42")
	}
	a.Reseed(42)
	_ = a.Value(1.3, v)
	if v[0] != va[2][0] {
		t.Error("Reseed(42) did not restore the path")
	}
}

// TestBrownianTreeDistribution checks, over many channels, that increments
// over grid cells, dyadic sub-cells, non-dyadic times and leaf bridge points
// have mean 0 and variance equal to their length, and that disjoint
// increments are uncorrelated (4-sigma Monte-Carlo bounds).
func TestBrownianTreeDistribution(t *testing.T) {
	const m = 40000
	bm, err := NewBrownianTree(0, 3, m, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	eps := 3 * 0x1p-30 / 4 // well inside one leaf
	ivs := [][2]float64{
		{0, 1}, {1, 3}, {0.25, 0.5}, {0.5, 0.625}, {0.3, 0.7}, {0.7, 2.2},
		{1.1, 1.1 + 1e-3}, {0.1, 0.1 + eps}, {2.9, 3}, {0.1 + eps, 0.2},
	}
	incs := make([][]float64, len(ivs))
	for k, iv := range ivs {
		incs[k] = make([]float64, m)
		if err := bm.Increment(iv[0], iv[1], incs[k]); err != nil {
			t.Fatal(err)
		}
		h := iv[1] - iv[0]
		var s1, s2 float64
		for _, x := range incs[k] {
			s1 += x
			s2 += x * x
		}
		mean := s1 / m
		vr := s2 / m // known mean 0
		if math.Abs(mean) > 4*math.Sqrt(h/m) {
			t.Errorf("[%g, %g]: mean %g, want 0 ± %g", iv[0], iv[1], mean, 4*math.Sqrt(h/m))
		}
		if math.Abs(vr-h) > 4*h*math.Sqrt(2.0/m) {
			t.Errorf("[%g, %g]: variance %g, want %g ± %g", iv[0], iv[1], vr, h, 4*h*math.Sqrt(2.0/m))
		}
	}
	// Covariances equal the overlap of the intervals (0 when disjoint).
	for _, p := range [][2]int{{0, 1}, {2, 3}, {4, 5}, {7, 9}, {3, 4}, {4, 2}, {0, 4}, {7, 8}} {
		var c float64
		for i := 0; i < m; i++ {
			c += incs[p[0]][i] * incs[p[1]][i]
		}
		a, b := ivs[p[0]], ivs[p[1]]
		overlap := math.Max(0, math.Min(a[1], b[1])-math.Max(a[0], b[0]))
		sd := math.Sqrt(((a[1]-a[0])*(b[1]-b[0]) + overlap*overlap) / m)
		if math.Abs(c/m-overlap) > 4*sd {
			t.Errorf("cov of %v and %v = %g, want %g ± %g", a, b, c/m, overlap, 4*sd)
		}
	}
}

func TestBrownianTreeErrors(t *testing.T) {
	for _, tc := range []struct {
		name        string
		t0, t1      float64
		size, cells int
		want        error
	}{
		{"reversed", 1, 0, 1, 1, ErrInvalidInput},
		{"empty", 1, 1, 1, 1, ErrInvalidInput},
		{"nan", math.NaN(), 1, 1, 1, ErrNonFinite},
		{"inf", 0, math.Inf(1), 1, 1, ErrNonFinite},
		{"size", 0, 1, 0, 1, ErrInvalidInput},
		{"cells", 0, 1, 1, 0, ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewBrownianTree(tc.t0, tc.t1, tc.size, tc.cells, 1); !errors.Is(err, tc.want) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			}
		})
	}
	bm, _ := NewBrownianTree(0, 1, 2, 1, 1)
	dst := []float64{7, 8}
	for _, tc := range []struct {
		name string
		s, e float64
		dst  []float64
		want error
	}{
		{"before", -0.1, 0.5, dst, ErrInvalidInput},
		{"after", 0, 1.5, dst, ErrInvalidInput},
		{"nan", 0, math.NaN(), dst, ErrNonFinite},
		{"short dst", 0, 1, dst[:1], ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := bm.Increment(tc.s, tc.e, tc.dst)
			var ie *InputError
			if !errors.Is(err, tc.want) || !errors.As(err, &ie) {
				t.Errorf("%s: err = %v, want %v as *InputError", tc.name, err, tc.want)
			}
		})
	}
	if dst[0] != 7 || dst[1] != 8 {
		t.Error("dst modified on error")
	}
}

// ---------------------------------------------------------------------------
// Strong and weak order

// sdeGBMErrors solves GBM with scheme for each step size on one set of paths
// and returns the mean absolute error at T against the exact solution.
func sdeGBMErrors(t *testing.T, sde SDE, scheme SDEScheme, bm *BrownianTree, z0 float64, mu, sigma, T float64, hs []float64) []float64 {
	t.Helper()
	m := bm.Size()
	x0 := make([]float64, m)
	for i := range x0 {
		x0[i] = z0
	}
	wT := make([]float64, m)
	if err := bm.Increment(0, T, wT); err != nil {
		t.Fatal(err)
	}
	solver, err := NewSDESolver(sde, scheme)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 2*m)
	errs := make([]float64, len(hs))
	for k, h := range hs {
		if err := solver.Solve(x0, []float64{0, T}, h, bm, out); err != nil {
			t.Fatal(err)
		}
		var s float64
		for i := 0; i < m; i++ {
			exact := z0 * math.Exp(mu*T+sigma*wT[i])
			s += math.Abs(out[m+i] - exact)
		}
		errs[k] = s / float64(m)
	}
	return errs
}

// TestSDEStrongOrderGBM measures the strong order of every scheme on
// Stratonovich GBM (commutative noise) as the slope of E|Z_h(T) − Z(T)| over
// h = 2^-3 … 2^-9, on 1000 fixed paths. Over 20 seeds the measured slopes
// were EM 0.494 ± 0.011, Milstein 0.987 ± 0.003, Heun 0.972 ± 0.007 and
// reversible Heun 0.967 ± 0.008 (mean ± sd), so the tolerance ±0.15 is more
// than ten standard deviations: the test cannot flake, and a scheme of the
// wrong order (a 0.5 instead of 1) cannot pass.
func TestSDEStrongOrderGBM(t *testing.T) {
	const (
		mu, sigma, T, z0 = 0.3, 0.6, 1.0, 1.0
		paths            = 1000
	)
	hs := []float64{0x1p-3, 0x1p-4, 0x1p-5, 0x1p-6, 0x1p-7, 0x1p-8, 0x1p-9}
	bm, err := NewBrownianTree(0, T, paths, 1<<9, 2024)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scheme SDEScheme
		ito    bool
		order  float64
	}{
		{EulerMaruyama, false, 0.5},
		{EulerMaruyama, true, 0.5},
		{Milstein, false, 1},
		{Milstein, true, 1},
		{MilsteinStratonovich, false, 1},
		{EulerHeun, false, 1},
		{Heun, false, 1},
		{ReversibleHeun, false, 1},
		{ReversibleHeun, true, 1},
	} {
		t.Run(fmt.Sprintf("%v/ito=%v", tc.scheme, tc.ito), func(t *testing.T) {
			sde := sdeGBM(mu, sigma)
			if tc.ito {
				sde = sdeGBM(mu+sigma*sigma/2, sigma) // the same process, Itô drift
				sde.Ito = true
			}
			errs := sdeGBMErrors(t, sde, tc.scheme, bm, z0, mu, sigma, T, hs)
			p := slope(hs, errs)
			t.Logf("%-20v ito=%-5v order %.3f  errors %.2e … %.2e", tc.scheme, tc.ito, p, errs[0], errs[len(errs)-1])
			if math.Abs(p-tc.order) > 0.15 {
				t.Errorf("%v (ito=%v): strong order %.3f, want %.2g ± 0.15 (errors %v)", tc.scheme, tc.ito, p, tc.order, errs)
			}
			if errs[len(errs)-1] > errs[0] {
				t.Errorf("%v: error grew from %g to %g", tc.scheme, errs[0], errs[len(errs)-1])
			}
		})
	}
}

// TestSDEStrongOrderPureTree repeats Euler–Maruyama and Milstein on a path
// with a single base cell, so every query walks the virtual tree; the step
// sizes are its dyadic levels, and the orders must survive.
func TestSDEStrongOrderPureTree(t *testing.T) {
	const mu, sigma, T = 0.3, 0.6, 1.0
	hs := []float64{0x1p-3, 0x1p-4, 0x1p-5, 0x1p-6, 0x1p-7, 0x1p-8}
	bm, _ := NewBrownianTree(0, T, 500, 1, 99)
	for _, tc := range []struct {
		scheme SDEScheme
		order  float64
	}{{EulerMaruyama, 0.5}, {Milstein, 1}} {
		t.Run(fmt.Sprint(tc.scheme), func(t *testing.T) {
			errs := sdeGBMErrors(t, sdeGBM(mu, sigma), tc.scheme, bm, 1, mu, sigma, T, hs)
			if p := slope(hs, errs); math.Abs(p-tc.order) > 0.2 {
				t.Errorf("%v on a pure tree: order %.3f, want %.2g ± 0.2 (errors %v)", tc.scheme, p, tc.order, errs)
			}
		})
	}
}

// TestSDECalculusConversion checks the sign and size of the drift
// conversion: the same process written in Itô form (f + ½σ²z) with Ito set
// gives the same numbers, up to rounding, as the Stratonovich form; and the
// Itô and Stratonovich Milstein schemes agree.
func TestSDECalculusConversion(t *testing.T) {
	const mu, sigma, m = 0.3, 0.6, 64
	bm, _ := NewBrownianTree(0, 1, m, 16, 5)
	z0 := make([]float64, m)
	for i := range z0 {
		z0[i] = 1 + 0.01*float64(i)
	}
	ts := []float64{0, 0.5, 1}
	solve := func(sde SDE, s SDEScheme) []float64 {
		out := make([]float64, len(ts)*m)
		if err := SolveSDE(sde, s, z0, ts, 1.0/32, bm, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ito := sdeGBM(mu+sigma*sigma/2, sigma)
	ito.Ito = true
	for _, s := range []SDEScheme{EulerMaruyama, Milstein, MilsteinStratonovich, EulerHeun, Heun, ReversibleHeun} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			a, b := solve(sdeGBM(mu, sigma), s), solve(ito, s)
			for i := range a {
				if math.Abs(a[i]-b[i]) > 1e-12*math.Abs(a[i]) {
					t.Fatalf("%v: Stratonovich form %v, Itô form %v at %d", s, a[i], b[i], i)
				}
			}
		})
	}
	a, b := solve(sdeGBM(mu, sigma), Milstein), solve(sdeGBM(mu, sigma), MilsteinStratonovich)
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-12*math.Abs(a[i]) {
			t.Fatalf("Itô Milstein %v ≠ Stratonovich Milstein %v", a[i], b[i])
		}
	}
}

// TestEulerMaruyamaWeakOrderOU measures the weak order of Euler–Maruyama on
// dX = −θX dt + σ dW (X0 = 2, θ = 2, σ = 1, T = 1): the errors of the sample
// mean and variance against the closed forms e^{−θT}X0 and
// σ²(1−e^{−2θT})/(2θ) must fall with slope 1 ± 0.2 over h = 2^-2 … 2^-5, and
// each sample moment must match the scheme's own exact moments
// X0(1−θh)^n and σ²h(1−(1−θh)^{2n})/(1−(1−θh)²) within 4 Monte-Carlo sigmas.
func TestEulerMaruyamaWeakOrderOU(t *testing.T) {
	const (
		theta, sigma, x0, T = 2.0, 1.0, 2.0, 1.0
		batch, batches      = 1 << 14, 8
	)
	hs := []float64{0x1p-2, 0x1p-3, 0x1p-4, 0x1p-5}
	drift := &FuncField{D: 1, Autonomous: true, F: func(t float64, z, _, dz []float64) {
		for i := range dz {
			dz[i] = -theta * z[i]
		}
	}}
	diff := &FuncField{D: 1, Autonomous: true, F: func(t float64, z, _, dz []float64) {
		for i := range dz {
			dz[i] = sigma
		}
	}}
	sde := SDE{Drift: drift, Diffusion: diff, Ito: true} // additive noise: no conversion needed
	solver, _ := NewSDESolver(sde, EulerMaruyama)
	bm, _ := NewBrownianTree(0, T, batch, 32, 0)
	z0 := make([]float64, batch)
	for i := range z0 {
		z0[i] = x0
	}
	out := make([]float64, 2*batch)
	s1 := make([]float64, len(hs))
	s2 := make([]float64, len(hs))
	for b := 0; b < batches; b++ {
		bm.Reseed(uint64(1000 + b))
		for k, h := range hs {
			if err := solver.Solve(z0, []float64{0, T}, h, bm, out); err != nil {
				t.Fatal(err)
			}
			for _, x := range out[batch:] {
				s1[k] += x
				s2[k] += x * x
			}
		}
	}
	m := float64(batch * batches)
	exactMean := x0 * math.Exp(-theta*T)
	exactVar := sigma * sigma * (1 - math.Exp(-2*theta*T)) / (2 * theta)
	errMean := make([]float64, len(hs))
	errVar := make([]float64, len(hs))
	for k, h := range hs {
		mean := s1[k] / m
		vr := (s2[k] - m*mean*mean) / (m - 1)
		n := T / h
		r := 1 - theta*h
		emMean := x0 * math.Pow(r, n)
		emVar := sigma * sigma * h * (1 - math.Pow(r, 2*n)) / (1 - r*r)
		if math.Abs(mean-emMean) > 4*math.Sqrt(emVar/m) {
			t.Errorf("h=%g: sample mean %g, scheme's exact mean %g", h, mean, emMean)
		}
		if math.Abs(vr-emVar) > 4*emVar*math.Sqrt(2/m) {
			t.Errorf("h=%g: sample variance %g, scheme's exact variance %g", h, vr, emVar)
		}
		errMean[k] = math.Abs(mean - exactMean)
		errVar[k] = math.Abs(vr - exactVar)
	}
	pm, pv := slope(hs, errMean), slope(hs, errVar)
	t.Logf("weak order: mean %.3f (errors %v), variance %.3f (errors %v)", pm, errMean, pv, errVar)
	if math.Abs(pm-1) > 0.2 || math.Abs(pv-1) > 0.2 {
		t.Errorf("weak orders %.3f (mean), %.3f (variance), want 1 ± 0.2", pm, pv)
	}
}

// TestSolveSDEOutputsAndGrid checks output placement and that output times
// off the step grid are hit exactly: with zero drift and g = 1, Z(t) − Z(0)
// must equal W(t) − W(0) at every output time for every scheme.
func TestSolveSDEOutputsAndGrid(t *testing.T) {
	const m = 3
	one := &FuncField{D: 1, Autonomous: true, F: func(t float64, z, _, dz []float64) {
		for i := range dz {
			dz[i] = 1
		}
	}, VJPFunc: func(t float64, z, _, a, f, gz, gp []float64, gt *float64) {
		for i := range a {
			if f != nil {
				f[i] = 1
			}
			if gz != nil {
				gz[i] = 0
			}
		}
	}}
	zero := &FuncField{D: 1, Autonomous: true, F: func(t float64, z, _, dz []float64) {
		for i := range dz {
			dz[i] = 0
		}
	}}
	bm, _ := NewBrownianTree(0, 2, m, 4, 3)
	z0 := []float64{1, 2, 3}
	ts := []float64{0.1, 0.35, 0.3501, 1.7, 2}
	w := make([]float64, m)
	for _, s := range []SDEScheme{EulerMaruyama, Milstein, MilsteinStratonovich, EulerHeun, Heun, ReversibleHeun} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			out := make([]float64, len(ts)*m)
			if err := SolveSDE(SDE{Drift: zero, Diffusion: one}, s, z0, ts, 0.125, bm, out); err != nil {
				t.Fatal(err)
			}
			for i, tm := range ts {
				_ = bm.Increment(ts[0], tm, w)
				for j := 0; j < m; j++ {
					if got := out[i*m+j] - z0[j]; math.Abs(got-w[j]) > 1e-12 {
						t.Errorf("%v: Z(%g)−Z(%g) = %v, W increment %v", s, tm, ts[0], got, w[j])
					}
				}
			}
		})
	}
}

func TestSolveSDEErrors(t *testing.T) {
	sde := sdeGBM(0.1, 0.2)
	bm, _ := NewBrownianTree(0, 1, 2, 4, 1)
	z0 := []float64{1, 1}
	ts := []float64{0, 1}
	good := func() (SDE, []float64, []float64, float64, BrownianMotion, []float64) {
		return sde, z0, ts, 0.1, bm, make([]float64, 4)
	}
	for _, tc := range []struct {
		name   string
		modify func(*SDE, *[]float64, *[]float64, *float64, *BrownianMotion, *[]float64)
		want   error
	}{
		{"zero dt", func(_ *SDE, _, _ *[]float64, dt *float64, _ *BrownianMotion, _ *[]float64) { *dt = 0 }, ErrInvalidInput},
		{"negative dt", func(_ *SDE, _, _ *[]float64, dt *float64, _ *BrownianMotion, _ *[]float64) { *dt = -0.1 }, ErrInvalidInput},
		{"nan dt", func(_ *SDE, _, _ *[]float64, dt *float64, _ *BrownianMotion, _ *[]float64) { *dt = math.NaN() }, ErrNonFinite},
		{"nan z0", func(_ *SDE, z *[]float64, _ *[]float64, _ *float64, _ *BrownianMotion, _ *[]float64) {
			*z = []float64{1, math.NaN()}
		}, ErrNonFinite},
		{"nan ts", func(_ *SDE, _ *[]float64, ts *[]float64, _ *float64, _ *BrownianMotion, _ *[]float64) {
			*ts = []float64{0, math.NaN()}
		}, ErrNonFinite},
		{"ts not increasing", func(_ *SDE, _ *[]float64, ts *[]float64, _ *float64, _ *BrownianMotion, _ *[]float64) {
			*ts = []float64{0.5, 0.5}
		}, ErrInvalidInput},
		{"ts outside bm", func(_ *SDE, _ *[]float64, ts *[]float64, _ *float64, _ *BrownianMotion, _ *[]float64) {
			*ts = []float64{0, 1.5}
		}, ErrInvalidInput},
		{"bm size", func(_ *SDE, z *[]float64, _ *[]float64, _ *float64, _ *BrownianMotion, o *[]float64) {
			*z = []float64{1, 1, 1}
			*o = make([]float64, 6)
		}, ErrInvalidInput},
		{"nil bm", func(_ *SDE, _, _ *[]float64, _ *float64, b *BrownianMotion, _ *[]float64) { *b = nil }, ErrInvalidInput},
		{"out length", func(_ *SDE, _, _ *[]float64, _ *float64, _ *BrownianMotion, o *[]float64) { *o = make([]float64, 3) }, ErrInvalidInput},
		{"empty z0", func(_ *SDE, z *[]float64, _ *[]float64, _ *float64, _ *BrownianMotion, _ *[]float64) { *z = nil }, ErrInvalidInput},
		{"nil drift", func(s *SDE, _, _ *[]float64, _ *float64, _ *BrownianMotion, _ *[]float64) { s.Drift = nil }, ErrInvalidInput},
		{"dim mismatch", func(s *SDE, _, _ *[]float64, _ *float64, _ *BrownianMotion, _ *[]float64) {
			s.Diffusion = &FuncField{D: 2}
		}, ErrInvalidInput},
		{"tiny dt", func(_ *SDE, _, _ *[]float64, dt *float64, b *BrownianMotion, _ *[]float64) {
			*dt = 1e-300
			bb, _ := NewBrownianTree(1e6, 1e6+1, 2, 1, 1)
			*b = bb
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, z, tt, dt, b, out := good()
			tc.modify(&s, &z, &tt, &dt, &b, &out)
			if tc.name == "tiny dt" {
				tt = []float64{1e6, 1e6 + 1}
			}
			for i := range out {
				out[i] = -7
			}
			err := SolveSDE(s, EulerMaruyama, z, tt, dt, b, out)
			want := tc.want
			if tc.name == "tiny dt" {
				want = ErrStepSizeUnderflow
			}
			if !errors.Is(err, want) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, want)
			}
			for _, v := range out {
				if v != -7 {
					t.Errorf("%s: out modified on error", tc.name)
					break
				}
			}
		})
	}
	if _, err := NewSDESolver(sde, SDEScheme(99)); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("unknown scheme: err = %v", err)
	}
	// A blow-up is reported as a SolveError wrapping ErrNonFinite, out untouched.
	blow := sdeGBM(1e300, 0)
	out := []float64{-7, -7, -7, -7}
	err := SolveSDE(blow, EulerMaruyama, z0, ts, 0.5, bm, out)
	var se *SolveError
	if !errors.Is(err, ErrNonFinite) || !errors.As(err, &se) || out[2] != -7 {
		t.Errorf("blow-up: err = %v, out = %v", err, out)
	}
}

// ---------------------------------------------------------------------------
// Wong–Zakai field

func sdeNewTestWZ(t *testing.T, noise Noise, d int) *WongZakai {
	t.Helper()
	f := newCoupledDrift(d, []float64{0.7, -0.4, 0.3})
	g := newSoftDiffusion(d, []float64{0.5, 0.2})
	w, err := NewWongZakai(f, g, noise)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestWongZakaiVJPFiniteDifferences checks every output of the Wong–Zakai
// VJP against central finite differences of aᵀF(t, z; θ), for KL noise and
// for piecewise-linear noise (with and without a selected piece).
func TestWongZakaiVJPFiniteDifferences(t *testing.T) {
	const b, d = 3, 2
	rng := rand.New(rand.NewPCG(1, 2))
	kl, _ := NewKLNoise(0, 2, 6, b*d)
	kl.Resample(rng)
	pl, _ := NewPiecewiseLinearNoise([]float64{0, 0.4, 1.1, 2}, b*d)
	pl.Resample(rng)
	for _, tc := range []struct {
		name  string
		noise Noise
		t     float64
		piece [2]float64
	}{
		{"KL", kl, 0.83, [2]float64{math.NaN(), math.NaN()}},
		{"piecewise", pl, 0.7, [2]float64{math.NaN(), math.NaN()}},
		{"piecewise selected", pl, 0.75, [2]float64{0.4, 1.1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := sdeNewTestWZ(t, tc.noise, d)
			e := w.NewEvaluator()
			e.(PieceSelector).SelectPiece(tc.piece[0], tc.piece[1])
			n := b * d
			z := make([]float64, n)
			a := make([]float64, n)
			for i := range z {
				z[i] = rng.NormFloat64()
				a[i] = rng.NormFloat64()
			}
			f, gz := make([]float64, n), make([]float64, n)
			gp := make([]float64, len(w.Params()))
			for i := range gp {
				gp[i] = 1 // VJP must add to it
			}
			var gt float64
			e.VJP(tc.t, z, a, f, gz, gp, &gt)
			loss := func(tt float64, zz []float64) float64 {
				out := make([]float64, n)
				e.Eval(tt, zz, out)
				var s float64
				for i := range out {
					s += a[i] * out[i]
				}
				return s
			}
			close := func(what string, got, want float64) {
				t.Helper()
				if math.Abs(got-want) > 1e-7*(1+math.Abs(want)) {
					t.Errorf("%s: %s = %.12g, finite differences %.12g", tc.name, what, got, want)
				}
			}
			// f output equals Eval, which equals f + g ⊙ Ẇ computed by hand.
			ev := make([]float64, n)
			e.Eval(tc.t, z, ev)
			fd, gd, rate := make([]float64, n), make([]float64, n), make([]float64, n)
			newCoupledDrift(d, w.Params()[:3]).Eval(tc.t, z, fd)
			newSoftDiffusion(d, w.Params()[3:]).Eval(tc.t, z, gd)
			tc.noise.Rate(tc.t, rate)
			for i := range ev {
				close(fmt.Sprintf("f[%d]", i), f[i], ev[i])
				close(fmt.Sprintf("Eval[%d]", i), ev[i], fd[i]+gd[i]*rate[i])
			}
			const h = 1e-6
			for j := 0; j < n; j++ {
				zp := append([]float64(nil), z...)
				zm := append([]float64(nil), z...)
				zp[j] += h
				zm[j] -= h
				close(fmt.Sprintf("gz[%d]", j), gz[j], (loss(tc.t, zp)-loss(tc.t, zm))/(2*h))
			}
			p := w.Params()
			for j := range p {
				old := p[j]
				p[j] = old + h
				lp := loss(tc.t, z)
				p[j] = old - h
				lm := loss(tc.t, z)
				p[j] = old
				close(fmt.Sprintf("gp[%d]", j), gp[j]-1, (lp-lm)/(2*h))
			}
			close("gt", gt, (loss(tc.t+h, z)-loss(tc.t-h, z))/(2*h))

			// Optional outputs: only gp requested gives the same gp.
			gp2 := make([]float64, len(p))
			e.VJP(tc.t, z, a, nil, nil, gp2, nil)
			for j := range gp2 {
				close(fmt.Sprintf("gp-only[%d]", j), gp2[j], gp[j]-1)
			}
		})
	}
}

func TestWongZakaiParamsAndErrors(t *testing.T) {
	kl, _ := NewKLNoise(0, 1, 3, 4)
	f := newCoupledDrift(2, []float64{1, 2, 3})
	g := newSoftDiffusion(2, []float64{4, 5})
	w, err := NewWongZakai(f, g, kl)
	if err != nil {
		t.Fatal(err)
	}
	p := w.Params()
	want := []float64{1, 2, 3, 4, 5}
	for i := range want {
		if p[i] != want[i] {
			t.Fatalf("joint params %v, want %v", p, want)
		}
	}
	p[1], p[4] = 20, 50 // live view: the fields see the update
	if f.p[1] != 20 || g.p[1] != 50 || w.NumDriftParams() != 3 {
		t.Errorf("fields not bound to the joint vector: f %v, g %v", f.p, g.p)
	}
	if w.SDE().Drift != VectorField(f) || !w.TimeDependent() || w.Breakpoints() != nil {
		t.Error("accessors wrong")
	}
	// A field with parameters but no BindParams (FuncField has one, so wrap it).
	withP := struct{ VectorField }{&FuncField{D: 2, P: []float64{1}, F: func(float64, []float64, []float64, []float64) {}}}
	noP := &FuncField{D: 2, F: func(float64, []float64, []float64, []float64) {}}
	for _, tc := range []struct {
		name  string
		f, g  VectorField
		noise Noise
	}{
		{"unbindable params", withP, g, kl},
		{"nil drift", nil, g, kl},
		{"nil noise", f, g, nil},
		{"dim mismatch", &FuncField{D: 3}, g, kl},
		{"noise size", noP, noP, sdeMustKL(t, 0, 1, 3, 5)},
		{"bind fails", f, newSoftDiffusion(2, []float64{1, 2, 3}), kl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewWongZakai(tc.f, tc.g, tc.noise); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("%s: err = %v, want ErrInvalidInput", tc.name, err)
			}
		})
	}
	if _, err := NewWongZakai(noP, noP, kl); err != nil {
		t.Errorf("parameter-free fields: %v", err)
	}
	// Noise constructors.
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"KL N=0", sdeErrOf(NewKLNoise(0, 1, 0, 1)), ErrInvalidInput},
		{"KL size 0", sdeErrOf(NewKLNoise(0, 1, 1, 0)), ErrInvalidInput},
		{"KL reversed", sdeErrOf(NewKLNoise(1, 0, 1, 1)), ErrInvalidInput},
		{"KL NaN", sdeErrOf(NewKLNoise(math.NaN(), 1, 1, 1)), ErrNonFinite},
		{"PL short grid", sdeErrOf(NewPiecewiseLinearNoise([]float64{0}, 1)), ErrInvalidInput},
		{"PL unsorted", sdeErrOf(NewPiecewiseLinearNoise([]float64{0, 1, 1}, 1)), ErrInvalidInput},
		{"PL NaN", sdeErrOf(NewPiecewiseLinearNoise([]float64{0, math.NaN()}, 1)), ErrNonFinite},
		{"PL size", sdeErrOf(NewPiecewiseLinearNoise([]float64{0, 1}, 0)), ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) {
				t.Errorf("%s: err = %v, want %v", tc.name, tc.err, tc.want)
			}
		})
	}
	pl, _ := NewPiecewiseLinearNoise([]float64{0, 0.5, 1}, 2)
	short, _ := NewBrownianTree(0, 0.75, 2, 1, 1)
	wrong, _ := NewBrownianTree(0, 1, 3, 1, 1)
	if err := pl.SetFromPath(short); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("SetFromPath short span: %v", err)
	}
	if err := pl.SetFromPath(wrong); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("SetFromPath size: %v", err)
	}
}

func sdeMustKL(t *testing.T, t0, t1 float64, n, size int) *KLNoise {
	k, err := NewKLNoise(t0, t1, n, size)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sdeErrOf[T any](_ T, err error) error { return err }

// TestKLNoiseSeries checks the KL series: the rate is the derivative of
// Value (finite differences), and Var W_N(t1) = c·Σ 2/((n−½)π)² (Monte Carlo),
// which tends to c.
func TestKLNoiseSeries(t *testing.T) {
	const m = 20000
	k, _ := NewKLNoise(1, 4, 5, m)
	k.Resample(rand.New(rand.NewPCG(3, 4)))
	v1, v2, r, dr := make([]float64, m), make([]float64, m), make([]float64, m), make([]float64, m)
	const h = 1e-5
	// checkDeriv compares deriv(2.3) with central differences of f on the
	// first 10 channels.
	checkDeriv := func(f, deriv func(t float64, dst []float64), d []float64, tol float64, format string) {
		t.Helper()
		f(2.3+h, v1)
		f(2.3-h, v2)
		deriv(2.3, d)
		for i := 0; i < 10; i++ {
			if fd := (v1[i] - v2[i]) / (2 * h); math.Abs(fd-d[i]) > tol*(1+math.Abs(fd)) {
				t.Errorf(format, d[i], fd)
			}
		}
	}
	checkDeriv(k.Value, k.Rate, r, 1e-7, "rate %v, dValue/dt %v")
	checkDeriv(k.Rate, k.RateDeriv, dr, 1e-6, "rate derivative %v, finite differences %v")
	k.Value(4, v1)
	_, vr := sdeMeanVar(v1)
	want := 0.0
	for n := 1; n <= 5; n++ {
		want += 2 / math.Pow((float64(n)-0.5)*math.Pi, 2)
	}
	want *= 3
	if math.Abs(vr-want) > 4*want*math.Sqrt(2.0/m) {
		t.Errorf("Var W_5(t1) = %g, want %g", vr, want)
	}
	if want > 3 || want < 0.95*3 {
		t.Errorf("truncated variance %g not close below c = 3", want)
	}
}

// TestWongZakaiGBMPathwise: for dz = μz + σz⊙Ẇ the ODE solution is exactly
// z0·exp(μT + σW_N(T)) for any smooth noise, checked for KL noise and for
// piecewise-linear noise interpolating a Brownian tree (where W_N(T) = W(T)).
// With piecewise noise, an RK4 solve that does not select pieces picks up
// the next piece's rate at each step end and is visibly wrong.
func TestWongZakaiGBMPathwise(t *testing.T) {
	const mu, sigma, m = 0.3, 0.6, 8
	sde := sdeGBM(mu, sigma)
	z0 := func() []float64 {
		z := make([]float64, m)
		for i := range z {
			z[i] = 1
		}
		return z
	}
	kl, _ := NewKLNoise(0, 1, 10, m)
	kl.Resample(rand.New(rand.NewPCG(5, 6)))
	w, _ := NewWongZakai(sde.Drift, sde.Diffusion, kl)
	z := z0()
	sdeRK4(w, z, []float64{0, 1}, 400, true)
	wn := make([]float64, m)
	kl.Value(1, wn)
	for i := range z {
		if want := math.Exp(mu + sigma*wn[i]); math.Abs(z[i]-want) > 1e-9*want {
			t.Errorf("KL: z(T) = %v, want %v", z[i], want)
		}
	}

	grid := sdeLinspace(0, 1, 17)
	bm, _ := NewBrownianTree(0, 1, m, 16, 11)
	pl, _ := NewPiecewiseLinearNoise(grid, m)
	if err := pl.SetFromPath(bm); err != nil {
		t.Fatal(err)
	}
	w2, _ := NewWongZakai(sde.Drift, sde.Diffusion, pl)
	if len(w2.Breakpoints()) != 17 {
		t.Fatalf("breakpoints %v", w2.Breakpoints())
	}
	wT := make([]float64, m)
	_ = bm.Increment(0, 1, wT)
	pv := make([]float64, m)
	pl.Value(1, pv)
	z = z0()
	sdeRK4(w2, z, grid, 32, true)
	var worst float64
	for i := range z {
		if math.Abs(pv[i]-wT[i]) > 1e-12 {
			t.Errorf("interpolant W(T) = %v, path %v", pv[i], wT[i])
		}
		want := math.Exp(mu + sigma*wT[i])
		if math.Abs(z[i]-want) > 1e-8*want {
			t.Errorf("piecewise: z(T) = %v, want %v", z[i], want)
		}
	}
	z = z0()
	sdeRK4(w2, z, grid, 32, false)
	for i := range z {
		want := math.Exp(mu + sigma*wT[i])
		worst = math.Max(worst, math.Abs(z[i]-want)/want)
	}
	if worst < 1e-4 {
		t.Errorf("without piece selection the error is only %g: the test cannot see the kinks", worst)
	}
}

// TestWongZakaiConvergenceOU: the Wong–Zakai ODE of the paper's OU process
// (X0 = 1) is linear in the KL coefficients, X(T) = m + Σ ε_n c_n, so its
// variance with N terms is Σ_{n≤N} c_n². Computed from ODE solves with unit
// coefficients, the mean must equal the SDE's, the variance must increase
// with N towards the SDE's closed-form variance (N = 1 clearly biased, large
// N within 1.5%), and a Monte-Carlo batch of Wong–Zakai paths with N = 64
// must match the SDE's moments within Monte-Carlo error while N = 1 must not.
func TestWongZakaiConvergenceOU(t *testing.T) {
	p := PaperOU()
	p.X0Low, p.X0High = 1, 1
	mean, vr := p.Moments(p.T1)
	grid := sdeLinspace(p.T0, p.T1, 101)
	const nmax = 64
	kl, _ := NewKLNoise(p.T0, p.T1, nmax, 1)
	w, _ := NewWongZakai(p.Drift(), p.Diffusion(), kl)
	solve := func() float64 {
		z := []float64{1}
		sdeRK4(w, z, grid, 4, true)
		return z[0]
	}
	m0 := solve()
	if math.Abs(m0-mean) > 1e-8*math.Abs(mean) {
		t.Errorf("noise-free WZ solution %v, SDE mean %v", m0, mean)
	}
	c := kl.Coefficients()
	var cum float64
	var vN []float64
	for n := 0; n < nmax; n++ {
		c[n] = 1
		cn := solve() - m0
		c[n] = 0
		cum += cn * cn
		vN = append(vN, cum)
	}
	t.Logf("SDE variance %.4f; WZ variance N=1 %.4f, N=4 %.4f, N=16 %.4f, N=64 %.4f", vr, vN[0], vN[3], vN[15], vN[63])
	for n := 1; n < nmax; n++ {
		if vN[n] < vN[n-1] || vN[n] > vr*(1+1e-9) {
			t.Fatalf("WZ variance not increasing to %g: N=%d %g", vr, n+1, vN[n])
		}
	}
	if rel := (vr - vN[0]) / vr; rel < 0.2 {
		t.Errorf("N=1 bias only %.1f%%", 100*rel)
	}
	if rel := (vr - vN[nmax-1]) / vr; rel > 0.015 {
		t.Errorf("N=%d still %.2f%% below the SDE variance", nmax, 100*rel)
	}

	// Monte Carlo over resampled noise.
	const paths = 2000
	for _, tc := range []struct {
		n       int
		matches bool
	}{{64, true}, {1, false}} {
		t.Run(fmt.Sprintf("N=%d", tc.n), func(t *testing.T) {
			kl, _ := NewKLNoise(p.T0, p.T1, tc.n, paths)
			kl.Resample(rand.New(rand.NewPCG(uint64(tc.n), 9)))
			w, _ := NewWongZakai(p.Drift(), p.Diffusion(), kl)
			z := make([]float64, paths)
			for i := range z {
				z[i] = 1
			}
			sdeRK4(w, z, sdeLinspace(p.T0, p.T1, 51), 4, true)
			sm, sv := sdeMeanVar(z)
			dm := math.Abs(sm-mean) / math.Sqrt(vr/paths)
			dv := math.Abs(sv-vr) / (vr * math.Sqrt(2.0/paths))
			t.Logf("N=%d: mean %.4f (%.1fσ), variance %.4f (%.1fσ) vs SDE %.4f, %.4f", tc.n, sm, dm, sv, dv, mean, vr)
			if dm > 4 {
				t.Errorf("N=%d: mean off by %.1f sigma", tc.n, dm)
			}
			if tc.matches && dv > 4 {
				t.Errorf("N=%d: variance off by %.1f sigma", tc.n, dv)
			}
			if !tc.matches && dv < 6 {
				t.Errorf("N=%d: variance bias only %.1f sigma", tc.n, dv)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// OU data

// TestOUData checks the generator against moments integrated independently
// (RK4 on m' = μt − θm, v' = −2θv + (σ+φt)², m(0) = 0, v(0) = 3), the lag
// covariance e^{−θ(t−s)}Var X(s), and against reversible Heun sampling of the
// same SDE with the paper's step 0.01.
func TestOUData(t *testing.T) {
	const paths = 20000
	ts, xs, err := OUData(rand.New(rand.NewPCG(1, 1)), paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 101 || ts[0] != 0 || ts[100] != 10 || math.Abs(ts[37]-3.7) > 1e-15 || len(xs) != 101*paths {
		t.Fatalf("times %v…%v (%d), %d values", ts[0], ts[len(ts)-1], len(ts), len(xs))
	}
	p := PaperOU()
	mv := func(tEnd float64) (float64, float64) {
		y := []float64{0, 3}
		n := 10000
		h := tEnd / float64(n)
		rhs := func(t float64, y []float64) [2]float64 {
			s := p.Sigma + p.Phi*t
			return [2]float64{p.Mu*t - p.Theta*y[0], -2*p.Theta*y[1] + s*s}
		}
		for i := 0; i < n; i++ {
			tt := float64(i) * h
			k1 := rhs(tt, y)
			k2 := rhs(tt+h/2, []float64{y[0] + h/2*k1[0], y[1] + h/2*k1[1]})
			k3 := rhs(tt+h/2, []float64{y[0] + h/2*k2[0], y[1] + h/2*k2[1]})
			k4 := rhs(tt+h, []float64{y[0] + h*k3[0], y[1] + h*k3[1]})
			for j := range y {
				y[j] += h / 6 * (k1[j] + 2*k2[j] + 2*k3[j] + k4[j])
			}
		}
		return y[0], y[1]
	}
	for _, i := range []int{0, 10, 50, 100} {
		m, v := mv(ts[i])
		pm, pv := p.Moments(ts[i])
		if math.Abs(pm-m) > 1e-9 || math.Abs(pv-v) > 1e-9*v {
			t.Errorf("t=%g: closed-form moments (%g, %g), integrated (%g, %g)", ts[i], pm, pv, m, v)
		}
		sm, sv := sdeMeanVar(xs[i*paths : (i+1)*paths])
		if math.Abs(sm-m) > 4*math.Sqrt(v/paths) || math.Abs(sv-v) > 4*v*math.Sqrt(2.0/paths) {
			t.Errorf("t=%g: sample moments (%g, %g), want (%g, %g)", ts[i], sm, sv, m, v)
		}
	}
	// Lag covariance between t = 5 and t = 7.
	a, b := xs[50*paths:51*paths], xs[70*paths:71*paths]
	ma, va := sdeMeanVar(a)
	mb, _ := sdeMeanVar(b)
	var cov float64
	for j := range a {
		cov += (a[j] - ma) * (b[j] - mb)
	}
	cov /= paths - 1
	want := math.Exp(-p.Theta*2) * va
	if math.Abs(cov-want) > 0.05*want {
		t.Errorf("cov(X5, X7) = %g, want %g", cov, want)
	}
	// Reversible Heun with dt = 0.01 on the SDE gives the same final moments.
	const rp = 4000
	z0 := append([]float64(nil), xs[:rp]...)
	bm, _ := NewBrownianTree(0, 10, rp, 1000, 77)
	out := make([]float64, 2*rp)
	if err := SolveSDE(SDE{Drift: p.Drift(), Diffusion: p.Diffusion()}, ReversibleHeun, z0, []float64{0, 10}, 0.01, bm, out); err != nil {
		t.Fatal(err)
	}
	m, v := mv(10)
	sm, sv := sdeMeanVar(out[rp:])
	if math.Abs(sm-m) > 4*math.Sqrt(v/rp) || math.Abs(sv-v) > 4*v*math.Sqrt(2.0/rp) {
		t.Errorf("reversible Heun moments (%g, %g), want (%g, %g)", sm, sv, m, v)
	}
	// Seeded: the same seed gives the same data; the math/rand generator works too.
	_, xs2, _ := OUData(rand.New(rand.NewPCG(1, 1)), paths)
	if xs2[12345] != xs[12345] {
		t.Error("OUData not reproducible")
	}
	if _, _, err := OUData(mrand.New(mrand.NewSource(1)), 3); err != nil {
		t.Error(err)
	}
	if _, _, err := OUData(rand.New(rand.NewPCG(1, 1)), 0); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("nPaths 0: %v", err)
	}
	bad := PaperOU()
	bad.Theta = math.NaN()
	if _, _, err := bad.Sample(rand.New(rand.NewPCG(1, 1)), 3); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN theta: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Allocations

func TestSDEAllocs(t *testing.T) {
	const d, b = 4, 8
	sde := SDE{Drift: sdeTanhField(d, 1, 1), Diffusion: sdeTanhField(d, 0.3, 2)}
	bm, _ := NewBrownianTree(0, 1, b*d, 4, 1)
	z0 := make([]float64, b*d)
	ts := []float64{0, 0.3, 1}
	out := make([]float64, len(ts)*b*d)
	for _, s := range []SDEScheme{EulerMaruyama, Milstein, MilsteinStratonovich, EulerHeun, Heun, ReversibleHeun} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			solver, _ := NewSDESolver(sde, s)
			run := func() {
				if err := solver.Solve(z0, ts, 1.0/64, bm, out); err != nil {
					t.Fatal(err)
				}
			}
			run()
			if a := testing.AllocsPerRun(5, run); a != 0 {
				t.Errorf("%v: %v allocs per solve", s, a)
			}
		})
	}
	kl, _ := NewKLNoise(0, 1, 10, b*d)
	pl, _ := NewPiecewiseLinearNoise(sdeLinspace(0, 1, 9), b*d)
	for _, noise := range []Noise{kl, pl} {
		t.Run(fmt.Sprintf("%T", noise), func(t *testing.T) {
			w, _ := NewWongZakai(newCoupledDrift(d, []float64{1, 2, 3}), newSoftDiffusion(d, []float64{1, 2}), noise)
			e := w.NewEvaluator()
			z, a, f, gz, gp := make([]float64, b*d), make([]float64, b*d), make([]float64, b*d), make([]float64, b*d), make([]float64, 5)
			var gt float64
			run := func() {
				e.Eval(0.3, z, f)
				e.VJP(0.4, z, a, f, gz, gp, &gt)
			}
			run()
			if a := testing.AllocsPerRun(5, run); a != 0 {
				t.Errorf("Wong–Zakai %T: %v allocs per Eval+VJP", noise, a)
			}
		})
	}
	dst := make([]float64, b*d)
	if a := testing.AllocsPerRun(5, func() { _ = bm.Increment(0.1234, 0.77, dst) }); a != 0 {
		t.Errorf("BrownianTree.Increment: %v allocs", a)
	}
}

// ---------------------------------------------------------------------------
// Benchmarks

// BenchmarkSDESample measures sampling throughput per scheme on a tanh
// drift/diffusion SDE of dimension 16 with a batch of 64 paths, 100 steps
// per solve, the Brownian path stored on the step grid.
func BenchmarkSDESample(b *testing.B) {
	const d, batch, steps = 16, 64, 100
	sde := SDE{Drift: sdeTanhField(d, 1, 1), Diffusion: sdeTanhField(d, 0.3, 2)}
	bm, _ := NewBrownianTree(0, 1, batch*d, steps, 1)
	z0 := make([]float64, batch*d)
	for i := range z0 {
		z0[i] = 0.1 * float64(i%7)
	}
	ts := []float64{0, 1}
	out := make([]float64, 2*batch*d)
	for _, s := range []SDEScheme{EulerMaruyama, Milstein, MilsteinStratonovich, EulerHeun, Heun, ReversibleHeun} {
		b.Run(s.String(), func(b *testing.B) {
			solver, _ := NewSDESolver(sde, s)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := solver.Solve(z0, ts, 1.0/steps, bm, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(batch*steps)*float64(b.N)/b.Elapsed().Seconds(), "path-steps/s")
		})
	}
}

// BenchmarkBrownianTree measures path queries: on the base grid, one dyadic
// level below it, and at non-dyadic times (a full descent to the leaf).
func BenchmarkBrownianTree(b *testing.B) {
	const size = 1024
	bm, _ := NewBrownianTree(0, 1, size, 100, 1)
	dst := make([]float64, size)
	for _, tc := range []struct {
		name string
		s, t float64
	}{{"grid", 0.3, 0.31}, {"half-cell", 0.3, 0.305}, {"non-dyadic", 0.3, 0.3051234}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				_ = bm.Increment(tc.s, tc.t, dst)
			}
		})
	}
}

// BenchmarkWongZakaiEval measures one Eval and one full VJP of the
// Wong–Zakai field with KL noise (N = 10) on the tanh fields.
func BenchmarkWongZakaiEval(b *testing.B) {
	const d, batch = 16, 64
	kl, _ := NewKLNoise(0, 1, 10, d*batch)
	kl.Resample(rand.New(rand.NewPCG(1, 2)))
	w, _ := NewWongZakai(sdeTanhField(d, 1, 1), sdeTanhField(d, 0.3, 2), kl)
	e := w.NewEvaluator()
	n := d * batch
	z, a, f, gz := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	var gt float64
	b.Run("Eval", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			e.Eval(0.5, z, f)
		}
	})
	b.Run("VJP", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			e.VJP(0.5, z, a, f, gz, nil, &gt)
		}
	})
}

// ---------------------------------------------------------------------------
// Examples

// ExampleSolveSDE samples geometric Brownian motion dZ = 0.1Z dt + 0.4Z ∘ dW
// with reversible Heun and compares with the exact solution on the same path.
func ExampleSolveSDE() {
	sde := sdeGBM(0.1, 0.4)
	bm, _ := NewBrownianTree(0, 1, 1, 64, 7) // one path, seeded
	out := make([]float64, 2)
	if err := SolveSDE(sde, ReversibleHeun, []float64{1}, []float64{0, 1}, 1.0/64, bm, out); err != nil {
		fmt.Println(err)
		return
	}
	w := make([]float64, 1)
	_ = bm.Increment(0, 1, w)
	exact := math.Exp(0.1 + 0.4*w[0])
	fmt.Printf("error below 1e-2: %v\n", math.Abs(out[1]-exact) < 1e-2)
	// Output: error below 1e-2: true
}

// ExampleNewWongZakai builds the ODE view of an SDE for training: the
// Wong–Zakai field of dz = −z dt + 0.5 ∘ dW with a KL noise of 10 terms, resampled per solve.
func ExampleNewWongZakai() {
	p := OUProcess{Mu: 0, Theta: 1, Sigma: 0.5, T0: 0, T1: 1, Points: 2}
	noise, _ := NewKLNoise(0, 1, 10, 4) // a batch of 4 samples, D = 1
	noise.Resample(rand.New(rand.NewPCG(1, 2)))
	w, err := NewWongZakai(p.Drift(), p.Diffusion(), noise)
	if err != nil {
		fmt.Println(err)
		return
	}
	z := []float64{1, 1, 1, 1}
	dz := make([]float64, 4)
	w.NewEvaluator().Eval(0.25, z, dz)
	rate := make([]float64, 4)
	noise.Rate(0.25, rate)
	fmt.Printf("params %d, dz = −z + 0.5·Ẇ: %v\n", len(w.Params()), math.Abs(dz[2]-(-1+0.5*rate[2])) < 1e-15)
	// Output: params 0, dz = −z + 0.5·Ẇ: true
}

// ExampleOUData draws the paper's Ornstein–Uhlenbeck data set.
func ExampleOUData() {
	ts, xs, err := OUData(rand.New(rand.NewPCG(2023, 1)), 50)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(ts), ts[1], ts[100], len(xs))
	// Output: 101 0.1 10 5050
}

// TestWongZakaiBatchMismatchPanics: the noise fixes the batch; a state of
// another length is a programming error reported by a descriptive panic
// (which the solvers recover as ErrPanic), never silent garbage.
func TestWongZakaiBatchMismatchPanics(t *testing.T) {
	kl, _ := NewKLNoise(0, 1, 2, 4)
	w := sdeNewTestWZ(t, kl, 2)
	defer func() {
		if r := recover(); r == nil {
			t.Error("no panic for a state of the wrong length")
		}
	}()
	w.NewEvaluator().Eval(0.5, make([]float64, 6), make([]float64, 6))
}

// wzProblem is a Wong–Zakai ODE with MLP drift and diffusion (time input)
// driven by KL noise, as the GQ paper trains its OU model.
func wzProblem(t *testing.T, seed uint64, d, b int) (*WongZakai, *KLNoise, []float64, []float64, []float64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	drift, err := NewMLP(MLPConfig{Dim: d, Hidden: []int{8}, Activation: Softplus, TimeInput: true}, rng)
	if err != nil {
		t.Fatal(err)
	}
	diff, err := NewMLP(MLPConfig{Dim: d, Hidden: []int{8}, Activation: Tanh, TimeInput: true}, rng)
	if err != nil {
		t.Fatal(err)
	}
	ts := []float64{0, 0.5, 1, 1.5}
	noise, err := NewKLNoise(ts[0], ts[len(ts)-1], 6, b*d)
	if err != nil {
		t.Fatal(err)
	}
	noise.Resample(rng)
	wz, err := NewWongZakai(drift, diff, noise)
	if err != nil {
		t.Fatal(err)
	}
	z0 := make([]float64, b*d)
	targets := make([]float64, (len(ts)-1)*b*d)
	for i := range z0 {
		z0[i] = rng.NormFloat64()
	}
	for i := range targets {
		targets[i] = rng.NormFloat64()
	}
	return wz, noise, z0, ts, targets
}

// TestWongZakaiGradients: gradients through the Wong–Zakai ODE from every
// method agree with each other and with central finite differences.
func TestWongZakaiGradients(t *testing.T) {
	wz, _, z0, ts, targets := wzProblem(t, 1, 2, 3)
	opts := Options{RTol: 1e-11, ATol: 1e-11}
	loss := testMSE(z0, ts, targets)
	var ref *GradResult
	for _, m := range allGradMethods {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			g, err := NewGradientSolver(wz, GradOptions{Method: m, Forward: opts, GQ: GQOptions{C: 1}})
			if err != nil {
				t.Fatal(err)
			}
			r, err := g.Gradient(z0, ts, loss)
			if err != nil {
				t.Fatal(err)
			}
			if ref == nil {
				ref = &GradResult{Loss: r.Loss, Params: append([]float64(nil), r.Params...), Z0: append([]float64(nil), r.Z0...)}
				// Finite differences of the loss in a few joint parameters
				// (drift and diffusion) and in z0.
				p := wz.Params()
				fdLoss := func() float64 {
					g2, _ := NewGradientSolver(wz, GradOptions{Method: Direct, Forward: opts})
					r2, err := g2.Gradient(z0, ts, loss)
					if err != nil {
						t.Fatal(err)
					}
					return r2.Loss
				}
				const eps = 1e-6
				for _, i := range []int{0, 5, len(p)/2 - 1, len(p) / 2, len(p) - 1} {
					old := p[i]
					p[i] = old + eps
					lp := fdLoss()
					p[i] = old - eps
					lm := fdLoss()
					p[i] = old
					fd := (lp - lm) / (2 * eps)
					if math.Abs(fd-ref.Params[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
						t.Errorf("dL/dθ[%d] = %v, finite differences %v", i, ref.Params[i], fd)
					}
				}
				return
			}
			if e := relErr(r.Params, ref.Params); e > 1e-7 {
				t.Errorf("%v: dL/dθ differs from direct by %g", m, e)
			}
			if e := relErr(r.Z0, ref.Z0); e > 1e-7 {
				t.Errorf("%v: dL/dz0 differs from direct by %g", m, e)
			}
		})
	}
}

// BenchmarkWongZakaiGradient times one gradient through the Wong–Zakai ODE
// of an MLP SDE (D = 1, width 32, 64 paths, as in the OU experiment) per method.
func BenchmarkWongZakaiGradient(b *testing.B) {
	for _, m := range allGradMethods {
		b.Run("method="+m.String(), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 3))
			drift, _ := NewMLP(MLPConfig{Dim: 1, Hidden: []int{32, 32}, Activation: Softplus, TimeInput: true}, rng)
			diff, _ := NewMLP(MLPConfig{Dim: 1, Hidden: []int{32, 32}, Activation: Softplus, TimeInput: true}, rng)
			ts := make([]float64, 11)
			for i := range ts {
				ts[i] = float64(i)
			}
			noise, _ := NewKLNoise(0, 10, 10, 64)
			wz, err := NewWongZakai(drift, diff, noise)
			if err != nil {
				b.Fatal(err)
			}
			z0 := make([]float64, 64)
			targets := make([]float64, 10*64)
			for i := range z0 {
				z0[i] = 6*rng.Float64() - 3
			}
			g, _ := NewGradientSolver(wz, GradOptions{Method: m, Forward: Options{RTol: 1e-4, ATol: 1e-4}})
			loss := testMSE(z0, ts, targets)
			var nfe int
			noise.Resample(rng)
			if _, err := g.Gradient(z0, ts, loss); err != nil { // size the workspace
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				noise.Resample(rng)
				r, err := g.Gradient(z0, ts, loss)
				if err != nil {
					b.Fatal(err)
				}
				nfe = r.Stats.Forward.NFE + r.Stats.VJPs
			}
			b.ReportMetric(float64(nfe), "evals/op")
		})
	}
}

// BenchmarkSDESampleMLP is the sampling throughput of each scheme on a small
// MLP SDE (D = 1, width 32, 256 paths), the OU model's test-time setting.
func BenchmarkSDESampleMLP(b *testing.B) {
	for _, scheme := range []SDEScheme{EulerMaruyama, Milstein, EulerHeun, Heun, ReversibleHeun} {
		b.Run(scheme.String(), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(4, 4))
			drift, _ := NewMLP(MLPConfig{Dim: 1, Hidden: []int{32, 32}, Activation: Softplus, TimeInput: true}, rng)
			diff, _ := NewMLP(MLPConfig{Dim: 1, Hidden: []int{32, 32}, Activation: Softplus, TimeInput: true}, rng)
			const paths = 256
			s, err := NewSDESolver(SDE{Drift: drift, Diffusion: diff}, scheme)
			if err != nil {
				b.Fatal(err)
			}
			bm, _ := NewBrownianTree(0, 1, paths, 100, 7)
			z0 := make([]float64, paths)
			ts := []float64{0, 1}
			out := make([]float64, 2*paths)
			const dt = 0.01
			if err := s.Solve(z0, ts, dt, bm, out); err != nil { // size the workspace
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Solve(z0, ts, dt, bm, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*paths*100/b.Elapsed().Seconds(), "path-steps/s")
		})
	}
}

// gbmFields returns the drift μz and diffusion σz of geometric Brownian
// motion as parameter-free fields with hand-written products.
func gbmFields(mu, sigma float64) (VectorField, VectorField) {
	lin := func(c float64) *FuncField {
		return &FuncField{D: 1, Autonomous: true,
			F: func(t float64, z, _, dz []float64) {
				for i, v := range z {
					dz[i] = c * v
				}
			},
			VJPFunc: func(t float64, z, _, a, f, gz, gp []float64, gt *float64) {
				for i := range z {
					if f != nil {
						f[i] = c * z[i]
					}
					if gz != nil {
						gz[i] = c * a[i]
					}
				}
				if gt != nil {
					*gt = 0
				}
			}}
	}
	return lin(mu), lin(sigma)
}

// TestWongZakaiPiecewiseBreakpoints: with piecewise-linear noise the
// Wong–Zakai ODE of geometric Brownian motion has the closed form
// z(t) = z0·exp(μt + σW(t)) on the interpolated path. Every gradient method
// must restart at the kinks (a fixed-step solve that stepped across them
// would be only first-order accurate there), and dL/dz0 is exact.
func TestWongZakaiPiecewiseBreakpoints(t *testing.T) {
	const mu, sigma = 0.3, 0.8
	f, g := gbmFields(mu, sigma)
	grid := []float64{0, 0.13, 0.3, 0.5, 0.77, 1, 1.21, 1.5}
	const paths = 3
	noise, err := NewPiecewiseLinearNoise(grid, paths)
	if err != nil {
		t.Fatal(err)
	}
	noise.Resample(rand.New(rand.NewPCG(9, 9)))
	wz, err := NewWongZakai(f, g, noise)
	if err != nil {
		t.Fatal(err)
	}
	z0 := []float64{1, 0.5, -2}
	// Observation times: some on break points, some inside pieces.
	ts := []float64{0, 0.3, 0.6, 1.21, 1.5}
	targets := make([]float64, (len(ts)-1)*paths)
	for i := range targets {
		targets[i] = 0.1 * float64(i)
	}
	w := make([]float64, paths)
	exact := func(tt float64, i int) float64 {
		noise.Value(tt, w)
		return z0[i] * math.Exp(mu*tt+sigma*w[i])
	}
	// Exact loss gradient: L = Σ mean (z − y)², z linear in z0.
	wantZ0 := make([]float64, paths)
	for k := 1; k < len(ts); k++ {
		for i := 0; i < paths; i++ {
			e := exact(ts[k], i)
			wantZ0[i] += 2 * (e - targets[(k-1)*paths+i]) / paths * e / z0[i]
		}
	}
	for _, opts := range []Options{{Method: RK4, Step: 0.01}, {RTol: 1e-10, ATol: 1e-10}} {
		t.Run(fmt.Sprintf("step=%g", opts.Step), func(t *testing.T) {
			for _, m := range allGradMethods {
				t.Run(fmt.Sprint(m), func(t *testing.T) {
					name := "dopri5/" + m.String()
					if opts.Method != nil {
						name = opts.Method.Name + "/" + m.String()
					}
					gs, err := NewGradientSolver(wz, GradOptions{Method: m, Forward: opts})
					if err != nil {
						t.Fatal(err)
					}
					r, err := gs.Gradient(z0, ts, testMSE(z0, ts, targets))
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for k := range ts {
						for i := 0; i < paths; i++ {
							if d := math.Abs(r.States[k*paths+i] - exact(ts[k], i)); d > 1e-7 {
								t.Errorf("%s: z(%v)[%d] off by %g", name, ts[k], i, d)
							}
						}
					}
					if e := relErr(r.Z0, wantZ0); e > 1e-7 {
						t.Errorf("%s: dL/dz0 relative error %g (got %v, want %v)", name, e, r.Z0, wantZ0)
					}
				})
			}
		})
	}
}

// TestWongZakaiPiecewiseBackwardInTime: the same closed form integrated
// from t = 1.5 down to 0 through break points and observation times.
func TestWongZakaiPiecewiseBackwardInTime(t *testing.T) {
	const mu, sigma = 0.3, 0.8
	f, g := gbmFields(mu, sigma)
	noise, _ := NewPiecewiseLinearNoise([]float64{0, 0.13, 0.3, 0.5, 0.77, 1, 1.21, 1.5}, 2)
	noise.Resample(rand.New(rand.NewPCG(10, 10)))
	wz, err := NewWongZakai(f, g, noise)
	if err != nil {
		t.Fatal(err)
	}
	z0 := []float64{1, -0.5}
	ts := []float64{1.5, 1.21, 0.9, 0.3, 0}
	w0, w := make([]float64, 2), make([]float64, 2)
	noise.Value(ts[0], w0)
	for _, m := range allGradMethods {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			gs, _ := NewGradientSolver(wz, GradOptions{Method: m, Forward: Options{Method: RK4, Step: 0.01}})
			r, err := gs.Gradient(z0, ts, testMSE(z0, ts, make([]float64, 8)))
			if err != nil {
				t.Fatalf("%v: %v", m, err)
			}
			for k, tk := range ts {
				noise.Value(tk, w)
				for i := range z0 {
					want := z0[i] * math.Exp(mu*(tk-ts[0])+sigma*(w[i]-w0[i]))
					if d := math.Abs(r.States[k*2+i] - want); d > 1e-7 {
						t.Errorf("%v: z(%v)[%d] off by %g", m, tk, i, d)
					}
				}
			}
		})
	}
}

// TestWongZakaiPiecewiseParamGradients: with MLP drift and diffusion and
// piecewise-linear noise, every method agrees with Direct, and Direct with
// central finite differences of the fixed-step loss.
func TestWongZakaiPiecewiseParamGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 1))
	drift, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{6}, Activation: Softplus, TimeInput: true}, rng)
	diff, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{6}, Activation: Tanh, TimeInput: true}, rng)
	grid := []float64{0, 0.2, 0.45, 0.7, 1}
	noise, _ := NewPiecewiseLinearNoise(grid, 4)
	noise.Resample(rng)
	wz, err := NewWongZakai(drift, diff, noise)
	if err != nil {
		t.Fatal(err)
	}
	z0 := []float64{0.3, -0.2, 1, 0.5}
	ts := []float64{0, 0.45, 0.8, 1}
	targets := []float64{1, 0, 0, 1, 0.5, 0.5, -1, 0, 0, 0, 1, 1}
	loss := testMSE(z0, ts, targets)
	fixed := Options{Method: RK4, Step: 0.03}
	ref := gradFor(t, wz, z0, ts, targets, GradOptions{Method: Direct, Forward: fixed})
	p := wz.Params()
	const eps = 1e-6
	for _, i := range []int{0, 7, len(p) / 2, len(p) - 1} {
		old := p[i]
		p[i] = old + eps
		lp := gradFor(t, wz, z0, ts, targets, GradOptions{Method: Direct, Forward: fixed}).Loss
		p[i] = old - eps
		lm := gradFor(t, wz, z0, ts, targets, GradOptions{Method: Direct, Forward: fixed}).Loss
		p[i] = old
		fd := (lp - lm) / (2 * eps)
		if math.Abs(fd-ref.Params[i]) > 1e-8*math.Max(1, math.Abs(fd)) {
			t.Errorf("direct dL/dθ[%d] = %v, finite differences %v", i, ref.Params[i], fd)
		}
	}
	tight := Options{RTol: 1e-11, ATol: 1e-11}
	ref = gradFor(t, wz, z0, ts, targets, GradOptions{Method: Direct, Forward: tight})
	for _, m := range allGradMethods[1:] {
		t.Run(fmt.Sprint(m), func(t *testing.T) {
			g, _ := NewGradientSolver(wz, GradOptions{Method: m, Forward: tight, GQ: GQOptions{C: 1}})
			r, err := g.Gradient(z0, ts, loss)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(r.Params, ref.Params); e > 1e-7 {
				t.Errorf("%v: dL/dθ differs from direct by %g", m, e)
			}
		})
	}
}
