package neuralode

import (
	"math"
	"math/rand/v2"
	"runtime"
)

// TraceEstimator selects how a CNF computes tr(∂f/∂z).
type TraceEstimator int

const (
	// ExactTrace computes the trace from D Jacobian–vector products with the
	// unit vectors e_1 … e_D (forward-mode tangents through the network): the
	// cost grows with D, which is cheap for the low-dimensional toy problems.
	ExactTrace TraceEstimator = iota
	// HutchinsonRademacher estimates the trace by εᵀ(∂f/∂z)ε with one
	// Jacobian–vector product per sample, ε with independent ±1 entries
	// (Hutchinson 1990; FFJORD, Grathwohl et al. 2019, eq. 7). The estimate
	// is unbiased because E[εεᵀ] = I.
	HutchinsonRademacher
	// HutchinsonGaussian is Hutchinson's estimator with ε ~ N(0, I).
	HutchinsonGaussian
)

// String returns the estimator's name: "exact", "rademacher" or "gaussian".
func (e TraceEstimator) String() string {
	return enumString(traceEstimatorNames[:], int(e), "TraceEstimator")
}

var traceEstimatorNames = [...]string{ExactTrace: "exact", HutchinsonRademacher: "rademacher", HutchinsonGaussian: "gaussian"}

// CNFOptions configures a CNF.
type CNFOptions struct {
	// Trace selects the trace computation; default ExactTrace.
	Trace TraceEstimator
	// Regularize appends the two RNODE channels (Finlay et al., ICML 2020,
	// eq. 6) to every sample's state: the kinetic energy ∫‖f‖² dt and the
	// Jacobian's squared Frobenius norm ∫‖∂f/∂z‖²_F dt (exact with
	// ExactTrace, estimated by ‖(∂f/∂z)ε‖² with Hutchinson's ε otherwise).
	Regularize bool
}

// CNF is a continuous normalizing flow (Chen et al. 2018, §4; FFJORD,
// Grathwohl et al. 2019) over an MLP g: R^D (× t) → R^D. Each sample's
// state is [z, Δ] (D+1 values) or, with CNFOptions.Regularize,
// [z, Δ, E, F] (D+3 values), with dynamics
//
//	dz/dt = g(t, z),
//	dΔ/dt = −tr(∂g/∂z),           (instantaneous change of variables, Chen et al. eq. 4)
//	dE/dt = ‖g(t, z)‖²,            (RNODE kinetic energy)
//	dF/dt = ‖∂g/∂z‖²_F,            (RNODE Jacobian norm)
//
// and Δ, E, F starting at 0. Integrating data x from t_0 to t_1 gives
// log p(x) = log N(z(t_1); 0, I) − Δ(t_1) (see NLLLoss and LogDensity).
//
// The trace is Σ_k v_kᵀ(∂g/∂z)v_k over tangent directions v_k: the unit
// vectors (ExactTrace, k = 1…D) or one noise vector ε per sample
// (Hutchinson), which SampleNoise draws once per solve, as FFJORD does, so
// that the forward and backward passes see the same estimator. The
// products (∂g/∂z)v_k are forward-mode tangents through the network:
//
//	ḣ_0 = [v_k, 0],  u̇_l = W_l ḣ_l,  ḣ_{l+1} = σ′(u_l) ⊙ u̇_l,  ġ = u̇_L,
//
// where u_l = W_l h_l + b_l, h_{l+1} = σ(u_l) is the primal pass.
//
// A CNF implements VectorField, TimeDependent and ParamTensors, so every
// GradMethod trains it. Its vector–Jacobian products differentiate the
// trace term by reverse mode over the (primal, tangent) computation, which
// needs σ″; see the Evaluator's VJP. The parameters are the MLP's (a live
// view).
type CNF struct {
	mlp   *MLP
	opts  CNFOptions
	d     int
	noise []float64
}

// NewCNF returns a CNF over m, an MLP whose state dimension D is the data
// dimension. A nil m or an unknown estimator gives an error wrapping
// ErrInvalidInput. With a Hutchinson estimator, call SampleNoise (or
// SetNoise) before evaluating.
func NewCNF(m *MLP, opts CNFOptions) (*CNF, error) {
	if m == nil {
		return nil, invalidf("m", "nil MLP")
	}
	if opts.Trace < ExactTrace || opts.Trace > HutchinsonGaussian {
		return nil, invalidf("CNFOptions.Trace", "unknown trace estimator %d", int(opts.Trace))
	}
	return &CNF{mlp: m, opts: opts, d: m.Dim()}, nil
}

// MLP returns the network g.
func (c *CNF) MLP() *MLP { return c.mlp }

// Options returns the CNF's options.
func (c *CNF) Options() CNFOptions { return c.opts }

// DataDim returns D, the dimension of the data (and of z).
func (c *CNF) DataDim() int { return c.d }

// Dim returns the state dimension of one sample: D+1, or D+3 with
// Regularize.
func (c *CNF) Dim() int {
	if c.opts.Regularize {
		return c.d + 3
	}
	return c.d + 1
}

// Params returns the MLP's parameter vector (a live view).
func (c *CNF) Params() []float64 { return c.mlp.Params() }

// ParamSizes returns the MLP's parameter tensor sizes.
func (c *CNF) ParamSizes() []int { return c.mlp.ParamSizes() }

// TimeDependent reports whether the MLP takes t as an input.
func (c *CNF) TimeDependent() bool { return c.mlp.TimeDependent() }

// tangents returns K, the number of tangent directions per sample.
func (c *CNF) tangents() int {
	if c.opts.Trace == ExactTrace {
		return c.d
	}
	return 1
}

// SampleNoise draws Hutchinson's ε for a batch of B samples (B·D values,
// Rademacher ±1 or standard normal as the estimator says) from rng and
// keeps it until the next call: draw once per solve, before the forward
// pass, so that the backward pass differentiates the same estimator. It
// does nothing for ExactTrace. B < 1 or a nil rng (for a Hutchinson
// estimator) gives an error wrapping ErrInvalidInput.
func (c *CNF) SampleNoise(rng *rand.Rand, B int) error {
	if c.opts.Trace == ExactTrace {
		return nil
	}
	if B < 1 {
		return invalidf("B", "batch size %d, want ≥ 1", B)
	}
	if rng == nil {
		return invalidf("rng", "nil generator")
	}
	n := B * c.d
	if cap(c.noise) < n {
		c.noise = make([]float64, n)
	}
	c.noise = c.noise[:n]
	if c.opts.Trace == HutchinsonGaussian {
		for i := range c.noise {
			c.noise[i] = rng.NormFloat64()
		}
		return nil
	}
	for i := 0; i < n; i += 64 {
		bits := rng.Uint64()
		for j := i; j < min(i+64, n); j++ {
			c.noise[j] = float64(int(bits&1)*2 - 1)
			bits >>= 1
		}
	}
	return nil
}

// SetNoise sets Hutchinson's ε to a copy of eps (B·D values for B samples).
// Evaluating a batch of N samples uses row b mod B of ε for sample b, so a
// batch made of several copies of the noise's batch (as the quadrature
// adjoints form for autonomous fields) sees the same ε in every copy. An
// empty or non-finite eps, or a length that is not a multiple of D, gives
// an error wrapping ErrInvalidInput or ErrNonFinite.
func (c *CNF) SetNoise(eps []float64) error {
	if len(eps) == 0 || len(eps)%c.d != 0 {
		return invalidf("eps", "length %d is not a positive multiple of D = %d", len(eps), c.d)
	}
	if err := checkFinite("eps", eps); err != nil {
		return err
	}
	c.noise = append(c.noise[:0], eps...)
	return nil
}

// Noise returns the current ε (nil for ExactTrace or before SampleNoise).
func (c *CNF) Noise() []float64 { return c.noise }

// InitialState writes the augmented initial states [x_b, 0, …] of the B
// samples in x (B·D values) into dst (B·Dim() values) and returns it; a nil
// or short dst is replaced by a new slice. A length of x that is not a
// multiple of D, or non-finite data, gives an error.
func (c *CNF) InitialState(x, dst []float64) ([]float64, error) {
	D, S := c.d, c.Dim()
	if len(x) == 0 || len(x)%D != 0 {
		return nil, invalidf("x", "length %d is not a positive multiple of D = %d", len(x), D)
	}
	if err := checkFinite("x", x); err != nil {
		return nil, err
	}
	B := len(x) / D
	if len(dst) < B*S {
		dst = make([]float64, B*S)
	}
	dst = dst[:B*S]
	for b := 0; b < B; b++ {
		row := dst[b*S : b*S+S]
		copy(row, x[b*D:b*D+D])
		clear(row[D:])
	}
	return dst, nil
}

// logNormalConst is ½·log(2π), the per-dimension normaliser of N(0, 1).
var logNormalConst = 0.5 * math.Log(2*math.Pi)

// LogLikelihood writes log p(x_b) = log N(z_b; 0, I) − Δ_b for each sample of
// final, the B·Dim() states at the end of the flow, into dst (length B) and
// returns the mean over the batch.
func (c *CNF) LogLikelihood(final, dst []float64) (float64, error) {
	S, D := c.Dim(), c.d
	if len(final) == 0 || len(final)%S != 0 {
		return 0, invalidf("final", "length %d is not a positive multiple of Dim = %d", len(final), S)
	}
	B := len(final) / S
	if dst != nil && len(dst) != B {
		return 0, invalidf("dst", "length %d, want %d", len(dst), B)
	}
	sum := 0.0
	for b := 0; b < B; b++ {
		row := final[b*S : b*S+S]
		lp := -0.5*SumSq(row[:D]) - float64(D)*logNormalConst - row[D]
		if dst != nil {
			dst[b] = lp
		}
		sum += lp
	}
	return sum / float64(B), nil
}

// NLLLoss returns the training loss of a CNF observed at the times of a
// GradientSolver call, for a batch of B samples: the negative
// log-likelihood under the standard normal base at the last time, in nats
// per sample, plus the RNODE penalties when the CNF has the channels,
//
//	L = (1/B) Σ_b [ ½‖z_b‖² + (D/2)·log 2π + Δ_b + λ_K·E_b + λ_F·F_b ],
//
// with gradient ∂L/∂z_b = z_b/B, ∂L/∂Δ_b = 1/B, ∂L/∂E_b = λ_K/B,
// ∂L/∂F_b = λ_F/B on the last row (earlier rows get 0). λ_K and λ_F are
// ignored without Regularize. The Loss panics, as MSELoss does, if the
// states' length is not a multiple of B·Dim().
func (c *CNF) NLLLoss(B int, lambdaK, lambdaF float64) Loss {
	S, D := c.Dim(), c.d
	reg := c.opts.Regularize
	return func(states, grad []float64) float64 {
		n := B * S
		if B < 1 || len(states) < n || len(states)%n != 0 {
			panic(invalidf("states", "length %d is not a multiple of B·Dim = %d", len(states), n))
		}
		last := states[len(states)-n:]
		g := grad[len(grad)-n:]
		inv := 1 / float64(B)
		total := 0.0
		for b := 0; b < B; b++ {
			row := last[b*S : b*S+S]
			gr := g[b*S : b*S+S]
			l := 0.5*SumSq(row[:D]) + float64(D)*logNormalConst + row[D]
			for i, v := range row[:D] {
				gr[i] = v * inv
			}
			gr[D] = inv
			if reg {
				l += lambdaK*row[D+1] + lambdaF*row[D+2]
				gr[D+1], gr[D+2] = lambdaK*inv, lambdaF*inv
			}
			total += l
		}
		return total * inv
	}
}

// LogDensity writes the exact log-density log p(x_b) of the model at each
// of the B samples in x (B·D values) into dst (length B): it integrates
// [z, Δ] from t0 to t1 with the exact trace (whatever the CNF's estimator,
// and without the RNODE channels) and the solver options opts, then
// applies the change of variables. It is what plots of the learned density
// use; its cost is D+1 network passes per evaluation.
func (c *CNF) LogDensity(x []float64, t0, t1 float64, opts Options, dst []float64) error {
	exact := &CNF{mlp: c.mlp, opts: CNFOptions{Trace: ExactTrace}, d: c.d}
	y0, err := exact.InitialState(x, nil)
	if err != nil {
		return err
	}
	B := len(x) / c.d
	if len(dst) != B {
		return invalidf("dst", "length %d, want %d", len(dst), B)
	}
	s, err := NewSolver(opts)
	if err != nil {
		return err
	}
	ev := exact.NewEvaluator().(*cnfEvaluator)
	defer ev.pool.close() // stop its helpers now rather than at garbage collection
	out := make([]float64, 2*len(y0))
	if _, err := s.Solve(func(t float64, z, dz []float64) { ev.Eval(t, z, dz) }, y0, []float64{t0, t1}, out); err != nil {
		return err
	}
	_, err = exact.LogLikelihood(out[len(y0):], dst)
	return err
}

// Sample maps base samples z (B·D values, typically drawn from N(0, I)) to
// data space by solving dz/dt = g(t, z) backward from t1 to t0, and writes
// the results into dst (B·D values).
func (c *CNF) Sample(z []float64, t0, t1 float64, opts Options, dst []float64) error {
	if len(z) == 0 || len(z)%c.d != 0 {
		return invalidf("z", "length %d is not a positive multiple of D = %d", len(z), c.d)
	}
	if len(dst) != len(z) {
		return invalidf("dst", "length %d, want %d", len(dst), len(z))
	}
	s, err := NewSolver(opts)
	if err != nil {
		return err
	}
	ev := c.mlp.NewEvaluator().(*mlpEvaluator)
	defer ev.pool.close()
	out := make([]float64, 2*len(z))
	if _, err := s.Solve(func(t float64, y, dy []float64) { ev.Eval(t, y, dy) }, z, []float64{t1, t0}, out); err != nil {
		return err
	}
	copy(dst, out[len(z):])
	return nil
}

// NewEvaluator returns an evaluator with its own scratch space, grown to
// the largest batch seen. Like the MLP's, it splits large batches into row
// blocks run by a pool of helper goroutines, with a partition fixed by the
// problem size, so results are bit-identical for any GOMAXPROCS.
func (c *CNF) NewEvaluator() Evaluator {
	st := &cnfState{c: c, K: c.tangents()}
	st.fRows, st.fParams = st.rowTask, st.paramTask
	e := &cnfEvaluator{st}
	runtime.SetFinalizer(e, func(e *cnfEvaluator) { e.pool.close() })
	return e
}

// cnfEvaluator is the handle NewEvaluator returns; its finalizer stops the
// helpers, which reference only the state.
type cnfEvaluator struct{ *cnfState }

// workerPool returns the evaluator's helper pool (see poolSharer).
func (e *cnfEvaluator) workerPool() *taskPool { return &e.pool }

// Eval and VJP keep the handle reachable until the call returns: the
// finalizer closes the helper pool, and a pool closed in the middle of a
// call would leave it waiting for helpers that have quit.
func (e *cnfEvaluator) Eval(t float64, z, dz []float64) {
	e.cnfState.Eval(t, z, dz)
	runtime.KeepAlive(e)
}

// VJP is the state's VJP, with the handle kept reachable (see Eval).
func (e *cnfEvaluator) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	e.cnfState.VJP(t, z, a, f, gz, gp, gt)
	runtime.KeepAlive(e)
}

// cnfState is the scratch of one CNF evaluator. Sample rows are batch-major;
// tangent rows are sample-major, tangent k of sample b at row b·K + k.
type cnfState struct {
	c    *CNF
	K    int
	maxB int

	in, tin []float64   // h_0 = [z, t] (B×n_0) and ḣ_0 = [v, 0] (BK×n_0)
	h, d    [][]float64 // l = 1…L: h_l = σ(u_{l−1}) and σ′(u_{l−1}), B×n_l
	s2      [][]float64 // l = 1…L: σ″(u_{l−1}), B×n_l
	tu, th  [][]float64 // l = 1…L: u̇_{l−1} and ḣ_l, BK×n_l
	g, tg   []float64   // the output g (B×D) and its tangents ġ (BK×D)
	delta   [][]float64 // l = 0…L: cotangent of u_l, B×n_{l+1}
	gamma   [][]float64 // l = 0…L: cotangent of u̇_l, BK×n_{l+1}
	hbar    [][]float64 // l = 0…L: cotangent of h_l, B×n_l
	wt      [][]float64 // W_lᵀ for the layers whose forward product uses it (see fwdTransposed)
	gtBlk   []float64
	ptasks  [][3]int // parameter tasks: layer, first and end output row

	pool            taskPool
	fRows, fParams  func(i, w int)
	scr             workerScratch // per worker, for the assembly kernels
	blocks          int
	t               float64
	z, a, f, gz, gp []float64
	B               int
	back, wantGt    bool
}

func (e *cnfState) ensure(B int) {
	if B <= e.maxB {
		return
	}
	m := e.c.mlp
	L := len(m.sizes) - 2
	K := e.K
	e.in = make([]float64, B*m.sizes[0])
	e.tin = make([]float64, B*K*m.sizes[0])
	e.h = make([][]float64, L+1)
	e.d = make([][]float64, L+1)
	e.s2 = make([][]float64, L+1)
	e.tu = make([][]float64, L+1)
	e.th = make([][]float64, L+1)
	for l := 1; l <= L; l++ {
		n := m.sizes[l]
		e.h[l], e.d[l], e.s2[l] = make([]float64, B*n), make([]float64, B*n), make([]float64, B*n)
		e.tu[l], e.th[l] = make([]float64, B*K*n), make([]float64, B*K*n)
	}
	e.g = make([]float64, B*e.c.d)
	e.tg = make([]float64, B*K*e.c.d)
	e.delta = make([][]float64, L+1)
	e.gamma = make([][]float64, L+1)
	e.hbar = make([][]float64, L+1)
	for l := 0; l <= L; l++ {
		e.delta[l] = make([]float64, B*m.sizes[l+1])
		e.gamma[l] = make([]float64, B*K*m.sizes[l+1])
		e.hbar[l] = make([]float64, B*m.sizes[l])
	}
	e.wt = make([][]float64, L+1)
	for l := 0; l <= L; l++ {
		if fwdTransposed(m.sizes[l+1]) {
			e.wt[l] = make([]float64, m.sizes[l]*m.sizes[l+1])
		}
	}
	e.gtBlk = make([]float64, mlpMaxBlocks)
	e.ptasks = make([][3]int, 0, (L+1)*mlpMaxBlocks)
	e.maxB = B
}

// batch returns the number of samples in a state of length n.
func (e *cnfState) batch(n int) int {
	S := e.c.Dim()
	if n%S != 0 {
		panic(invalidf("z", "length %d is not a multiple of the state dimension %d", n, S))
	}
	B := n / S
	if e.c.opts.Trace != ExactTrace {
		nb := len(e.c.noise) / e.c.d
		if nb == 0 {
			panic(invalidf("CNF.Noise", "no Hutchinson noise: call SampleNoise or SetNoise first"))
		}
		if B%nb != 0 {
			panic(invalidf("z", "batch of %d samples is not a multiple of the noise's %d", B, nb))
		}
	}
	return B
}

// work is the forward multiply–adds per sample.
func (e *cnfState) work() int {
	s := e.c.mlp.sizes
	w := 0
	for l := 0; l+1 < len(s); l++ {
		w += s[l] * s[l+1]
	}
	return (1 + e.K) * w
}

// rowBlocks returns the number of row blocks for B samples: one per
// mlpBlockWork of forward work, at most mlpMaxBlocks, at least
// mlpMinBlockRows samples each. It depends on the sizes only.
func (e *cnfState) rowBlocks(B int) int {
	nb := min(B*e.work()/mlpBlockWork, mlpMaxBlocks, B/mlpMinBlockRows)
	return max(nb, 1)
}

// splits reports whether a batch of B samples is split over several tasks
// (the quadrature fan-out then runs its chunks serially).
func (e *cnfEvaluator) splits(rows int) bool { return e.rowBlocks(rows) > 1 }

// Eval writes the augmented dynamics [g, −tr, (‖g‖², ‖∂g/∂z‖²_F)] of every
// sample into dz. It panics with an *InputError on inconsistent lengths or
// missing Hutchinson noise.
func (e *cnfState) Eval(t float64, z, dz []float64) {
	B := e.batch(len(z))
	checkLen("dz", dz, len(z))
	if dz == nil && len(z) > 0 {
		panic(invalidf("dz", "nil output"))
	}
	e.ensure(B)
	e.run(t, z, nil, dz, nil, nil, B, false, false)
	e.release()
}

// VJP implements Evaluator.VJP for the augmented dynamics. With the
// cotangent a = [a_z, a_Δ, (a_E, a_F)] of a sample, the scalar being
// differentiated is
//
//	S = a_zᵀ g − a_Δ Σ_k v_kᵀ ġ_k + a_E ‖g‖² + a_F Σ_k ‖ġ_k‖²,
//
// a function of the primal output g and the tangents ġ_k = (∂g/∂z)v_k. Its
// reverse sweep starts from the output cotangents
//
//	δ_L = a_z + 2a_E g,   γ_{L,k} = −a_Δ v_k + 2a_F ġ_k
//
// and runs through each layer u_l = W_l h_l + b_l, u̇_l = W_l ḣ_l as
//
//	dW_l += δ_lᵀ h_l + Σ_k γ_{l,k}ᵀ ḣ_{l,k},   db_l += Σ_b δ_l,
//	h̄_l = δ_l W_l,   ḣ̄_{l,k} = γ_{l,k} W_l,
//
// then through h_l = σ(u_{l−1}), ḣ_l = σ′(u_{l−1}) ⊙ u̇_{l−1} (the product
// rule on the tangent brings in σ″):
//
//	γ_{l−1,k} = σ′ ⊙ ḣ̄_{l,k},   δ_{l−1} = σ′ ⊙ h̄_l + σ″ ⊙ Σ_k u̇_{l−1,k} ⊙ ḣ̄_{l,k}.
//
// At the input h_0 = [z, t] (ḣ_0 = [v_k, 0] does not depend on z, t or θ),
// h̄_0 = δ_0 W_0 holds aᵀ∂F/∂z in its first D columns and aᵀ∂F/∂t in its
// t column. The Δ, E, F components of the state do not enter the dynamics,
// so their entries of gz are 0. σ″ comes from the stored h and σ′: tanh
// −2hσ′, softplus σ′(1 − σ′), sigmoid σ′(1 − 2h), 0 for ReLU and identity.
//
// Outputs must not overlap z or a. It panics with an *InputError on
// inconsistent lengths, as the MLP's does.
func (e *cnfState) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	B := e.batch(len(z))
	if a == nil && len(z) > 0 {
		panic(invalidf("a", "nil cotangent"))
	}
	for i, x := range [...][]float64{a, f, gz, gp} {
		want := len(z)
		if i == 3 {
			want = e.c.mlp.np
		}
		checkLen(vjpArgs[i], x, want)
	}
	e.ensure(B)
	if gz == nil && gp == nil && gt == nil {
		if f != nil {
			e.run(t, z, nil, f, nil, nil, B, false, false)
			e.release()
		}
		return
	}
	e.run(t, z, a, f, gz, gp, B, true, gt != nil)
	if gt != nil {
		// The blocks' partial sums, added in block order (0 without time input).
		*gt = 0
		for _, v := range e.gtBlk[:e.blocks] {
			*gt += v
		}
	}
	if gp != nil {
		// One task runs on this goroutine; the pool wakes helpers only for more.
		e.pool.runW(e.paramChunks(B), e.fParams)
	}
	e.release()
}

// vjpArgs names VJP's slice arguments for the length checks.
var vjpArgs = [...]string{"a", "f", "gz", "gp"}

// run records the call's arguments and runs the row-block tasks.
func (e *cnfState) run(t float64, z, a, f, gz, gp []float64, B int, back, wantGt bool) {
	e.t, e.z, e.a, e.f, e.gz, e.gp = t, z, a, f, gz, gp
	e.B, e.back, e.wantGt = B, back, wantGt
	e.blocks = e.rowBlocks(B)
	// The parameters may have changed since the last call: refresh the
	// transposed copies (in·out moves per layer against (1+K)·B·in·out
	// multiply–adds).
	for l, wt := range e.wt {
		if wt != nil {
			W, _, out, in := e.c.mlp.Layer(l)
			transposeRows(wt, W, out, in, 0, out)
		}
	}
	e.pool.runW(e.blocks, e.fRows) // a single block runs on this goroutine
}

// release drops the references to the caller's slices.
func (e *cnfState) release() { e.z, e.a, e.f, e.gz, e.gp = nil, nil, nil, nil, nil }

// rowTask runs block i: the forward pass (primal and tangents), the
// outputs, and for a VJP the reverse sweep of the cotangents.
func (e *cnfState) rowTask(i, w int) {
	s := e.scr.get(w)
	lo, hi := i*e.B/e.blocks, (i+1)*e.B/e.blocks
	e.forwardRows(s, lo, hi)
	if e.f != nil {
		e.outputRows(lo, hi)
	}
	if e.back {
		e.backwardRows(s, i, lo, hi)
	}
}

// noiseRow returns Hutchinson's ε for sample b (row b mod the noise's batch).
func (e *cnfState) noiseRow(b int) []float64 {
	D := e.c.d
	nb := len(e.c.noise) / D
	r := b % nb
	return e.c.noise[r*D : r*D+D]
}

// shape returns D, the state dimension S, the tangents K, the input width
// n_0 and the index L of the output layer.
func (e *cnfState) shape() (D, S, K, n0, L int) {
	m := e.c.mlp
	return e.c.d, e.c.Dim(), e.K, m.sizes[0], len(m.sizes) - 2
}

// forwardRows runs the primal and tangent passes on samples lo…hi−1.
func (e *cnfState) forwardRows(s *gemmScratch, lo, hi int) {
	c, m := e.c, e.c.mlp
	D, S, K, n0, L := e.shape()
	nb := hi - lo
	x := e.in[lo*n0 : hi*n0]
	tx := e.tin[lo*K*n0 : hi*K*n0]
	clear(tx)
	for b := 0; b < nb; b++ {
		row := x[b*n0 : b*n0+n0]
		copy(row[:D], e.z[(lo+b)*S:(lo+b)*S+D])
		if m.cfg.TimeInput {
			row[D] = e.t
		}
		for k := 0; k < K; k++ {
			tr := tx[(b*K+k)*n0 : (b*K+k)*n0+D]
			if c.opts.Trace == ExactTrace {
				tr[k] = 1
			} else {
				copy(tr, e.noiseRow(lo+b))
			}
		}
	}
	for l := 0; l <= L; l++ {
		W, bias, nout, nin := m.Layer(l)
		if l == L {
			y := e.g[lo*nout : hi*nout]
			e.product(s, l, y, x, W, nb, nout, nin)
			addBias(y, bias, nb)
			e.product(s, l, e.tg[lo*K*nout:hi*K*nout], tx, W, nb*K, nout, nin)
			return
		}
		y := e.h[l+1][lo*nout : hi*nout]
		d := e.d[l+1][lo*nout : hi*nout]
		s2 := e.s2[l+1][lo*nout : hi*nout]
		e.product(s, l, y, x, W, nb, nout, nin)
		biasActivate(m.cfg.Activation, y, d, bias, nb)
		secondDerivative(m.cfg.Activation, y, d, s2)
		tu := e.tu[l+1][lo*K*nout : hi*K*nout]
		th := e.th[l+1][lo*K*nout : hi*K*nout]
		e.product(s, l, tu, tx, W, nb*K, nout, nin)
		for b := 0; b < nb; b++ {
			dr := d[b*nout : b*nout+nout]
			for k := 0; k < K; k++ {
				r := (b*K + k) * nout
				tur, thr := tu[r:r+nout], th[r:r+nout]
				tur, thr = tur[:len(dr)], thr[:len(dr)]
				for j, v := range dr {
					thr[j] = v * tur[j]
				}
			}
		}
		x, tx = y, th
	}
}

// product sets y = x·W_lᵀ for n rows of x, from the transposed copy when
// the layer has one (faster for wide layers, as in the MLP's evaluator).
func (e *cnfState) product(s *gemmScratch, l int, y, x, W []float64, n, nout, nin int) {
	if wt := e.wt[l]; wt != nil {
		matMulAB(s, y, x, wt, n, nin, nout)
		return
	}
	matMulABt(y, x, W, n, nout, nin)
}

// secondDerivative writes σ″(u) into s2 from h = σ(u) and d = σ′(u).
func secondDerivative(act Activation, h, d, s2 []float64) {
	d, s2 = d[:len(h)], s2[:len(h)]
	switch act {
	case Tanh:
		for j, v := range h {
			s2[j] = -2 * v * d[j]
		}
	case Softplus:
		for j, v := range d {
			s2[j] = v * (1 - v)
		}
	case Sigmoid:
		for j, v := range h {
			s2[j] = d[j] * (1 - 2*v)
		}
	default: // ReLU (0 almost everywhere) and Identity
		clear(s2)
	}
}

// outputRows writes the augmented dynamics of samples lo…hi−1 into e.f.
func (e *cnfState) outputRows(lo, hi int) {
	c := e.c
	D, S, K := c.d, c.Dim(), e.K
	n0 := c.mlp.sizes[0]
	for b := lo; b < hi; b++ {
		out := e.f[b*S : b*S+S]
		g := e.g[b*D : b*D+D]
		copy(out[:D], g)
		var tr, fro float64
		for k := 0; k < K; k++ {
			r := b*K + k
			tg := e.tg[r*D : r*D+D]
			if c.opts.Trace == ExactTrace {
				tr += tg[k]
			} else {
				tr += Dot(e.tin[r*n0:r*n0+D], tg)
			}
			fro += SumSq(tg)
		}
		out[D] = -tr
		if c.opts.Regularize {
			out[D+1] = SumSq(g)
			out[D+2] = fro
		}
	}
}

// backwardRows runs the reverse sweep (see VJP) on samples lo…hi−1.
func (e *cnfState) backwardRows(s *gemmScratch, i, lo, hi int) {
	c, m := e.c, e.c.mlp
	D, S, K, n0, L := e.shape()
	nb, reg := hi-lo, c.opts.Regularize
	// Output cotangents δ_L and γ_{L,k}.
	dl := e.delta[L][lo*D : hi*D]
	gl := e.gamma[L][lo*K*D : hi*K*D]
	for b := 0; b < nb; b++ {
		ar := e.a[(lo+b)*S : (lo+b)*S+S]
		g := e.g[(lo+b)*D : (lo+b)*D+D]
		dr := dl[b*D : b*D+D]
		copy(dr, ar[:D])
		aD := ar[D]
		var aE, aF float64
		if reg {
			aE, aF = 2*ar[D+1], 2*ar[D+2]
			Axpy(aE, g, dr)
		}
		for k := 0; k < K; k++ {
			r := (lo+b)*K + k
			gr := gl[(b*K+k)*D : (b*K+k)*D+D]
			clear(gr)
			if c.opts.Trace == ExactTrace {
				gr[k] = -aD
			} else {
				Axpy(-aD, e.tin[r*n0:r*n0+D], gr)
			}
			if reg {
				Axpy(aF, e.tg[r*D:r*D+D], gr)
			}
		}
	}
	for l := L; l >= 1; l-- {
		W, _, nout, nin := m.Layer(l)
		delta := e.delta[l][lo*nout : hi*nout]
		gamma := e.gamma[l][lo*K*nout : hi*K*nout]
		hb := e.hbar[l][lo*nin : hi*nin]
		tgb := e.gamma[l-1][lo*K*nin : hi*K*nin]
		matMulAB(s, hb, delta, W, nb, nout, nin)
		matMulAB(s, tgb, gamma, W, nb*K, nout, nin)
		next := e.delta[l-1][lo*nin : hi*nin]
		d := e.d[l][lo*nin : hi*nin]
		s2 := e.s2[l][lo*nin : hi*nin]
		tu := e.tu[l][lo*K*nin : hi*K*nin]
		for b := 0; b < nb; b++ {
			nr := next[b*nin : b*nin+nin]
			dr, sr, hr := d[b*nin:b*nin+nin], s2[b*nin:b*nin+nin], hb[b*nin:b*nin+nin]
			dr, sr, hr = dr[:len(nr)], sr[:len(nr)], hr[:len(nr)]
			// Σ_k u̇_k ⊙ ḣ̄_k, accumulated into nr before the scaling.
			clear(nr)
			for k := 0; k < K; k++ {
				r := (b*K + k) * nin
				tur, tbr := tu[r:r+nin], tgb[r:r+nin]
				tur, tbr = tur[:len(nr)], tbr[:len(nr)]
				for j, v := range tur {
					nr[j] += v * tbr[j]
				}
				for j, v := range dr {
					tbr[j] *= v
				}
			}
			for j, v := range dr {
				nr[j] = v*hr[j] + sr[j]*nr[j]
			}
		}
	}
	if e.gz == nil && !e.wantGt {
		return
	}
	W, _, nout, nin := m.Layer(0)
	hb := e.hbar[0][lo*nin : hi*nin]
	matMulAB(s, hb, e.delta[0][lo*nout:hi*nout], W, nb, nout, nin)
	var st float64
	for b := 0; b < nb; b++ {
		if e.gz != nil {
			gr := e.gz[(lo+b)*S : (lo+b)*S+S]
			copy(gr[:D], hb[b*nin:b*nin+D])
			clear(gr[D:])
		}
		if m.cfg.TimeInput {
			st += hb[b*nin+D]
		}
	}
	e.gtBlk[i] = st
}

// paramChunks splits the weight-gradient products by output rows of each
// W_l, as the MLP's does (each element is then summed over the batch, in
// order, by one task), records the tasks in e.ptasks and returns their
// number. It depends on the sizes only.
func (e *cnfState) paramChunks(B int) int {
	s := e.c.mlp.sizes
	e.ptasks = e.ptasks[:0]
	for l := 0; l+1 < len(s); l++ {
		out := s[l+1]
		n := max(min(B*(1+e.K)*s[l]*out/mlpBlockWork, mlpMaxBlocks, out/2), 1)
		for k := 0; k < n; k++ {
			e.ptasks = append(e.ptasks, [3]int{l, k * out / n, (k + 1) * out / n})
		}
	}
	return len(e.ptasks)
}

// paramTask adds task c's share of the parameter gradient: rows r0…r1−1 of
// one layer, dW_l += δ_lᵀ h_l + γ_lᵀ ḣ_l and db_l += Σ_b δ_l.
func (e *cnfState) paramTask(c, w int) {
	s := e.scr.get(w)
	m := e.c.mlp
	l, r0, r1 := e.ptasks[c][0], e.ptasks[c][1], e.ptasks[c][2]
	_, _, nout, nin := m.Layer(l)
	B, K := e.B, e.K
	var x, tx []float64
	if l == 0 {
		x, tx = e.in[:B*nin], e.tin[:B*K*nin]
	} else {
		x, tx = e.h[l][:B*nin], e.th[l][:B*K*nin]
	}
	delta := e.delta[l][:B*nout]
	gW := e.gp[m.wOff[l]:m.bOff[l]]
	matMulAtBAddRows(s, gW, delta, x, B, nout, nin, r0, r1)
	matMulAtBAddRows(s, gW, e.gamma[l][:B*K*nout], tx, B*K, nout, nin, r0, r1)
	gb := e.gp[m.bOff[l]+r0 : m.bOff[l]+r1]
	for b := 0; b < B; b++ {
		row := delta[b*nout+r0 : b*nout+r1]
		row = row[:len(gb)]
		for j, v := range row {
			gb[j] += v
		}
	}
}
