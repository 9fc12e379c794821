package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func TestG1D(t *testing.T) {
	d, err := makeG1D(g1dAugment)
	if err != nil {
		t.Fatal(err)
	}
	if d.Batch != 2 || d.Dim != 4 {
		t.Fatalf("batch %d dim %d, want 2, 4", d.Batch, d.Dim)
	}
	if want := []float64{-1, 0, 0, 0, 1, 0, 0, 0}; !slices.Equal(d.Z0, want) {
		t.Errorf("Z0 = %v, want %v", d.Z0, want)
	}
	if want := []float64{1, -1}; !slices.Equal(d.Targets, want) {
		t.Errorf("Targets = %v, want %v", d.Targets, want)
	}
	if want := []float64{0, 1}; !slices.Equal(d.Times, want) {
		t.Errorf("Times = %v, want %v", d.Times, want)
	}
	// Identity flow: the readout sends −1 → −1 and 1 → 1, error 2 on each.
	loss, err := readoutMSE(d.Z0, d.Batch, d.Dim, 0, d.Targets, nil)
	if err != nil || loss != 4 {
		t.Errorf("identity readout loss %g (%v), want 4", loss, err)
	}
	if _, err := makeG1D(-1); !errors.Is(err, errTaskInput) {
		t.Errorf("negative augment: %v", err)
	}
}

func TestNestedSpheres(t *testing.T) {
	const per = 1000
	d, err := nestedSpheres(newRNG(1), per, spheresAugment)
	if err != nil {
		t.Fatal(err)
	}
	if d.Batch != 2*per || d.Dim != 5 || len(d.X) != 2*per*5 || len(d.Labels) != 2*per {
		t.Fatalf("shape batch %d dim %d len(X) %d len(Labels) %d", d.Batch, d.Dim, len(d.X), len(d.Labels))
	}
	var count [2]int
	var inner [2]int // samples in the inner half of the area of their region
	firstHalf := 0
	for b := 0; b < d.Batch; b++ {
		x := d.X[b*d.Dim : (b+1)*d.Dim]
		for k := 2; k < d.Dim; k++ {
			if x[k] != 0 {
				t.Fatalf("sample %d augmented component %d = %g", b, k, x[k])
			}
		}
		r := math.Hypot(x[0], x[1])
		l := d.Labels[b]
		count[l]++
		switch l {
		case 0:
			if !(r < spheresInnerRadius) {
				t.Errorf("class 0 radius %g ≥ 0.4", r)
			}
			if r*r < spheresInnerRadius*spheresInnerRadius/2 {
				inner[0]++
			}
		case 1:
			if !(r > spheresOuterLow && r < spheresOuterHigh) {
				t.Errorf("class 1 radius %g outside (0.7, 0.9)", r)
			}
			if r*r < (spheresOuterLow*spheresOuterLow+spheresOuterHigh*spheresOuterHigh)/2 {
				inner[1]++
			}
		default:
			t.Fatalf("label %d", l)
		}
		if b < per && l == 0 {
			firstHalf++
		}
	}
	if count != [2]int{per, per} {
		t.Errorf("class counts %v", count)
	}
	// Uniform in area: half of each region's samples fall inside the radius
	// that halves its area. Binomial sd = sqrt(1000·0.25) ≈ 16; allow 5 sd.
	for k, n := range inner {
		if math.Abs(float64(n)-per/2) > 80 {
			t.Errorf("class %d: %d of %d samples in the inner half-area, want ≈ %d", k, n, per, per/2)
		}
	}
	// Shuffled: the first half holds about half of class 0.
	if math.Abs(float64(firstHalf)-per/2) > 80 {
		t.Errorf("first half holds %d class-0 samples: not shuffled", firstHalf)
	}
	// Determinism and seed dependence.
	d2, _ := nestedSpheres(newRNG(1), per, spheresAugment)
	if !slices.Equal(d.X, d2.X) || !slices.Equal(d.Labels, d2.Labels) {
		t.Error("same seed gave different data")
	}
	d3, _ := nestedSpheres(newRNG(2), per, spheresAugment)
	if slices.Equal(d.X, d3.X) {
		t.Error("different seeds gave identical data")
	}
	// Validation set from the same generator.
	v, err := nestedSpheres(newRNG(1), spheresValPerClass, 0)
	if err != nil || v.Batch != 100 || v.Dim != 2 {
		t.Errorf("validation set: batch %d dim %d err %v", v.Batch, v.Dim, err)
	}
	for _, bad := range []struct {
		rng      *rand.Rand
		per, aug int
	}{{nil, 10, 3}, {newRNG(1), 0, 3}, {newRNG(1), 10, -1}} {
		if _, err := nestedSpheres(bad.rng, bad.per, bad.aug); !errors.Is(err, errTaskInput) {
			t.Errorf("NestedSpheres(%v, %d, %d): err %v", bad.rng != nil, bad.per, bad.aug, err)
		}
	}
}

func TestSineTimes(t *testing.T) {
	for _, m := range []int{10, 50} {
		reg, err := sineTimes(nil, m, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(reg) != m || reg[0] != 0 || reg[m-1] != 2*math.Pi {
			t.Errorf("regular m=%d: %v", m, reg)
		}
		h := 2 * math.Pi / float64(m-1)
		for i := 1; i < m; i++ {
			if math.Abs(reg[i]-reg[i-1]-h) > 1e-14 {
				t.Errorf("regular spacing %g at %d, want %g", reg[i]-reg[i-1], i, h)
			}
		}
		irr, err := sineTimes(newRNG(3), m, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(irr) != m || irr[0] != 0 {
			t.Errorf("irregular m=%d: %v", m, irr)
		}
		for i := 1; i < m; i++ {
			if !(irr[i] > irr[i-1]) || irr[i] > 2*math.Pi {
				t.Errorf("irregular times not increasing in (0, 2π]: %v", irr)
				break
			}
		}
		again, _ := sineTimes(newRNG(3), m, true)
		if !slices.Equal(irr, again) {
			t.Error("irregular times not reproducible")
		}
	}
	// Many draws: irregular times are spread over the whole interval.
	all, _ := sineTimes(newRNG(4), 2001, true)
	if mean := mean(all[1:]); math.Abs(mean-math.Pi) > 0.15 {
		t.Errorf("mean irregular time %g, want ≈ π", mean)
	}
	if _, err := sineTimes(newRNG(1), 1, false); !errors.Is(err, errTaskInput) {
		t.Errorf("m=1: %v", err)
	}
	if _, err := sineTimes(nil, 5, true); !errors.Is(err, errTaskInput) {
		t.Errorf("nil rng irregular: %v", err)
	}
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func TestSines(t *testing.T) {
	rng := newRNG(5)
	times, err := sineTimes(rng, 50, true)
	if err != nil {
		t.Fatal(err)
	}
	const batch = 400
	d, err := makeSines(rng, batch, times)
	if err != nil {
		t.Fatal(err)
	}
	m := len(times)
	if d.Batch != batch || len(d.Z0) != 2*batch || len(d.Obs) != m*batch || len(d.A) != batch || len(d.B) != batch {
		t.Fatalf("shapes: %d %d %d %d %d", d.Batch, len(d.Z0), len(d.Obs), len(d.A), len(d.B))
	}
	for b := 0; b < batch; b++ {
		a, c := d.A[b], d.B[b]
		if a < -1 || a >= 1 || c < -1 || c >= 1 {
			t.Fatalf("series %d: A=%g B=%g outside [−1, 1)", b, a, c)
		}
		// Exact initial conditions: x(0) = y(0) = B, v(0) = y'(0) = A.
		if d.Z0[2*b] != c || d.Z0[2*b+1] != a {
			t.Errorf("series %d: z0 = %v, want [%g %g]", b, d.Z0[2*b:2*b+2], c, a)
		}
		if d.Obs[b] != c {
			t.Errorf("series %d: y(0) = %g, want B = %g", b, d.Obs[b], c)
		}
		// Independent check of the observations: y(t) = √(A²+B²)·sin(t + atan2(B, A)).
		amp, ph := math.Hypot(a, c), math.Atan2(c, a)
		for i, tt := range times {
			if want := amp * math.Sin(tt+ph); math.Abs(d.Obs[i*batch+b]-want) > 1e-14 {
				t.Fatalf("series %d obs %d: %g, want %g", b, i, d.Obs[i*batch+b], want)
			}
		}
	}
	// A, B ~ U(−1, 1): mean 0, variance 1/3 (sd of the mean ≈ 0.029).
	if ma, mb := mean(d.A), mean(d.B); math.Abs(ma) > 0.15 || math.Abs(mb) > 0.15 {
		t.Errorf("means %g %g, want ≈ 0", ma, mb)
	}
	varA := 0.0
	for _, v := range d.A {
		varA += v * v
	}
	if varA /= batch; math.Abs(varA-1.0/3) > 0.06 {
		t.Errorf("var(A) = %g, want ≈ 1/3", varA)
	}
	// Reproducible from the seed; train and validation from one generator differ.
	rng2 := newRNG(5)
	times2, _ := sineTimes(rng2, 50, true)
	d2, _ := makeSines(rng2, batch, times2)
	if !slices.Equal(d.Obs, d2.Obs) {
		t.Error("not reproducible")
	}
	val, _ := makeSines(rng2, sinesVal, times2)
	if val.A[0] == d.A[0] {
		t.Error("validation repeats the training draws")
	}
	for _, tc := range []struct {
		name  string
		rng   *rand.Rand
		batch int
		times []float64
		want  error
	}{
		{"nil rng", nil, 3, times, errTaskInput},
		{"batch 0", newRNG(1), 0, times, errTaskInput},
		{"no times", newRNG(1), 3, nil, errTaskInput},
		{"decreasing", newRNG(1), 3, []float64{0, 2, 1}, errTaskInput},
		{"NaN time", newRNG(1), 3, []float64{0, math.NaN()}, errTaskNonFinite},
	} {
		if _, err := makeSines(tc.rng, tc.batch, tc.times); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

func randSlice(rng *rand.Rand, n int, scale float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = scale * rng.NormFloat64()
	}
	return x
}

func TestAccuracy(t *testing.T) {
	// Classifier on the first component: class 1 if z0 > 0.
	w := []float64{-1, 0, 1, 0}
	bias := []float64{0, 0}
	z := []float64{-2, 5, 3, -1, 0.5, 0, -0.1, 9}
	acc, err := accuracy(z, 4, 2, []int{0, 1, 0, 1}, w, bias)
	if err != nil || acc != 0.5 {
		t.Errorf("accuracy %g (%v), want 0.5", acc, err)
	}
	// Ties go to the first class.
	acc, _ = accuracy([]float64{0, 0}, 1, 2, []int{0}, w, bias)
	if acc != 1 {
		t.Errorf("tie accuracy %g, want 1", acc)
	}
	// A perfect radial classifier on spheres (features r²) gets 1.
	d, _ := nestedSpheres(newRNG(9), 100, 0)
	feat := make([]float64, d.Batch)
	for b := range feat {
		feat[b] = d.X[2*b]*d.X[2*b] + d.X[2*b+1]*d.X[2*b+1]
	}
	acc, _ = accuracy(feat, d.Batch, 1, d.Labels, []float64{-1, 1}, []float64{0.3, -0.3})
	if acc != 1 {
		t.Errorf("radial classifier accuracy %g, want 1", acc)
	}
}

func TestMSEGradients(t *testing.T) {
	rng := newRNG(11)
	for _, n := range []int{1, 2, 7} {
		pred := randSlice(rng, n, 1)
		target := randSlice(rng, n, 1)
		grad := make([]float64, n)
		v, err := mse(pred, target, grad)
		if err != nil {
			t.Fatal(err)
		}
		ref := 0.0
		for i := range pred {
			ref += (pred[i] - target[i]) * (pred[i] - target[i])
		}
		if ref /= float64(n); math.Abs(v-ref) > 1e-15*math.Max(1, ref) {
			t.Errorf("n=%d: mse %g, want %g", n, v, ref)
		}
		f := func(p []float64) float64 { v, _ := mse(p, target, nil); return v }
		assertClose(t, "mse grad", grad, numGrad(f, pred), 1e-8)
	}
	// trajectoryMSE on a time-major trajectory, component 0 of dim 2.
	const m, batch, dim = 3, 4, 2
	traj := randSlice(rng, m*batch*dim, 1)
	obs := randSlice(rng, m*batch, 1)
	dtraj := make([]float64, len(traj))
	for i := range dtraj {
		dtraj[i] = 7
	}
	v, err := trajectoryMSE(traj, m, batch, dim, 0, obs, dtraj)
	if err != nil {
		t.Fatal(err)
	}
	pos := make([]float64, m*batch)
	for j := range pos {
		pos[j] = traj[j*dim]
	}
	ref, _ := mse(pos, obs, nil)
	if math.Abs(v-ref) > 1e-15 {
		t.Errorf("trajectory mse %g, want %g", v, ref)
	}
	f := func(x []float64) float64 { v, _ := trajectoryMSE(x, m, batch, dim, 0, obs, nil); return v }
	assertClose(t, "trajectory grad", dtraj, numGrad(f, traj), 1e-8)
	// readoutMSE for the g1d readout.
	z := randSlice(rng, 2*4, 1)
	dz := make([]float64, len(z))
	targets := []float64{1, -1}
	if _, err := readoutMSE(z, 2, 4, 0, targets, dz); err != nil {
		t.Fatal(err)
	}
	g := func(x []float64) float64 { v, _ := readoutMSE(x, 2, 4, 0, targets, nil); return v }
	assertClose(t, "readout grad", dz, numGrad(g, z), 1e-8)
}

func TestLossErrors(t *testing.T) {
	z := []float64{1, 2, 3, 4}
	w := []float64{1, 0, 0, 1}
	bias := []float64{0, 0}
	nan := math.NaN()
	tests := []struct {
		name string
		call func(dz []float64) (float64, error)
		want error
	}{
		{"accuracy labels", func([]float64) (float64, error) { return accuracy(z, 2, 2, []int{0}, w, bias) }, errTaskInput},
		{"mse lengths", func(dz []float64) (float64, error) { return mse(z, z[:3], dz) }, errTaskInput},
		{"mse empty", func([]float64) (float64, error) { return mse(nil, nil, nil) }, errTaskInput},
		{"mse NaN", func(dz []float64) (float64, error) { return mse([]float64{1, 2, nan, 4}, z, dz) }, errTaskNonFinite},
		{"trajectory comp", func(dz []float64) (float64, error) { return trajectoryMSE(z, 1, 2, 2, 2, []float64{0, 0}, dz) }, errTaskInput},
		{"trajectory NaN prediction", func(dz []float64) (float64, error) {
			return trajectoryMSE([]float64{1, 2, nan, 4}, 1, 2, 2, 0, []float64{0, 0}, dz)
		}, errTaskNonFinite},
		{"trajectory obs length", func(dz []float64) (float64, error) { return trajectoryMSE(z, 1, 2, 2, 0, []float64{0}, dz) }, errTaskInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dz := []float64{5, 6, 7, 8}
			if _, err := tc.call(dz); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !slices.Equal(dz, []float64{5, 6, 7, 8}) {
				t.Errorf("gradient buffer modified on failure: %v", dz)
			}
			if !slices.Equal(z, []float64{1, 2, 3, 4}) {
				t.Errorf("input modified: %v", z)
			}
		})
	}
}

func TestLossAllocs(t *testing.T) {
	d, _ := nestedSpheres(newRNG(1), 100, spheresAugment)
	w := randSlice(newRNG(2), 2*d.Dim, 1)
	bias := []float64{0.1, -0.1}
	dz := make([]float64, len(d.X))
	obs := make([]float64, d.Batch)
	allocs := testing.AllocsPerRun(20, func() {
		_, _ = accuracy(d.X, d.Batch, d.Dim, d.Labels, w, bias)
		_, _ = trajectoryMSE(d.X, 1, d.Batch, d.Dim, 0, obs, dz)
		_, _ = mse(dz, d.X, dz)
	})
	if allocs != 0 {
		t.Errorf("%g allocations per run, want 0", allocs)
	}
}

func Example_makeG1D() {
	d, _ := makeG1D(g1dAugment)
	fmt.Println(d.Z0, d.Targets, d.Times)
	// Output: [-1 0 0 0 1 0 0 0] [1 -1] [0 1]
}

func Example_makeSines() {
	rng := rand.New(rand.NewPCG(1, 2))
	times, _ := sineTimes(rng, 10, false)
	d, _ := makeSines(rng, sinesTrain, times)
	// x(0) = B and v(0) = A exactly; the first observation is y(0) = B.
	fmt.Println(len(d.Times), d.Batch, d.Z0[0] == d.B[0], d.Z0[1] == d.A[0], d.Obs[0] == d.B[0])
	// Output: 10 15 true true true
}
