package neuralode

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// testMSE is the case-format MSE for a batch z0 observed at ts. Only B·D
// matters to the loss, so the batch is described as B·D samples of one
// component.
func testMSE(z0, ts, targets []float64) Loss {
	l, err := MSELoss(LossShape{Batch: len(z0), Dim: 1, Times: len(ts)}, targets)
	if err != nil {
		panic(err)
	}
	return l
}

// checkLossGradient compares a loss's gradient with central differences of
// its value, component by component.
func checkLossGradient(t *testing.T, name string, loss Loss, states []float64, tol float64) float64 {
	t.Helper()
	grad := make([]float64, len(states))
	l0 := loss(states, grad)
	if math.IsNaN(l0) || math.IsInf(l0, 0) {
		t.Fatalf("%s: loss %v", name, l0)
	}
	scratch := make([]float64, len(states))
	x := append([]float64(nil), states...)
	for i := range x {
		h := 1e-6 * math.Max(1, math.Abs(x[i]))
		x[i] = states[i] + h
		clear(scratch)
		lp := loss(x, scratch)
		x[i] = states[i] - h
		clear(scratch)
		lm := loss(x, scratch)
		x[i] = states[i]
		fd := (lp - lm) / (2 * h)
		if d := math.Abs(fd - grad[i]); d > tol*math.Max(1, math.Abs(fd)) {
			t.Errorf("%s: ∂L/∂state[%d] = %v, central difference %v", name, i, grad[i], fd)
		}
	}
	return l0
}

// TestLossesGradients: every ready-made loss's gradient matches central
// differences, and the values match direct formulas.
func TestLossesGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	sh := LossShape{Batch: 3, Dim: 4, Times: 4}
	n := 3 * 4 * 4
	states := randSlice(rng, n)

	targets := randSlice(rng, n-12)
	mse, err := MSELoss(sh, targets)
	if err != nil {
		t.Fatal(err)
	}
	l := checkLossGradient(t, "MSELoss", mse, states, 1e-7)
	want := 0.0
	for i := 1; i < 4; i++ {
		s := 0.0
		for j := 0; j < 12; j++ {
			d := states[i*12+j] - targets[(i-1)*12+j]
			s += d * d
		}
		want += s / 12
	}
	if math.Abs(l-want) > 1e-14*want {
		t.Errorf("MSELoss = %v, want %v", l, want)
	}

	times, channels := []int{0, 2, 3}, []int{1, 3}
	obs := randSlice(rng, 3*3*2)
	sel, err := SelectedMSELoss(sh, times, channels, obs)
	if err != nil {
		t.Fatal(err)
	}
	l = checkLossGradient(t, "SelectedMSELoss", sel, states, 1e-7)
	want, j := 0.0, 0
	for _, i := range times {
		for b := 0; b < 3; b++ {
			for _, c := range channels {
				d := states[i*12+b*4+c] - obs[j]
				want += d * d
				j++
			}
		}
	}
	want /= 18
	if math.Abs(l-want) > 1e-14*want {
		t.Errorf("SelectedMSELoss = %v, want %v", l, want)
	}

	w, bias := randSlice(rng, 3*4), randSlice(rng, 3)
	dw, db := make([]float64, 12), make([]float64, 3)
	labels := []int{2, 0, 1}
	ce, err := SoftmaxCrossEntropyLoss(sh, labels, w, bias, dw, db)
	if err != nil {
		t.Fatal(err)
	}
	l = checkLossGradient(t, "SoftmaxCrossEntropyLoss", ce, states, 1e-7)
	// The readout's gradients against differences in W and bias.
	grad := make([]float64, n)
	ce(states, grad)
	gotW, gotB := append([]float64(nil), dw...), append([]float64(nil), db...)
	readout := map[string][2][]float64{"W": {w, gotW}, "bias": {bias, gotB}} // parameter, gradient
	for name, pg := range readout {
		p, g := pg[0], pg[1]
		for i, v := range p {
			p[i] = v + 1e-6
			lp := ce(states, make([]float64, n))
			p[i] = v - 1e-6
			lm := ce(states, make([]float64, n))
			p[i] = v
			if fd := (lp - lm) / 2e-6; math.Abs(fd-g[i]) > 1e-7 {
				t.Errorf("SoftmaxCrossEntropyLoss: ∂L/∂%s[%d] = %v, central difference %v", name, i, g[i], fd)
			}
		}
	}
	// Value: mean of log Σ exp(l) − l_y on the last row.
	want = 0
	for b, y := range labels {
		z := states[36+b*4 : 36+b*4+4]
		var lg [3]float64
		s := 0.0
		for k := range lg {
			lg[k] = bias[k]
			for d := 0; d < 4; d++ {
				lg[k] += w[k*4+d] * z[d]
			}
			s += math.Exp(lg[k])
		}
		want += math.Log(s) - lg[y]
	}
	want /= 3
	if math.Abs(l-want) > 1e-13*want {
		t.Errorf("SoftmaxCrossEntropyLoss = %v, want %v", l, want)
	}

	mean := randSlice(rng, 12)
	vr := make([]float64, 12)
	for i := range vr {
		vr[i] = 0.5 + rng.Float64()
	}
	gm, err := GaussianMomentLoss(sh, mean, vr)
	if err != nil {
		t.Fatal(err)
	}
	l = checkLossGradient(t, "GaussianMomentLoss", gm, states, 1e-6)
	// Value: the closed-form KL divergence of the fitted Gaussians.
	want = 0
	for i := 1; i < 4; i++ {
		for c := 0; c < 4; c++ {
			m, v := 0.0, 0.0
			for b := 0; b < 3; b++ {
				m += states[i*12+b*4+c] / 3
			}
			for b := 0; b < 3; b++ {
				d := states[i*12+b*4+c] - m
				v += d * d / 2
			}
			k := (i-1)*4 + c
			want += 0.5*math.Log(vr[k]/v) + (v+(m-mean[k])*(m-mean[k]))/(2*vr[k]) - 0.5
		}
	}
	if math.Abs(l-want) > 1e-12*math.Abs(want) {
		t.Errorf("GaussianMomentLoss = %v, want %v", l, want)
	}
}

// TestLossShapeErrors: losses know their shape. The report's case (4 times,
// 8 target values, D = 4: MSELoss used to return a misaligned loss without
// error) and every other mismatch is an *InputError, at construction or,
// for states of another shape, from Gradient.
func TestLossShapeErrors(t *testing.T) {
	sh := LossShape{Batch: 2, Dim: 4, Times: 4}
	w, bias := make([]float64, 8), make([]float64, 2)
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"mse 8 targets for 3×2×4", errOf(MSELoss(sh, make([]float64, 8))), ErrInvalidInput},
		{"mse zero batch", errOf(MSELoss(LossShape{Dim: 4, Times: 2}, nil)), ErrInvalidInput},
		{"mse one time", errOf(MSELoss(LossShape{Batch: 1, Dim: 1, Times: 1}, nil)), ErrInvalidInput},
		{"mse huge", errOf(MSELoss(LossShape{Batch: 1 << 30, Dim: 1 << 30, Times: 2}, nil)), ErrInvalidInput},
		{"mse NaN target", errOf(MSELoss(LossShape{Batch: 1, Dim: 1, Times: 2}, []float64{math.NaN()})), ErrNonFinite},
		{"selected time out of range", errOf(SelectedMSELoss(sh, []int{4}, []int{0}, make([]float64, 2))), ErrInvalidInput},
		{"selected channel out of range", errOf(SelectedMSELoss(sh, []int{3}, []int{4}, make([]float64, 2))), ErrInvalidInput},
		{"selected unsorted", errOf(SelectedMSELoss(sh, []int{3, 1}, []int{0}, make([]float64, 4))), ErrInvalidInput},
		{"selected obs length", errOf(SelectedMSELoss(sh, []int{3}, []int{0, 1}, make([]float64, 2))), ErrInvalidInput},
		{"ce one class", errOf(SoftmaxCrossEntropyLoss(sh, []int{0, 0}, w[:4], bias[:1], nil, nil)), ErrInvalidInput},
		{"ce label", errOf(SoftmaxCrossEntropyLoss(sh, []int{0, 2}, w, bias, nil, nil)), ErrInvalidInput},
		{"ce labels length", errOf(SoftmaxCrossEntropyLoss(sh, []int{0}, w, bias, nil, nil)), ErrInvalidInput},
		{"ce w length", errOf(SoftmaxCrossEntropyLoss(sh, []int{0, 1}, w[:7], bias, nil, nil)), ErrInvalidInput},
		{"ce dw length", errOf(SoftmaxCrossEntropyLoss(sh, []int{0, 1}, w, bias, w[:3], nil)), ErrInvalidInput},
		{"ce NaN w", errOf(SoftmaxCrossEntropyLoss(sh, []int{0, 1}, []float64{0, 0, 0, 0, 0, 0, 0, math.NaN()}, bias, nil, nil)), ErrNonFinite},
		{"gauss batch 1", errOf(GaussianMomentLoss(LossShape{Batch: 1, Dim: 1, Times: 2}, []float64{0}, []float64{1})), ErrInvalidInput},
		{"gauss zero variance", errOf(GaussianMomentLoss(LossShape{Batch: 2, Dim: 1, Times: 2}, []float64{0}, []float64{0})), ErrInvalidInput},
		{"gauss lengths", errOf(GaussianMomentLoss(sh, make([]float64, 12), make([]float64, 4))), ErrInvalidInput},
	}
	for _, tc := range cases {
		var ie *InputError
		if !errors.Is(tc.err, tc.want) || !errors.As(tc.err, &ie) {
			t.Errorf("%s: got %v, want an *InputError wrapping %v", tc.name, tc.err, tc.want)
		}
	}
	// A loss built for another shape than the solve's states.
	field, z0, ts, _ := testProblem(3, 4, 2, 3, false) // D = 4, B = 2, 4 times
	loss, err := MSELoss(LossShape{Batch: 2, Dim: 4, Times: 3}, make([]float64, 16))
	if err != nil {
		t.Fatal(err)
	}
	g, _ := NewGradientSolver(field, GradOptions{Method: Direct})
	_, err = g.Gradient(z0, ts, loss)
	var ie *InputError
	if !errors.Is(err, ErrInvalidInput) || !errors.As(err, &ie) || ie.Field != "MSELoss" {
		t.Errorf("states of another shape: got %v, want an *InputError on MSELoss", err)
	}
}

func errOf(_ Loss, err error) error { return err }

// FuzzLossConstruction: arbitrary shapes and argument lengths never panic
// the constructors; an accepted loss evaluates to a finite value with a
// finite gradient on states of its shape.
func FuzzLossConstruction(f *testing.F) {
	f.Add(uint8(0), 2, 4, 4, 8, uint64(1))
	f.Add(uint8(1), 3, 2, 5, 6, uint64(2))
	f.Add(uint8(2), 4, 2, 3, 2, uint64(3))
	f.Add(uint8(3), 5, 1, 3, 2, uint64(4))
	f.Add(uint8(0), -1, 0, 1, -3, uint64(5))
	f.Fuzz(func(t *testing.T, kind uint8, b, d, m, k int, seed uint64) {
		if b > 64 || d > 16 || m > 16 || k > 4096 || k < -8 {
			t.Skip()
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		vals := func(n int) []float64 {
			if n < 0 {
				return nil
			}
			return randSlice(rng, n)
		}
		sh := LossShape{Batch: b, Dim: d, Times: m}
		var loss Loss
		var err error
		switch kind % 4 {
		case 0:
			loss, err = MSELoss(sh, vals(k))
		case 1:
			times := []int{m - 1}
			if k%2 == 0 {
				times = []int{0, m - 1}
			}
			loss, err = SelectedMSELoss(sh, times, []int{k % 3}, vals(k/2))
		case 2:
			nc := (k%5+5)%5 + 1 // k may be negative
			labels := make([]int, max(b, 0))
			for i := range labels {
				labels[i] = (i * 7) % (nc + 1)
			}
			loss, err = SoftmaxCrossEntropyLoss(sh, labels, vals(nc*d), vals(nc), make([]float64, max(nc*d, 0)), nil)
		case 3:
			vr := vals(k)
			for i := range vr {
				vr[i] = math.Abs(vr[i])
			}
			loss, err = GaussianMomentLoss(sh, vals(k), vr)
		}
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		n := m * b * d
		states, grad := vals(n), make([]float64, n)
		l := loss(states, grad)
		if math.IsNaN(l) || math.IsInf(l, 0) {
			t.Fatalf("loss %v", l)
		}
		if ok, i := allFinite(grad); !ok {
			t.Fatalf("gradient[%d] = %v", i, grad[i])
		}
	})
}

// TestLossesAllocs: a ready-made loss allocates nothing per call, so a
// training loop stays allocation-free.
func TestLossesAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector allocates")
	}
	sh := LossShape{Batch: 8, Dim: 3, Times: 3}
	rng := rand.New(rand.NewPCG(1, 2))
	states, grad := randSlice(rng, 72), make([]float64, 72)
	w, bias, dw, db := randSlice(rng, 9), randSlice(rng, 3), make([]float64, 9), make([]float64, 3)
	vr := make([]float64, 6)
	for i := range vr {
		vr[i] = 1
	}
	mse, _ := MSELoss(sh, randSlice(rng, 48))
	sel, _ := SelectedMSELoss(sh, []int{1, 2}, []int{0}, randSlice(rng, 16))
	ce, _ := SoftmaxCrossEntropyLoss(sh, []int{0, 1, 2, 0, 1, 2, 0, 1}, w, bias, dw, db)
	gm, _ := GaussianMomentLoss(sh, randSlice(rng, 6), vr)
	for name, l := range map[string]Loss{"mse": mse, "selected": sel, "cross-entropy": ce, "moments": gm} {
		if a := testing.AllocsPerRun(20, func() { l(states, grad) }); a != 0 {
			t.Errorf("%s: %g allocations per call", name, a)
		}
	}
}

// TestGaussianMomentLossVarianceFloor: where the samples' spread falls
// below the variance floor the loss no longer depends on it, and the
// gradient must say so too (it used to carry −1/(1e−12·(B−1)) there).
func TestGaussianMomentLossVarianceFloor(t *testing.T) {
	sh := LossShape{Batch: 3, Dim: 1, Times: 2}
	gm, err := GaussianMomentLoss(sh, []float64{0.5}, []float64{0.3})
	if err != nil {
		t.Fatal(err)
	}
	// Row 0 (t_0) is not observed; the three samples at t_1 coincide.
	states := []float64{0, 0, 0, 0.2, 0.2, 0.2}
	checkLossGradient(t, "gauss at the floor", gm, states, 1e-6)
}
