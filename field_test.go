package neuralode

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCheckVJP: correct fields pass; each kind of defect in a hand-written
// VJP is caught and named, including the report's VJPFunc that skips f
// (which gave the adjoint methods −0.477 instead of −0.607 without error).
func TestCheckVJP(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	good := tanhField(3, rng, true)
	z := make([]float64, 6)
	for i := range z {
		z[i] = rng.NormFloat64()
	}
	opts := VJPCheckOptions{T: 0.4, Z: z}
	if err := CheckVJP(good, opts); err != nil {
		t.Fatalf("correct field: %v", err)
	}
	mlp, _ := NewMLP(MLPConfig{Dim: 3, Hidden: []int{5}, Activation: Softplus, TimeInput: true}, rng)
	if err := CheckVJP(mlp, opts); err != nil {
		t.Errorf("MLP: %v", err)
	}
	noise, _ := NewKLNoise(0, 1, 3, 6)
	noise.Resample(rng)
	wz, _ := NewWongZakai(tanhField(3, rng, true), tanhField(3, rng, false), noise)
	if err := CheckVJP(wz, opts); err != nil {
		t.Errorf("WongZakai: %v", err)
	}

	broken := func(name string, vjp func(t float64, z, p, a, f, gz, gp []float64, gt *float64)) *FuncField {
		ff := *good
		ff.VJPFunc = vjp
		return &ff
	}
	cases := []struct {
		name, product string
		field         *FuncField
	}{
		{"skips f", "f", broken("skips f", func(t float64, z, p, a, f, gz, gp []float64, gt *float64) {
			good.VJPFunc(t, z, p, a, nil, gz, gp, gt)
		})},
		{"gz sign", "gz", broken("gz sign", func(t float64, z, p, a, f, gz, gp []float64, gt *float64) {
			good.VJPFunc(t, z, p, a, f, gz, gp, gt)
			for i := range gz {
				gz[i] = -gz[i]
			}
		})},
		{"gp assigned, not added", "gp", broken("gp assigned", func(t float64, z, p, a, f, gz, gp []float64, gt *float64) {
			clear(gp)
			good.VJPFunc(t, z, p, a, f, gz, gp, gt)
		})},
		{"no gt", "gt", broken("no gt", func(t float64, z, p, a, f, gz, gp []float64, gt *float64) {
			good.VJPFunc(t, z, p, a, f, gz, gp, nil)
		})},
		{"gz wrong without f", "gz", broken("gz needs f", func(t float64, z, p, a, f, gz, gp []float64, gt *float64) {
			good.VJPFunc(t, z, p, a, f, gz, gp, gt)
			if f == nil && gz != nil {
				gz[0] += 0.1
			}
		})},
	}
	for _, tc := range cases {
		err := CheckVJP(tc.field, opts)
		var me *VJPMismatchError
		if !errors.As(err, &me) || !errors.Is(err, ErrInvalidInput) || me.Product != tc.product {
			t.Errorf("%s: got %v, want a *VJPMismatchError on %s", tc.name, err, tc.product)
		}
	}
	panicky := broken("panics", func(float64, []float64, []float64, []float64, []float64, []float64, []float64, *float64) {
		panic("boom")
	})
	if err := CheckVJP(panicky, opts); !errors.Is(err, ErrPanic) {
		t.Errorf("panicking VJP: got %v, want ErrPanic", err)
	}
	if err := CheckVJP(good, VJPCheckOptions{Z: z[:4]}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Z of length 4 for D = 3: got %v", err)
	}
	// The parameters were restored after the differences.
	if err := CheckVJP(good, opts); err != nil {
		t.Errorf("second check: %v", err)
	}
}

// TestGradientSolverRejectsIncompleteFuncField: a FuncField without F, or
// without the VJPFunc every gradient method calls, is rejected when the
// solver is built (it used to be a nil-pointer panic in Gradient).
func TestGradientSolverRejectsIncompleteFuncField(t *testing.T) {
	good := tanhField(2, rand.New(rand.NewPCG(1, 2)), false)
	noF := *good
	noF.F = nil
	noVJP := *good
	noVJP.VJPFunc = nil
	for _, m := range allGradMethods {
		for name, ff := range map[string]*FuncField{"nil F": &noF, "nil VJPFunc": &noVJP} {
			_, err := NewGradientSolver(ff, GradOptions{Method: m})
			var ie *InputError
			if !errors.Is(err, ErrInvalidInput) || !errors.As(err, &ie) || !strings.HasPrefix(ie.Field, "FuncField.") {
				t.Errorf("%v, %s: got %v, want an *InputError on FuncField", m, name, err)
			}
		}
	}
	// Inside a Wong–Zakai field too, and for the SDE solvers.
	noise, _ := NewKLNoise(0, 1, 2, 2)
	wz, err := NewWongZakai(&noVJP, tanhField(2, rand.New(rand.NewPCG(5, 2)), false), noise)
	if err != nil {
		t.Fatal(err) // sampling needs no VJP of the drift
	}
	if _, err := NewGradientSolver(wz, GradOptions{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("WongZakai with a drift without VJPFunc: got %v", err)
	}
	if _, err := NewWongZakai(&noF, &FuncField{D: 2, F: good.F}, noise); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("NewWongZakai with a nil F: got %v", err)
	}
	if _, err := NewSDESolver(SDE{Drift: &noF, Diffusion: good}, EulerHeun); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("SDE with a nil drift F: got %v", err)
	}
	if _, err := NewSDESolver(SDE{Drift: good, Diffusion: &noVJP}, Milstein); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Milstein with a diffusion without VJPFunc: got %v", err)
	}
	if _, err := NewSDESolver(SDE{Drift: good, Diffusion: &noVJP}, ReversibleHeun); err != nil {
		t.Errorf("reversible Heun needs no diffusion VJP: %v", err)
	}
}

// TestFuncFieldExplicitParams: F and VJPFunc receive the live parameter
// vector, so a FuncField keeps working after NewWongZakai rebinds it and
// while an optimiser updates it (a θ captured at construction used to go
// stale and train nothing).
func TestFuncFieldExplicitParams(t *testing.T) {
	lin := &FuncField{D: 1, P: []float64{1}, Autonomous: true,
		F: func(_ float64, z, p, dz []float64) {
			for i := range z {
				dz[i] = p[0] * z[i]
			}
		},
		VJPFunc: func(_ float64, z, p, a, f, gz, gp []float64, gt *float64) {
			for i := range z {
				if f != nil {
					f[i] = p[0] * z[i]
				}
				if gz != nil {
					gz[i] = p[0] * a[i]
				}
				if gp != nil {
					gp[0] += a[i] * z[i]
				}
			}
			if gt != nil {
				*gt = 0
			}
		}}
	zero := &FuncField{D: 1, F: func(_ float64, _, _, dz []float64) { clear(dz) }}
	noise, _ := NewKLNoise(0, 1, 2, 1)
	wz, err := NewWongZakai(lin, zero, noise)
	if err != nil {
		t.Fatal(err)
	}
	wz.Params()[0] = 3 // the joint vector now drives the drift
	dz := make([]float64, 1)
	lin.Eval(0, []float64{2}, dz)
	if dz[0] != 6 {
		t.Fatalf("after rebinding and an update, f = %v, want 6", dz[0])
	}
	// Training the rate of dz/dt = θz to reach e^{0.5} from 1 at t = 1.
	lin.P[0] = 0
	loss := testMSE([]float64{1}, []float64{0, 1}, []float64{math.Exp(0.5)})
	gs, _ := NewGradientSolver(lin, GradOptions{Method: SeminormAdjoint, Forward: Options{RTol: 1e-10, ATol: 1e-10}})
	opt := NewAdam(1)
	opt.LR = 0.05
	for i := 0; i < 400; i++ {
		r, err := gs.Gradient([]float64{1}, []float64{0, 1}, loss)
		if err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(lin.Params(), r.Params); err != nil {
			t.Fatal(err)
		}
	}
	if math.Abs(lin.P[0]-0.5) > 1e-3 {
		t.Errorf("trained rate %v, want 0.5", lin.P[0])
	}
}

// TestPredict: Predict matches the closed form of a linear field at
// arbitrary times (both directions), and honours break points like the
// gradient methods do.
func TestPredict(t *testing.T) {
	m, _ := NewMLP(MLPConfig{Dim: 2}, nil)         // affine: f = W z + b
	copy(m.Params(), []float64{0, 1, -1, 0, 0, 0}) // rotation
	opts := Options{RTol: 1e-11, ATol: 1e-12}
	for _, ts := range [][]float64{{0, 0.3, 1.7, 2}, {2, 1, -0.5}} {
		out, st, err := Predict(m, opts, []float64{1, 0, 0, 2}, ts)
		if err != nil {
			t.Fatal(err)
		}
		if st.NFE == 0 {
			t.Error("no evaluations counted")
		}
		for i, tt := range ts {
			dt := tt - ts[0]
			s, c := math.Sincos(dt)
			want := []float64{c, -s, 2 * s, 2 * c}
			for j, w := range want {
				if math.Abs(out[i*4+j]-w) > 1e-9 {
					t.Errorf("ts %v: z(%v)[%d] = %v, want %v", ts, tt, j, out[i*4+j], w)
				}
			}
		}
	}
	// A Wong–Zakai field with piecewise-linear noise: the states agree with
	// the forward pass of a gradient method at tight tolerance.
	drift := tanhField(1, rand.New(rand.NewPCG(7, 1)), false)
	diff := tanhField(1, rand.New(rand.NewPCG(8, 1)), false)
	pl, _ := NewPiecewiseLinearNoise([]float64{0, 0.25, 0.5, 0.75, 1}, 3)
	pl.Resample(rand.New(rand.NewPCG(9, 1)))
	wz, _ := NewWongZakai(drift, diff, pl)
	z0, ts := []float64{0.1, -0.4, 0.8}, []float64{0, 0.5, 0.6, 1}
	out, _, err := Predict(wz, opts, z0, ts)
	if err != nil {
		t.Fatal(err)
	}
	gs, _ := NewGradientSolver(wz, GradOptions{Method: Direct, Forward: opts})
	r, err := gs.Gradient(z0, ts, testMSE(z0, ts, make([]float64, 9)))
	if err != nil {
		t.Fatal(err)
	}
	if e := relErr(out, r.States); e > 1e-9 {
		t.Errorf("Predict differs from the gradient's forward states by %g", e)
	}
	if _, _, err := Predict(wz, opts, z0[:2], ts); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("batch of the wrong size: got %v", err)
	}
}

// TestModelSaveLoad: a model saves without any problem data, loads back
// bit for bit, and predicts exactly what the original predicted.
func TestModelSaveLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	drift, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{5, 3}, Activation: Softplus, TimeInput: true}, rng)
	diff, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{4}, Activation: Tanh}, rng)
	m := &Model{Name: "sde", MLPs: map[string]*MLP{"drift": drift, "diffusion": diff}, Meta: map[string]string{"epochs": "10"}}
	path := filepath.Join(t.TempDir(), "model.json")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "sde" || got.Meta["epochs"] != "10" || len(got.MLPs) != 2 {
		t.Fatalf("loaded %+v", got)
	}
	for name, want := range m.MLPs {
		g := got.MLPs[name]
		if g == nil {
			t.Fatalf("network %q missing", name)
		}
		wc, gc := want.Config(), g.Config()
		if wc.Dim != gc.Dim || wc.Activation != gc.Activation || wc.TimeInput != gc.TimeInput || len(wc.Hidden) != len(gc.Hidden) {
			t.Errorf("%s: config %+v, want %+v", name, gc, wc)
		}
		for i, v := range want.Params() {
			if g.Params()[i] != v {
				t.Fatalf("%s: parameter %d is %v, want %v", name, i, g.Params()[i], v)
			}
		}
		z0, ts := []float64{0.3, -0.1, 1, 2}, []float64{0, 0.37, 1.9}
		a, _, err1 := Predict(want, Options{}, z0, ts)
		b, _, err2 := Predict(g, Options{}, z0, ts)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("%s: prediction %d differs: %v vs %v", name, i, a[i], b[i])
			}
		}
	}
	if info, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if runtime.GOOS != "windows" && runtime.GOOS != "wasip1" && runtime.GOOS != "js" && info.Mode().Perm() != 0o644 {
		t.Errorf("model file mode %v, want 0644 like other outputs", info.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %d entries", len(entries))
	}
	// Errors: typed, naming the field; nothing written on a bad model.
	var buf bytes.Buffer
	if err := m.Write(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.String()
	bad := map[string]string{
		"trailing data":  good + "{}",
		"unknown field":  strings.Replace(good, `"version"`, `"extra": 1, "version"`, 1),
		"format":         strings.Replace(good, ModelFormat, "neuralode-case", 1),
		"version":        strings.Replace(good, `"version": 1`, `"version": 2`, 1),
		"duplicate name": strings.Replace(good, `"name": "drift"`, `"name": "diffusion"`, 1),
		"empty name":     strings.Replace(good, `"name": "drift"`, `"name": ""`, 1),
		"activation":     strings.Replace(good, `"activation": "tanh"`, `"activation": "gelu"`, 1),
		"time input":     strings.Replace(good, `"time_input": "concat"`, `"time_input": "yes"`, 1),
		"no networks":    `{"format": "neuralode-model", "version": 1, "networks": []}`,
		"not JSON":       "model",
		"layers chain":   `{"format": "neuralode-model", "version": 1, "networks": [{"name": "f", "activation": "tanh", "time_input": "none", "layers": [{"W": [[1, 2]], "b": [0]}, {"W": [[1, 2], [3, 4]], "b": [0, 0]}]}]}`,
		"ragged":         `{"format": "neuralode-model", "version": 1, "networks": [{"name": "f", "activation": "tanh", "time_input": "none", "layers": [{"W": [[1, 2], [3]], "b": [0, 0]}]}]}`,
	}
	for name, doc := range bad {
		_, err := ReadModel(strings.NewReader(doc))
		var ie *InputError
		if !errors.Is(err, ErrInvalidInput) || !errors.As(err, &ie) {
			t.Errorf("%s: got %v, want an *InputError wrapping ErrInvalidInput", name, err)
		}
	}
	drift.Params()[0] = math.NaN()
	buf.Reset()
	if err := m.Write(&buf); !errors.Is(err, ErrNonFinite) || buf.Len() != 0 {
		t.Errorf("NaN parameter: got %v with %d bytes written", err, buf.Len())
	}
	if err := (&Model{MLPs: map[string]*MLP{"f": diff}}).Save(filepath.Join(t.TempDir(), "missing", "m.json")); err == nil {
		t.Error("saving into a missing directory succeeded")
	}
}

// FuzzReadModel: arbitrary documents never panic the reader; an accepted
// model writes and reads back to the same parameters.
func FuzzReadModel(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	m1, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{3}, Activation: Tanh, TimeInput: true}, rng)
	m2, _ := NewMLP(MLPConfig{Dim: 1, Activation: Identity}, rng)
	var buf bytes.Buffer
	_ = (&Model{Name: "x", MLPs: map[string]*MLP{"a": m1, "b": m2}, Meta: map[string]string{"k": "v"}}).Write(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format": "neuralode-model", "version": 1, "networks": [{"name": "f", "activation": "relu", "time_input": "none", "layers": [{"W": [[1]], "b": [0]}]}]}`))
	f.Add([]byte(`{"format": "neuralode-model", "version": 1, "networks": [{"name": "f", "activation": "tanh", "time_input": "concat", "layers": [{"W": [[1e308, -1e308]], "b": [1e-320]}]}]}`))
	f.Add([]byte(`{"format":"neuralode-model","version":1,"networks":[{"name":"f","layers":[]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadModel(bytes.NewReader(data))
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		var out bytes.Buffer
		errW := m.Write(&out)
		back, errR := ReadModel(&out)
		if errW != nil || errR != nil {
			t.Fatalf("an accepted model does not round-trip: write %v, read %v", errW, errR)
		}
		for name, net := range m.MLPs {
			p := back.MLPs[name].Params()
			for i, v := range net.Params() {
				if p[i] != v && !(v != v && p[i] != p[i]) {
					t.Fatalf("%s: parameter %d %v → %v", name, i, v, p[i])
				}
			}
		}
	})
}

// TestCheckVJPPanicKeepsParams: a field that panics at a perturbed θ gives
// ErrPanic, and the caller's parameters are as they were.
func TestCheckVJPPanicKeepsParams(t *testing.T) {
	ff := &FuncField{D: 1, P: []float64{1.5}}
	ff.F = func(t float64, z, p, dz []float64) {
		if p[0] != 1.5 {
			panic("perturbed")
		}
		dz[0] = p[0] * z[0]
	}
	ff.VJPFunc = func(t float64, z, p, a, f, gz, gp []float64, gt *float64) {
		if f != nil {
			f[0] = p[0] * z[0]
		}
		if gz != nil {
			gz[0] = a[0] * p[0]
		}
		if gp != nil {
			gp[0] += a[0] * z[0]
		}
		if gt != nil {
			*gt = 0
		}
	}
	err := CheckVJP(ff, VJPCheckOptions{Z: []float64{0.7}})
	if !errors.Is(err, ErrPanic) {
		t.Fatalf("err = %v, want ErrPanic", err)
	}
	if ff.P[0] != 1.5 {
		t.Errorf("θ = %v after the failed check, want 1.5", ff.P[0])
	}
}
