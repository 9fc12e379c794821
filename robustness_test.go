package neuralode

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// These tests pin down the defects of the second hostile-use report: a
// user's field that panics, a Wong–Zakai field with the wrong noise size,
// fields bound twice, and an Adam whose hyper-parameters make NaN.

// TestGradientRecoversFieldPanic: a panic in the user's vector field (not in
// a quadrature worker) comes back from Gradient as ErrPanic for every method.
func TestGradientRecoversFieldPanic(t *testing.T) {
	base, z0, ts, targets := testProblem(8, 3, 4, 2, true)
	armed := false // the field panics once, then behaves
	for _, where := range []string{"F", "VJP"} {
		ff := *base
		if where == "F" {
			ff.F = func(tt float64, z, p, dz []float64) {
				if armed && tt > 0.3 {
					armed = false
					panic("boom in F")
				}
				base.F(tt, z, p, dz)
			}
		} else {
			ff.VJPFunc = func(tt float64, z, p, a, f, gz, gp []float64, gt *float64) {
				if armed {
					armed = false
					panic("boom in VJP")
				}
				base.VJPFunc(tt, z, p, a, f, gz, gp, gt)
			}
		}
		for _, m := range allGradMethods {
			g, err := NewGradientSolver(&ff, GradOptions{Method: m})
			if err != nil {
				t.Fatal(err)
			}
			armed = true
			var gerr error
			func() {
				defer func() {
					if p := recover(); p != nil {
						gerr = errors.New("panic escaped Gradient")
					}
				}()
				_, gerr = g.Gradient(z0, ts, testMSE(z0, ts, targets))
			}()
			if !errors.Is(gerr, ErrPanic) {
				t.Errorf("panic in %s, %v: got %v, want ErrPanic", where, m, gerr)
			}
			// The solver is usable again, with the same result as a fresh one.
			r, err := g.Gradient(z0, ts, testMSE(z0, ts, targets))
			if err != nil {
				t.Fatalf("after the panic, %v: %v", m, err)
			}
			fresh, _ := NewGradientSolver(&ff, GradOptions{Method: m})
			want, err := fresh.Gradient(z0, ts, testMSE(z0, ts, targets))
			if err != nil {
				t.Fatal(err)
			}
			if r.Loss != want.Loss || relErr(r.Params, want.Params) != 0 {
				t.Errorf("after the panic, %v: loss %v, gradient error %g against a fresh solver", m, r.Loss, relErr(r.Params, want.Params))
			}
		}
	}
}

// TestSolversRecoverPanic: Solve, SolveDense and SDESolver.Solve turn a
// panicking callback into ErrPanic.
func TestSolversRecoverPanic(t *testing.T) {
	boom := func(tt float64, y, dy []float64) { panic("boom") }
	s, _ := NewSolver(Options{})
	out := make([]float64, 2)
	calls := map[string]func() error{
		"Solve": func() error { _, err := s.Solve(boom, []float64{1}, []float64{0, 1}, out); return err },
		"SolveDense": func() error {
			_, _, err := s.SolveDense(boom, []float64{1}, []float64{0, 1}, out)
			return err
		},
		"SolveSDE": func() error {
			bad := &FuncField{D: 1, F: func(float64, []float64, []float64, []float64) { panic("boom") }}
			bm, _ := NewBrownianTree(0, 1, 1, 4, 1)
			return SolveSDE(SDE{Drift: bad, Diffusion: bad}, EulerHeun, []float64{1}, []float64{0, 1}, 0.1, bm, out)
		},
	}
	for name, call := range calls {
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					err = errors.New("panic escaped")
				}
			}()
			err = call()
		}()
		if !errors.Is(err, ErrPanic) {
			t.Errorf("%s: got %v, want ErrPanic", name, err)
		}
	}
}

// TestGradientWongZakaiNoiseSize: a batch whose length differs from the
// noise size is an input error before any solving, not a panic.
func TestGradientWongZakaiNoiseSize(t *testing.T) {
	drift := tanhField(1, rand.New(rand.NewPCG(1, 1)), false)
	diff := tanhField(1, rand.New(rand.NewPCG(2, 1)), false)
	noise, _ := NewKLNoise(0, 1, 4, 8)
	wz, err := NewWongZakai(drift, diff, noise)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := NewGradientSolver(wz, GradOptions{Method: SeminormAdjoint})
	var gerr error
	func() {
		defer func() {
			if p := recover(); p != nil {
				gerr = errors.New("panic escaped")
			}
		}()
		_, gerr = g.Gradient([]float64{1, 2, 3, 4}, []float64{0, 1}, testMSE(make([]float64, 8), []float64{0, 1}, make([]float64, 8)))
	}()
	var ie *InputError
	if !errors.Is(gerr, ErrInvalidInput) || !errors.As(gerr, &ie) || ie.Field != "z0" {
		t.Errorf("got %v, want an *InputError on z0 wrapping ErrInvalidInput", gerr)
	}
}

// TestNewWongZakaiBindingErrors: the same object as drift and diffusion, and
// a field already bound into another Wong–Zakai field, are rejected.
func TestNewWongZakaiBindingErrors(t *testing.T) {
	noise, _ := NewKLNoise(0, 1, 4, 4)
	mk := func(seed uint64) *MLP {
		m, err := NewMLP(MLPConfig{Dim: 2, Hidden: []int{3}, Activation: Tanh}, rand.New(rand.NewPCG(seed, 1)))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	d := mk(1)
	if _, err := NewWongZakai(d, d, noise); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("same drift and diffusion: got %v, want ErrInvalidInput", err)
	}
	f, g := mk(2), mk(3)
	if _, err := NewWongZakai(f, g, noise); err != nil {
		t.Fatal(err)
	}
	before := append([]float64(nil), f.Params()...)
	if _, err := NewWongZakai(f, mk(4), noise); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("drift reused in a second WongZakai: got %v, want ErrInvalidInput", err)
	}
	if _, err := NewWongZakai(mk(5), g, noise); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("diffusion reused in a second WongZakai: got %v, want ErrInvalidInput", err)
	}
	for i, v := range f.Params() {
		if v != before[i] {
			t.Fatal("a rejected NewWongZakai changed the drift's parameters")
		}
	}
	// Rebinding explicitly frees the field for a new Wong–Zakai field.
	if err := f.BindParams(append([]float64(nil), f.Params()...)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWongZakai(f, mk(6), noise); err != nil {
		t.Errorf("after an explicit BindParams: %v", err)
	}
}

// TestAdamNeverNonFinite: hyper-parameters that make 0/0 are rejected, and
// an update that would overflow leaves the parameters and moments as they
// were.
func TestAdamNeverNonFinite(t *testing.T) {
	p := []float64{1, 2}
	if err := (&Adam{LR: 0.1}).Step(p, []float64{0, 1}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Eps = 0: got %v, want ErrInvalidInput", err)
	}
	if p[0] != 1 || p[1] != 2 {
		t.Fatalf("parameters changed to %v", p)
	}
	o := NewAdam(2)
	o.WeightDecay = 1e300
	q := []float64{1e300, 1}
	err := o.Step(q, []float64{1, 1})
	if !errors.Is(err, ErrNonFinite) {
		t.Errorf("overflowing update: got %v, want ErrNonFinite", err)
	}
	if q[0] != 1e300 || q[1] != 1 || o.T != 0 || o.M[0] != 0 || o.V[0] != 0 {
		t.Errorf("state changed by a failed step: params %v, T %d, M %v, V %v", q, o.T, o.M, o.V)
	}
	for _, v := range q {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatal("non-finite parameter left behind")
		}
	}
}
