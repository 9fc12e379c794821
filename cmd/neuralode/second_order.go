package main

import "github.com/neuralode/neuralode"

// secondOrder is the second-order vector field of the sines task: the state of
// a sample is [x, v] and
//
//	ẋ = v,  v̇ = m_0(x, v),
//
// where m = MLP([x, v]) is an ordinary two-dimensional MLP vector field and
// only its first output is used as the acceleration. The MLP maps R² → R²
// because the library's MLP always maps D → D; using its first output keeps the
// network a valid case-format model (layers chain 2 → … → 2), so a trained
// model can be saved and reloaded with the standard case reader. The second
// output's weights receive zero gradient and never change.
type secondOrder struct {
	mlp *neuralode.MLP
}

// Dim returns 2: position and velocity.
func (s *secondOrder) Dim() int { return 2 }

// Params returns the MLP's parameters (a live view).
func (s *secondOrder) Params() []float64 { return s.mlp.Params() }

// ParamSizes forwards the MLP's tensor sizes, so the full adjoint norm
// measures each tensor separately as for a plain MLP.
func (s *secondOrder) ParamSizes() []int { return s.mlp.ParamSizes() }

// TimeDependent reports whether the MLP reads t.
func (s *secondOrder) TimeDependent() bool { return s.mlp.TimeDependent() }

// NewEvaluator returns an evaluator with its own scratch space.
func (s *secondOrder) NewEvaluator() neuralode.Evaluator {
	return &secondOrderEval{ev: s.mlp.NewEvaluator()}
}

type secondOrderEval struct {
	ev   neuralode.Evaluator
	m, c []float64 // MLP output and its cotangent, B·2
	mgz  []float64 // cotangent through the MLP input
}

func (e *secondOrderEval) grow(n int) {
	if cap(e.m) < n {
		e.m = make([]float64, n)
		e.c = make([]float64, n)
		e.mgz = make([]float64, n)
	}
	e.m, e.c, e.mgz = e.m[:n], e.c[:n], e.mgz[:n]
}

// Eval writes [v, m_0(x, v)] for every sample.
func (e *secondOrderEval) Eval(t float64, z, dz []float64) {
	n := len(z)
	e.grow(n)
	e.ev.Eval(t, z, e.m)
	for i := 0; i+1 < n; i += 2 {
		dz[i] = z[i+1]
		dz[i+1] = e.m[i]
	}
}

// VJP follows the Evaluator contract (f and gz overwritten, gp added, gt
// overwritten). With cotangent a = [a_x, a_v] per sample,
// aᵀ∂f/∂z = [0, a_x] + cᵀ∂m/∂z and aᵀ∂f/∂θ = cᵀ∂m/∂θ, where c = [a_v, 0].
func (e *secondOrderEval) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	n := len(z)
	e.grow(n)
	for i := 0; i+1 < n; i += 2 {
		e.c[i] = a[i+1]
		e.c[i+1] = 0
	}
	var mgz []float64
	if gz != nil {
		mgz = e.mgz
	}
	var mf []float64
	if f != nil {
		mf = e.m
	}
	e.ev.VJP(t, z, e.c, mf, mgz, gp, gt)
	if f != nil {
		for i := 0; i+1 < n; i += 2 {
			f[i] = z[i+1]
			f[i+1] = e.m[i]
		}
	}
	if gz != nil {
		for i := 0; i+1 < n; i += 2 {
			gz[i] = mgz[i]
			gz[i+1] = mgz[i+1] + a[i]
		}
	}
}
