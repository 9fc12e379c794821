package neuralode

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
)

// odeProblem is a test problem with a closed-form solution.
type odeProblem struct {
	name  string
	f     Func
	exact func(t float64, y []float64)
	t0    float64
	t1    float64
}

var odeProblems = []odeProblem{
	{
		name: "exponential",
		f: func(t float64, y, dy []float64) {
			for i := range y {
				dy[i] = -0.7 * y[i]
			}
		},
		exact: func(t float64, y []float64) { y[0] = 2 * math.Exp(-0.7*t) },
		t0:    0, t1: 3,
	},
	{
		name: "harmonic",
		f: func(t float64, y, dy []float64) {
			dy[0] = y[1]
			dy[1] = -4 * y[0]
		},
		exact: func(t float64, y []float64) {
			y[0] = math.Cos(2 * t)
			y[1] = -2 * math.Sin(2*t)
		},
		t0: 0, t1: 4,
	},
	{
		// Non-autonomous: y' = cos(t)·y, y = exp(sin t).
		name: "nonautonomous",
		f: func(t float64, y, dy []float64) {
			dy[0] = math.Cos(t) * y[0]
		},
		exact: func(t float64, y []float64) { y[0] = math.Exp(math.Sin(t)) },
		t0:    0, t1: 3,
	},
}

func (p odeProblem) dim() int {
	y := make([]float64, 4)
	p.exact(p.t0, y)
	if p.name == "harmonic" {
		return 2
	}
	return 1
}

func (p odeProblem) y0() []float64 {
	y := make([]float64, p.dim())
	p.exact(p.t0, y)
	return y
}

func TestConvergenceOrder(t *testing.T) {
	methods := []struct {
		tb *Tableau
		ns []int // numbers of steps: errors well above round-off
	}{
		{DormandPrince5, []int{32, 64, 128, 256}},
		{Tsitouras5, []int{16, 32, 64, 128}},
		{RK4, []int{16, 32, 64, 128}},
		{BogackiShampine3, []int{32, 64, 128, 256}},
		{Midpoint, []int{64, 128, 256, 512}},
		{Euler, []int{256, 512, 1024, 2048}},
	}
	for _, m := range methods {
		for _, p := range odeProblems {
			t.Run(m.tb.Name+"/"+p.name, func(t *testing.T) {
				n := p.dim()
				exact := make([]float64, n)
				var hs, errs, denseErrs []float64
				for _, steps := range m.ns {
					h := (p.t1 - p.t0) / float64(steps)
					// Output at the end and at the middle of every 4th step, served by the dense output.
					ts := []float64{p.t0}
					for i := 0; i < steps; i += 4 {
						ts = append(ts, p.t0+(float64(i)+0.5)*h)
					}
					ts = append(ts, p.t1)
					s, err := NewSolver(Options{Method: m.tb, Step: h})
					if err != nil {
						t.Fatal(err)
					}
					out := make([]float64, len(ts)*n)
					st, err := s.Solve(p.f, p.y0(), ts, out)
					if err != nil {
						t.Fatal(err)
					}
					if st.Accepted != steps || st.Rejected != 0 {
						t.Fatalf("steps: got %d accepted %d rejected, want %d", st.Accepted, st.Rejected, steps)
					}
					p.exact(p.t1, exact)
					errs = append(errs, maxAbsDiff(out[len(out)-n:], exact))
					de := 0.0
					for i := 1; i < len(ts)-1; i++ {
						p.exact(ts[i], exact)
						de = math.Max(de, maxAbsDiff(out[i*n:(i+1)*n], exact))
					}
					denseErrs = append(denseErrs, de)
					hs = append(hs, h)
				}
				want := float64(m.tb.Order)
				t.Logf("slopes: end point %.3f, dense output %.3f", slope(hs, errs), slope(hs, denseErrs))
				if got := slope(hs, errs); math.Abs(got-want) > 0.3 {
					t.Errorf("end-point error slope %.3f, want %v±0.3 (errors %v)", got, want, errs)
				}
				// The dense output's local error is O(h^(q+1)) with q ≥ Order−1,
				// so between steps the error must fall at least at the method's order.
				if got := slope(hs, denseErrs); got < want-0.3 {
					t.Errorf("dense-output error slope %.3f, want ≥ %v−0.3 (errors %v)", got, want, denseErrs)
				}
			})
		}
	}
}

// TestDenseMidpointWeights checks the half-step weights against the order
// conditions a 4th-order continuous extension satisfies at θ = ½:
// Σ b_i = ½, Σ b_i c_i = ⅛, Σ b_i c_i² = 1/24, Σ b_i c_i³ = 1/64.
func TestDenseMidpointWeights(t *testing.T) {
	for _, tb := range []*Tableau{DormandPrince5, Tsitouras5} {
		for q, want := range []float64{0.5, 1.0 / 8, 1.0 / 24, 1.0 / 64} {
			sum := 0.0
			for i, b := range tb.BMid {
				sum += b * math.Pow(tb.C[i], float64(q))
			}
			if math.Abs(sum-want) > 1e-12 {
				t.Errorf("%s: Σ BMid·c^%d = %.16g, want %.16g", tb.Name, q, sum, want)
			}
		}
	}
}

func TestTableausValid(t *testing.T) {
	for _, tb := range []*Tableau{DormandPrince5, BogackiShampine3, Tsitouras5, RK4, Midpoint, Euler} {
		if err := tb.validate(); err != nil {
			t.Errorf("%s: %v", tb.Name, err)
		}
		// Consistency: Σ b = 1, Σ_j a_ij = c_i, Σ e = 0.
		sb, se := 0.0, 0.0
		for i := range tb.B {
			sb += tb.B[i]
			if tb.E != nil {
				se += tb.E[i]
			}
			sa := 0.0
			for _, a := range tb.A[i] {
				sa += a
			}
			if math.Abs(sa-tb.C[i]) > 1e-12 {
				t.Errorf("%s: row %d sums to %v, c = %v", tb.Name, i, sa, tb.C[i])
			}
		}
		if math.Abs(sb-1) > 1e-14 || math.Abs(se) > 1e-12 {
			t.Errorf("%s: Σb = %v, Σe = %v", tb.Name, sb, se)
		}
	}
}

func TestAdaptiveErrorFallsWithTolerance(t *testing.T) {
	for _, tb := range []*Tableau{DormandPrince5, Tsitouras5, BogackiShampine3} {
		for _, p := range odeProblems {
			t.Run(tb.Name+"/"+p.name, func(t *testing.T) {
				n := p.dim()
				exact := make([]float64, n)
				p.exact(p.t1, exact)
				prev := math.Inf(1)
				prevNFE := 0
				for _, tol := range []float64{1e-4, 1e-6, 1e-8, 1e-10} {
					s, err := NewSolver(Options{Method: tb, RTol: tol, ATol: tol})
					if err != nil {
						t.Fatal(err)
					}
					out := make([]float64, 2*n)
					st, err := s.Solve(p.f, p.y0(), []float64{p.t0, p.t1}, out)
					if err != nil {
						t.Fatal(err)
					}
					e := maxAbsDiff(out[n:], exact)
					if e >= prev {
						t.Errorf("tol %g: error %g did not fall (previous %g)", tol, e, prev)
					}
					if e > 1000*tol {
						t.Errorf("tol %g: error %g far above tolerance", tol, e)
					}
					if st.NFE <= prevNFE {
						t.Errorf("tol %g: nfe %d did not grow", tol, st.NFE)
					}
					prev, prevNFE = e, st.NFE
				}
			})
		}
	}
}

func TestDecreasingTimes(t *testing.T) {
	p := odeProblems[1] // harmonic oscillator
	ts := []float64{0, 0.7, 1.9, 3.2, 4}
	n := 2
	fwd := make([]float64, len(ts)*n)
	s, _ := NewSolver(Options{RTol: 1e-10, ATol: 1e-10})
	if _, err := s.Solve(p.f, p.y0(), ts, fwd); err != nil {
		t.Fatal(err)
	}
	// Backward from the exact end state through the same times reversed.
	rev := make([]float64, len(ts))
	for i := range ts {
		rev[i] = ts[len(ts)-1-i]
	}
	yEnd := make([]float64, n)
	p.exact(4, yEnd)
	bwd := make([]float64, len(ts)*n)
	if _, err := s.Solve(p.f, yEnd, rev, bwd); err != nil {
		t.Fatal(err)
	}
	exact := make([]float64, n)
	for i := range ts {
		j := len(ts) - 1 - i
		p.exact(ts[i], exact)
		if d := maxAbsDiff(fwd[i*n:(i+1)*n], exact); d > 1e-8 {
			t.Errorf("forward at t=%v: error %g", ts[i], d)
		}
		if d := maxAbsDiff(bwd[j*n:(j+1)*n], fwd[i*n:(i+1)*n]); d > 1e-8 {
			t.Errorf("backward and forward differ at t=%v by %g", ts[i], d)
		}
	}
}

func TestOvershootMode(t *testing.T) {
	p := odeProblems[0]
	calls := 0
	maxT := 0.0
	f := func(t float64, y, dy []float64) {
		calls++
		maxT = math.Max(maxT, t)
		p.f(t, y, dy)
	}
	for _, over := range []bool{false, true} {
		maxT = 0
		s, _ := NewSolver(Options{RTol: 1e-6, ATol: 1e-6, Overshoot: over})
		out := make([]float64, 2)
		if _, err := s.Solve(f, p.y0(), []float64{0, 3}, out); err != nil {
			t.Fatal(err)
		}
		exact := []float64{0}
		p.exact(3, exact)
		if d := math.Abs(out[1] - exact[0]); d > 1e-5 {
			t.Errorf("overshoot=%v: error %g", over, d)
		}
		if !over && maxT > 3 {
			t.Errorf("default mode evaluated f at t=%v beyond the final time", maxT)
		}
		if over && maxT <= 3 {
			t.Errorf("overshoot mode never stepped past the final time (max t %v)", maxT)
		}
	}
}

func TestDenseSolution(t *testing.T) {
	p := odeProblems[1]
	s, _ := NewSolver(Options{RTol: 1e-9, ATol: 1e-9})
	out := make([]float64, 4)
	d, _, err := s.SolveDense(p.f, p.y0(), []float64{0, 4}, out)
	if err != nil {
		t.Fatal(err)
	}
	got, exact := make([]float64, 2), make([]float64, 2)
	for _, tt := range []float64{0, 0.01, 0.5, 1.234, 2.5, 3.999, 4} {
		if err := d.At(tt, got); err != nil {
			t.Fatal(err)
		}
		p.exact(tt, exact)
		if e := maxAbsDiff(got, exact); e > 1e-7 {
			t.Errorf("At(%v): error %g", tt, e)
		}
	}
	if err := d.At(4.5, got); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("At outside the span: got %v, want ErrInvalidInput", err)
	}
}

func TestSolverBadInput(t *testing.T) {
	f := odeProblems[0].f
	stiff := func(t float64, y, dy []float64) { dy[0] = y[0] * y[0] } // blows up at t = 1
	// y' = −10⁸(y − cos t): explicit methods are stable only for h ≲ 3e-8.
	stiffLinear := func(t float64, y, dy []float64) { dy[0] = -1e8 * (y[0] - math.Cos(t)) }
	nanAt := func(t float64, y, dy []float64) {
		dy[0] = -y[0]
		if t > 0.5 {
			dy[0] = math.NaN()
		}
	}
	cases := []struct {
		name string
		opts Options
		f    Func
		y0   []float64
		ts   []float64
		out  int
		want error
	}{
		{"negative rtol", Options{RTol: -1, ATol: 1e-6}, f, []float64{1}, []float64{0, 1}, 2, ErrInvalidInput},
		{"zero atol", Options{RTol: 1e-6}, f, []float64{1}, []float64{0, 1}, 2, ErrInvalidInput},
		{"NaN rtol", Options{RTol: math.NaN(), ATol: 1}, f, []float64{1}, []float64{0, 1}, 2, ErrInvalidInput},
		{"fixed method without step", Options{Method: RK4}, f, []float64{1}, []float64{0, 1}, 2, ErrInvalidInput},
		{"negative MaxStep", Options{MaxStep: -1}, f, []float64{1}, []float64{0, 1}, 2, ErrInvalidInput},
		{"nil f", Options{}, nil, []float64{1}, []float64{0, 1}, 2, ErrInvalidInput},
		{"no times", Options{}, f, []float64{1}, nil, 0, ErrInvalidInput},
		{"repeated time", Options{}, f, []float64{1}, []float64{0, 1, 1}, 3, ErrInvalidInput},
		{"non-monotone", Options{}, f, []float64{1}, []float64{0, 1, 0.5}, 3, ErrInvalidInput},
		{"NaN time", Options{}, f, []float64{1}, []float64{0, math.NaN()}, 2, ErrNonFinite},
		{"Inf y0", Options{}, f, []float64{math.Inf(1)}, []float64{0, 1}, 2, ErrNonFinite},
		{"out length", Options{}, f, []float64{1}, []float64{0, 1}, 3, ErrInvalidInput},
		{"too many steps", Options{MaxSteps: 3}, f, []float64{1}, []float64{0, 10}, 2, ErrTooManySteps},
		{"underflow", Options{RTol: 1e-6, ATol: 1e-6}, stiff, []float64{1}, []float64{0, 2}, 2, ErrStepSizeUnderflow},
		{"MinStep", Options{RTol: 1e-10, ATol: 1e-10, MinStep: 0.1}, f, []float64{1}, []float64{0, 10}, 2, ErrStepSizeUnderflow},
		{"stiff with MinStep", Options{RTol: 1e-6, ATol: 1e-6, MinStep: 1e-6}, stiffLinear, []float64{1}, []float64{0, 1}, 2, ErrStepSizeUnderflow},
		{"NaN mid-solve", Options{}, nanAt, []float64{1}, []float64{0, 1}, 2, ErrNonFinite},
		{"NaN mid-solve fixed", Options{Method: RK4, Step: 0.1}, nanAt, []float64{1}, []float64{0, 1}, 2, ErrNonFinite},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y0 := append([]float64(nil), c.y0...)
			ts := append([]float64(nil), c.ts...)
			s, err := NewSolver(c.opts)
			if err == nil {
				_, err = s.Solve(c.f, y0, ts, make([]float64, c.out))
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got error %v, want %v", err, c.want)
			}
			if fmt.Sprint(y0) != fmt.Sprint(c.y0) || fmt.Sprint(ts) != fmt.Sprint(c.ts) {
				t.Errorf("inputs modified: y0 %v→%v, ts %v→%v", c.y0, y0, c.ts, ts)
			}
			var se *SolveError
			if errors.As(err, &se) && c.name == "NaN mid-solve" && !(se.T >= 0.4 && se.T <= 0.5) {
				t.Errorf("NaN reported at t=%v, want the step that crosses 0.5", se.T)
			}
		})
	}
}

// raceEnabled reports whether the test binary was built with -race, whose
// instrumentation allocates: allocation counts are checked without it.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func TestSolveAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector allocates")
	}
	const n = 64
	f := func(t float64, y, dy []float64) {
		for i := range y {
			dy[i] = -y[i] + math.Sin(t)
		}
	}
	y0 := make([]float64, n)
	for i := range y0 {
		y0[i] = float64(i)
	}
	ts := []float64{0, 0.5, 1, 2}
	out := make([]float64, len(ts)*n)
	for _, tb := range []*Tableau{DormandPrince5, Tsitouras5, RK4} {
		s, _ := NewSolver(Options{Method: tb, Step: 0.01 * float64(btoi(!tb.Adaptive())), RTol: 1e-8, ATol: 1e-8})
		if _, err := s.Solve(f, y0, ts, out); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := s.Solve(f, y0, ts, out); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per solve, want 0", tb.Name, allocs)
		}
	}
}

func TestQuadratureTail(t *testing.T) {
	// y' = -y, q' = y² (a pure quadrature): q(T) = (1 − e^{−2T})/2.
	f := func(t float64, y, dy []float64) {
		dy[0] = -y[0]
		dy[1] = y[0] * y[0]
	}
	for _, tail := range []int{0, 1} {
		s, _ := NewSolver(Options{RTol: 1e-10, ATol: 1e-10, QuadratureTail: tail})
		out := make([]float64, 4)
		if _, err := s.Solve(f, []float64{1, 0}, []float64{0, 2}, out); err != nil {
			t.Fatal(err)
		}
		if want := (1 - math.Exp(-4)) / 2; math.Abs(out[3]-want) > 1e-9 {
			t.Errorf("tail=%d: q(2) = %v, want %v", tail, out[3], want)
		}
	}
}

// TestSolverVectorPool: a state long enough for the chunked elementwise
// passes (y' = −c_i·y + sin t on 3·vecChunk + 5 components, a quadrature
// tail, an RMS norm and a grouped norm whose zero-weight tail is neither
// formed nor scaled) gives bit-identical outputs and statistics with the
// passes on a pool at GOMAXPROCS 1, 2 and 4 as without a pool, and every
// component matches its closed form.
func TestSolverVectorPool(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	n := max(vecParallelMin, 3*vecChunk+5)
	c := make([]float64, n)
	for i := range c {
		c[i] = 0.5 + float64(i%97)/50
	}
	const tail = 7 // y_i' = c_i·sin t: a quadrature
	f := func(t float64, y, dy []float64) {
		st := math.Sin(t)
		for i, v := range y[:n-tail] {
			dy[i] = -c[i]*v + st
		}
		for i := n - tail; i < n; i++ {
			dy[i] = c[i] * st
		}
	}
	// y(t) = e^{−ct}·(y0 + 1/(1+c²)) + (c·sin t − cos t)/(1+c²).
	exact := func(i int, y0, t float64) float64 {
		ci := c[i]
		if i >= n-tail {
			return y0 + ci*(1-math.Cos(t))
		}
		k := 1 + ci*ci
		return math.Exp(-ci*t)*(y0+1/k) + (ci*math.Sin(t)-math.Cos(t))/k
	}
	half := n / 2
	grouped, err := NewGroupedNorm(n, Group{Name: "head", End: half, Weight: 1}, Group{Name: "tail", Start: half, End: n})
	if err != nil {
		t.Fatal(err)
	}
	y0 := make([]float64, n)
	for i := range y0 {
		y0[i] = math.Cos(float64(i))
	}
	ts := []float64{0, 0.7, 1.5}
	for _, norm := range []Norm{RMSNorm{}, grouped} {
		var ref []float64
		var refStats Stats
		for _, procs := range []int{0, 1, 2, 4} { // 0: no pool
			s, err := NewSolver(Options{RTol: 1e-7, ATol: 1e-9, Norm: norm, QuadratureTail: tail})
			if err != nil {
				t.Fatal(err)
			}
			if procs > 0 {
				runtime.GOMAXPROCS(procs)
				p := new(taskPool)
				defer p.close()
				s.setVectorPool(p)
			}
			out := make([]float64, len(ts)*n)
			st, err := s.Solve(f, y0, ts, out)
			if err != nil {
				t.Fatal(err)
			}
			if ref == nil {
				ref, refStats = out, st
				for k, tk := range ts {
					for _, i := range []int{0, 1, half - 1, half, n - 8, n - 1} {
						if e := math.Abs(out[k*n+i] - exact(i, y0[i], tk)); e > 1e-5 {
							t.Errorf("%T: y_%d(%v) off by %g", norm, i, tk, e)
						}
					}
				}
				continue
			}
			if !sameBits(out, ref) || st != refStats {
				t.Errorf("%T, GOMAXPROCS %d: the pooled passes change the solution (%+v vs %+v)", norm, procs, st, refStats)
			}
		}
	}
}

func TestStepCallback(t *testing.T) {
	p := odeProblems[2]
	var steps int
	var last float64
	s, _ := NewSolver(Options{RTol: 1e-8, ATol: 1e-8, OnStep: func(si *StepInfo) {
		steps++
		// Y1 must equal Y0 + H·Σ b_i K_i.
		y1 := si.Y0[0]
		for i, b := range DormandPrince5.B {
			y1 += si.H * b * si.K[i][0]
		}
		if math.Abs(y1-si.Y1[0]) > 1e-14*math.Abs(y1) {
			t.Errorf("step at %v: Y1 %v, recomputed %v", si.T, si.Y1[0], y1)
		}
		if si.T != last {
			t.Errorf("step starts at %v, previous ended at %v", si.T, last)
		}
		last = si.T + si.H
	}})
	st, err := s.Solve(p.f, p.y0(), []float64{0, 3}, make([]float64, 2))
	if err != nil {
		t.Fatal(err)
	}
	if steps != st.Accepted || last != 3 {
		t.Errorf("%d callbacks for %d steps; last step ends at %v", steps, st.Accepted, last)
	}
}

func BenchmarkSolve(b *testing.B) {
	// A 1000-dimensional linear system y' = A y with a banded, diagonally
	// dominant A (a diffusion-like operator), and a small nonlinear case.
	const n = 1000
	lin := func(t float64, y, dy []float64) {
		dy[0] = -2*y[0] + y[1]
		for i := 1; i < n-1; i++ {
			dy[i] = y[i-1] - 2*y[i] + y[i+1]
		}
		dy[n-1] = y[n-2] - 2*y[n-1]
	}
	y0 := make([]float64, n)
	for i := range y0 {
		y0[i] = math.Sin(float64(i) * math.Pi / n)
	}
	small := odeProblems[1]
	cases := []struct {
		name string
		f    Func
		y0   []float64
		t1   float64
	}{
		{"linear1000", lin, y0, 1},
		{"harmonic2", small.f, small.y0(), 4},
	}
	// A PyTorch case: the MLP field of case 2 (D=3, H=32, B=8), as a plain Func.
	lc := loadCaseFixture(b, caseFiles[1])
	ev := lc.m.NewEvaluator()
	cases = append(cases, struct {
		name string
		f    Func
		y0   []float64
		t1   float64
	}{"case2", func(t float64, z, dz []float64) { ev.Eval(t, z, dz) }, lc.z0, 1})
	for _, c := range cases {
		for _, tb := range []*Tableau{DormandPrince5, Tsitouras5, BogackiShampine3} {
			b.Run(c.name+"/"+tb.Name, func(b *testing.B) {
				s, _ := NewSolver(Options{Method: tb, RTol: 1e-6, ATol: 1e-6})
				out := make([]float64, 2*len(c.y0))
				st, _ := s.Solve(c.f, c.y0, []float64{0, c.t1}, out) // size the workspace
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					st, _ = s.Solve(c.f, c.y0, []float64{0, c.t1}, out)
				}
				b.ReportMetric(float64(st.NFE), "nfe/op")
			})
		}
	}
}

// caseFiles are the PyTorch-exported cases (the format is documented with Case).
var caseFiles = []string{
	"testdata/cases/case1_d2_h16_b4.json",
	"testdata/cases/case2_d3_h32_b8_nobs4.json",
	"testdata/cases/case3_d8_h64_b16.json",
	"testdata/cases/case4_softplus_concat_d2_h32_b8_nobs3.json",
}

type loadedCase struct {
	c       *Case
	m       *MLP
	z0      []float64
	targets []float64
	peers   map[string]peerResult
}

func loadCaseFixture(t testing.TB, path string) *loadedCase {
	t.Helper()
	c, err := LoadCase(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.MLP()
	if err != nil {
		t.Fatal(err)
	}
	peers, err := c.peers()
	if err != nil {
		t.Fatal(err)
	}
	lc := &loadedCase{c: c, m: m, z0: c.Z0Flat(), peers: peers}
	for _, tr := range c.TargetsFlat() {
		lc.targets = append(lc.targets, tr...)
	}
	return lc
}

// caseLoss solves a case and returns its MSE loss and the solver's statistics.
func caseLoss(t testing.TB, lc *loadedCase, opts Options) (float64, Stats) {
	t.Helper()
	s, err := NewSolver(opts)
	if err != nil {
		t.Fatal(err)
	}
	ev := lc.m.NewEvaluator()
	out := make([]float64, len(lc.c.T)*len(lc.z0))
	st, err := s.Solve(func(t float64, z, dz []float64) { ev.Eval(t, z, dz) }, lc.z0, lc.c.T, out)
	if err != nil {
		t.Fatal(err)
	}
	return testMSE(lc.z0, lc.c.T, lc.targets)(out, make([]float64, len(out))), st
}

// TestTorchdiffeqParity: in the torchdiffeq-compatible mode, Dormand–Prince
// takes exactly torchdiffeq's steps and evaluations on the PyTorch cases,
// and its loss agrees to 1e-9 relative.
func TestTorchdiffeqParity(t *testing.T) {
	for _, path := range caseFiles {
		lc := loadCaseFixture(t, path)
		t.Run(lc.c.Name, func(t *testing.T) {
			peer := lc.peers["direct"]
			loss, st := caseLoss(t, lc, Options{RTol: lc.c.RTol, ATol: lc.c.ATol, Overshoot: true})
			if st.NFE != peer.FwdNFE || st.Accepted != peer.FwdStepsAcc || st.Rejected != peer.FwdStepsRej {
				t.Errorf("nfe/accepted/rejected = %d/%d/%d, torchdiffeq %d/%d/%d",
					st.NFE, st.Accepted, st.Rejected, peer.FwdNFE, peer.FwdStepsAcc, peer.FwdStepsRej)
			}
			if d := math.Abs(loss-peer.Loss) / peer.Loss; d > 1e-9 {
				t.Errorf("loss %.17g, torchdiffeq %.17g (relative %g)", loss, peer.Loss, d)
			}
		})
	}
}

// TestCaseLossAgainstReference: at rtol = atol = 1e-10 the loss matches the
// 1e-12 reference to 1e-9 relative.
func TestCaseLossAgainstReference(t *testing.T) {
	for _, path := range caseFiles {
		lc := loadCaseFixture(t, path)
		for _, tb := range []*Tableau{DormandPrince5, Tsitouras5} {
			loss, _ := caseLoss(t, lc, Options{Method: tb, RTol: 1e-10, ATol: 1e-10})
			if d := math.Abs(loss-lc.c.Ref.Loss) / lc.c.Ref.Loss; d > 1e-9 {
				t.Errorf("%s/%s: loss %.17g, reference %.17g (relative %g)", lc.c.Name, tb.Name, loss, lc.c.Ref.Loss, d)
			}
		}
	}
}

// FuzzSolve: random states, times, tolerances and step limits give either a
// typed error or finite output, and never modify the inputs.
func FuzzSolve(f *testing.F) {
	f.Add(1.0, -0.5, 0.0, 1.0, 2.0, 1e-6, 1e-6, 0, uint8(0), 0.0)
	f.Add(2.0, 0.0, 0.0, -1.0, -3.0, 1e-3, 1e-9, 5, uint8(1), 0.0)
	f.Add(1e300, 1.0, 0.0, 1e-9, 1.0, 1e-12, 1e-12, 0, uint8(2), 0.1)
	f.Add(math.NaN(), 1.0, 0.0, 1.0, 1.0, 0.0, 1e-6, 0, uint8(3), 0.0)
	f.Fuzz(func(t *testing.T, y0a, y0b, t0, t1, t2, rtol, atol float64, maxSteps int, method uint8, step float64) {
		if maxSteps > 2000 || maxSteps < -1 {
			maxSteps = 2000
		}
		tbs := []*Tableau{DormandPrince5, Tsitouras5, BogackiShampine3, RK4, Midpoint, Euler}
		tb := tbs[int(method)%len(tbs)]
		if !tb.Adaptive() && step > 0 && math.Abs(t2-t0)/step > 1e4 {
			return // fixed-step solve too long for a fuzz iteration
		}
		// A nonlinear, non-autonomous oscillator with a cubic term.
		fn := func(t float64, y, dy []float64) {
			dy[0] = y[1]
			dy[1] = -y[0] - 0.1*y[0]*y[0]*y[0] + math.Sin(t)
		}
		y0 := []float64{y0a, y0b}
		ts := []float64{t0, t1, t2}
		y0c, tsc := append([]float64(nil), y0...), append([]float64(nil), ts...)
		s, err := NewSolver(Options{Method: tb, RTol: rtol, ATol: atol, MaxSteps: max(maxSteps, 0) + 1, Step: step})
		var out []float64
		if err == nil {
			out = make([]float64, 6)
			_, err = s.Solve(fn, y0, ts, out)
		}
		if fmt.Sprint(y0, ts) != fmt.Sprint(y0c, tsc) {
			t.Fatalf("inputs modified")
		}
		if err != nil {
			requireSolveError(t, err)
			return
		}
		if ok, i := allFinite(out); !ok {
			t.Fatalf("successful solve returned non-finite out[%d] = %v", i, out[i])
		}
	})
}

func ExampleSolver_Solve() {
	// The harmonic oscillator x'' = −x from x = 1, v = 0, observed at t = π/2 and π.
	f := func(t float64, y, dydt []float64) {
		dydt[0] = y[1]
		dydt[1] = -y[0]
	}
	s, err := NewSolver(Options{RTol: 1e-9, ATol: 1e-9}) // Dormand–Prince 5(4)
	if err != nil {
		panic(err)
	}
	ts := []float64{0, math.Pi / 2, math.Pi}
	out := make([]float64, len(ts)*2)
	st, err := s.Solve(f, []float64{1, 0}, ts, out)
	if err != nil {
		panic(err)
	}
	fmt.Printf("v(π/2) = %.6f, x(π) = %.6f\n", out[3], out[4])
	fmt.Println("rejected steps:", st.Rejected)
	// Output:
	// v(π/2) = -1.000000, x(π) = -1.000000
	// rejected steps: 0
}

// TestSolveBreaks: y' = y before t = b and y' = −2y after it, a field whose
// derivative jumps at b. With Options.Breaks = {b} no accepted step
// straddles b, in either direction of time, and the solution matches
// exp(b − 2(t − b)) far inside the tolerance, since each piece is smooth.
// Without the break a step crosses b (which is what made a plain solve of a
// piecewise field step across its kinks); the check that it does keeps the
// test able to fail.
func TestSolveBreaks(t *testing.T) {
	const b = 0.3712
	f := func(t float64, y, dy []float64) {
		if t < b {
			dy[0] = y[0]
		} else {
			dy[0] = -2 * y[0]
		}
	}
	exact := func(t float64) float64 {
		if t < b {
			return math.Exp(t)
		}
		return math.Exp(b - 2*(t-b))
	}
	nfe := map[bool]int{} // with break points: total evaluations
	for _, breaks := range [][]float64{nil, {-1, b, 5}} {
		for _, ts := range [][]float64{{0, 0.5, 1}, {1, 0.2, 0}} {
			straddles := 0
			s, err := NewSolver(Options{RTol: 1e-6, ATol: 1e-9, Breaks: breaks, OnStep: func(si *StepInfo) {
				if (si.T-b)*(si.T1-b) < 0 {
					straddles++
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			y0 := []float64{exact(ts[0])}
			out := make([]float64, len(ts))
			st, err := s.Solve(f, y0, ts, out)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i, tt := range ts {
				worst = math.Max(worst, math.Abs(out[i]-exact(tt))/exact(tt))
			}
			t.Logf("breaks=%v ts=%v: %d straddling steps, relative error %.2g, %+v", breaks, ts, straddles, worst, st)
			nfe[breaks != nil] += st.NFE
			if breaks == nil {
				if straddles == 0 {
					t.Errorf("ts=%v: without Breaks no step crossed the kink; the test cannot tell the cases apart", ts)
				}
				continue
			}
			if straddles != 0 {
				t.Errorf("ts=%v: %d accepted steps cross the break point", ts, straddles)
			}
			if worst > 1e-6 {
				t.Errorf("ts=%v: relative error %g with the break point", ts, worst)
			}
		}
	}
	// Stepping across the kink costs rejected steps; restarting at it does not.
	if nfe[true] >= nfe[false] {
		t.Errorf("%d evaluations with the break point, %d without", nfe[true], nfe[false])
	}
	for _, bad := range [][]float64{{0.5, 0.2}, {0.1, math.NaN()}, {0.2, 0.2}} {
		var ie *InputError
		if _, err := NewSolver(Options{Breaks: bad}); !errors.As(err, &ie) || ie.Field != "Options.Breaks" {
			t.Errorf("Breaks %v: err = %v, want an InputError for Options.Breaks", bad, err)
		}
	}
}

// TestControllers: a PIController with Alpha = 1/Order and Beta = 0 is the
// IController step for step; a PI controller with Beta > 0 still meets the
// tolerance (on the harmonic oscillator) with a different step sequence;
// invalid constants are errors.
func TestControllers(t *testing.T) {
	p := odeProblems[1]
	solve := func(c Controller) ([]float64, Stats) {
		t.Helper()
		s, err := NewSolver(Options{RTol: 1e-8, ATol: 1e-8, Controller: c})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, 2*len(p.y0()))
		st, err := s.Solve(p.f, p.y0(), []float64{0, 4}, out)
		if err != nil {
			t.Fatal(err)
		}
		return out[len(p.y0()):], st
	}
	yi, sti := solve(nil)
	yp, stp := solve(PIController{Alpha: 1.0 / 5})
	if !slices.Equal(yi, yp) || sti != stp {
		t.Errorf("PI(α=1/5, β=0) differs from I: %v %+v vs %v %+v", yp, stp, yi, sti)
	}
	yb, stb := solve(PIController{Alpha: 0.7 / 5, Beta: 0.4 / 5})
	want := make([]float64, 2)
	p.exact(4, want)
	for i := range yb {
		if d := math.Abs(yb[i] - want[i]); d > 1e-6 {
			t.Errorf("PI(β>0): component %d off by %g", i, d)
		}
	}
	if stb == sti {
		t.Errorf("PI(β>0) took the I controller's steps exactly: %+v", stb)
	}
	t.Logf("I: %+v; PI(0.7/5, 0.4/5): %+v", sti, stb)
	for _, c := range []Controller{IController{Safety: 2}, PIController{MinFactor: -1}, PIController{Beta: -0.1}, PIController{MaxFactor: math.Inf(1)}} {
		if _, err := NewSolver(Options{Controller: c}); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%+v: err = %v, want ErrInvalidInput", c, err)
		}
	}
}

// ExampleOptions_breaks solves y' = 1 before t = 1 and y' = 3 after it:
// with the kink in Options.Breaks the solver stops there and restarts, so
// the pieces are integrated exactly (each is a straight line).
func ExampleOptions_breaks() {
	f := func(t float64, y, dy []float64) {
		dy[0] = 1
		if t >= 1 {
			dy[0] = 3
		}
	}
	s, _ := NewSolver(Options{Breaks: []float64{1}})
	out := make([]float64, 2)
	st, _ := s.Solve(f, []float64{0}, []float64{0, 2}, out)
	fmt.Printf("y(2) = %.12f, %d rejected steps\n", out[1], st.Rejected)
	// Output: y(2) = 4.000000000000, 0 rejected steps
}

// ExamplePIController uses a proportional–integral step-size controller.
func ExamplePIController() {
	s, _ := NewSolver(Options{RTol: 1e-8, ATol: 1e-8, Controller: PIController{Alpha: 0.7 / 5, Beta: 0.4 / 5}})
	out := make([]float64, 2)
	s.Solve(func(t float64, y, dy []float64) { dy[0] = -y[0] }, []float64{1}, []float64{0, 1}, out)
	fmt.Printf("y(1) = %.8f\n", out[1])
	// Output: y(1) = 0.36787944
}

// requireSolveError fails t unless err is one of the typed errors a solve
// may end with on bad or hard input.
func requireSolveError(t *testing.T, err error) {
	t.Helper()
	for _, e := range []error{ErrInvalidInput, ErrNonFinite, ErrStepSizeUnderflow, ErrTooManySteps} {
		if errors.Is(err, e) {
			return
		}
	}
	t.Fatalf("untyped error: %v", err)
}
