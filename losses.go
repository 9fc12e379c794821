package neuralode

import (
	"fmt"
	"math"
)

// Loss computes a scalar loss from the states at the observation times.
// states holds len(ts) rows of B·D values (row 0 is z0); Loss writes
// ∂L/∂z(t_i) into the matching rows of grad (zeroed before the call) and
// returns L. Neither slice may be kept.
//
// The ready-made losses of this file (MSELoss, SelectedMSELoss,
// SoftmaxCrossEntropyLoss, GaussianMomentLoss) are built for a LossShape and
// check their arguments when they are constructed. Called by Gradient with
// states of another shape, they make it fail with an *InputError wrapping
// ErrInvalidInput; called directly with such states they panic with that
// error.
type Loss func(states, grad []float64) float64

// LossShape is the layout of the states a Loss sees: Times rows, one per
// observation time (row 0 is z0 at t_0), each a batch of Batch samples of
// Dim components, so len(states) = Times·Batch·Dim.
type LossShape struct {
	Batch int // B, the number of samples
	Dim   int // D, the state dimension of one sample
	Times int // the number of observation times, len(ts), t_0 included
}

// size returns Times·Batch·Dim, checking every factor and the product.
func (s LossShape) size(minBatch int) (int, error) {
	switch {
	case s.Batch < minBatch:
		return 0, invalidf("LossShape.Batch", "%d, want ≥ %d", s.Batch, minBatch)
	case s.Dim < 1:
		return 0, invalidf("LossShape.Dim", "%d, want ≥ 1", s.Dim)
	case s.Times < 2:
		return 0, invalidf("LossShape.Times", "%d, want ≥ 2 (t_0 and at least one observation)", s.Times)
	case s.Batch > math.MaxInt32/s.Dim || s.Batch*s.Dim > math.MaxInt32/s.Times:
		return 0, invalidf("LossShape", "%d×%d×%d values is too large", s.Times, s.Batch, s.Dim)
	}
	return s.Times * s.Batch * s.Dim, nil
}

// lossShapeError is the panic value of a ready-made loss called with states
// of the wrong length; callLoss turns it back into its error.
type lossShapeError struct{ err error }

// checkStates panics with a lossShapeError unless states and grad have n
// values (see Loss).
func checkStates(name string, shape LossShape, n int, states, grad []float64) {
	if len(states) != n || len(grad) != n {
		panic(&lossShapeError{invalidf(name, "built for %d times × %d samples × %d components = %d state values, called with %d (gradient %d)",
			shape.Times, shape.Batch, shape.Dim, n, len(states), len(grad))})
	}
}

// MSELoss returns the loss of the case format,
//
//	L = Σ_{i=1}^{M} mean_{b,d} (z_b(t_i)_d − target_{i,b,d})²,
//
// for states of the given shape (M = Times − 1 observation times after t_0).
// targets holds M·B·D finite values, time-major then batch-major; it is
// copied. The gradient is 2(z − target)/(B·D) on rows 1…M and 0 on row 0.
func MSELoss(shape LossShape, targets []float64) (Loss, error) {
	n, err := shape.size(1)
	if err != nil {
		return nil, err
	}
	row := shape.Batch * shape.Dim
	if len(targets) != n-row {
		return nil, invalidf("targets", "has %d values, want (Times−1)·B·D = %d·%d·%d = %d", len(targets), shape.Times-1, shape.Batch, shape.Dim, n-row)
	}
	if err := checkFinite("targets", targets); err != nil {
		return nil, err
	}
	tg := append([]float64(nil), targets...)
	return func(states, grad []float64) float64 {
		checkStates("MSELoss", shape, n, states, grad)
		return mseLoss(states[row:], tg, grad[row:], row)
	}, nil
}

// mseLoss computes Σ_i mean((z_i − target_i)²) over rows of length rowLen.
func mseLoss(z, target, grad []float64, rowLen int) float64 {
	total := 0.0
	scale := 1 / float64(rowLen)
	for r := 0; r+rowLen <= len(z); r += rowLen {
		zr, tr, gr := z[r:r+rowLen], target[r:r+rowLen], grad[r:r+rowLen]
		s := 0.0
		for i := range zr {
			d := zr[i] - tr[i]
			s += d * d
			gr[i] = 2 * d * scale
		}
		total += s * scale
	}
	return total
}

// SelectedMSELoss returns the mean squared error on chosen observation
// times and state components:
//
//	L = mean_{i ∈ times, b, c ∈ channels} (z_b(t_i)_c − obs_{i,b,c})²,
//
// one mean over all len(times)·B·len(channels) terms. times are row indices
// into the states (0 is z0, Times−1 the last observation), channels are
// component indices in [0, Dim); both must be strictly increasing. obs holds
// len(times)·B·len(channels) finite values ordered by time, then sample,
// then channel; it is copied. Observing component 0 of the last row is a
// readout loss; observing component 0 of every row is a trajectory fit.
func SelectedMSELoss(shape LossShape, times, channels []int, obs []float64) (Loss, error) {
	n, err := shape.size(1)
	if err != nil {
		return nil, err
	}
	if err := checkIndices("times", times, shape.Times); err != nil {
		return nil, err
	}
	if err := checkIndices("channels", channels, shape.Dim); err != nil {
		return nil, err
	}
	m := len(times) * shape.Batch * len(channels)
	if len(obs) != m {
		return nil, invalidf("obs", "has %d values, want len(times)·B·len(channels) = %d·%d·%d = %d", len(obs), len(times), shape.Batch, len(channels), m)
	}
	if err := checkFinite("obs", obs); err != nil {
		return nil, err
	}
	ti, ch := append([]int(nil), times...), append([]int(nil), channels...)
	ob := append([]float64(nil), obs...)
	row, D := shape.Batch*shape.Dim, shape.Dim
	inv := 1 / float64(m)
	return func(states, grad []float64) float64 {
		checkStates("SelectedMSELoss", shape, n, states, grad)
		s, j := 0.0, 0
		for _, i := range ti {
			for b := 0; b < shape.Batch; b++ {
				off := i*row + b*D
				for _, c := range ch {
					d := states[off+c] - ob[j]
					s += d * d
					grad[off+c] = 2 * inv * d
					j++
				}
			}
		}
		return s * inv
	}, nil
}

// checkIndices checks that idx is non-empty, strictly increasing and inside
// [0, n).
func checkIndices(field string, idx []int, n int) error {
	if len(idx) == 0 {
		return invalidf(field, "is empty")
	}
	for k, v := range idx {
		if v < 0 || v >= n {
			return invalidf(field, "element %d is %d, outside [0, %d)", k, v, n)
		}
		if k > 0 && v <= idx[k-1] {
			return invalidf(field, "not strictly increasing at element %d", k)
		}
	}
	return nil
}

// SoftmaxCrossEntropyLoss returns the classification loss of a linear
// readout of the final state: with logits l_b = W·z_b(t_M) + bias and
// p_b = softmax(l_b),
//
//	L = mean_b (log Σ_k exp(l_{b,k}) − l_{b,y_b}),
//
// the mean cross-entropy against labels y_b ∈ [0, K). w is the K×D readout
// matrix (row-major, like PyTorch's nn.Linear) and bias its K offsets; they
// are read at every call, so an optimiser may update them in place, and must
// then be finite. With g_b = (p_b − onehot(y_b))/B the gradients are
// ∂L/∂z_b(t_M) = Wᵀg_b (written into the loss gradient), ∂L/∂W = Σ_b g_b z_bᵀ
// and ∂L/∂bias = Σ_b g_b, overwritten into dw and dbias at every call when
// they are non-nil (len(w) and len(bias) values): the readout's parameters
// are not the field's, so the caller applies them. labels are copied.
func SoftmaxCrossEntropyLoss(shape LossShape, labels []int, w, bias, dw, dbias []float64) (Loss, error) {
	n, err := shape.size(1)
	if err != nil {
		return nil, err
	}
	B, D, K := shape.Batch, shape.Dim, len(bias)
	switch {
	case K < 2:
		return nil, invalidf("bias", "has %d classes, want ≥ 2", K)
	case len(w) != K*D:
		return nil, invalidf("w", "has %d values, want classes·D = %d·%d = %d", len(w), K, D, K*D)
	case dw != nil && len(dw) != len(w):
		return nil, invalidf("dw", "has %d values, want %d", len(dw), len(w))
	case dbias != nil && len(dbias) != K:
		return nil, invalidf("dbias", "has %d values, want %d", len(dbias), K)
	case len(labels) != B:
		return nil, invalidf("labels", "has %d entries, want one per sample (%d)", len(labels), B)
	}
	for i, y := range labels {
		if y < 0 || y >= K {
			return nil, invalidf("labels", "element %d is %d, outside [0, %d)", i, y, K)
		}
	}
	if err := checkFinite("w", w); err != nil {
		return nil, err
	}
	if err := checkFinite("bias", bias); err != nil {
		return nil, err
	}
	ys := append([]int(nil), labels...)
	p := make([]float64, K)
	last := (shape.Times - 1) * B * D
	return func(states, grad []float64) float64 {
		checkStates("SoftmaxCrossEntropyLoss", shape, n, states, grad)
		if ok, i := allFinite(w); !ok {
			panic(&lossShapeError{&InputError{Field: "w", Reason: fmt.Sprintf("element %d is %v", i, w[i]), Err: ErrNonFinite}})
		}
		if ok, i := allFinite(bias); !ok {
			panic(&lossShapeError{&InputError{Field: "bias", Reason: fmt.Sprintf("element %d is %v", i, bias[i]), Err: ErrNonFinite}})
		}
		clear(dw)
		clear(dbias)
		inv := 1 / float64(B)
		total := 0.0
		for b, y := range ys {
			z := states[last+b*D : last+(b+1)*D]
			mx := math.Inf(-1)
			for k := range p {
				l := bias[k]
				for d, wv := range w[k*D : (k+1)*D] {
					l += wv * z[d]
				}
				p[k] = l
				mx = math.Max(mx, l)
			}
			ly, sum := p[y], 0.0
			for k, l := range p {
				p[k] = math.Exp(l - mx)
				sum += p[k]
			}
			total += math.Log(sum) + mx - ly // log-sum-exp shifted by the max
			gz := grad[last+b*D : last+(b+1)*D]
			clear(gz)
			is := inv / sum
			for k := range p {
				g := p[k] * is // (p − onehot(y))/B
				if k == y {
					g -= inv
				}
				wk := w[k*D : (k+1)*D]
				for d := range gz {
					gz[d] += g * wk[d]
				}
				if dw != nil {
					dwk := dw[k*D : (k+1)*D]
					for d := range dwk {
						dwk[d] += g * z[d]
					}
				}
				if dbias != nil {
					dbias[k] += g
				}
			}
		}
		return total * inv
	}, nil
}

// GaussianMomentLoss returns a moment-matching loss for sampled paths,
// such as a batch of Wong–Zakai solutions: at every observation time
// t_i, i ≥ 1, and for every component c, it fits a Gaussian to the batch
// (sample mean m and unbiased variance s²) and sums the Kullback–Leibler
// divergences to the data's Gaussians N(mean, variance):
//
//	L = Σ_{i≥1, c} ½ log(v_d/s²) + (s² + (m − m_d)²)/(2 v_d) − ½.
//
// Its gradient reaches sample b through ∂m/∂z_b = 1/B and
// ∂s²/∂z_b = 2(z_b − m)/(B − 1). mean and variance hold (Times−1)·D values,
// time-major (row i−1 for t_i); variances must be positive and finite, and
// the batch needs at least two samples. The model's variance is floored at
// 1e−12 so that a collapsed batch gives a large finite loss. Both slices are
// copied.
func GaussianMomentLoss(shape LossShape, mean, variance []float64) (Loss, error) {
	n, err := shape.size(2)
	if err != nil {
		return nil, err
	}
	m := (shape.Times - 1) * shape.Dim
	if len(mean) != m || len(variance) != m {
		return nil, invalidf("mean/variance", "have %d and %d values, want (Times−1)·D = %d", len(mean), len(variance), m)
	}
	if err := checkFinite("mean", mean); err != nil {
		return nil, err
	}
	for i, v := range variance {
		if !(v > 0) || math.IsInf(v, 0) {
			return nil, invalidf("variance", "element %d is %v, want positive and finite", i, v)
		}
	}
	md, vd := append([]float64(nil), mean...), append([]float64(nil), variance...)
	B, D := shape.Batch, shape.Dim
	return func(states, grad []float64) float64 {
		checkStates("GaussianMomentLoss", shape, n, states, grad)
		total := 0.0
		for i := 1; i < shape.Times; i++ {
			for c := 0; c < D; c++ {
				off := i*B*D + c
				mp := 0.0
				for b := 0; b < B; b++ {
					mp += states[off+b*D]
				}
				mp /= float64(B)
				vp := 0.0
				for b := 0; b < B; b++ {
					d := states[off+b*D] - mp
					vp += d * d
				}
				vp /= float64(B - 1)
				floored := vp < 1e-12
				if floored {
					vp = 1e-12 // the loss is flat in the spread there
				}
				k := (i-1)*D + c
				dm := mp - md[k]
				total += 0.5*math.Log(vd[k]/vp) + (vp+dm*dm)/(2*vd[k]) - 0.5
				gm := dm / vd[k] / float64(B)
				gv := (-0.5/vp + 0.5/vd[k]) * 2 / float64(B-1)
				if floored {
					gv = 0
				}
				for b := 0; b < B; b++ {
					grad[off+b*D] = gm + gv*(states[off+b*D]-mp)
				}
			}
		}
		return total
	}, nil
}
