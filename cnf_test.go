package neuralode

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
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

func randVec(rng *rand.Rand, n int, scale float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = scale * rng.NormFloat64()
	}
	return x
}

// TestCNFExactTrace: the Δ channel is −tr(∂g/∂z), compared with a central
// finite-difference Jacobian trace (to 1e-8) and with the trace assembled
// from the MLP's reverse-mode VJPs with unit cotangents (to round-off); the
// z channel is the MLP itself and the RNODE channels are ‖g‖² and ‖∂g/∂z‖²_F.
func TestCNFExactTrace(t *testing.T) {
	for _, act := range []Activation{Tanh, Softplus, Sigmoid} {
		for _, D := range []int{1, 2, 3} {
			c := newTestCNF(t, D, []int{7, 5}, act, true, CNFOptions{Regularize: true}, uint64(D))
			rng := rand.New(rand.NewPCG(3, uint64(D)))
			const B = 4
			x := randVec(rng, B*D, 1)
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
				for i := 0; i < D; i++ {
					if d := math.Abs(row[i] - g[b*D+i]); d > 1e-14 {
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
	x := randVec(rng, B*D, 1)
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

// fdVJP returns aᵀF by central differences of Eval in z, θ and t.
func fdVJP(c *CNF, tt float64, z, a []float64, h float64) (gz, gp []float64, gt float64) {
	ev := c.NewEvaluator()
	out := make([]float64, len(z))
	s := func(t float64, z []float64) float64 {
		ev.Eval(t, z, out)
		return Dot(a, out)
	}
	gz = make([]float64, len(z))
	zz := append([]float64(nil), z...)
	for i := range z {
		zz[i] = z[i] + h
		p := s(tt, zz)
		zz[i] = z[i] - h
		m := s(tt, zz)
		zz[i] = z[i]
		gz[i] = (p - m) / (2 * h)
	}
	th := c.Params()
	gp = make([]float64, len(th))
	for i := range th {
		v := th[i]
		th[i] = v + h
		p := s(tt, z)
		th[i] = v - h
		m := s(tt, z)
		th[i] = v
		gp[i] = (p - m) / (2 * h)
	}
	gt = (s(tt+h, z) - s(tt-h, z)) / (2 * h)
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
					name := fmt.Sprintf("%v/%v/reg=%v/time=%v", est, act, reg, timeIn)
					const D, B = 2, 3
					c := newTestCNF(t, D, []int{5, 4}, act, timeIn, CNFOptions{Trace: est, Regularize: reg}, 21)
					rng := rand.New(rand.NewPCG(9, 9))
					if err := c.SampleNoise(rng, B); err != nil {
						t.Fatal(err)
					}
					x := randVec(rng, B*D, 1)
					z, _ := c.InitialState(x, nil)
					for i := range z {
						if i%c.Dim() >= D {
							z[i] = rng.NormFloat64() // the extra channels must not matter
						}
					}
					a := randVec(rng, len(z), 1)
					const tt = 0.3
					ev := c.NewEvaluator()
					f := make([]float64, len(z))
					gz := make([]float64, len(z))
					gp := make([]float64, len(c.Params()))
					var gt float64
					ev.VJP(tt, z, a, f, gz, gp, &gt)
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
		x := randVec(rng, B*D, 1.5)
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
		th := c.Params()
		const h = 1e-6
		fd := make([]float64, len(th))
		for i := range th {
			v := th[i]
			th[i] = v + h
			p := lossAt()
			th[i] = v - h
			mm := lossAt()
			th[i] = v
			fd[i] = (p - mm) / (2 * h)
		}
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
			rng := rand.New(rand.NewPCG(1, 1))
			if err := c.SampleNoise(rng, B); err != nil {
				t.Fatal(err)
			}
			z, _ := c.InitialState(randVec(rng, 2*B, 1), nil)
			a := randVec(rng, len(z), 1)
			ev := c.NewEvaluator()
			f, gz, gp := make([]float64, len(z)), make([]float64, len(z)), make([]float64, len(c.Params()))
			var gt float64
			ev.VJP(0.5, z, a, f, gz, gp, &gt)
			for name, fn := range map[string]func(){
				"Eval": func() { ev.Eval(0.5, z, f) },
				"VJP":  func() { ev.VJP(0.5, z, a, f, gz, gp, &gt) },
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
	z, _ := c.InitialState(randVec(rng, 2*B, 1), nil)
	a := randVec(rng, len(z), 1)
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
	z := randVec(rng, 2*50, 1)
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
	if _, err := ParseTraceEstimator("exactly"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("ParseTraceEstimator: %v", err)
	}
	for _, e := range []TraceEstimator{ExactTrace, HutchinsonRademacher, HutchinsonGaussian} {
		if got, err := ParseTraceEstimator(e.String()); err != nil || got != e {
			t.Errorf("round trip of %v: %v, %v", e, got, err)
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

// ExampleCNF evaluates the log-density of a flow whose network is zero:
// the identity map, so the density is the standard normal base's,
// −log(2π) − ½‖x‖².
func ExampleCNF() {
	m, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{8}, TimeInput: true}, nil)
	cnf, _ := NewCNF(m, CNFOptions{Trace: ExactTrace})
	x := []float64{0, 0, 1, 1}
	lp := make([]float64, 2)
	if err := cnf.LogDensity(x, 0, 1, Options{}, lp); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.4f %.4f\n", lp[0], lp[1])
	// Output: -1.8379 -2.8379
}

// BenchmarkCNF times the augmented dynamics and their VJP on the train
// task's network (tanh 64-64-64 with time input, D = 2, batch 256) for each
// estimator, and reports the cost per sample.
func BenchmarkCNF(b *testing.B) {
	for _, est := range []TraceEstimator{ExactTrace, HutchinsonRademacher} {
		c := newTestCNF(b, 2, []int{64, 64, 64}, Tanh, true, CNFOptions{Trace: est}, 1)
		const B = 256
		rng := rand.New(rand.NewPCG(1, 2))
		if err := c.SampleNoise(rng, B); err != nil {
			b.Fatal(err)
		}
		z, _ := c.InitialState(randVec(rng, 2*B, 1), nil)
		a := randVec(rng, len(z), 1)
		ev := c.NewEvaluator()
		f, gz, gp := make([]float64, len(z)), make([]float64, len(z)), make([]float64, len(c.Params()))
		var gt float64
		b.Run(est.String()+"/Eval", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				ev.Eval(0.5, z, f)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*B), "ns/sample")
		})
		b.Run(est.String()+"/VJP", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				ev.VJP(0.5, z, a, f, gz, gp, &gt)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*B), "ns/sample")
		})
	}
}

// ExampleCNF_NLLLoss computes the negative log-likelihood of two points and
// its parameter gradient with the seminorm adjoint, for a flow with
// Hutchinson's trace (its noise drawn once per solve). The network starts
// at zero, so the flow is the identity and the loss is the standard normal
// base's: mean(½‖x‖² + log 2π).
func ExampleCNF_NLLLoss() {
	m, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{16, 16}, Activation: Tanh, TimeInput: true}, nil)
	cnf, _ := NewCNF(m, CNFOptions{Trace: HutchinsonRademacher})
	x := []float64{0, 0, 1, 1}
	z0, _ := cnf.InitialState(x, nil)
	gs, _ := NewGradientSolver(cnf, GradOptions{Method: SeminormAdjoint, Forward: Options{RTol: 1e-6, ATol: 1e-6}})
	if err := cnf.SampleNoise(rand.New(rand.NewPCG(1, 2)), 2); err != nil {
		fmt.Println(err)
		return
	}
	r, err := gs.Gradient(z0, []float64{0, 1}, cnf.NLLLoss(2, 0, 0))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("NLL %.4f nats, %d parameter gradients\n", r.Loss, len(r.Params))
	// Output: NLL 2.3379 nats, 370 parameter gradients
}
