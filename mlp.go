package neuralode

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"strings"
)

// Activation selects the nonlinearity of an MLP's hidden layers.
type Activation int

// Hidden-layer activations. The last layer of an MLP is always linear.
const (
	// Tanh is tanh(u), derivative 1 − tanh²(u).
	Tanh Activation = iota
	// Softplus is log(1 + eᵘ), evaluated as max(u, 0) + log1p(e^−|u|) so it
	// neither overflows for large u nor loses digits for very negative u (the
	// convention of the reference cases); its derivative is the sigmoid.
	Softplus
	// ReLU is max(u, 0), with derivative 0 at u = 0 (as PyTorch).
	ReLU
	// Sigmoid is 1/(1 + e^−u).
	Sigmoid
	// Identity is u: the hidden layers are then linear.
	Identity
)

var activationNames = [...]string{Tanh: "tanh", Softplus: "softplus", ReLU: "relu", Sigmoid: "sigmoid", Identity: "identity"}

// String returns the activation's name as used in the case format
// ("tanh", "softplus", "relu", "sigmoid", "identity").
func (a Activation) String() string { return enumString(activationNames[:], int(a), "Activation") }

func (a Activation) valid() bool { return a >= 0 && int(a) < len(activationNames) }

// ParseActivation returns the activation named s (case-insensitive; the
// names String returns). An unknown name gives an error wrapping
// ErrInvalidInput.
func ParseActivation(s string) (Activation, error) {
	for i, name := range activationNames {
		if strings.EqualFold(s, name) {
			return Activation(i), nil
		}
	}
	return 0, invalidf("activation", "unknown activation %q (want tanh, softplus, relu, sigmoid or identity)", s)
}

// MLPConfig describes the architecture of an MLP vector field.
type MLPConfig struct {
	// Dim is D, the state dimension: the network maps R^D (or R^(D+1) with
	// TimeInput) to R^D.
	Dim int
	// Hidden lists the widths of the hidden layers, first to last; it may be
	// empty (f is then affine in z).
	Hidden []int
	// Activation is the nonlinearity of every hidden layer.
	Activation Activation
	// TimeInput appends t as the last input feature: f(t, z) = MLP([z, t]).
	TimeInput bool
}

// MLP is a batched multilayer perceptron vector field f(t, z), the model of
// the case format (see Case):
//
//	h_0 = z (or [z, t]),  h_{l+1} = act(W_l h_l + b_l),  f = W_L h_L + b_L.
//
// W_l is stored as PyTorch's nn.Linear does, (out, in) row-major, and the
// parameter vector is W_0, b_0, W_1, b_1, …, so weights exported from PyTorch
// load without reshuffling. MLP implements VectorField and TimeDependent.
//
// An MLP holds no scratch space: evaluation happens in Evaluators from
// NewEvaluator, one per goroutine, which may run concurrently as long as
// nobody writes the parameters meanwhile.
type MLP struct {
	cfg    MLPConfig
	sizes  []int // layer widths n_0 … n_{L+1}; n_0 = D (+1 with time), n_{L+1} = D
	wOff   []int // offset of W_l in params
	bOff   []int // offset of b_l in params
	np     int
	params []float64

	wzBound bool // bound into a WongZakai's joint parameter vector
}

// NewMLP builds an MLP with the given architecture. Its parameters are drawn
// as PyTorch's default nn.Linear initialisation does, W and b uniform on
// (−1/√in, 1/√in), layer by layer in parameter order, from rng, so a seeded
// generator gives reproducible networks. A nil rng leaves all parameters
// zero, for callers that load weights afterwards (as Case.MLP does).
//
// An invalid configuration gives an *InputError wrapping ErrInvalidInput.
func NewMLP(cfg MLPConfig, rng *rand.Rand) (*MLP, error) {
	if cfg.Dim < 1 {
		return nil, invalidf("MLPConfig.Dim", "state dimension %d, want ≥ 1", cfg.Dim)
	}
	for i, h := range cfg.Hidden {
		if h < 1 {
			return nil, invalidf("MLPConfig.Hidden", "width of hidden layer %d is %d, want ≥ 1", i, h)
		}
	}
	if !cfg.Activation.valid() {
		return nil, invalidf("MLPConfig.Activation", "unknown activation %d", int(cfg.Activation))
	}
	cfg.Hidden = append([]int(nil), cfg.Hidden...)
	m := &MLP{cfg: cfg}
	n0 := cfg.Dim
	if cfg.TimeInput {
		n0++
	}
	m.sizes = append(append([]int{n0}, cfg.Hidden...), cfg.Dim)
	nl := len(m.sizes) - 1
	m.wOff = make([]int, nl)
	m.bOff = make([]int, nl)
	off := 0
	for l := 0; l < nl; l++ {
		in, out := m.sizes[l], m.sizes[l+1]
		if out > (math.MaxInt32-off)/(in+1) {
			return nil, invalidf("MLPConfig.Hidden", "network too large")
		}
		m.wOff[l] = off
		off += out * in
		m.bOff[l] = off
		off += out
	}
	m.np = off
	m.params = make([]float64, off)
	if rng != nil {
		m.InitParams(rng)
	}
	return m, nil
}

// InitParams redraws the parameters in place as NewMLP does: each layer's
// W then b uniform on (−1/√in, 1/√in), matching PyTorch's nn.Linear default.
func (m *MLP) InitParams(rng *rand.Rand) {
	for l := range m.wOff {
		in, out := m.sizes[l], m.sizes[l+1]
		bound := 1 / math.Sqrt(float64(in))
		p := m.params[m.wOff[l] : m.bOff[l]+out]
		for i := range p {
			p[i] = bound * (2*rng.Float64() - 1)
		}
	}
}

// Config returns the MLP's architecture (a copy).
func (m *MLP) Config() MLPConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), m.cfg.Hidden...)
	return c
}

// Dim returns D, the state dimension.
func (m *MLP) Dim() int { return m.cfg.Dim }

// NumParams returns the length of the parameter vector.
func (m *MLP) NumParams() int { return m.np }

// NumLayers returns the number of linear layers, hidden layers plus the
// output layer.
func (m *MLP) NumLayers() int { return len(m.wOff) }

// Params returns the parameter vector W_0, b_0, W_1, b_1, … (a live view,
// not a copy: writes change the network).
func (m *MLP) Params() []float64 { return m.params }

// TimeDependent reports whether t is an input of the network.
func (m *MLP) TimeDependent() bool { return m.cfg.TimeInput }

// Activation returns the hidden-layer activation.
func (m *MLP) Activation() Activation { return m.cfg.Activation }

// Layer returns views of layer l's weights W (out×in, row-major) and bias b
// inside the parameter vector, with the layer's sizes. Layer 0 reads the
// input (in = D, or D+1 with time input, the t column last); layer
// NumLayers()−1 is the linear output layer. It panics if l is out of range,
// as indexing does.
func (m *MLP) Layer(l int) (W, b []float64, out, in int) {
	in, out = m.sizes[l], m.sizes[l+1]
	return m.params[m.wOff[l]:m.bOff[l]:m.bOff[l]], m.params[m.bOff[l] : m.bOff[l]+out : m.bOff[l]+out], out, in
}

// ParamSizes returns the lengths of the parameter tensors in order
// (W_0, b_0, W_1, b_1, …), so the full adjoint norm can measure each
// tensor separately, as torchdiffeq does.
func (m *MLP) ParamSizes() []int {
	sizes := make([]int, 0, 2*len(m.wOff))
	for l := range m.wOff {
		in, out := m.sizes[l], m.sizes[l+1]
		sizes = append(sizes, in*out, out)
	}
	return sizes
}

// BindParams makes the MLP use p as its parameter vector, without copying:
// later writes to p change the network and Params returns p. It lets several
// fields share one joint parameter vector (e.g. an SDE's drift and diffusion
// networks bound to two halves of one slice). Existing Evaluators see the
// new binding. len(p) must equal NumParams, otherwise the binding is left
// unchanged and an error wrapping ErrInvalidInput is returned.
func (m *MLP) BindParams(p []float64) error {
	if len(p) != m.np {
		return invalidf("params", "length %d, want %d", len(p), m.np)
	}
	m.params = p[:len(p):len(p)]
	m.wzBound = false
	return nil
}

func (m *MLP) wzBinding() *bool { return &m.wzBound }

// NewEvaluator returns an evaluator with its own scratch space. Its scratch
// grows to the largest batch seen; after that it allocates nothing. It
// also holds copies of the weights laid out for the matrix products: on
// amd64 with AVX2 and FMA (unless built with the purego tag), W_lᵀ and W_l
// packed into 8-column panels for the assembly kernels (about 2·NumParams
// values), else a transposed copy of the wider layers' weights (up to
// NumParams values). They are refreshed at every call, except inside a
// gradient solve, where θ is constant and they are made once.
//
// The assembly kernels use fused multiply–adds, so their results differ
// from the pure-Go kernels' in the last bits (relative differences of a
// few units of 2⁻⁵³ per product; each path is deterministic on its own).
//
// Large batches are split into row blocks processed by a pool of helper
// goroutines owned by the evaluator (started on first need, stopped when the
// evaluator is garbage collected). The partition depends on the problem
// size only, never on GOMAXPROCS, so results are bit-identical for any
// number of threads.
func (m *MLP) NewEvaluator() Evaluator {
	st := &mlpState{m: m}
	st.fRows, st.fParams, st.fTrans = st.rowTask, st.paramTask, st.packTask
	e := &mlpEvaluator{st}
	// The helpers reference only the state, so the handle can become
	// unreachable; its finalizer then stops them.
	runtime.SetFinalizer(e, func(e *mlpEvaluator) { e.pool.close() })
	return e
}

// mlpEvaluator is the handle returned by NewEvaluator. It exists so that a
// finalizer can stop the helper goroutines, which keep only the state alive.
type mlpEvaluator struct{ *mlpState }

// Eval and VJP keep the handle reachable until the call returns: the
// finalizer closes the helper pool, and a pool closed in the middle of a
// call would leave it waiting for helpers that have quit.
func (e *mlpEvaluator) Eval(t float64, z, dz []float64) {
	e.mlpState.Eval(t, z, dz)
	runtime.KeepAlive(e)
}

// workerPool returns the evaluator's helper pool, which a solver may share
// for its own elementwise passes (see poolSharer).
func (e *mlpEvaluator) workerPool() *taskPool { return &e.pool }

// VJP is the state's VJP, with the handle kept reachable (see Eval).
func (e *mlpEvaluator) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	e.mlpState.VJP(t, z, a, f, gz, gp, gt)
	runtime.KeepAlive(e)
}

// Work partition of a batched evaluation (see rowBlocks, paramChunks). The
// unit of work is one multiply–add of a matrix product.
var (
	// mlpBlockWork is the least work worth one task: below it the fork–join
	// (waking a helper and waiting for it, a few microseconds) costs more
	// than it saves. Chosen by TestCalibrateMLPSplit; see calibrate.md.
	mlpBlockWork = 1 << 16
	// mlpMaxBlocks bounds the tasks of one phase. Blocks beyond the number
	// of cores only cost overhead, but the partition must not depend on the
	// core count, so this is a fixed number that serves up to 8 cores.
	mlpMaxBlocks = 8
)

// mlpMinBlockRows is the least number of batch rows per block: each block
// streams every packed weight panel through the cache once per product, so
// a block of four 6-row tiles reuses each panel four times (a VJP of the
// 64×512×64 benchmark network measured 36 GFLOP/s per CPU second with
// 6-row blocks, 38–41 with 24, on a shared machine). It also keeps
// matMulABt's 3-row register blocking working.
const mlpMinBlockRows = 24

// mlpState holds the per-evaluator scratch of an MLP evaluation and the
// arguments of the call in progress (read by the tasks).
type mlpState struct {
	m     *MLP
	maxB  int
	in    []float64   // B×(D+1) input with the time column (TimeInput only)
	h     [][]float64 // h[l], l = 1…L: hidden activations, B×n_l (hOwn or a kept slot's)
	d     [][]float64 // d[l]: act′ at layer l's pre-activation, B×n_l (dOwn or a kept slot's)
	hOwn  [][]float64
	dOwn  [][]float64
	delta [][]float64 // delta[l], l = 0…L−1: cotangent of layer l's output, B×n_{l+1}
	dh0   []float64   // B×(D+1) input cotangent (TimeInput only)
	wt    [][]float64 // Go path: wt[l] = W_lᵀ (in×out) for layers with fwdTransposed, else nil
	pk    [][]float64 // assembly path: pk[l] = W_lᵀ in packB's layout, for h·W_lᵀ
	pkb   [][]float64 // assembly path: pkb[l] = W_l in packB's layout, for δ·W_l
	hp    [][]float64 // assembly path: hp[l] = h_l (B×n_l) in packB's layout, for δ_lᵀ·h_l
	scr   workerScratch
	chunk []int // chunk[l]: first parameter task of layer l; chunk[L+1] = total

	// frozen: the caller promised constant parameters (freezeParams), so
	// the weight copies above are made once (packedFwd, packedBwd record
	// which) instead of at every call.
	frozen, packedFwd, packedBwd bool
	packFwd, packBwd             bool // copies the current call's pack tasks refresh
	// setGp: VJP sets gp instead of adding to it (setParamGrad), each
	// parameter task clearing its own rows first.
	setGp bool

	// keep: Eval stores each call's activations in slots[nslots] (up to
	// mlpKeepMaxBytes), and a VJP at the same (t, z) reuses them instead
	// of recomputing the forward pass (keepActivations). cursor is where
	// the search for a VJP's slot starts.
	keep           bool
	slots          []*mlpSlot
	nslots, cursor int
	replay         bool // the current VJP reuses a slot: no forward pass
	replays        int  // VJPs that reused a slot (for tests)

	pool            taskPool
	fRows, fParams  func(i, w int)
	fTrans          func(int)
	blocks          int
	t               float64
	z, a, f, gz, gp []float64
	B               int
	deriv, back     bool
	wantGt          bool
}

// ensure grows the scratch to batch size B.
func (e *mlpState) ensure(B int) {
	if B <= e.maxB {
		return
	}
	m := e.m
	L := len(m.sizes) - 2
	e.hOwn = make([][]float64, L+1)
	e.dOwn = make([][]float64, L+1)
	e.h, e.d = e.hOwn, e.dOwn
	e.delta = make([][]float64, L+1)
	for l := 1; l <= L; l++ {
		e.hOwn[l] = make([]float64, B*m.sizes[l])
		e.dOwn[l] = make([]float64, B*m.sizes[l])
	}
	for l := 0; l < L; l++ {
		e.delta[l] = make([]float64, B*m.sizes[l+1])
	}
	if m.cfg.TimeInput {
		e.in = make([]float64, B*m.sizes[0])
		e.dh0 = make([]float64, B*m.sizes[0])
	}
	e.chunk = make([]int, L+2)
	e.hp = nil // regrown by ensureCopies
	e.maxB = B
}

// ensureCopies allocates the weight copies of the active path (useFMA can
// change between calls in tests).
func (e *mlpState) ensureCopies() {
	m := e.m
	nl := len(m.sizes) - 1
	if useFMA && e.pk == nil {
		e.pk = make([][]float64, nl)
		e.pkb = make([][]float64, nl)
		for l := 0; l < nl; l++ {
			in, out := m.sizes[l], m.sizes[l+1]
			e.pk[l] = make([]float64, packedLen(in, out))
			e.pkb[l] = make([]float64, packedLen(out, in))
		}
		e.packedFwd, e.packedBwd = false, false
	}
	if useFMA && e.hp == nil {
		e.hp = make([][]float64, nl)
		for l := 0; l < nl; l++ {
			e.hp[l] = make([]float64, packedLen(e.maxB, m.sizes[l]))
		}
	}
	if !useFMA && e.wt == nil {
		e.wt = make([][]float64, nl)
		for l := 0; l < nl; l++ {
			if fwdTransposed(m.sizes[l+1]) {
				e.wt[l] = make([]float64, m.sizes[l]*m.sizes[l+1])
			}
		}
		e.packedFwd, e.packedBwd = false, false
	}
}

// freezeParams(true) declares that the parameters will not change until
// freezeParams(false): the weight copies (transposed or packed) are then
// made at the first call and reused, instead of refreshed at every call.
// The gradient solvers freeze their evaluators for the duration of a
// gradient, during which θ is constant.
func (e *mlpState) freezeParams(on bool) {
	e.frozen = on
	e.packedFwd, e.packedBwd = false, false
}

// setParamGrad(true) makes VJP set gp to aᵀ∂f/∂θ instead of adding it, until
// setParamGrad(false). An adjoint's right-hand side needs the product alone;
// letting each parameter task clear the rows it is about to write spares
// the caller a serial pass over all P entries per evaluation.
func (e *mlpState) setParamGrad(on bool) { e.setGp = on }

// paramGradSetter is implemented by evaluators whose VJP can set gp instead
// of adding to it (see mlpState.setParamGrad).
type paramGradSetter interface{ setParamGrad(on bool) }

// setParamGrad calls ev.setParamGrad(on) and reports true if ev has the
// method; otherwise the caller must clear gp itself.
func setParamGrad(ev Evaluator, on bool) bool {
	s, ok := findEvaluator[paramGradSetter](ev)
	if ok {
		s.setParamGrad(on)
	}
	return ok
}

// paramFreezer is implemented by evaluators that can reuse work across
// calls while the parameters stay constant (see mlpState.freezeParams).
type paramFreezer interface{ freezeParams(on bool) }

// freezeParams calls ev.freezeParams(on) if ev has the method.
func freezeParams(ev Evaluator, on bool) {
	if f, ok := findEvaluator[paramFreezer](ev); ok {
		f.freezeParams(on)
	}
}

// mlpMinTransposedOut is the least layer width (outputs) for which the
// forward product H·Wᵀ runs as H·(Wᵀ) with matMulAB on a transposed copy of
// W instead of with matMulABt. matMulAB updates whole output rows from four
// rows of Wᵀ at a time (8 multiply–adds per 4 loads and 2 load–stores,
// no loop-carried dependency between the multiply–adds of one element),
// and measured 10–25% faster than the dot-product form once the output rows
// are at least 16 long; below that its inner loop is too short and
// matMulABt wins (BenchmarkMatMulForward; see calibrate.md). The copy costs
// in·out moves per layer and call against B·in·out multiply–adds.
const mlpMinTransposedOut = 16

// fwdTransposed reports whether a layer with out outputs computes its
// forward product from a transposed copy of W (see mlpMinTransposedOut).
func fwdTransposed(out int) bool { return out >= mlpMinTransposedOut }

// packTask refreshes part k of the weight copies from the current
// parameters: on the assembly path the packed forms of W_lᵀ (e.pk, when
// e.packFwd) and of W_l (e.pkb, when e.packBwd), 8-column panels
// [k·np/parts, (k+1)·np/parts); on the Go path rows [k·out/parts,
// (k+1)·out/parts) of the transposed copies e.wt. Unless the parameters
// are frozen, the output layer's forward copy is skipped when e.f is nil,
// as its forward product is not computed then. The copies are refreshed at
// every call of an unfrozen evaluator because the parameters may have been
// rewritten since the last one (Params is a live view with no change
// notification); they are exact, so neither they nor their split can
// change a result.
func (e *mlpState) packTask(k int) {
	parts := e.blocks
	nl := len(e.m.sizes) - 1
	for l := 0; l < nl; l++ {
		W, _, out, in := e.m.Layer(l)
		fwd := e.packFwd && (e.f != nil || e.frozen || l+1 < nl)
		if !useFMA {
			if wt := e.wt[l]; wt != nil && fwd {
				transposeRows(wt, W, out, in, k*out/parts, (k+1)*out/parts)
			}
			continue
		}
		if fwd { // B = W_lᵀ: B(p, j) = W[j·in + p], k = in, n = out
			np := (out + gemmNR - 1) / gemmNR
			packB(e.pk[l], W, 1, in, in, out, k*np/parts, (k+1)*np/parts)
		}
		if e.packBwd { // B = W_l: B(p, j) = W[p·in + j], k = out, n = in
			np := (in + gemmNR - 1) / gemmNR
			packB(e.pkb[l], W, in, 1, out, in, k*np/parts, (k+1)*np/parts)
		}
	}
}

// preparePacks refreshes the weight copies the current call reads, split
// over e.blocks tasks, unless they are frozen and already made.
func (e *mlpState) preparePacks() {
	e.ensureCopies()
	fwd, bwd := true, e.back && useFMA && e.B > mlpUnpackedRows
	if e.frozen {
		fwd = fwd && !e.packedFwd
		bwd = bwd && !e.packedBwd
	}
	if !fwd && !bwd {
		return
	}
	e.packFwd, e.packBwd = fwd, bwd
	if e.blocks == 1 {
		e.packTask(0)
	} else {
		e.pool.run(e.blocks, e.fTrans)
	}
	if e.frozen {
		e.packedFwd = e.packedFwd || fwd
		e.packedBwd = e.packedBwd || bwd
	}
}

// rowBlocks returns the number of row blocks a batch of B rows is split
// into: one per mlpBlockWork of forward work, at most mlpMaxBlocks, with at
// least mlpMinBlockRows rows each, rounded down to a power of two so that
// the blocks divide evenly among 2, 4 or 8 cores (five blocks on two cores
// leave one core idle for a fifth of the time). It depends on the sizes
// only.
func (e *mlpState) rowBlocks(B int) int {
	w := 0
	for l := 0; l+1 < len(e.m.sizes); l++ {
		w += e.m.sizes[l] * e.m.sizes[l+1]
	}
	nb := B * w / mlpBlockWork
	nb = min(nb, mlpMaxBlocks, B/mlpMinBlockRows)
	if nb <= 1 {
		return 1
	}
	return 1 << (bits.Len(uint(nb)) - 1)
}

// paramChunks splits the weight-gradient products dW_l += δ_lᵀ h_l into
// tasks by output rows of W_l (each gradient element is then computed by
// one task, with the batch summed in its fixed order: no partial buffers,
// no reduction) and records the first task of each layer in e.chunk. It
// returns the number of tasks.
func (e *mlpState) paramChunks(B int) int {
	m := e.m
	nt := 0
	for l := 0; l+1 < len(m.sizes); l++ {
		in, out := m.sizes[l], m.sizes[l+1]
		c := B * in * out / mlpBlockWork
		c = min(c, mlpMaxBlocks, (out+gemmMR-1)/gemmMR)
		e.chunk[l] = nt
		nt += max(c, 1)
	}
	e.chunk[len(m.sizes)-1] = nt
	return nt
}

// splits reports whether a batch of B rows is split over several tasks;
// the quadrature fan-out runs its chunks serially then, so that the two
// levels of parallelism do not oversubscribe the cores.
func (e *mlpEvaluator) splits(B int) bool { return e.rowBlocks(B) > 1 }

// batch returns the batch size of a state of length n, panicking with an
// *InputError (the interface has no error result; solvers check lengths
// before calling) when n is not a multiple of D.
func (e *mlpState) batch(n int) int {
	D := e.m.cfg.Dim
	if n%D != 0 {
		panic(invalidf("z", "length %d is not a multiple of the state dimension %d", n, D))
	}
	return n / D
}

func checkLen(field string, x []float64, n int) {
	if x != nil && len(x) != n {
		panic(invalidf(field, "length %d, want %d", len(x), n))
	}
}

// Eval writes f(t, z) into dz. It panics with an *InputError if len(z) is
// not a multiple of D or len(dz) ≠ len(z).
func (e *mlpState) Eval(t float64, z, dz []float64) {
	B := e.batch(len(z))
	if len(dz) != len(z) {
		panic(invalidf("dz", "length %d, want %d", len(dz), len(z)))
	}
	e.ensure(B)
	e.h, e.d = e.hOwn, e.dOwn
	deriv := false
	if sl := e.recordSlot(t, z, B); sl != nil {
		e.h, e.d, deriv = sl.h, sl.d, true
	}
	e.begin(t, z, nil, dz, nil, nil, B, deriv, false, false)
	e.runRows()
	e.end()
}

// mlpKeepMaxBytes caps the activations an evaluator keeps while
// keepActivations is on (512 MiB); evaluations beyond it are not kept, and
// their VJPs recompute the forward pass.
var mlpKeepMaxBytes = 512 << 20

// mlpSlot holds the activations of one kept evaluation: its (t, z), to
// recognise the VJP that wants them, and h_l, act′(u_l) of every hidden
// layer.
type mlpSlot struct {
	t    float64
	z    []float64
	h, d [][]float64
}

// keepActivations(true) starts keeping the hidden activations and their
// derivatives of every Eval (2·B·Σ_l n_l values plus a copy of z per call,
// at most mlpKeepMaxBytes in all), so that a later VJP at the same t and
// bit-identical z, with f nil, skips its forward pass: backpropagation
// through a solver then costs two products per layer and stage instead of
// three, as with autograd. keepActivations(false) stops and forgets them
// (the memory is kept for the next recording). Direct turns it on for its
// forward pass.
func (e *mlpState) keepActivations(on bool) {
	e.keep = on
	e.nslots, e.cursor = 0, 0
}

// activationKeeper is implemented by evaluators that can keep the
// activations of their evaluations for later VJPs (mlpState.keepActivations).
type activationKeeper interface{ keepActivations(on bool) }

// keepActivations calls ev.keepActivations(on) if ev has the method.
func keepActivations(ev Evaluator, on bool) {
	if k, ok := findEvaluator[activationKeeper](ev); ok {
		k.keepActivations(on)
	}
}

// recordSlot returns the slot the current Eval at (t, z) keeps its
// activations in, or nil when not keeping or over the cap.
func (e *mlpState) recordSlot(t float64, z []float64, B int) *mlpSlot {
	if !e.keep {
		return nil
	}
	sizes := e.m.sizes
	L := len(sizes) - 2
	per := len(z)
	for l := 1; l <= L; l++ {
		per += 2 * B * sizes[l]
	}
	if (e.nslots+1)*per*8 > mlpKeepMaxBytes {
		return nil
	}
	if e.nslots == len(e.slots) {
		e.slots = append(e.slots, &mlpSlot{h: make([][]float64, L+1), d: make([][]float64, L+1)})
	}
	sl := e.slots[e.nslots]
	if len(sl.z) != len(z) {
		sl.z = make([]float64, len(z))
		for l := 1; l <= L; l++ {
			sl.h[l] = make([]float64, B*sizes[l])
			sl.d[l] = make([]float64, B*sizes[l])
		}
	}
	copy(sl.z, z)
	sl.t = t
	e.nslots++
	e.cursor = e.nslots - 1
	return sl
}

// findSlot returns the kept slot of an evaluation at (t, z), or nil. The
// search starts at the last slot found and goes backwards (wrapping once),
// the order in which backpropagation revisits the evaluations.
func (e *mlpState) findSlot(t float64, z []float64) *mlpSlot {
	n := e.nslots
	for k := 0; k < n; k++ {
		i := e.cursor - k
		if i < 0 {
			i += n
		}
		sl := e.slots[i]
		if sl.t == t && sameFloats(sl.z, z) {
			e.cursor = i
			return sl
		}
	}
	return nil
}

// sameFloats reports whether x and y hold the same bits.
func sameFloats(x, y []float64) bool {
	if len(x) != len(y) {
		return false
	}
	y = y[:len(x)]
	for i, v := range x {
		if math.Float64bits(v) != math.Float64bits(y[i]) {
			return false
		}
	}
	return true
}

// begin records the arguments of a call for the tasks.
func (e *mlpState) begin(t float64, z, a, f, gz, gp []float64, B int, deriv, back, wantGt bool) {
	e.t, e.z, e.a, e.f, e.gz, e.gp = t, z, a, f, gz, gp
	e.B, e.deriv, e.back, e.wantGt = B, deriv, back, wantGt
}

// end drops the references to the caller's slices.
func (e *mlpState) end() {
	e.z, e.a, e.f, e.gz, e.gp = nil, nil, nil, nil, nil
	e.replay = false
}

// runRows runs the row-block tasks of the current call, after refreshing
// the transposed weights they read (split over as many tasks).
func (e *mlpState) runRows() {
	e.blocks = e.rowBlocks(e.B)
	e.preparePacks()
	if e.blocks == 1 {
		e.rowTask(0, 0)
		return
	}
	e.pool.runW(e.blocks, e.fRows)
}

// rowTask processes row block i of the current call on worker w: the
// forward pass and, for a VJP, the reverse sweep of the cotangents δ_l,
// whose rows depend on the same rows only.
func (e *mlpState) rowTask(i, w int) {
	lo, hi := splitRows(e.B, e.blocks, i)
	s := e.scr.get(w)
	if e.replay {
		e.packInputs(lo, hi)
	} else {
		e.forwardRows(s, lo, hi)
	}
	if e.back {
		e.backwardRows(s, i, lo, hi)
	}
}

// splitRows returns part i of n rows split into parts contiguous ranges
// whose boundaries are multiples of rowGrain (the assembly kernel's tile
// height, or two rows), so that only the last range can end in a partial
// grain. When the grains do not divide evenly, the first ranges get one
// more: the workers
// claim tasks in order, so the longer ones start first and the shorter
// ones fill in (22 tiles in 4 parts: 6, 6, 5, 5 leaves two workers 11
// each; 5, 6, 5, 6 gave one of them 12).
func splitRows(n, parts, i int) (lo, hi int) {
	g := rowGrain()
	units := (n + g - 1) / g
	q, r := units/parts, units%parts
	lo = min((i*q+min(i, r))*g, n)
	hi = min(((i+1)*q+min(i+1, r))*g, n)
	return lo, hi
}

// rowGrain is the granularity of splitRows: the tile height, or two rows
// when the AVX-512 kernels run, whose 2- and 4-row variants make a short
// sliver cost only its rows (64 rows in two ranges: 32 and 32, each five
// tiles and a 2-row sliver, instead of 36 and 28, six tiles against five).
func rowGrain() int {
	if useAVX512 {
		return 2
	}
	return gemmMR
}

// input returns rows lo…hi−1 of h_0: z itself, or z with t appended to
// each row when the network takes time as input (written to e.in).
func (e *mlpState) input(lo, hi int) []float64 {
	D := e.m.cfg.Dim
	if !e.m.cfg.TimeInput {
		return e.z[lo*D : hi*D]
	}
	n0 := D + 1
	in := e.in[lo*n0 : hi*n0]
	z := e.z[lo*D : hi*D]
	for b := 0; b < hi-lo; b++ {
		row := in[b*n0 : b*n0+n0]
		copy(row[:D], z[b*D:b*D+D])
		row[D] = e.t
	}
	return in
}

// forwardRows runs the network on rows lo…hi−1. The output layer is written
// to e.f unless it is nil (the reverse pass does not need it). With e.deriv,
// act′ of every hidden layer is kept for the reverse pass.
func (e *mlpState) forwardRows(s *gemmScratch, lo, hi int) {
	m := e.m
	L := len(m.sizes) - 2
	x := e.input(lo, hi)
	nb := hi - lo
	// The weight gradient's products read each layer input h_l packed:
	// pack these rows while they are in cache.
	packH := useFMA && e.back && e.gp != nil
	for l := 0; l <= L; l++ {
		W, bias, nout, nin := m.Layer(l)
		if packH {
			packRowsB(e.hp[l], x, e.B, nin, lo, hi)
		}
		if l == L {
			if e.f == nil {
				return
			}
			y := e.f[lo*nout : hi*nout]
			e.forwardProduct(s, l, y, x, W, nb, nout, nin)
			addBias(y, bias, nb)
			return
		}
		y := e.h[l+1][lo*nout : hi*nout]
		e.forwardProduct(s, l, y, x, W, nb, nout, nin)
		var d []float64
		if e.deriv {
			d = e.d[l+1][lo*nout : hi*nout]
		}
		biasActivate(m.cfg.Activation, y, d, bias, nb)
		x = y
	}
}

// packInputs packs rows lo…hi−1 of every layer input (z, or z with t, and
// the kept h_l) for the weight gradient when the forward pass is skipped.
func (e *mlpState) packInputs(lo, hi int) {
	if !useFMA || e.gp == nil {
		if e.m.cfg.TimeInput {
			e.input(lo, hi) // the t column of layer 0's input
		}
		return
	}
	x := e.input(lo, hi)
	for l := 0; l+1 < len(e.m.sizes); l++ {
		n := e.m.sizes[l]
		if l > 0 {
			x = e.h[l][lo*n : hi*n]
		}
		packRowsB(e.hp[l], x, e.B, n, lo, hi)
	}
}

// forwardProduct sets y = x·W_lᵀ for nb rows of x: from the packed W_lᵀ on
// the assembly path, else from the transposed copy of W_l when the layer
// has one.
func (e *mlpState) forwardProduct(s *gemmScratch, l int, y, x, W []float64, nb, nout, nin int) {
	if useFMA {
		gemm(s, y, nout, x, nin, 1, e.pk[l], 0, true, nb, nout, nin, false)
		return
	}
	if wt := e.wt[l]; wt != nil {
		matMulAB(nil, y, x, wt, nb, nin, nout)
		return
	}
	matMulABt(y, x, W, nb, nout, nin)
}

// mlpUnpackedRows is the largest batch whose input cotangents δ·W_l are
// computed from W_l in place rather than from its packed copy: with two
// row slivers or fewer each weight is read at most twice, so packing (a
// read and a write of every weight, once per solve) costs more than the
// strided reads it saves. The products are the same either way.
const mlpUnpackedRows = 2 * gemmMR

// backProduct sets y = δ·W_l for nb rows of δ (nb×nout): on the assembly
// path from the packed W_l, or from W_l in place for a small batch.
func (e *mlpState) backProduct(s *gemmScratch, l int, y, delta, W []float64, nb, nout, nin int) {
	if useFMA && e.B <= mlpUnpackedRows {
		gemm(s, y, nin, delta, nout, 1, W, nin, false, nb, nin, nout, false)
		return
	}
	if useFMA {
		gemm(s, y, nin, delta, nout, 1, e.pkb[l], 0, true, nb, nin, nout, false)
		return
	}
	matMulAB(nil, y, delta, W, nb, nout, nin)
}

// backwardRows runs the reverse sweep δ_{l−1} = (δ_l W_l) ⊙ act′ on rows
// lo…hi−1 (block i), then the input cotangent δ_0 W_0 into gz and, with
// time input, the rows' shares of aᵀ∂f/∂t (the t column of δ_0 W_0).
func (e *mlpState) backwardRows(s *gemmScratch, i, lo, hi int) {
	m := e.m
	D := m.cfg.Dim
	L := len(m.sizes) - 2
	nb := hi - lo
	delta := e.a[lo*D : hi*D]
	for l := L; l >= 1; l-- {
		W, _, nout, nin := m.Layer(l)
		next := e.delta[l-1][lo*nin : hi*nin]
		e.backProduct(s, l, next, delta, W, nb, nout, nin)
		d := e.d[l][lo*nin : hi*nin]
		mulRow(next, d[:len(next)])
		delta = next
	}
	W, _, nout, nin := m.Layer(0)
	if !m.cfg.TimeInput {
		if e.gz != nil {
			e.backProduct(s, 0, e.gz[lo*D:hi*D], delta, W, nb, nout, nin)
		}
		return
	}
	// Each row's share of aᵀ∂f/∂t is left in the t column of dh0; VJP sums
	// the rows in order, so that the total does not depend on the blocks.
	dh := e.dh0[lo*nin : hi*nin]
	if e.gz != nil {
		e.backProduct(s, 0, dh, delta, W, nb, nout, nin)
		gz := e.gz[lo*D : hi*D]
		for b := 0; b < nb; b++ {
			copy(gz[b*D:b*D+D], dh[b*nin:b*nin+D])
		}
	} else if e.wantGt {
		// Only the t column of δ_0 W_0 is needed.
		for b := 0; b < nb; b++ {
			var st float64
			row := delta[b*nout : b*nout+nout]
			for o, v := range row {
				st += v * W[o*nin+D]
			}
			dh[b*nin+D] = st
		}
	}
}

// paramTask adds parameter task c's share of aᵀ∂f/∂θ to e.gp: a range of
// output rows o of one layer, dW_l[o, :] += Σ_b δ_l[b, o]·h_l[b, :] and
// db_l[o] += Σ_b δ_l[b, o], the batch summed in order.
func (e *mlpState) paramTask(c, w int) {
	m := e.m
	L := len(m.sizes) - 2
	l := 0
	for c >= e.chunk[l+1] {
		l++
	}
	chunks := e.chunk[l+1] - e.chunk[l]
	k := c - e.chunk[l]
	_, _, nout, nin := m.Layer(l)
	r0, r1 := splitRows(nout, chunks, k)
	B := e.B
	var delta, x []float64
	if l == L {
		delta = e.a[:B*nout]
	} else {
		delta = e.delta[l][:B*nout]
	}
	if l > 0 {
		x = e.h[l][:B*nin]
	} else if m.cfg.TimeInput {
		x = e.in[:B*nin]
	} else {
		x = e.z[:B*nin]
	}
	gW := e.gp[m.wOff[l]:m.bOff[l]]
	gb := e.gp[m.bOff[l] : m.bOff[l]+nout]
	if e.setGp {
		clear(gW[r0*nin : r1*nin])
		clear(gb[r0:r1])
	}
	if useFMA {
		// dW rows r0…r1−1 += δᵀ·h with A(i, p) = δ[p·nout + r0 + i] and
		// h packed by the row tasks.
		gemm(e.scr.get(w), gW[r0*nin:], nin, delta[r0:], 1, nout, e.hp[l], 0, true, r1-r0, nin, B, true)
	} else {
		matMulAtBAddRows(nil, gW, delta, x, B, nout, nin, r0, r1)
	}
	gb = gb[r0:r1]
	for b := 0; b < B; b++ {
		row := delta[b*nout+r0 : b*nout+r1]
		row = row[:len(gb)]
		for j, v := range row {
			gb[j] += v
		}
	}
}

// VJP implements Evaluator.VJP by one forward pass that keeps the hidden
// activations and act′, then the reverse (backpropagation) sweep
//
//	δ_L = a,  dW_l += δ_lᵀ h_l,  db_l += Σ_b δ_l,  δ_{l−1} = (δ_l W_l) ⊙ act′(u_{l−1}),
//
// ending with aᵀ∂f/∂h_0 = δ_0 W_0, whose first D columns are aᵀ∂f/∂z and
// whose t column (with time input), summed over the batch, is aᵀ∂f/∂t.
// Work is skipped for outputs that are nil: the output layer's forward
// product when f is nil, the weight-gradient products when gp is nil, and
// the first layer's δ_0 W_0 when gz and gt are nil. For an autonomous
// network gt is set to 0.
//
// The work runs in two phases, each split into tasks fixed by the sizes:
// row blocks of the batch for the forward pass and the cotangents δ_l (rows
// are independent), then ranges of output rows of each W_l for the weight
// gradient (each gradient element summed over the batch in order by one
// task). Neither depends on the number of threads.
//
// Outputs must not overlap z or a. It panics with an *InputError on
// inconsistent lengths (len(z) a multiple of D; a, f, gz of length len(z);
// gp of length NumParams).
func (e *mlpState) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	m := e.m
	B := e.batch(len(z))
	checkLen("a", a, len(z))
	if a == nil && len(z) > 0 {
		panic(invalidf("a", "nil cotangent"))
	}
	checkLen("f", f, len(z))
	checkLen("gz", gz, len(z))
	checkLen("gp", gp, m.np)
	e.ensure(B)
	e.h, e.d = e.hOwn, e.dOwn
	if gz == nil && gp == nil && gt == nil {
		if f != nil {
			e.begin(t, z, nil, f, nil, nil, B, false, false, false)
			e.runRows()
			e.end()
		}
		return
	}
	e.begin(t, z, a, f, gz, gp, B, true, true, gt != nil)
	defer e.end()
	if e.keep && f == nil {
		if sl := e.findSlot(t, z); sl != nil {
			e.h, e.d, e.replay = sl.h, sl.d, true
			e.replays++
		}
	}
	e.runRows()
	if gt != nil {
		if m.cfg.TimeInput {
			var st float64
			nin := m.sizes[0]
			for b := 0; b < B; b++ {
				st += e.dh0[b*nin+m.cfg.Dim]
			}
			*gt = st
		} else {
			*gt = 0
		}
	}
	if gp != nil {
		nt := e.paramChunks(B)
		if e.blocks == 1 { // set by runRows above
			// Too little work to split (each layer still has its own
			// task): posting a job of tiny tasks costs more than they do.
			for c := 0; c < nt; c++ {
				e.paramTask(c, 0)
			}
		} else {
			e.pool.runW(nt, e.fParams)
		}
	}
}

// mulRow sets x[i] *= y[i] (len(y) ≥ len(x)): the reverse sweep's product
// of the cotangent with the activation's derivative, in AVX2 where the
// kernels run (the same products, one rounding each).
func mulRow(x, y []float64) {
	y = y[:len(x)]
	if k := len(x) &^ 3; useFMA && haveAVXKernels && k > 0 {
		mulRowAVX(&x[0], &y[0], k)
		x, y = x[k:], y[k:]
	}
	for j, v := range y {
		x[j] *= v
	}
}

// addBias adds bias to each of the B rows of y.
func addBias(y, bias []float64, B int) {
	n := len(bias)
	for b := 0; b < B; b++ {
		row := y[b*n : b*n+n]
		row = row[:len(bias)]
		for j, v := range bias {
			row[j] += v
		}
	}
}

// biasActivate replaces each of the B rows u of y by act(u + bias) and, if
// d is non-nil, writes act′(u + bias) to the matching row of d.
func biasActivate(act Activation, y, d, bias []float64, B int) {
	n := len(bias)
	if activationBlock(act, y, d, bias, B) {
		return
	}
	for b := 0; b < B; b++ {
		row := y[b*n : b*n+n]
		row = row[:len(bias)]
		var drow []float64
		if d != nil {
			drow = d[b*n : b*n+n]
			drow = drow[:len(row)]
		}
		switch act {
		case Tanh:
			tanhRow(row, drow, bias)
		case Softplus:
			softplusRow(row, drow, bias)
		case ReLU:
			for j, v := range bias {
				u := row[j] + v
				if u < 0 {
					u = 0 // NaN passes through unchanged
				}
				row[j] = u
			}
			if drow != nil {
				drow = drow[:len(row)]
				for j, h := range row {
					if h > 0 {
						drow[j] = 1
					} else {
						drow[j] = 0
					}
				}
			}
		case Sigmoid:
			sigmoidRow(row, drow, bias)
		default: // Identity
			for j, v := range bias {
				row[j] += v
			}
			if drow != nil {
				for j := range drow {
					drow[j] = 1
				}
			}
		}
	}
}

// Adam is the Adam optimiser (Kingma & Ba 2015, Algorithm 1) on a flat
// parameter vector, with PyTorch's torch.optim.Adam semantics: optional L2
// weight decay added to the gradient, bias-corrected moments, and the update
//
//	θ ← θ − (LR / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + Eps).
//
// Its state (T, M, V) is exported so training can be checkpointed and
// resumed exactly.
type Adam struct {
	LR          float64 // step size, default 1e-3
	Beta1       float64 // first-moment decay, default 0.9
	Beta2       float64 // second-moment decay, default 0.999
	Eps         float64 // denominator offset, default 1e-8
	WeightDecay float64 // L2 penalty coefficient added as WeightDecay·θ to the gradient, default 0

	T int       // number of steps taken
	M []float64 // first-moment estimate
	V []float64 // second-moment estimate
}

// NewAdam returns an Adam optimiser for n parameters with PyTorch's defaults
// (LR 1e-3, betas 0.9 and 0.999, Eps 1e-8, no weight decay).
func NewAdam(n int) *Adam {
	return &Adam{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
		M: make([]float64, n), V: make([]float64, n)}
}

// Step applies one Adam update to params using grad. A zero-value M and V
// (with T = 0) are allocated on the first step. On any error nothing is
// modified: lengths that disagree or hyper-parameters out of range (Eps must
// be positive, or a zero gradient would give 0/0) wrap ErrInvalidInput; a
// non-finite gradient, or an update that would overflow the parameters or
// moments, wraps ErrNonFinite. Step never leaves a non-finite value behind.
func (o *Adam) Step(params, grad []float64) error {
	n := len(params)
	if len(grad) != n {
		return invalidf("grad", "length %d, want %d", len(grad), n)
	}
	if o.M == nil && o.V == nil && o.T == 0 {
		o.M, o.V = make([]float64, n), make([]float64, n)
	}
	if len(o.M) != n || len(o.V) != n {
		return invalidf("Adam.M", "moment lengths %d and %d, want %d", len(o.M), len(o.V), n)
	}
	switch {
	case !(o.LR >= 0) || math.IsInf(o.LR, 0):
		return invalidf("Adam.LR", "%v, want finite ≥ 0", o.LR)
	case !(o.Beta1 >= 0 && o.Beta1 < 1):
		return invalidf("Adam.Beta1", "%v, want in [0, 1)", o.Beta1)
	case !(o.Beta2 >= 0 && o.Beta2 < 1):
		return invalidf("Adam.Beta2", "%v, want in [0, 1)", o.Beta2)
	case !(o.Eps > 0) || math.IsInf(o.Eps, 0):
		return invalidf("Adam.Eps", "%v, want finite > 0 (NewAdam sets 1e-8)", o.Eps)
	case !(o.WeightDecay >= 0) || math.IsInf(o.WeightDecay, 0):
		return invalidf("Adam.WeightDecay", "%v, want finite ≥ 0", o.WeightDecay)
	case o.T < 0 || o.T == math.MaxInt:
		return invalidf("Adam.T", "%d, want in [0, MaxInt)", o.T)
	}
	t := o.T + 1
	b1, b2 := o.Beta1, o.Beta2
	bc1 := 1 - math.Pow(b1, float64(t))
	bc2 := math.Sqrt(1 - math.Pow(b2, float64(t)))
	step := o.LR / bc1
	wd := o.WeightDecay
	mm, vv := o.M[:n], o.V[:n]
	grad = grad[:n]
	if adamCannotOverflow(params, grad, mm, vv, wd, step, o.Eps) {
		// The usual case: one scan of the inputs rules out a non-finite
		// result, so one pass updates (Adam is memory-bound: on a network
		// of a million parameters the checks below cost as much again).
		done := 0
		if k := n &^ 3; useFMA && haveAVXKernels && k > 0 {
			c := [8]float64{b1, 1 - b1, b2, 1 - b2, wd, step, bc2, o.Eps}
			adamRowAVX(&params[0], &grad[0], &mm[0], &vv[0], k, &c)
			done = k
		}
		for i := done; i < n; i++ {
			mm[i], vv[i], params[i] = adamUpdate(params[i], grad[i], mm[i], vv[i], b1, b2, wd, step, bc2, o.Eps)
		}
		o.T = t
		return nil
	}
	if err := checkFinite("grad", grad); err != nil {
		return err
	}
	if err := checkFinite("params", params); err != nil {
		return err
	}
	// First pass: compute every new value without storing it, so that an
	// overflow anywhere leaves params, M, V and T as they were. The second
	// pass repeats the same arithmetic and stores it; both passes together
	// cost far less than the gradient they follow.
	for i, p := range params {
		mi, vi, pi := adamUpdate(p, grad[i], mm[i], vv[i], b1, b2, wd, step, bc2, o.Eps)
		if mi-mi != 0 || vi-vi != 0 || pi-pi != 0 {
			return &InputError{Field: "params", Reason: fmt.Sprintf("the Adam update of parameter %d overflows (θ=%v, g=%v)", i, p, grad[i]), Err: ErrNonFinite}
		}
	}
	for i, p := range params {
		mm[i], vv[i], params[i] = adamUpdate(p, grad[i], mm[i], vv[i], b1, b2, wd, step, bc2, o.Eps)
	}
	o.T = t
	return nil
}

// adamCannotOverflow reports whether an Adam step is sure to leave every
// moment and parameter finite: all inputs finite, v ≥ 0, and bounds that
// hold element by element — |g + wd·θ| ≤ G ≤ 1e150 (so g² is finite),
// |m′| ≤ max(|m|, G), v′ ≤ max(v, G²), and |θ′| ≤ |θ| + step·max(|m|, G)/eps,
// since the denominator is at least eps. When it reports false, Step falls
// back to checking every element's update before storing any.
func adamCannotOverflow(params, grad, m, v []float64, wd, step, eps float64) bool {
	grad, m, v = grad[:len(params)], m[:len(params)], v[:len(params)]
	// 0·x is 0 for finite x and NaN otherwise, so nan ends NaN if anything
	// is not finite; no branch depends on the data.
	var gx, px, mx, vx, nan float64
	vmin := 0.0
	start := 0
	if k := len(params) &^ 3; useFMA && haveAVXKernels && k > 0 {
		var lanes [24]float64
		adamBoundsAVX(&params[0], &grad[0], &m[0], &v[0], k, &lanes)
		for j := 0; j < 4; j++ {
			gx, px, mx = max(gx, lanes[j]), max(px, lanes[4+j]), max(mx, lanes[8+j])
			vx, vmin = max(vx, lanes[12+j]), min(vmin, lanes[16+j])
			nan += lanes[20+j]
		}
		start = k
	}
	for i := start; i < len(params); i++ {
		p := params[i]
		ag, ap, am, vi := math.Abs(grad[i]), math.Abs(p), math.Abs(m[i]), v[i]
		gx, px, mx = max(gx, ag), max(px, ap), max(mx, am)
		vx, vmin = max(vx, vi), min(vmin, vi)
		nan += 0*ag + 0*ap + 0*am + 0*vi
	}
	if nan != 0 || vmin < 0 {
		return false
	}
	const lim = 1e150
	G := gx + wd*px
	return G <= lim && px <= lim*lim && mx <= lim*lim && vx <= lim*lim && step*max(mx, G)/eps <= lim*lim
}

// adamUpdate returns the new first and second moments and parameter value.
func adamUpdate(p, g, m, v, b1, b2, wd, step, bc2, eps float64) (mi, vi, pi float64) {
	// Each product is rounded (float64 conversions), as the vector kernel
	// rounds it: Go may otherwise fuse them into the additions (GOAMD64=v3,
	// arm64), and the two paths would drift apart by a few ulp per step.
	if wd != 0 {
		g += float64(wd * p)
	}
	mi = float64(b1*m) + float64((1-b1)*g)
	vi = float64(b2*v) + float64(float64((1-b2)*g)*g)
	return mi, vi, p - float64(step*mi)/(math.Sqrt(vi)/bc2+eps)
}

// Constants of tanhFast.
const (
	tanhLog2e = 1.4426950408889634074 // 1/ln 2
	// ln 2 split so that k·tanhLn2Hi is exact for |k| < 2¹¹ (Cody & Waite).
	tanhLn2Hi = 6.93147180369123816490e-01
	tanhLn2Lo = 1.90821492927058770002e-10
	// tanhRound is 1.5·2⁵²: adding and subtracting it rounds to an integer.
	tanhRound = 6755399441055744.0
	// tanhSat: tanh(x) rounds to ±1 in float64 for |x| > 19.06.
	tanhSat = 22
)

// tanhFast returns tanh(x) to within a few units in the last place
// (measured ≤ 3 ulp from math.Tanh, TestTanhFastAccuracy). It is the
// hidden-layer activation's hot spot: math.Tanh calls math.Exp and branches
// on |x|, and at small widths the activations cost more than the matrix
// products. Here one branch-free path serves every x:
//
//	tanh(x) = sign(x) · −m / (2 + m),  m = expm1(−2|x|) ∈ [−1, 0],
//
// which has no cancellation for small |x| because expm1 keeps full relative
// accuracy there (m from tanhExpm1). tanhRow evaluates whole rows in two
// passes, which overlaps the work of neighbouring elements better.
func tanhFast(x float64) float64 {
	m := tanhExpm1(x)
	return math.Copysign(-m/(2+m), x)
}

// tanhExpm1 returns m = expm1(−2·min(|x|, tanhSat)) ∈ [−1, 0] (NaN for
// NaN): the clamp is exact in effect, tanh rounds to ±1 beyond it, and it
// keeps ±Inf out of the range reduction without a branch. expm1(y) is
// evaluated as 2ᵏ·expm1(r) + (2ᵏ − 1) with y = k·ln 2 + r, |r| ≤ ln2/2
// (Cody–Waite reduction, so r is accurate), and expm1(r) = r + r²·P(r)
// with expNegAbs's near-minimax P, whose error (≤ 1.05·10⁻¹⁶·r²) is below
// 0.3 ulp of expm1(r). Both 2ᵏ·p and 2ᵏ − 1 are exact, so m carries one
// rounding of the sum plus the polynomial's.
func tanhExpm1(x float64) float64 {
	y := -2 * min(math.Abs(x), tanhSat)
	kf := (y*tanhLog2e + tanhRound) - tanhRound
	r := (y - kf*tanhLn2Hi) - kf*tanhLn2Lo
	// Estrin's scheme: a dependency chain of depth 5 instead of Horner's
	// 10, so the evaluations of neighbouring elements overlap. (expNegAbs
	// repeats these lines on purpose: as a function they exceed the
	// inliner's budget, and a call per element costs more than the copy.)
	r2 := r * r
	r4 := r2 * r2
	p01 := spP0 + r*spP1
	p23 := spP2 + r*spP3
	p45 := spP4 + r*spP5
	p67 := spP6 + r*spP7
	p89 := spP8 + r*spP9
	p03 := p01 + r2*p23
	p47 := p45 + r2*p67
	p := r + r2*((p03+r4*p47)+(r4*r4)*p89)
	s := math.Float64frombits(uint64(1023+int64(kf)) << 52) // 2ᵏ, k ∈ [−64, 0]
	return s*p + (s - 1)
}

// tanhRow replaces u = row[j] + bias[j] by h = tanh(u) and, when drow is
// non-nil, writes 1 − h² to drow[j]. With the assembly kernels, groups of
// four elements run in AVX2 (activationRowAVX: tanhFast's formulas with fused
// multiply–adds, so the last bit can differ from tanhFast's; the accuracy
// bound against math.Tanh is the same, TestActivationRows) and the last
// len(row) mod 4 in Go.
func tanhRow(row, drow, bias []float64) {
	row, drow, bias = activationAVX(row, drow, bias, 0)
	tanhRowGo(row, drow, bias)
}

// tanhRowGo is tanhRow in Go, bit-identical to tanhFast. Like
// softplusRow it works in two passes over chunks of the row (m = expm1(−2|u|)
// first, into a stack buffer, then the quotient), shorter loop bodies whose
// iterations the processor overlaps better than the fused evaluation's.
func tanhRowGo(row, drow, bias []float64) {
	var buf [64]float64
	bias = bias[:len(row)]
	for len(row) > 0 {
		n := min(len(row), len(buf))
		r, bs := row[:n], bias[:n]
		m := buf[:n]
		for j, v := range bs {
			u := r[j] + v
			r[j] = u
			m[j] = tanhExpm1(u)
		}
		m = m[:len(r)]
		if drow != nil {
			d := drow[:len(r)]
			for j, u := range r {
				h := math.Copysign(-m[j]/(2+m[j]), u)
				r[j] = h
				d[j] = 1 - h*h
			}
			drow = drow[n:]
		} else {
			for j, u := range r {
				r[j] = math.Copysign(-m[j]/(2+m[j]), u)
			}
		}
		row, bias = row[n:], bias[n:]
	}
}

// Coefficients of expNegAbs and softplusFromE: near-minimax polynomials
// (Chebyshev economisation, mpmath.chebyfit at 50 digits, computed for
// this code), each with 10 terms evaluated by Estrin's scheme.
const (
	// exp(r) = 1 + r + r²·P(r) on |r| ≤ ln2/2. The fit's absolute error in
	// P is 1.05·10⁻¹⁶, at most 1.3·10⁻¹⁷ (0.12 ulp of exp(r) ≥ 0.7) after
	// the factor r² ≤ 0.121.
	spP0 = 0.5000000000000001
	spP1 = 0.16666666666666669
	spP2 = 0.04166666666662413
	spP3 = 0.008333333333330062
	spP4 = 0.0013888888917213717
	spP5 = 0.00019841269863053618
	spP6 = 2.4801521295954376e-05
	spP7 = 2.7557268459997064e-06
	spP8 = 2.7620088445409746e-07
	spP9 = 2.510038549551032e-08
	// atanh(s)/s = 1 + x·Q(x) for x = s² ∈ [0, 1/9]. The fit's absolute
	// error in Q is 4.5·10⁻¹⁷, a relative error of at most 5·10⁻¹⁸ in
	// log1p.
	spQ0 = 0.3333333333333333
	spQ1 = 0.20000000000007292
	spQ2 = 0.1428571428355438
	spQ3 = 0.11111111358713932
	spQ4 = 0.09090894718066429
	spQ5 = 0.07692785032479312
	spQ6 = 0.06657072104827468
	spQ7 = 0.06000536404795356
	spQ8 = 0.04400369243072337
	spQ9 = 0.08082022805971766
	// spMaxArg clamps |u|: e^−750 underflows to 0 (it is below 2^−1075),
	// and the clamp keeps ±Inf out of the range reduction.
	spMaxArg = 750
)

// expNegAbs returns e^−|u| ∈ [0, 1] without branches: −|u| = k·ln2 + r,
// |r| ≤ ln2/2 (Cody–Waite reduction with tanhFast's constants, so r is
// accurate), exp(r) by the polynomial P above, and 2ᵏ applied as two
// factors 2^⌊k/2⌋·2^(k−⌊k/2⌋), each a normal number, so that the result
// is rounded once even when it is subnormal (|u| > 708). NaN gives NaN.
// Measured error (TestSoftplusFastAccuracy): ≤ 2 ulp from math.Exp.
func expNegAbs(u float64) float64 {
	a := min(math.Abs(u), spMaxArg)
	y := -a
	kf := (y*tanhLog2e + tanhRound) - tanhRound
	r := (y - kf*tanhLn2Hi) - kf*tanhLn2Lo
	r2 := r * r
	r4 := r2 * r2
	p01 := spP0 + r*spP1
	p23 := spP2 + r*spP3
	p45 := spP4 + r*spP5
	p67 := spP6 + r*spP7
	p89 := spP8 + r*spP9
	p03 := p01 + r2*p23
	p47 := p45 + r2*p67
	p := 1 + (r + r2*((p03+r4*p47)+(r4*r4)*p89))
	k := int64(kf) // k ∈ [−1082, 0]
	k1 := k >> 1
	s1 := math.Float64frombits(uint64(1023+k1) << 52)
	s2 := math.Float64frombits(uint64(1023+k-k1) << 52)
	return (p * s1) * s2
}

// softplusFromE returns softplus(u) = max(u, 0) + log1p(e) and its
// derivative σ(u) = (u < 0 ? e : 1)/(1 + e), given e = e^−|u| (from
// expNegAbs): the same formulas as the math-library version
// max(u,0) + math.Log1p(math.Exp(−|u|)), which never overflows.
//
// log1p(e) = 2·atanh(s) with s = e/(2+e) ∈ [0, 1/3] has no cancellation:
// with t = 2s, computed as (e+e)/(2+e) so that t = e exactly when e is
// subnormal, and x = s², log1p(e) = t + t·x·Q(x). The sign of u selects
// max(u, 0) and the numerator of σ by bit masks, not branches, so inputs of
// mixed signs cost no mispredictions.
func softplusFromE(u, e float64) (sp, sig float64) {
	ub := math.Float64bits(u)
	neg := uint64(int64(ub) >> 63) // all ones when the sign bit is set
	t := (e + e) / (2 + e)
	x := 0.25 * (t * t)
	x2 := x * x
	x4 := x2 * x2
	q01 := spQ0 + x*spQ1
	q23 := spQ2 + x*spQ3
	q45 := spQ4 + x*spQ5
	q67 := spQ6 + x*spQ7
	q89 := spQ8 + x*spQ9
	q03 := q01 + x2*q23
	q47 := q45 + x2*q67
	q := (q03 + x4*q47) + (x4*x4)*q89
	lp := t + t*(x*q)
	pos := math.Float64frombits(ub &^ neg) // max(u, 0); +0 for u = −0
	num := math.Float64frombits(neg&math.Float64bits(e) | ^neg&math.Float64bits(1))
	return pos + lp, num / (1 + e)
}

// softplusFast returns softplus(u) and σ(u) (see softplusFromE).
func softplusFast(u float64) (sp, sig float64) {
	return softplusFromE(u, expNegAbs(u))
}

// sigmoidFast is σ(u) = 1/(1+e^−u), computed as softplusFromE computes it,
// without overflow for either sign of u.
func sigmoidFast(u float64) float64 {
	e := expNegAbs(u)
	neg := uint64(int64(math.Float64bits(u)) >> 63)
	num := math.Float64frombits(neg&math.Float64bits(e) | ^neg&math.Float64bits(1))
	return num / (1 + e)
}

// softplusRow replaces u = row[j] + bias[j] by softplus(u) and, when drow
// is non-nil, writes σ(u) to drow[j]; with the assembly kernels four
// elements at a time in AVX2 (activationRowAVX, as tanhRow).
func softplusRow(row, drow, bias []float64) {
	row, drow, bias = activationAVX(row, drow, bias, 1)
	softplusRowGo(row, drow, bias)
}

// sigmoidRow replaces u = row[j] + bias[j] by s = σ(u) and, when drow is
// non-nil, writes s(1 − s) to drow[j]; with the assembly kernels four
// elements at a time in AVX2 (activationRowAVX, as tanhRow).
func sigmoidRow(row, drow, bias []float64) {
	row, drow, bias = activationAVX(row, drow, bias, 2)
	for j, v := range bias {
		row[j] = sigmoidFast(row[j] + v)
	}
	if drow != nil {
		drow = drow[:len(row)]
		for j, s := range row {
			drow[j] = s * (1 - s)
		}
	}
}

// activationBlock runs tanh, softplus or sigmoid over all B rows of y in
// one call of the assembly kernel when the row length suits it (a multiple
// of 8 with AVX-512, of 4 with AVX2), and reports whether it did: the
// per-row calls cost as much as the arithmetic on narrow layers.
func activationBlock(act Activation, y, d, bias []float64, B int) bool {
	n := len(bias)
	mode := 0
	switch act {
	case Tanh:
	case Softplus:
		mode = 1
	case Sigmoid:
		mode = 2
	default:
		return false
	}
	if !useFMA || !haveAVXKernels || B <= 0 || n == 0 || n%4 != 0 {
		return false
	}
	y = y[:B*n]
	var dp *float64
	if d != nil {
		d = d[:B*n]
		dp = &d[0]
	}
	if useAVX512 && n%8 == 0 {
		activationRowAVX512(&y[0], dp, &bias[0], n, B, mode)
	} else {
		activationRowAVX(&y[0], dp, &bias[0], n, B, mode)
	}
	return true
}

// activationAVX runs activationRowAVX (mode 0 tanh, 1 softplus, 2
// sigmoid) on the first len(row) &^ 3 elements when the assembly kernels
// are in use and returns the rest.
func activationAVX(row, drow, bias []float64, mode int) ([]float64, []float64, []float64) {
	n := len(row) &^ 3
	if !useFMA || !haveAVXKernels || n == 0 {
		return row, drow, bias
	}
	bias = bias[:len(row)]
	var dp *float64
	if drow != nil {
		drow = drow[:len(row)]
		dp = &drow[0]
	}
	if n8 := n &^ 7; useAVX512 && n8 > 0 {
		activationRowAVX512(&row[0], dp, &bias[0], n8, 1, mode)
		if n8 < n {
			if dp != nil {
				dp = &drow[n8]
			}
			activationRowAVX(&row[n8], dp, &bias[n8], n-n8, 1, mode)
		}
	} else {
		activationRowAVX(&row[0], dp, &bias[0], n, 1, mode)
	}
	if drow != nil {
		drow = drow[n:]
	}
	return row[n:], drow, bias[n:]
}

// softplusRowGo is softplusRow in Go, bit-identical to softplusFast. It
// runs in two passes over chunks of
// the row, e^−|u| first (into drow, or a stack buffer), then the rest: each
// pass has a loop body about half as long as the fused evaluation's, so the
// processor overlaps the dependency chains of several elements, which
// measured about 20% faster than evaluating softplusFast element by element.
func softplusRowGo(row, drow, bias []float64) {
	var buf [64]float64
	bias = bias[:len(row)]
	for len(row) > 0 {
		n := min(len(row), len(buf))
		r, bs := row[:n], bias[:n]
		e := buf[:n]
		if drow != nil {
			e = drow[:n]
		}
		e = e[:len(bs)]
		for j, v := range bs {
			u := r[j] + v
			r[j] = u
			e[j] = expNegAbs(u)
		}
		e = e[:len(r)]
		if drow != nil {
			for j, u := range r {
				r[j], e[j] = softplusFromE(u, e[j])
			}
		} else {
			for j, u := range r {
				r[j], _ = softplusFromE(u, e[j])
			}
		}
		row, bias = row[n:], bias[n:]
		if drow != nil {
			drow = drow[n:]
		}
	}
}
