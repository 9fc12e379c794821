package neuralode

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// splineData returns K irregular knots on [0, 3] and random observations.
func splineData(seed uint64, K, B, C int) (ts, xs []float64) {
	rng := rand.New(rand.NewPCG(seed, 17))
	ts = make([]float64, K)
	for k := 1; k < K; k++ {
		ts[k] = ts[k-1] + 0.2 + 0.6*rng.Float64()
	}
	xs = make([]float64, K*B*C)
	for i := range xs {
		xs[i] = rng.NormFloat64()
	}
	return ts, xs
}

func mustSpline(t testing.TB, kind SplineKind, ts, xs []float64, B, C int) *Spline {
	t.Helper()
	s, err := NewSpline(kind, ts, xs, B, C)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var splineKinds = []SplineKind{HermiteSpline, NaturalSpline}

// bothSplines returns random data (splineData) and its spline of each kind.
func bothSplines(t testing.TB, seed uint64, K, B, C int) (ts, xs []float64, splines []*Spline) {
	ts, xs = splineData(seed, K, B, C)
	for _, kind := range splineKinds {
		splines = append(splines, mustSpline(t, kind, ts, xs, B, C))
	}
	return ts, xs, splines
}

// TestSplineKnotConditions checks the interpolation conditions that define
// each spline: values at the knots; Hermite: end slopes m_{k−1}, m_k on
// every piece (so C¹), a straight first piece; natural: C² at the interior
// knots and zero second derivative at both ends.
func TestSplineKnotConditions(t *testing.T) {
	const K, B, C = 9, 2, 3
	ts, xs, splines := bothSplines(t, 1, K, B, C)
	n := B * C
	for _, s := range splines {
		kind := s.Kind()
		v := make([]float64, n)
		for k := range ts {
			s.At(ts[k], v)
			for i := range v {
				if d := math.Abs(v[i] - xs[k*n+i]); d > 1e-13 {
					t.Fatalf("%v: X(t_%d)[%d] = %v, want %v", kind, k, i, v[i], xs[k*n+i])
				}
			}
		}
		// One-sided values at each interior knot: the left piece's end
		// against the right piece's start.
		left, right := make([]float64, n), make([]float64, n)
		slope := func(k, i int) float64 { return (xs[(k+1)*n+i] - xs[k*n+i]) / (ts[k+1] - ts[k]) }
		for k := 1; k < K-1; k++ {
			for order := 0; order <= 2; order++ {
				s.eval(k-1, order, ts[k], left)
				s.eval(k, order, ts[k], right)
				for i := range left {
					jump := math.Abs(left[i] - right[i])
					switch {
					case order == 1 && kind == HermiteSpline:
						if jump > 1e-12 || math.Abs(right[i]-slope(k-1, i)) > 1e-12 {
							t.Fatalf("hermite: slope at t_%d: left %v right %v, want backward difference %v", k, left[i], right[i], slope(k-1, i))
						}
					case order < 2 || kind == NaturalSpline:
						if jump > 1e-11*(1+math.Abs(right[i])) {
							t.Fatalf("%v: derivative %d jumps by %g at t_%d", kind, order, jump, k)
						}
					}
				}
			}
		}
		d2 := make([]float64, n)
		switch kind {
		case NaturalSpline:
			s.eval(0, 2, ts[0], d2)
			s.eval(K-2, 2, ts[K-1], left)
			for i := range d2 {
				if math.Abs(d2[i]) > 1e-12 || math.Abs(left[i]) > 1e-12 {
					t.Fatalf("natural: X'' at the ends = %v, %v, want 0", d2[i], left[i])
				}
			}
		case HermiteSpline:
			s.Deriv2(0.5*(ts[0]+ts[1]), d2)
			for i := range d2 {
				if d2[i] != 0 {
					t.Fatalf("hermite: first piece not straight: X'' = %v", d2[i])
				}
			}
			if bp := s.Breakpoints(); len(bp) != K-2 || bp[0] != ts[1] || bp[K-3] != ts[K-2] {
				t.Fatalf("hermite break points %v, want the interior knots of %v", bp, ts)
			}
		}
	}
	if bp := splines[1].Breakpoints(); bp != nil {
		t.Fatalf("natural spline has break points %v", bp)
	}
}

// TestSplineNaturalThreeKnots compares the natural spline with the
// closed form: the natural spline through samples of a straight line is the
// line, and its second derivatives at the knots solve the textbook system,
// checked here on three equally spaced knots (M_1 = 3(x_0 − 2x_1 + x_2)/(2h²)).
func TestSplineNaturalThreeKnots(t *testing.T) {
	ts := []float64{0, 0.5, 1}
	xs := []float64{1, 3, 2}
	s := mustSpline(t, NaturalSpline, ts, xs, 1, 1)
	var d2 [1]float64
	s.Deriv2(0.5, d2[:])
	h := 0.5
	want := 3 * (1 - 2*3 + 2) / (2 * h * h)
	if math.Abs(d2[0]-want) > 1e-12 {
		t.Fatalf("M_1 = %v, want %v", d2[0], want)
	}
	line := mustSpline(t, NaturalSpline, []float64{0, 0.3, 1, 1.7}, []float64{1, 1.6, 3, 4.4}, 1, 1)
	var v [1]float64
	for _, x := range []float64{-0.5, 0.1, 0.65, 1.2, 2} {
		line.At(x, v[:])
		if math.Abs(v[0]-(1+2*x)) > 1e-13 {
			t.Fatalf("line through collinear points: X(%v) = %v, want %v", x, v[0], 1+2*x)
		}
	}
}

// TestSplineDerivativesFiniteDifferences: Deriv and Deriv2 against central
// differences of At and Deriv inside every piece.
func TestSplineDerivativesFiniteDifferences(t *testing.T) {
	ts, _, splines := bothSplines(t, 2, 7, 2, 2) // 7 knots, 2 series × 2 channels
	d1, d2 := make([]float64, 4), make([]float64, 4)
	p, m := make([]float64, 4), make([]float64, 4)
	for _, s := range splines {
		kind := s.Kind()
		for k := 0; k+1 < len(ts); k++ {
			for _, frac := range []float64{0.17, 0.5, 0.83} {
				x := ts[k] + frac*(ts[k+1]-ts[k])
				const h = 1e-5
				s.Deriv(x, d1)
				s.Deriv2(x, d2)
				s.At(x+h, p)
				s.At(x-h, m)
				for i := range d1 {
					if fd := (p[i] - m[i]) / (2 * h); math.Abs(fd-d1[i]) > 1e-8*(1+math.Abs(d1[i])) {
						t.Fatalf("%v: dX/dt = %v, finite difference %v", kind, d1[i], fd)
					}
				}
				s.Deriv(x+h, p)
				s.Deriv(x-h, m)
				for i := range d2 {
					if fd := (p[i] - m[i]) / (2 * h); math.Abs(fd-d2[i]) > 1e-7*(1+math.Abs(d2[i])) {
						t.Fatalf("%v: d²X/dt² = %v, finite difference %v", kind, d2[i], fd)
					}
				}
			}
		}
	}
}

// TestSplineHermiteCausal: the Hermite path on [t_{j−1}, t_j] is built from
// x_{j−2}, x_{j−1}, x_j, so changing a future observation x_j leaves the path
// before its knot's predecessor t_{j−1} unchanged, bit for bit (equivalently:
// the path on [t_0, t_k] depends on x_0 … x_k only), while a natural spline
// changes everywhere.
func TestSplineHermiteCausal(t *testing.T) {
	const K, B, C = 10, 1, 2
	ts, xs := splineData(3, K, B, C)
	n := B * C
	const j = 6
	ys := append([]float64(nil), xs...)
	ys[j*n] += 1
	for _, kind := range splineKinds {
		s0 := mustSpline(t, kind, ts, xs, B, C)
		s1 := mustSpline(t, kind, ts, ys, B, C)
		a, b := make([]float64, n), make([]float64, n)
		changedBefore := false
		for i := 0; i <= 200; i++ {
			x := ts[0] + (ts[j-1]-ts[0])*float64(i)/200
			s0.At(x, a)
			s1.At(x, b)
			if a[0] != b[0] || a[1] != b[1] {
				changedBefore = true
			}
		}
		if kind == HermiteSpline && changedBefore {
			t.Fatalf("hermite: changing x_%d changed the path before t_%d", j, j-1)
		}
		if kind == NaturalSpline && !changedBefore {
			t.Fatalf("natural: changing x_%d left the path before t_%d unchanged; the test cannot tell causal paths apart", j, j-1)
		}
		// Both change after t_{j−1}.
		x := 0.5 * (ts[j-1] + ts[j])
		s0.At(x, a)
		s1.At(x, b)
		if a[0] == b[0] {
			t.Fatalf("%v: x_%d does not affect the path on [t_%d, t_%d]", kind, j, j-1, j)
		}
	}
}

// TestSplineMissingValues: NaNs are filled per series and channel by linear
// interpolation in t, leading and trailing gaps by the nearest observation.
func TestSplineMissingValues(t *testing.T) {
	nan := math.NaN()
	ts := []float64{0, 1, 3, 4, 6}
	// Two series, one channel each: series 0 misses knots 0, 2, 3 (and is
	// observed at 1, 4); series 1 misses knot 4.
	xs := []float64{
		nan, 5,
		2, 6,
		nan, 7,
		nan, 8,
		7, nan,
	}
	s := mustSpline(t, HermiteSpline, ts, xs, 2, 1)
	want := []float64{
		2, 5,
		2, 6,
		2 + 5*2.0/5, 7,
		2 + 5*3.0/5, 8,
		7, 8,
	}
	for i, v := range s.Observations() {
		if math.Abs(v-want[i]) > 1e-14 {
			t.Fatalf("filled observations %v, want %v", s.Observations(), want)
		}
	}
	if !math.IsNaN(xs[0]) {
		t.Fatal("NewSpline modified its input")
	}
	// A channel with no observation, an infinity, bad shapes.
	bad := []struct {
		name   string
		kind   SplineKind
		ts, xs []float64
		b, c   int
		target error
	}{
		{"all missing", NaturalSpline, []float64{0, 1}, []float64{1, nan, 2, nan}, 1, 2, ErrInvalidInput},
		{"infinite", NaturalSpline, []float64{0, 1}, []float64{1, math.Inf(1)}, 1, 1, ErrNonFinite},
		{"one knot", NaturalSpline, []float64{0}, []float64{1}, 1, 1, ErrInvalidInput},
		{"decreasing", HermiteSpline, []float64{1, 0}, []float64{1, 2}, 1, 1, ErrInvalidInput},
		{"repeated", HermiteSpline, []float64{0, 0}, []float64{1, 2}, 1, 1, ErrInvalidInput},
		{"length", HermiteSpline, []float64{0, 1}, []float64{1, 2, 3}, 1, 1, ErrInvalidInput},
		{"batch", HermiteSpline, []float64{0, 1}, []float64{1, 2}, 0, 1, ErrInvalidInput},
		{"kind", SplineKind(7), []float64{0, 1}, []float64{1, 2}, 1, 1, ErrInvalidInput},
		{"nan time", HermiteSpline, []float64{0, nan}, []float64{1, 2}, 1, 1, ErrNonFinite},
	}
	for _, c := range bad {
		_, err := NewSpline(c.kind, c.ts, c.xs, c.b, c.c)
		var ie *InputError
		if !errors.Is(err, c.target) || !errors.As(err, &ie) {
			t.Errorf("%s: got %v, want an *InputError wrapping %v", c.name, err, c.target)
		}
	}
	if k, err := ParseSplineKind("natural"); err != nil || k != NaturalSpline || k.String() != "natural" {
		t.Errorf("ParseSplineKind(natural) = %v, %v", k, err)
	}
	if _, err := ParseSplineKind("cubic"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("ParseSplineKind(cubic): %v", err)
	}
}

// linearCDE returns the field dz = Σ_c A_c z dX_c with H = C = 2, A_0 = α I
// and A_1 = ω J (J the rotation generator): the matrices commute, so
// z(t) = exp(α ΔX_0) R(ω ΔX_1) z(t_0) with ΔX = X(t) − X(t_0).
func linearCDE(t testing.TB, alpha, omega float64) *CDEField {
	f, err := NewCDEField(CDEConfig{Hidden: 2, Channels: 2, Activation: Identity}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := f.Params() // W_0 is (H·C)×H, row h·C+c holds row h of A_c; b_0 = 0.
	A := [2][2][2]float64{{{alpha, 0}, {0, alpha}}, {{0, -omega}, {omega, 0}}}
	for h := 0; h < 2; h++ {
		for c := 0; c < 2; c++ {
			for j := 0; j < 2; j++ {
				p[(h*2+c)*2+j] = A[c][h][j]
			}
		}
	}
	return f
}

// TestCDELinearClosedForm: a linear CDE driven by a spline matches its
// closed form at every knot, through the gradient solver (which restarts
// at the Hermite path's break points), for both spline kinds.
func TestCDELinearClosedForm(t *testing.T) {
	const K, B = 8, 3
	ts, xs := splineData(4, K, B, 2)
	const alpha, omega = 0.3, 1.1
	z0 := []float64{1, 0, 0.5, -1, -0.3, 0.8}
	for _, kind := range splineKinds {
		f := linearCDE(t, alpha, omega)
		path := mustSpline(t, kind, ts, xs, B, 2)
		if err := f.SetPath(path); err != nil {
			t.Fatal(err)
		}
		gs, err := NewGradientSolver(f, GradOptions{Method: Direct, Forward: Options{RTol: 1e-11, ATol: 1e-12}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := gs.Gradient(z0, ts, func(states, grad []float64) float64 { return 0 })
		if err != nil {
			t.Fatal(err)
		}
		x0, x := make([]float64, 2*B), make([]float64, 2*B)
		path.At(ts[0], x0)
		worst := 0.0
		for k, tk := range ts {
			path.At(tk, x)
			for b := 0; b < B; b++ {
				g := math.Exp(alpha * (x[2*b] - x0[2*b]))
				s, c := math.Sincos(omega * (x[2*b+1] - x0[2*b+1]))
				za, zb := z0[2*b], z0[2*b+1]
				want := [2]float64{g * (c*za - s*zb), g * (s*za + c*zb)}
				for h := 0; h < 2; h++ {
					got := r.States[k*2*B+2*b+h]
					worst = math.Max(worst, math.Abs(got-want[h]))
				}
			}
		}
		if worst > 1e-8 {
			t.Errorf("%v: max deviation from the closed form %g", kind, worst)
		}
	}
}

// cdeProblem is a small nonlinear CDE with random data.
func cdeProblem(t testing.TB, kind SplineKind, seed uint64) (*CDEField, []float64, []float64, []float64) {
	const K, B, H, C = 7, 3, 3, 3
	ts, xs := splineData(seed, K, B, C)
	f, err := NewCDEField(CDEConfig{Hidden: H, Channels: C, Widths: []int{8}, Activation: Tanh}, rand.New(rand.NewPCG(seed, 5)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetPath(mustSpline(t, kind, ts, xs, B, C)); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 6))
	z0, target := make([]float64, B*H), make([]float64, B*H)
	for i := range z0 {
		z0[i] = rng.NormFloat64()
		target[i] = rng.NormFloat64()
	}
	return f, z0, []float64{ts[0], ts[len(ts)-1]}, target
}

// TestCDEFieldVJP: the field's products against finite differences of Eval
// in z, θ and t, and its f output against Eval.
func TestCDEFieldVJP(t *testing.T) {
	for _, kind := range splineKinds {
		f, z, _, a := cdeProblem(t, kind, 7)
		ev := f.NewEvaluator()
		n, p := len(z), len(f.Params())
		tt := 1.37
		if kind == HermiteSpline {
			// Away from knots: the t-derivative is one-sided there.
			tt = 0.5 * (f.Path().Knots()[2] + f.Path().Knots()[3])
		}
		fv, gz, gp := make([]float64, n), make([]float64, n), make([]float64, p)
		var gt float64
		ev.VJP(tt, z, a, fv, gz, gp, &gt)
		want := make([]float64, n)
		ev.Eval(tt, z, want)
		for i := range fv {
			if fv[i] != want[i] {
				t.Fatalf("%v: VJP's f %v differs from Eval's %v", kind, fv, want)
			}
		}
		s := func(tt float64, z []float64) float64 {
			out := make([]float64, n)
			ev.Eval(tt, z, out)
			return Dot(a, out)
		}
		const h = 1e-6
		check := func(what string, got float64, x []float64, i int) {
			old := x[i]
			x[i] = old + h
			sp := s(tt, z)
			x[i] = old - h
			sm := s(tt, z)
			x[i] = old
			if fd := (sp - sm) / (2 * h); math.Abs(fd-got) > 1e-7*(1+math.Abs(got)) {
				t.Errorf("%v: %s[%d] = %v, finite difference %v", kind, what, i, got, fd)
			}
		}
		for i := range z {
			check("gz", gz[i], z, i)
		}
		for i := range f.Params() {
			check("gp", gp[i], f.Params(), i)
		}
		if fd := (s(tt+h, z) - s(tt-h, z)) / (2 * h); math.Abs(fd-gt) > 1e-7*(1+math.Abs(gt)) {
			t.Errorf("%v: gt = %v, finite difference %v", kind, gt, fd)
		}
		// gp accumulates.
		ev.VJP(tt, z, a, nil, nil, gp, nil)
		gp2 := make([]float64, p)
		ev.VJP(tt, z, a, nil, nil, gp2, nil)
		for i := range gp {
			if math.Abs(gp[i]-2*gp2[i]) > 1e-14*(1+math.Abs(gp[i])) {
				t.Fatalf("%v: gp is not accumulated", kind)
			}
		}
	}
}

// TestCDEGradients: every gradient method against Direct at tight tolerance,
// and Direct against finite differences of the loss, in θ and z0, for both
// path kinds (the Hermite path with its break points).
//
// Finite differences need a large step here: the natural path's third
// derivative jumps at the knots, which the solver steps across, so the
// computed loss is a slightly rough function of the inputs (its noise at
// rtol = atol = 1e-11 is ~1e-12, which a step of 1e-5 would turn into
// errors of 1e-7). At tolerance 1e-13 a central difference with h = 1e-3
// (truncation error O(h²)) is accurate to ~1e-6.
//
// The quadrature methods integrate aᵀ∂f/∂θ over the whole natural-path
// interval, across knots where the integrand's second derivative jumps, so
// Gauss–Legendre converges only algebraically there: their error is checked
// against a looser bound (measured 5.9e-4 at C = 1). A Hermite path has its
// knots as break points, so no quadrature interval straddles one.
func TestCDEGradients(t *testing.T) {
	for _, kind := range splineKinds {
		f, z0, ts, target := cdeProblem(t, kind, 11)
		tight := Options{RTol: 1e-11, ATol: 1e-11}
		ref := gradFor(t, f, z0, ts, target, GradOptions{Method: Direct, Forward: tight})
		fdOpts := Options{RTol: 1e-13, ATol: 1e-13}
		const h = 1e-3
		fd := func(x []float64, i int) float64 {
			old := x[i]
			x[i] = old + h
			lp := lossOf(t, f, z0, ts, target, fdOpts)
			x[i] = old - h
			lm := lossOf(t, f, z0, ts, target, fdOpts)
			x[i] = old
			return (lp - lm) / (2 * h)
		}
		for _, i := range []int{0, 5, 17, 40, len(f.Params()) - 1} {
			if g := fd(f.Params(), i); math.Abs(g-ref.Params[i]) > 1e-5*(1+math.Abs(g)) {
				t.Errorf("%v: dL/dθ[%d] = %v, finite difference %v", kind, i, ref.Params[i], g)
			}
		}
		for i := range z0 {
			if g := fd(z0, i); math.Abs(g-ref.Z0[i]) > 1e-5*(1+math.Abs(g)) {
				t.Errorf("%v: dL/dz0[%d] = %v, finite difference %v", kind, i, ref.Z0[i], g)
			}
		}
		for _, m := range allGradMethods[1:] {
			r := gradFor(t, f, z0, ts, target, GradOptions{Method: m, Forward: tight, GQ: GQOptions{C: 1}})
			ep, ez := relErr(r.Params, ref.Params), relErr(r.Z0, ref.Z0)
			tolP := 1e-8
			if kind == NaturalSpline && (m == GQAdjoint || m == GQInterpAdjoint) {
				tolP = 2e-3
			}
			// The error-controlled rules' estimates assume a smooth
			// integrand; across the natural spline's knots they stop at
			// about 6e-8 at this tolerance (10⁴× below the published rule).
			if kind == NaturalSpline && (m == GQAdaptive || m == GQAdaptiveInterp) {
				tolP = 2e-7
			}
			if ep > tolP || ez > 1e-8 {
				t.Errorf("%v %v: relative error vs direct: θ %.2g (want ≤ %.0g), z0 %.2g", kind, m, ep, tolP, ez)
			}
			t.Logf("%v %-9v rel. err vs direct θ %.2g z0 %.2g (fwd NFE %d, bwd NFE %d)", kind, m, ep, ez, r.Stats.Forward.NFE, r.Stats.Backward.NFE)
		}
	}
}

// TestCDEFieldAllocs: Eval and VJP allocate nothing after the first call.
func TestCDEFieldAllocs(t *testing.T) {
	f, z, _, a := cdeProblem(t, HermiteSpline, 3)
	ev := f.NewEvaluator()
	n, p := len(z), len(f.Params())
	dz, gz, gp := make([]float64, n), make([]float64, n), make([]float64, p)
	var gt float64
	ev.Eval(0.4, z, dz)
	ev.VJP(0.4, z, a, dz, gz, gp, &gt)
	ps := ev.(PieceSelector)
	if allocs := testing.AllocsPerRun(50, func() { ps.SelectPiece(0.1, 0.3); ev.Eval(0.4, z, dz) }); allocs != 0 {
		t.Errorf("Eval: %v allocations", allocs)
	}
	if allocs := testing.AllocsPerRun(50, func() { ev.VJP(0.4, z, a, dz, gz, gp, &gt) }); allocs != 0 {
		t.Errorf("VJP: %v allocations", allocs)
	}
}

// TestCDEFieldSetup: parameter layout, binding and configuration errors.
func TestCDEFieldSetup(t *testing.T) {
	f, err := NewCDEField(CDEConfig{Hidden: 4, Channels: 3, Widths: []int{16, 8}, Activation: Tanh}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	// f_θ: R^4 → R^12 through widths 16, 8.
	want := []int{16 * 4, 16, 8 * 16, 8, 12 * 8, 12}
	sum := 0
	for i, s := range f.ParamSizes() {
		if s != want[i] {
			t.Fatalf("ParamSizes %v, want %v", f.ParamSizes(), want)
		}
		sum += s
	}
	if sum != len(f.Params()) {
		t.Fatalf("sizes sum to %d, %d parameters", sum, len(f.Params()))
	}
	for i, v := range f.Params()[:64] {
		if v == 0 || math.Abs(v) >= 0.5 { // bound 1/√4
			t.Fatalf("W_0[%d] = %v, want nonzero in (−1/2, 1/2)", i, v)
		}
	}
	m := f.MLP()
	W0, _, out, in := m.Layer(0)
	if out != 16 || in != 12 || W0[0] != f.Params()[0] || W0[4] != 0 || W0[12] != f.Params()[4] {
		t.Fatalf("padded network: W_0 %d×%d, row 0 starts %v", out, in, W0[:13])
	}
	joint := make([]float64, len(f.Params())+1)
	if err := f.BindParams(joint[1:]); err != nil || &f.Params()[0] != &joint[1] {
		t.Fatalf("BindParams: %v", err)
	}
	if err := f.BindParams(joint); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("BindParams with a wrong length: %v", err)
	}
	for _, c := range []CDEConfig{{Hidden: 0, Channels: 2}, {Hidden: 2, Channels: 0}, {Hidden: 2, Channels: 2, Widths: []int{0}},
		{Hidden: 2, Channels: 2, Activation: Activation(99)}} {
		if _, err := NewCDEField(c, nil); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewCDEField(%+v): %v", c, err)
		}
	}
	ts, xs := splineData(1, 3, 1, 2)
	if err := f.SetPath(mustSpline(t, NaturalSpline, ts, xs, 1, 2)); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("SetPath with 2 channels for a 3-channel field: %v", err)
	}
	if err := f.SetPath(nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("SetPath(nil): %v", err)
	}
}

// TestLinear: Apply and VJP against a direct computation and finite differences.
func TestLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	l, err := NewLinear(3, 2, rng)
	if err != nil {
		t.Fatal(err)
	}
	const B = 4
	x := make([]float64, B*3)
	dy := make([]float64, B*2)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	for i := range dy {
		dy[i] = rng.NormFloat64()
	}
	y := make([]float64, B*2)
	if err := l.Apply(x, y); err != nil {
		t.Fatal(err)
	}
	p := l.Params()
	for b := 0; b < B; b++ {
		for o := 0; o < 2; o++ {
			want := p[6+o]
			for i := 0; i < 3; i++ {
				want += p[o*3+i] * x[b*3+i]
			}
			if math.Abs(y[b*2+o]-want) > 1e-14 {
				t.Fatalf("Apply: y[%d,%d] = %v, want %v", b, o, y[b*2+o], want)
			}
		}
	}
	dx, gp := make([]float64, len(x)), make([]float64, len(p))
	if err := l.VJP(x, dy, dx, gp); err != nil {
		t.Fatal(err)
	}
	s := func() float64 {
		_ = l.Apply(x, y)
		return Dot(dy, y)
	}
	const h = 1e-6
	for _, v := range []struct {
		name string
		x, g []float64
	}{{"dx", x, dx}, {"gp", p, gp}} {
		for i := range v.x {
			old := v.x[i]
			v.x[i] = old + h
			sp := s()
			v.x[i] = old - h
			sm := s()
			v.x[i] = old
			if fd := (sp - sm) / (2 * h); math.Abs(fd-v.g[i]) > 1e-8 {
				t.Errorf("%s[%d] = %v, finite difference %v", v.name, i, v.g[i], fd)
			}
		}
	}
	if err := l.Apply(x[:5], y); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Apply with a partial row: %v", err)
	}
	if err := l.VJP(x, dy[:2], nil, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("VJP with a short cotangent: %v", err)
	}
	if _, err := NewLinear(0, 2, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("NewLinear(0, 2): %v", err)
	}
}

func BenchmarkCDEFieldVJP(b *testing.B) {
	// The spirals task's shape: 32 series, H = 8, C = 3, width 32.
	const K, B, H, C = 100, 32, 8, 3
	ts, xs := splineData(1, K, B, C)
	f, err := NewCDEField(CDEConfig{Hidden: H, Channels: C, Widths: []int{32}, Activation: Tanh}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		b.Fatal(err)
	}
	if err := f.SetPath(mustSpline(b, HermiteSpline, ts, xs, B, C)); err != nil {
		b.Fatal(err)
	}
	z, a := make([]float64, B*H), make([]float64, B*H)
	for i := range z {
		z[i], a[i] = 0.1*float64(i%7), 0.01*float64(i%5)
	}
	ev := f.NewEvaluator()
	fv, gz, gp := make([]float64, B*H), make([]float64, B*H), make([]float64, len(f.Params()))
	b.Run("Eval", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ev.Eval(ts[i%K], z, fv)
		}
	})
	b.Run("VJP", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ev.VJP(ts[i%K], z, a, fv, gz, gp, nil)
		}
	})
	// The padded network alone, to show the field's own overhead (the
	// parameter refresh, padding, spline and contraction).
	m := f.MLP()
	mev := m.NewEvaluator()
	zp, ap, out, gzp, gpp := make([]float64, B*H*C), make([]float64, B*H*C), make([]float64, B*H*C), make([]float64, B*H*C), make([]float64, m.NumParams())
	for i := range zp {
		zp[i], ap[i] = 0.1*float64(i%7), 0.01*float64(i%5)
	}
	b.Run("MLPEval", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			mev.Eval(0, zp, out)
		}
	})
	b.Run("MLPVJP", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			mev.VJP(0, zp, ap, out, gzp, gpp, nil)
		}
	})
}

// ExampleCDEField classifies two short series by the sign of the final
// hidden state of an untrained neural CDE, and computes the gradient of a
// loss on it with the seminorm adjoint.
func ExampleCDEField() {
	ts := []float64{0, 1, 2, 3}
	// Two series with channels (t, x); the second misses x at t = 2.
	xs := []float64{
		0, 1, 0, -1,
		1, 2, 1, -2,
		2, 1, 2, math.NaN(),
		3, 0, 3, -1,
	}
	path, err := NewSpline(HermiteSpline, ts, xs, 2, 2)
	if err != nil {
		panic(err)
	}
	field, _ := NewCDEField(CDEConfig{Hidden: 2, Channels: 2, Widths: []int{8}, Activation: Tanh}, rand.New(rand.NewPCG(1, 2)))
	if err := field.SetPath(path); err != nil {
		panic(err)
	}
	// z(t_0) from the first observation by a linear map.
	init, _ := NewLinear(2, 2, rand.New(rand.NewPCG(1, 3)))
	z0 := make([]float64, 4)
	if err := init.Apply(path.Observations()[:4], z0); err != nil {
		panic(err)
	}
	gs, err := NewGradientSolver(field, GradOptions{Method: SeminormAdjoint, Forward: Options{RTol: 1e-6, ATol: 1e-8}})
	if err != nil {
		panic(err)
	}
	// Loss: half the squared final state.
	r, err := gs.Gradient(z0, []float64{0, 3}, func(states, grad []float64) float64 {
		zT, gT := states[4:], grad[4:]
		copy(gT, zT)
		return 0.5 * Dot(zT, zT)
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("loss %.4f, %d parameters, break points %v\n", r.Loss, len(r.Params), field.Breakpoints())
	// Output:
	// loss 5.9656, 60 parameters, break points [1 2]
}

// ExampleNewSpline fills a missing observation and compares the two kinds
// of path: both interpolate the (filled) data, and only the Hermite path
// has break points.
func ExampleNewSpline() {
	ts := []float64{0, 1, 2, 3}
	xs := []float64{0, 1, math.NaN(), 1} // one series, one channel; x(2) is missing
	for _, kind := range []SplineKind{HermiteSpline, NaturalSpline} {
		s, err := NewSpline(kind, ts, xs, 1, 1)
		if err != nil {
			panic(err)
		}
		var x, dx [1]float64
		s.At(2.5, x[:])
		s.Deriv(2.5, dx[:])
		fmt.Printf("%s: filled %v, X(2.5) = %.4f, X'(2.5) = %.4f, break points %v\n",
			kind, s.Observations(), x[0], dx[0], s.Breakpoints())
	}
	// Output:
	// hermite: filled [0 1 1 1], X(2.5) = 1.0000, X'(2.5) = 0.0000, break points [1 2]
	// natural: filled [0 1 1 1], X(2.5) = 0.9750, X'(2.5) = 0.0167, break points []
}
