package neuralode

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// newTestCNF builds a CNF over a random MLP with data dimension D.
func newTestCNF(t testing.TB, D int, hidden []int, act Activation, timeIn bool, opts CNFOptions, seed uint64) *CNF {
	t.Helper()
	m, err := NewMLP(MLPConfig{Dim: D, Hidden: hidden, Activation: act, TimeInput: timeIn}, rand.New(rand.NewPCG(seed, 7)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCNF(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cnfCall is a random batch for one CNF's evaluator: states z (with the
// noise drawn), a cotangent a, and the VJP's output buffers.
type cnfCall struct {
	c         *CNF
	ev        Evaluator
	z, a      []float64
	f, gz, gp []float64
	gt        float64
	rng       *rand.Rand
}

func newCNFCall(tb testing.TB, c *CNF, B int, seed uint64) *cnfCall {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	if err := c.SampleNoise(rng, B); err != nil {
		tb.Fatal(err)
	}
	z, err := c.InitialState(randSlice(rng, c.DataDim()*B), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &cnfCall{c: c, ev: c.NewEvaluator(), z: z, a: randSlice(rng, len(z)), rng: rng,
		f: make([]float64, len(z)), gz: make([]float64, len(z)), gp: make([]float64, len(c.Params()))}
}

// vjp runs the evaluator's VJP with every output at time t.
func (k *cnfCall) vjp(t float64) { k.ev.VJP(t, k.z, k.a, k.f, k.gz, k.gp, &k.gt) }

// scaled returns x multiplied by s.
func scaled(s float64, x []float64) []float64 {
	Scale(s, x)
	return x
}

// TestCNFExactTrace: the Δ channel is −tr(∂g/∂z), compared with a central
// finite-difference Jacobian trace (to 1e-8) and with the trace assembled
// from the MLP's reverse-mode VJPs with unit cotangents (to round-off); the
// z channel is the MLP itself and the RNODE channels are ‖g‖² and ‖∂g/∂z‖²_F.
func TestCNFExactTrace(t *testing.T) {
	for _, act := range []Activation{Tanh, Softplus, Sigmoid} {
		for _, D := range []int{1, 2, 3} {
			c := newTestCNF(t, D, []int{20, 5}, act, true, CNFOptions{Regularize: true}, uint64(D))
			rng := rand.New(rand.NewPCG(3, uint64(D)))
			const B = 4
			x := randSlice(rng, B*D)
			y, err := c.InitialState(x, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt := 0.37
			out := make([]float64, len(y))
			c.NewEvaluator().Eval(tt, y, out)
			mev := c.MLP().NewEvaluator()
			g := make([]float64, B*D)
			mev.Eval(tt, x, g)
			// Reverse-mode Jacobian rows: J_i = e_iᵀ ∂g/∂z.
			jac := make([][]float64, D)
			for i := 0; i < D; i++ {
				a := make([]float64, B*D)
				for b := 0; b < B; b++ {
					a[b*D+i] = 1
				}
				jac[i] = make([]float64, B*D)
				mev.VJP(tt, x, a, nil, jac[i], nil, nil)
			}
			const h = 1e-5
			S := c.Dim()
			for b := 0; b < B; b++ {
				row := out[b*S : b*S+S]
				var trRev, fro, trFD float64
				for i := 0; i < D; i++ {
					trRev += jac[i][b*D+i]
					for j := 0; j < D; j++ {
						fro += jac[i][b*D+j] * jac[i][b*D+j]
					}
					xp, xm := append([]float64(nil), x...), append([]float64(nil), x...)
					xp[b*D+i] += h
					xm[b*D+i] -= h
					gp, gm := make([]float64, B*D), make([]float64, B*D)
					mev.Eval(tt, xp, gp)
					mev.Eval(tt, xm, gm)
					trFD += (gp[b*D+i] - gm[b*D+i]) / (2 * h)
				}
				// Equal up to rounding: the MLP's assembly kernels fuse
				// multiply–adds the CNF's products may not.
				for i := 0; i < D; i++ {
					if math.Abs(row[i]-g[b*D+i]) > 1e-14*(1+math.Abs(g[b*D+i])) {
						t.Errorf("%v D=%d b=%d: z channel %v, MLP %v", act, D, b, row[i], g[b*D+i])
					}
				}
				if d := math.Abs(-row[D] - trFD); d > 1e-8 {
					t.Errorf("%v D=%d b=%d: trace %v, finite differences %v (diff %.2e)", act, D, b, -row[D], trFD, d)
				}
				if d := math.Abs(-row[D] - trRev); d > 1e-13 {
					t.Errorf("%v D=%d b=%d: trace %v, reverse mode %v (diff %.2e)", act, D, b, -row[D], trRev, d)
				}
				if d := math.Abs(row[D+1] - SumSq(g[b*D:b*D+D])); d > 1e-13 {
					t.Errorf("%v D=%d b=%d: kinetic %v, want %v", act, D, b, row[D+1], SumSq(g[b*D:b*D+D]))
				}
				if d := math.Abs(row[D+2] - fro); d > 1e-13 {
					t.Errorf("%v D=%d b=%d: Frobenius %v, want %v", act, D, b, row[D+2], fro)
				}
			}
		}
	}
}

// TestCNFHutchinsonUnbiased: over many draws of ε the mean of Hutchinson's
// trace estimate (and of its ‖(∂g/∂z)ε‖² Frobenius estimate) matches the
// exact value within 3 standard errors, for both noise distributions.
func TestCNFHutchinsonUnbiased(t *testing.T) {
	const D, B, draws = 3, 3, 4000
	exact := newTestCNF(t, D, []int{6, 6}, Tanh, true, CNFOptions{Regularize: true}, 11)
	rng := rand.New(rand.NewPCG(5, 5))
	x := randSlice(rng, B*D)
	y, _ := exact.InitialState(x, nil)
	S := exact.Dim()
	want := make([]float64, len(y))
	exact.NewEvaluator().Eval(0.2, y, want)
	for _, est := range []TraceEstimator{HutchinsonRademacher, HutchinsonGaussian} {
		c, err := NewCNF(exact.MLP(), CNFOptions{Trace: est, Regularize: true})
		if err != nil {
			t.Fatal(err)
		}
		ev := c.NewEvaluator()
		out := make([]float64, len(y))
		var sum, sumSq [B][2]float64
		for n := 0; n < draws; n++ {
			if err := c.SampleNoise(rng, B); err != nil {
				t.Fatal(err)
			}
			ev.Eval(0.2, y, out)
			for b := 0; b < B; b++ {
				for j, v := range []float64{out[b*S+D], out[b*S+D+2]} {
					sum[b][j] += v
					sumSq[b][j] += v * v
				}
			}
		}
		for b := 0; b < B; b++ {
			for j, name := range []string{"trace", "Frobenius"} {
				mean := sum[b][j] / draws
				se := math.Sqrt((sumSq[b][j]/draws - mean*mean) / (draws - 1))
				w := want[b*S+D+2*j]
				if math.Abs(mean-w) > 3*se {
					t.Errorf("%v sample %d %s: mean %.5f ± %.5f, exact %.5f", est, b, name, mean, se, w)
				} else {
					t.Logf("%v sample %d %s: mean %.5f ± %.5f, exact %.5f", est, b, name, mean, se, w)
				}
			}
		}
	}
}

// centralDiff returns the gradient of s with respect to every element of
// x by central differences of step h (x is restored).
func centralDiff(x []float64, h float64, s func() float64) []float64 {
	g := make([]float64, len(x))
	for i, v := range x {
		x[i] = v + h
		up := s()
		x[i] = v - h
		g[i] = (up - s()) / (2 * h)
		x[i] = v
	}
	return g
}

// fdVJP returns aᵀF by central differences of Eval in z, θ and t.
func fdVJP(c *CNF, tt float64, z, a []float64, h float64) (gz, gp []float64, gt float64) {
	ev := c.NewEvaluator()
	out := make([]float64, len(z))
	zz := append([]float64(nil), z...)
	s := func() float64 {
		ev.Eval(tt, zz, out)
		return Dot(a, out)
	}
	gz = centralDiff(zz, h, s)
	gp = centralDiff(c.Params(), h, s)
	tp := []float64{tt}
	gt = centralDiff(tp, h, func() float64 {
		ev.Eval(tp[0], z, out)
		return Dot(a, out)
	})[0]
	return gz, gp, gt
}

// TestCNFVJPFiniteDifferences: the hand-derived second-order VJPs of the
// augmented dynamics (z, θ and t) agree with central finite differences,
// for every estimator, with and without the RNODE channels and time input.
func TestCNFVJPFiniteDifferences(t *testing.T) {
	for _, est := range []TraceEstimator{ExactTrace, HutchinsonRademacher, HutchinsonGaussian} {
		for _, act := range []Activation{Tanh, Softplus, Sigmoid} {
			for _, reg := range []bool{false, true} {
				for _, timeIn := range []bool{true, false} {
					name := est.String() + "/" + act.String() + "/reg=" + strconv.FormatBool(reg) + "/time=" + strconv.FormatBool(timeIn)
					const D, B = 2, 3
					c := newTestCNF(t, D, []int{5, 4}, act, timeIn, CNFOptions{Trace: est, Regularize: reg}, 21)
					k := newCNFCall(t, c, B, 9)
					z, a, ev, f, gz, gp := k.z, k.a, k.ev, k.f, k.gz, k.gp
					for i := range z {
						if i%c.Dim() >= D {
							z[i] = k.rng.NormFloat64() // the extra channels must not matter
						}
					}
					const tt = 0.3
					k.vjp(tt)
					gt := k.gt
					want := make([]float64, len(z))
					ev.Eval(tt, z, want)
					if d := maxRelDiff(f, want); d != 0 {
						t.Errorf("%s: VJP's f differs from Eval by %.2e", name, d)
					}
					fz, fp, ft := fdVJP(c, tt, z, a, 1e-6)
					if d := maxRelDiff(gz, fz); d > 1e-7 {
						t.Errorf("%s: gz rel diff %.2e", name, d)
					}
					if d := maxRelDiff(gp, fp); d > 1e-7 {
						t.Errorf("%s: gp rel diff %.2e", name, d)
					}
					if math.Abs(gt-ft) > 1e-7*math.Max(1, math.Abs(ft)) {
						t.Errorf("%s: gt %v, finite differences %v", name, gt, ft)
					}
					// gp accumulates; nil outputs skip their work but not the others.
					gp2 := append([]float64(nil), gp...)
					gz2 := make([]float64, len(z))
					ev.VJP(tt, z, a, nil, gz2, gp2, nil)
					for i := range gp2 {
						gp2[i] -= gp[i]
					}
					if d := maxRelDiff(gp2, gp); d > 1e-13 {
						t.Fatalf("%s: gp does not accumulate (%.2e)", name, d)
					}
					if d := maxRelDiff(gz2, gz); d != 0 {
						t.Errorf("%s: gz without f differs by %.2e", name, d)
					}
					var gt2 float64
					ev.VJP(tt, z, a, nil, nil, nil, &gt2)
					if gt2 != gt {
						t.Errorf("%s: gt alone %v, with the others %v", name, gt2, gt)
					}
				}
			}
		}
	}
}

// TestCNFGradientMethods: every gradient method's dL/dθ and dL/dz0 of the
// NLL loss match Direct at tight tolerances, and Direct on a fixed-step RK4
// solve matches finite differences of that solve.
func TestCNFGradientMethods(t *testing.T) {
	for _, est := range []TraceEstimator{ExactTrace, HutchinsonRademacher} {
		const D, B = 2, 5
		c := newTestCNF(t, D, []int{8, 8}, Tanh, true, CNFOptions{Trace: est, Regularize: true}, 31)
		rng := rand.New(rand.NewPCG(2, 2))
		if err := c.SampleNoise(rng, B); err != nil {
			t.Fatal(err)
		}
		x := scaled(1.5, randSlice(rng, B*D))
		z0, _ := c.InitialState(x, nil)
		ts := []float64{0, 1}
		loss := c.NLLLoss(B, 0.1, 0.05)
		grad := func(m GradMethod, fwd Options) *GradResult {
			gs, err := NewGradientSolver(c, GradOptions{Method: m, Forward: fwd})
			if err != nil {
				t.Fatal(err)
			}
			r, err := gs.Gradient(z0, ts, loss)
			if err != nil {
				t.Fatalf("%v %v: %v", est, m, err)
			}
			return r
		}
		tight := Options{RTol: 1e-11, ATol: 1e-11}
		ref := grad(Direct, tight)
		refP := append([]float64(nil), ref.Params...)
		refZ := append([]float64(nil), ref.Z0...)
		for _, m := range []GradMethod{Adjoint, SeminormAdjoint, GQAdjoint, GQInterpAdjoint} {
			r := grad(m, tight)
			if d := maxRelDiff(r.Params, refP); d > 1e-6 {
				t.Errorf("%v %v: dL/dθ differs from Direct by %.2e (relative)", est, m, d)
			}
			if d := maxRelDiff(r.Z0, refZ); d > 1e-6 {
				t.Errorf("%v %v: dL/dz0 differs from Direct by %.2e (relative)", est, m, d)
			}
		}
		// Direct is the exact gradient of the discrete solution: check it
		// against finite differences of a fixed-step solve.
		fixed := Options{Method: RK4, Step: 1.0 / 8}
		r := grad(Direct, fixed)
		gd := append([]float64(nil), r.Params...)
		s, err := NewSolver(fixed)
		if err != nil {
			t.Fatal(err)
		}
		ev := c.NewEvaluator()
		out := make([]float64, 2*len(z0))
		lg := make([]float64, 2*len(z0))
		lossAt := func() float64 {
			if _, err := s.Solve(func(t float64, y, dy []float64) { ev.Eval(t, y, dy) }, z0, ts, out); err != nil {
				t.Fatal(err)
			}
			return loss(out, lg)
		}
		fd := centralDiff(c.Params(), 1e-6, lossAt)
		if d := maxRelDiff(gd, fd); d > 1e-7 {
			t.Errorf("%v: Direct (RK4, h = 1/8) vs finite differences: %.2e", est, d)
		}
	}
}

// TestCNFNoAllocs: Eval and VJP allocate nothing once the scratch exists,
// for a batch small enough to run inline and one split over the pool.
func TestCNFNoAllocs(t *testing.T) {
	for _, B := range []int{4, 256} {
		for _, est := range []TraceEstimator{ExactTrace, HutchinsonGaussian} {
			c := newTestCNF(t, 2, []int{32, 32}, Softplus, true, CNFOptions{Trace: est, Regularize: true}, 1)
			k := newCNFCall(t, c, B, 1)
			k.vjp(0.5)
			for name, fn := range map[string]func(){
				"Eval": func() { k.ev.Eval(0.5, k.z, k.f) },
				"VJP":  func() { k.vjp(0.5) },
			} {
				if n := testing.AllocsPerRun(20, fn); n != 0 {
					t.Errorf("B=%d %v: %s allocates %v per call", B, est, name, n)
				}
			}
		}
	}
}

// TestCNFDeterministic: outputs are bit-identical for GOMAXPROCS 1, 2 and 4
// on a batch large enough to be split into row blocks and parameter chunks.
func TestCNFDeterministic(t *testing.T) {
	c := newTestCNF(t, 2, []int{64, 64}, Tanh, true, CNFOptions{Trace: ExactTrace, Regularize: true}, 3)
	const B = 300
	ev := c.NewEvaluator().(*cnfEvaluator)
	ev.ensure(B)
	if ev.rowBlocks(B) < 2 || ev.paramChunks(B) <= 3 {
		t.Fatalf("batch %d is not split (%d blocks, %d chunks)", B, ev.rowBlocks(B), ev.paramChunks(B))
	}
	rng := rand.New(rand.NewPCG(4, 4))
	z, _ := c.InitialState(randSlice(rng, 2*B), nil)
	a := randSlice(rng, len(z))
	run := func(procs int) []float64 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		f, gz, gp := make([]float64, len(z)), make([]float64, len(z)), make([]float64, len(c.Params()))
		var gt float64
		ev.VJP(0.7, z, a, f, gz, gp, &gt)
		return append(append(append(f, gz...), gp...), gt)
	}
	ref := run(1)
	for _, p := range []int{2, 4} {
		got := run(p)
		for i := range ref {
			if math.Float64bits(got[i]) != math.Float64bits(ref[i]) {
				t.Fatalf("GOMAXPROCS=%d: element %d is %v, with 1 thread %v", p, i, got[i], ref[i])
			}
		}
	}
}

// TestCNFDensityNormalized: the exact log-density of a random flow
// integrates to 1 over the plane (midpoint rule on a fine grid), and
// sampling inverts the flow: pushing samples forward returns the base draws.
func TestCNFDensityNormalized(t *testing.T) {
	c := newTestCNF(t, 2, []int{16, 16}, Tanh, true, CNFOptions{Trace: HutchinsonRademacher}, 8)
	const n, lo, hi = 140, -7.0, 7.0
	dx := (hi - lo) / n
	x := make([]float64, 0, 2*n*n)
	for j := 0; j < n; j++ {
		for i := 0; i < n; i++ {
			x = append(x, lo+(float64(i)+0.5)*dx, lo+(float64(j)+0.5)*dx)
		}
	}
	lp := make([]float64, n*n)
	opts := Options{RTol: 1e-8, ATol: 1e-8}
	if err := c.LogDensity(x, 0, 1, opts, lp); err != nil {
		t.Fatal(err)
	}
	mass := 0.0
	for _, v := range lp {
		mass += math.Exp(v) * dx * dx
	}
	if math.Abs(mass-1) > 1e-3 {
		t.Errorf("density integrates to %v, want 1", mass)
	}
	rng := rand.New(rand.NewPCG(6, 6))
	z := randSlice(rng, 2*50)
	xs := make([]float64, len(z))
	if err := c.Sample(z, 0, 1, opts, xs); err != nil {
		t.Fatal(err)
	}
	back := make([]float64, 2*len(z))
	s, _ := NewSolver(opts)
	ev := c.MLP().NewEvaluator()
	if _, err := s.Solve(func(t float64, y, dy []float64) { ev.Eval(t, y, dy) }, xs, []float64{0, 1}, back); err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(back[len(z):], z); d > 1e-6 {
		t.Errorf("forward(sample(z)) differs from z by %.2e", d)
	}
}

// TestCNFErrors: invalid arguments give typed errors, never a crash.
func TestCNFErrors(t *testing.T) {
	if _, err := NewCNF(nil, CNFOptions{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("nil MLP: %v", err)
	}
	m, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{3}}, nil)
	if _, err := NewCNF(m, CNFOptions{Trace: 7}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("bad estimator: %v", err)
	}
	for e, want := range map[TraceEstimator]string{ExactTrace: "exact", HutchinsonRademacher: "rademacher",
		HutchinsonGaussian: "gaussian", 9: "TraceEstimator(9)"} {
		if e.String() != want {
			t.Errorf("String of %d: %q, want %q", int(e), e.String(), want)
		}
	}
	c, _ := NewCNF(m, CNFOptions{Trace: HutchinsonGaussian})
	if err := c.SampleNoise(nil, 3); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("nil rng: %v", err)
	}
	if err := c.SampleNoise(rand.New(rand.NewPCG(1, 1)), 0); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("B = 0: %v", err)
	}
	if err := c.SetNoise([]float64{1, 2, 3}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("odd noise length: %v", err)
	}
	if err := c.SetNoise([]float64{1, math.NaN()}); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN noise: %v", err)
	}
	if _, err := c.InitialState([]float64{1, 2, 3}, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("InitialState odd length: %v", err)
	}
	if _, err := c.LogLikelihood([]float64{1, 2}, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("LogLikelihood odd length: %v", err)
	}
	if err := c.LogDensity([]float64{1, 2}, 0, 1, Options{}, make([]float64, 2)); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("LogDensity bad dst: %v", err)
	}
	if err := c.Sample([]float64{1, 2}, 0, 1, Options{}, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Sample bad dst: %v", err)
	}
	// Evaluating without noise is a caller bug reported as an *InputError
	// panic (the Evaluator interface has no error result), like the MLP's
	// length checks; the gradient solver then fails with an error.
	func() {
		defer func() {
			var ie *InputError
			if p := recover(); p == nil || !errors.As(p.(error), &ie) {
				t.Errorf("Eval without noise: recovered %v", p)
			}
		}()
		c.NewEvaluator().Eval(0, make([]float64, 3), make([]float64, 3))
	}()
}

// BenchmarkCNF times the augmented dynamics and their VJP on the train
// task's network (tanh 64-64-64 with time input, D = 2, batch 256) for each
// estimator, and reports the cost per sample.
func BenchmarkCNF(b *testing.B) {
	for _, est := range []TraceEstimator{ExactTrace, HutchinsonRademacher} {
		c := newTestCNF(b, 2, []int{64, 64, 64}, Tanh, true, CNFOptions{Trace: est}, 1)
		const B = 256
		k := newCNFCall(b, c, B, 2)
		b.Run(est.String()+"/Eval", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				k.ev.Eval(0.5, k.z, k.f)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*B), "ns/sample")
		})
		b.Run(est.String()+"/VJP", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				k.vjp(0.5)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*B), "ns/sample")
		})
	}
}

// TestCNFLogDensityStopsHelpers: LogDensity and Sample stop the helper
// goroutines of the evaluators they create before returning.
func TestCNFLogDensityStopsHelpers(t *testing.T) {
	if runtime.GOARCH == "wasm" {
		t.Skip("WebAssembly runs one thread: the pools never start helpers")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	c := newTestCNF(t, 2, []int{64, 64}, Tanh, true, CNFOptions{}, 5)
	x := randSlice(rand.New(rand.NewPCG(1, 1)), 2*2000)
	base := settledGoroutines()
	if err := c.LogDensity(x, 0, 1, Options{RTol: 1e-3, ATol: 1e-3}, make([]float64, 2000)); err != nil {
		t.Fatal(err)
	}
	if err := c.Sample(x, 0, 1, Options{RTol: 1e-3, ATol: 1e-3}, make([]float64, len(x))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // closed helpers exit on their own, no GC needed
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines after, %d before", n, base)
	}
}
