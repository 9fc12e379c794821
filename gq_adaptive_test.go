package neuralode

import (
	"errors"
	"math"
	"testing"
)

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

// oscillatoryField is dz/dt = θ₀·cos(ωt) + θ₁·t² with θ₀ tiny: the
// solves barely see the oscillation (few steps), but dL/dθ₀ = ∫ a·cos(ωt)
// is a quadrature of an oscillating integrand that the step count does
// not predict.
func oscillatoryField(omega float64) *FuncField {
	ff := &FuncField{D: 1, P: []float64{1e-9, -0.7}}
	ff.F = func(t float64, z, dz []float64) {
		for i := range z {
			dz[i] = ff.P[0]*math.Cos(omega*t) + ff.P[1]*t*t
		}
	}
	ff.VJPFunc = func(t float64, z, a, f, gz, gp []float64, gt *float64) {
		c := math.Cos(omega * t)
		for i := range z {
			if f != nil {
				f[i] = ff.P[0]*c + ff.P[1]*t*t
			}
			if gz != nil {
				gz[i] = 0
			}
			if gp != nil {
				gp[0] += a[i] * c
				gp[1] += a[i] * t * t
			}
		}
		if gt != nil {
			*gt = 0
			for i := range z {
				*gt += a[i] * (-ff.P[0]*omega*math.Sin(omega*t) + 2*ff.P[1]*t)
			}
		}
	}
	return ff
}

// TestGQAdaptiveErrorControl: the quadrature error — the difference from
// the same backward solve integrated by a 256-node rule — stays within the
// tolerance where the published rule (nodes from the evaluation count)
// misses by orders of magnitude; both directions of time.
func TestGQAdaptiveErrorControl(t *testing.T) {
	const omega, y = 30.0, 0.25
	ff := oscillatoryField(omega)
	for _, T := range []float64{1, -1} {
		ts := []float64{0, T}
		for _, tol := range []float64{1e-5, 1e-8, 1e-11} {
			grad := func(m GradMethod, gq GQOptions) *GradResult {
				g, err := NewGradientSolver(ff, GradOptions{Method: m, Forward: Options{RTol: tol, ATol: tol}, GQ: gq})
				if err != nil {
					t.Fatal(err)
				}
				r, err := g.Gradient([]float64{0}, ts, MSELoss([]float64{y}))
				if err != nil {
					t.Fatal(err)
				}
				c := *r
				c.Params = append([]float64(nil), r.Params...)
				return &c
			}
			ref := grad(GQAdjoint, GQOptions{C: 1e6, Cap: 256})
			pub := grad(GQAdjoint, GQOptions{})
			for _, m := range []GradMethod{GQAdaptive, GQAdaptiveInterp} {
				r := grad(m, GQOptions{})
				e := math.Abs(r.Params[0]-ref.Params[0]) / math.Abs(ref.Params[0])
				t.Logf("T=%v %v tol %g: error %.2e, %d nodes", T, m, tol, e, r.Stats.QuadratureNodes)
				if e > tol {
					t.Errorf("T=%v %v tol %g: dL/dθ₀ quadrature error %g (%d nodes)", T, m, tol, e, r.Stats.QuadratureNodes)
				}
				if r.Stats.QuadratureNodes > 200 {
					t.Errorf("T=%v %v tol %g: %d nodes for five periods", T, m, tol, r.Stats.QuadratureNodes)
				}
				if r.Stats.VJPs != r.Stats.Backward.NFE+r.Stats.QuadratureNodes {
					t.Errorf("VJPs %d, want NFE %d + nodes %d", r.Stats.VJPs, r.Stats.Backward.NFE, r.Stats.QuadratureNodes)
				}
			}
			if e := math.Abs(pub.Params[0]-ref.Params[0]) / math.Abs(ref.Params[0]); e < 100*tol {
				t.Errorf("T=%v tol %g: the published rule's error %g is small: the test is too easy", T, tol, e)
			}
		}
	}
}

// TestGQAdaptiveBisects: an integrand with a sharp feature inside one
// observation interval makes the first rule fail both estimates, and the
// bisected result is still within the tolerance.
func TestGQAdaptiveBisects(t *testing.T) {
	const y = 0.5
	// dz/dt = θ·sech²(s(t − c)) with a narrow peak: ∫₀¹ = (tanh(s(1−c)) + tanh(sc))/s.
	const s, c = 150.0, 0.3
	ff := &FuncField{D: 1, P: []float64{2}}
	bump := func(t float64) float64 { u := 1 / math.Cosh(s*(t-c)); return u * u }
	ff.F = func(t float64, z, dz []float64) { dz[0] = ff.P[0] * bump(t) }
	ff.VJPFunc = func(t float64, z, a, f, gz, gp []float64, gt *float64) {
		if f != nil {
			f[0] = ff.P[0] * bump(t)
		}
		if gz != nil {
			gz[0] = 0
		}
		if gp != nil {
			gp[0] += a[0] * bump(t)
		}
		if gt != nil {
			*gt = 0
		}
	}
	integral := (math.Tanh(s*(1-c)) + math.Tanh(s*c)) / s
	z1 := ff.P[0] * integral
	want := 2 * (z1 - y) * integral
	g, err := NewGradientSolver(ff, GradOptions{Method: GQAdaptive, Forward: Options{RTol: 1e-9, ATol: 1e-9, MaxStep: 0.01}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := g.Gradient([]float64{0}, []float64{0, 1}, MSELoss([]float64{y}))
	if err != nil {
		t.Fatal(err)
	}
	if e := math.Abs(r.Params[0]-want) / math.Abs(want); e > 1e-7 {
		t.Errorf("dL/dθ = %v, want %v (relative error %g)", r.Params[0], want, e)
	}
	m := g.method.(*gqaMethod)
	bis := 0
	for _, ch := range m.chunks[:m.nChunks] {
		bis += ch.bisections
	}
	t.Logf("%d nodes, %d bisections", r.Stats.QuadratureNodes, bis)
	if bis == 0 {
		t.Errorf("no bisection for a peak of width 1/%v (%d nodes)", s, r.Stats.QuadratureNodes)
	}
}

// TestGQAdaptiveCases: on the PyTorch cases at rtol = atol ∈ {1e-4, 1e-6,
// 1e-8}, GQAdaptive's error against the 1e-12 reference is within 2× of the
// seminorm adjoint's (the same backward ODE with the quadrature done by the
// Runge–Kutta weights), where the published rule at C = 0.1 is up to 10³×
// worse.
func TestGQAdaptiveCases(t *testing.T) {
	for _, path := range caseFiles {
		lc := loadCaseFixture(t, path)
		ref := lc.c.RefGradFlat()
		for _, tol := range []float64{1e-4, 1e-6, 1e-8} {
			errOf := func(m GradMethod) float64 {
				r := gradFor(t, lc.m, lc.z0, lc.c.T, lc.targets, GradOptions{Method: m, Forward: Options{RTol: tol, ATol: tol}})
				return relErr(r.Params, ref)
			}
			semi, adapt := errOf(SeminormAdjoint), errOf(GQAdaptive)
			if adapt > 2*semi {
				t.Errorf("%s tol %g: gq-adaptive error %g, seminorm %g", lc.c.Name, tol, adapt, semi)
			}
		}
	}
}
