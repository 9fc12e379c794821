package main

// Data generators and losses for the non-image experiments of Norcliffe &
// Deisenroth, "Faster Training of Neural ODEs Using Gauß–Legendre Quadrature"
// (TMLR 2023): crossing trajectories (g1d), nested spheres and sines. The
// generators draw from a caller-supplied *rand.Rand so that runs are
// reproducible. All states are flat, batch-major slices: sample b, component d
// at z[b*dim+d].

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// errTaskInput reports a malformed argument to a data generator or loss:
// wrong lengths, out-of-range labels or counts.
var errTaskInput = errors.New("task: invalid input")

// errTaskNonFinite reports a NaN or infinite value in a loss input.
var errTaskNonFinite = errors.New("task: non-finite value")

func taskErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errTaskInput, fmt.Sprintf(format, args...))
}

// Experiment constants from the paper's set-ups.
const (
	// g1dAugment is the number of zero components appended to the 1-D state,
	// giving a 4-dimensional augmented neural ODE state.
	g1dAugment = 3
	// spheresAugment is the number of zero components appended to the 2-D
	// points, giving a 5-dimensional state.
	spheresAugment = 3
	// spheresTrainPerClass and spheresValPerClass are the default sample counts.
	spheresTrainPerClass = 1000
	spheresValPerClass   = 50
	// spheresInnerRadius bounds class 0 (r < 0.4); class 1 lies in the annulus
	// spheresOuterLow < r < spheresOuterHigh.
	spheresInnerRadius = 0.4
	spheresOuterLow    = 0.7
	spheresOuterHigh   = 0.9
	// sinesTrain and sinesVal are the default numbers of training and
	// validation series.
	sinesTrain = 15
	sinesVal   = 5
)

// g1dData is the crossing-trajectories task: the flow of an ODE cannot map
// x = −1 → 1 and x = 1 → −1 in one dimension because trajectories cannot
// cross, so the state is augmented with zeros.
type g1dData struct {
	Times   []float64 // observation times {0, 1}: solve from 0 to 1
	Z0      []float64 // Batch × Dim initial states, batch-major
	Batch   int       // 2
	Dim     int       // 1 + augment
	Targets []float64 // target of the readout (component 0 at t = 1) per sample
}

// makeG1D returns the crossing-trajectories data with augment zero components
// appended to the 1-D input (the paper uses G1DAugment = 3).
func makeG1D(augment int) (g1dData, error) {
	if augment < 0 {
		return g1dData{}, taskErrorf("g1d: augment=%d is negative", augment)
	}
	dim := 1 + augment
	z0 := make([]float64, 2*dim)
	z0[0] = -1
	z0[dim] = 1
	return g1dData{
		Times:   []float64{0, 1},
		Z0:      z0,
		Batch:   2,
		Dim:     dim,
		Targets: []float64{1, -1},
	}, nil
}

// spheresData is a nested-spheres classification set.
type spheresData struct {
	Times  []float64 // integration interval {0, 1}; the classifier reads the state at t = 1
	X      []float64 // Batch × Dim states: the 2-D point followed by augment zeros
	Labels []int     // class per sample: 0 inner disk, 1 outer annulus
	Batch  int
	Dim    int
}

// nestedSpheres draws perClass points of each class in 2-D, uniformly in area:
// class 0 in the disk r < 0.4, class 1 in the annulus 0.7 < r < 0.9. A uniform
// density in area needs r = sqrt(U(r_lo², r_hi²)) and a uniform angle. The
// samples are shuffled (so any prefix is class-balanced in expectation) and
// augment zero components are appended. Call it twice on the same generator
// for a training and a validation set (1000 and 50 per class in the paper).
//
// Draw order per sample: class 0 samples first, then class 1, each as radius
// then angle; then the shuffle.
func nestedSpheres(rng *rand.Rand, perClass, augment int) (spheresData, error) {
	if rng == nil {
		return spheresData{}, taskErrorf("spheres: nil random generator")
	}
	if perClass < 1 || augment < 0 {
		return spheresData{}, taskErrorf("spheres: perClass=%d must be ≥ 1 and augment=%d ≥ 0", perClass, augment)
	}
	dim := 2 + augment
	n := 2 * perClass
	pts := make([][2]float64, n)
	labels := make([]int, n)
	annulus := func(rlo, rhi float64) float64 {
		for {
			r := math.Sqrt(rlo*rlo + rng.Float64()*(rhi*rhi-rlo*rlo))
			// Float64 is in [0, 1): r < rhi always; reject the measure-zero
			// inner edge so that the open annulus bound holds exactly.
			if r > rlo || rlo == 0 {
				return r
			}
		}
	}
	for i := 0; i < n; i++ {
		var r float64
		if i < perClass {
			r = annulus(0, spheresInnerRadius)
		} else {
			r = annulus(spheresOuterLow, spheresOuterHigh)
			labels[i] = 1
		}
		phi := 2 * math.Pi * rng.Float64()
		pts[i] = [2]float64{r * math.Cos(phi), r * math.Sin(phi)}
	}
	perm := rng.Perm(n)
	d := spheresData{
		Times:  []float64{0, 1},
		X:      make([]float64, n*dim),
		Labels: make([]int, n),
		Batch:  n,
		Dim:    dim,
	}
	for i, p := range perm {
		d.X[i*dim] = pts[p][0]
		d.X[i*dim+1] = pts[p][1]
		d.Labels[i] = labels[p]
	}
	return d, nil
}

// sineTimes returns m observation times on [0, 2π] starting at t0 = 0 (m ≥ 2,
// t0 included in the count). Regular: t_i = 2π·i/(m−1). Irregular: t0 = 0 kept
// and m−1 times drawn uniformly in (0, 2π], sorted (redrawn in the
// probability-zero case of a tie), so the last time is generally below 2π.
// The same times serve every series of a batch.
func sineTimes(rng *rand.Rand, m int, irregular bool) ([]float64, error) {
	if m < 2 {
		return nil, taskErrorf("sines: m=%d observation times, need ≥ 2", m)
	}
	t := make([]float64, m)
	if !irregular {
		for i := range t {
			t[i] = 2 * math.Pi * float64(i) / float64(m-1)
		}
		t[m-1] = 2 * math.Pi
		return t, nil
	}
	if rng == nil {
		return nil, taskErrorf("sines: nil random generator")
	}
	for {
		for i := 1; i < m; i++ {
			t[i] = 2 * math.Pi * (1 - rng.Float64()) // (0, 2π]
		}
		sort.Float64s(t[1:])
		ok := true
		for i := 1; i < m; i++ {
			if !(t[i] > t[i-1]) {
				ok = false
			}
		}
		if ok {
			return t, nil
		}
	}
}

// sinesData is a batch of sine series y_b(t) = A_b sin t + B_b cos t observed at
// shared times, for a second-order model with state [x, v].
type sinesData struct {
	Times []float64 // M observation times, Times[0] = 0
	Z0    []float64 // Batch × 2 initial states [x(0), v(0)] = [B, A]
	Obs   []float64 // M × Batch positions: Obs[i*Batch+b] = y_b(Times[i])
	A, B  []float64 // per-series coefficients, each ~ U(−1, 1)
	Batch int
}

// makeSines draws batch series with (A, B) ~ U(−1, 1)² (A then B per series) and
// observes them at times (from SineTimes). The exact initial state of the
// second-order system d²x/dt² = −x is x(0) = y(0) = B, v(0) = y'(0) = A.
func makeSines(rng *rand.Rand, batch int, times []float64) (sinesData, error) {
	if rng == nil {
		return sinesData{}, taskErrorf("sines: nil random generator")
	}
	if batch < 1 {
		return sinesData{}, taskErrorf("sines: batch=%d must be ≥ 1", batch)
	}
	if len(times) < 1 {
		return sinesData{}, taskErrorf("sines: no observation times")
	}
	for i, t := range times {
		if !finite(t) {
			return sinesData{}, fmt.Errorf("%w: sines: times[%d]=%g", errTaskNonFinite, i, t)
		}
		if i > 0 && !(t > times[i-1]) {
			return sinesData{}, taskErrorf("sines: times not strictly increasing at %d", i)
		}
	}
	m := len(times)
	d := sinesData{
		Times: append([]float64(nil), times...),
		Z0:    make([]float64, 2*batch),
		Obs:   make([]float64, m*batch),
		A:     make([]float64, batch),
		B:     make([]float64, batch),
		Batch: batch,
	}
	for b := 0; b < batch; b++ {
		a := 2*rng.Float64() - 1
		c := 2*rng.Float64() - 1
		d.A[b], d.B[b] = a, c
		d.Z0[2*b] = c
		d.Z0[2*b+1] = a
	}
	for i, t := range times {
		s, co := math.Sincos(t)
		row := d.Obs[i*batch : (i+1)*batch]
		for b := range row {
			row[b] = d.A[b]*s + d.B[b]*co
		}
	}
	return d, nil
}

// ---------------------------------------------------------------------------
// Losses and metrics

// maxStackClasses bounds the class count for which the loss keeps its logits
// on the stack (no allocation).
const maxStackClasses = 32

func checkClassifier(z []float64, batch, dim int, labels []int, w, bias []float64) (int, error) {
	if batch < 1 || dim < 1 {
		return 0, taskErrorf("classifier: batch=%d, dim=%d must be ≥ 1", batch, dim)
	}
	k := len(bias)
	if k < 1 {
		return 0, taskErrorf("classifier: no classes (len(bias)=0)")
	}
	if len(z) != batch*dim {
		return 0, taskErrorf("classifier: len(z)=%d, want batch·dim=%d", len(z), batch*dim)
	}
	if len(w) != k*dim {
		return 0, taskErrorf("classifier: len(w)=%d, want classes·dim=%d", len(w), k*dim)
	}
	if len(labels) != batch {
		return 0, taskErrorf("classifier: len(labels)=%d, want batch=%d", len(labels), batch)
	}
	for i, l := range labels {
		if l < 0 || l >= k {
			return 0, taskErrorf("classifier: labels[%d]=%d outside [0, %d)", i, l, k)
		}
	}
	if !allFiniteSlice(z) || !allFiniteSlice(w) || !allFiniteSlice(bias) {
		return 0, fmt.Errorf("%w: classifier input", errTaskNonFinite)
	}
	return k, nil
}

func allFiniteSlice(x []float64) bool {
	for _, v := range x {
		if !finite(v) {
			return false
		}
	}
	return true
}

// logitsRow computes out[k] = Σ_d w[k*dim+d]·z[d] + bias[k].
func logitsRow(out, zb, w, bias []float64) {
	// States are short (dim ≈ 5), so a single accumulator with the bounds
	// checks hoisted by reslicing is the fastest form.
	dim := len(zb)
	bias = bias[:len(out)]
	for k := range out {
		wk := w[k*dim : k*dim+dim]
		wk = wk[:len(zb)]
		s := bias[k]
		for d, v := range zb {
			s += wk[d] * v
		}
		out[k] = s
	}
}

// accuracy returns the fraction of samples whose largest logit W·z_b + bias
// (first index on ties) equals the label.
func accuracy(z []float64, batch, dim int, labels []int, w, bias []float64) (float64, error) {
	k, err := checkClassifier(z, batch, dim, labels, w, bias)
	if err != nil {
		return 0, err
	}
	var buf [maxStackClasses]float64
	var l []float64
	if k <= maxStackClasses {
		l = buf[:k]
	} else {
		l = make([]float64, k)
	}
	correct := 0
	for b := 0; b < batch; b++ {
		logitsRow(l, z[b*dim:b*dim+dim], w, bias)
		best := 0
		for i, v := range l {
			if v > l[best] {
				best = i
			}
		}
		if best == labels[b] {
			correct++
		}
	}
	return float64(correct) / float64(batch), nil
}

// mse returns mean((pred − target)²) and, when grad is non-nil, writes its
// gradient 2(pred − target)/n with respect to pred into grad.
func mse(pred, target, grad []float64) (float64, error) {
	n := len(pred)
	if n == 0 || len(target) != n || (grad != nil && len(grad) != n) {
		return 0, taskErrorf("mse: len(pred)=%d, len(target)=%d, len(grad)=%d", n, len(target), len(grad))
	}
	if !allFiniteSlice(pred) || !allFiniteSlice(target) {
		return 0, fmt.Errorf("%w: mse input", errTaskNonFinite)
	}
	target = target[:n]
	inv := 1 / float64(n)
	// Two independent accumulators over the two halves; the reslicing lets
	// the compiler drop every bounds check in the loop.
	h := n / 2
	pa, ta := pred[:h], target[:h]
	pb, tb := pred[h:2*h], target[h:2*h]
	ta, pb, tb = ta[:len(pa)], pb[:len(pa)], tb[:len(pa)]
	var s0, s1 float64
	for i, p := range pa {
		d0 := p - ta[i]
		d1 := pb[i] - tb[i]
		s0 += d0 * d0
		s1 += d1 * d1
	}
	if n%2 == 1 {
		d := pred[n-1] - target[n-1]
		s0 += d * d
	}
	if grad != nil {
		grad = grad[:n]
		for j := range grad {
			grad[j] = 2 * inv * (pred[j] - target[j])
		}
	}
	return (s0 + s1) * inv, nil
}

// readoutMSE is the mean over the batch of (z_b[comp] − target_b)², the loss of
// the g1d task (comp = 0 at t = 1). Its gradient with respect to the whole
// Batch × dim state is written into dz when non-nil (zero outside comp).
func readoutMSE(z []float64, batch, dim, comp int, target, dz []float64) (float64, error) {
	return trajectoryMSE(z, 1, batch, dim, comp, target, dz)
}

// trajectoryMSE is the mean over m times and the batch of
// (traj[i][b][comp] − obs[i*batch+b])², for a trajectory stored time-major as
// m consecutive Batch × dim states (the sines loss on positions, comp = 0).
// The gradient with respect to traj (zero outside comp) goes into dtraj when
// non-nil.
func trajectoryMSE(traj []float64, m, batch, dim, comp int, obs, dtraj []float64) (float64, error) {
	if m < 1 || batch < 1 || dim < 1 || comp < 0 || comp >= dim {
		return 0, taskErrorf("trajectory mse: m=%d, batch=%d, dim=%d, comp=%d", m, batch, dim, comp)
	}
	if len(traj) != m*batch*dim || len(obs) != m*batch || (dtraj != nil && len(dtraj) != len(traj)) {
		return 0, taskErrorf("trajectory mse: len(traj)=%d, len(obs)=%d, len(dtraj)=%d for m=%d, batch=%d, dim=%d",
			len(traj), len(obs), len(dtraj), m, batch, dim)
	}
	if !allFiniteSlice(obs) {
		return 0, fmt.Errorf("%w: trajectory mse observations", errTaskNonFinite)
	}
	n := m * batch
	for j := 0; j < n; j++ {
		if !finite(traj[j*dim+comp]) {
			return 0, fmt.Errorf("%w: trajectory mse prediction %d", errTaskNonFinite, j)
		}
	}
	inv := 1 / float64(n)
	clear(dtraj)
	s := 0.0
	for j := 0; j < n; j++ {
		d := traj[j*dim+comp] - obs[j]
		s += d * d
		if dtraj != nil {
			dtraj[j*dim+comp] = 2 * inv * d
		}
	}
	return s * inv, nil
}
