package neuralode

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// GradMethod selects how a GradientSolver differentiates through the ODE solve.
type GradMethod int

const (
	// Direct backpropagates through the accepted Runge–Kutta steps (the
	// discrete adjoint, "discretise-then-optimise"), including the dense
	// output at observation times, with the step sizes held constant as
	// autograd does. It returns the exact gradient of the numerical solution
	// and is the reference the other methods are tested against. Its memory
	// grows with the number of steps: it stores every stage input of every
	// accepted forward step (O(steps·stages·B·D)), and an MLP field also
	// keeps the hidden activations of every forward evaluation
	// (2·B·Σ hidden widths values each, at most 512 MiB; beyond that the
	// backward pass recomputes them), so each stage's VJP needs no forward
	// pass.
	Direct GradMethod = iota
	// Adjoint solves the augmented system [z, a, aθ, at] backward (Chen et
	// al. 2018) with every channel in the step-error norm, each parameter
	// tensor as its own group, as torchdiffeq's odeint_adjoint does.
	Adjoint
	// SeminormAdjoint is Adjoint with zero weight on the parameter and time
	// adjoints, which feed back into nothing (Kidger, Chen & Lyons, ICML 2021).
	SeminormAdjoint
	// GQAdjoint solves only [z, a] backward and integrates
	// dL/dθ = ∫ aᵀ ∂f/∂θ dt by Gauss–Legendre quadrature on each observation
	// interval, reading the node states from the backward solve's dense
	// output (Norcliffe & Deisenroth, TMLR 2023).
	GQAdjoint
	// GQInterpAdjoint is GQAdjoint with z(τ) taken from the forward solve's
	// dense output instead of a backward re-solve of z: only a is solved
	// backward, so it stays accurate on contracting dynamics where
	// backsolving z diverges. It stores the forward steps like Direct.
	GQInterpAdjoint
	// GQAdaptive is GQAdjoint with the quadrature error controlled by the
	// backward tolerances instead of the node-count rule: every accepted
	// backward step (its norm also bounding Σ_b ∫a, the parameter adjoint
	// of a constant added to f) is recorded with its dense output, and each
	// observation interval is integrated by an adaptive Gauss–Legendre
	// rule, checked per parameter tensor by the decay of the integrand's
	// Legendre coefficients and by a Gauss–Kronrod extension, and bisected
	// where the estimate exceeds rtol·|integral| + atol (see gqaMethod).
	GQAdaptive
	// GQAdaptiveInterp is GQAdaptive with z(τ) from the forward solve's
	// dense output, as in GQInterpAdjoint.
	GQAdaptiveInterp
)

// String returns the method's command-line name.
func (m GradMethod) String() string {
	if m >= 0 && int(m) < len(gradMethods) {
		return gradMethods[m].name
	}
	return fmt.Sprintf("GradMethod(%d)", int(m))
}

// ParseGradMethod returns the method with the given name: "direct",
// "adjoint", "seminorm", "gq", "gq-interp", "gq-adaptive" or
// "gq-adaptive-interp".
func ParseGradMethod(name string) (GradMethod, error) {
	for i, gm := range gradMethods {
		if gm.name == name {
			return GradMethod(i), nil
		}
	}
	names := make([]string, len(gradMethods))
	for i, gm := range gradMethods {
		names[i] = gm.name
	}
	return 0, invalidf("method", "unknown gradient method %q (want %s or %s)", name, strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// GQOptions configures the Gauss–Legendre quadrature adjoints.
type GQOptions struct {
	// C scales the node count: interval i of length Δ_i gets
	// n_i = min(ceil(C·NFE_fwd·Δ_i/(t_M − t_0)), Cap) nodes, at least 1
	// (Norcliffe & Deisenroth 2023, §3.2). Default 0.1.
	C float64
	// Cap bounds the nodes per interval; default 64.
	Cap int
}

// GradOptions configures a GradientSolver. The gradient method, the solver
// options of each pass and the quadrature options are independent.
type GradOptions struct {
	Method GradMethod
	// Forward configures the forward solve (tableau, tolerances, norm,
	// controller, step limits). OnStep and QuadratureTail must be unset.
	Forward Options
	// Backward configures the backward solves of the adjoint methods; nil
	// means the same as Forward. Its Norm is ignored: the method chooses the
	// backward norm (full, seminorm, or [z, a] for the quadrature methods).
	Backward *Options
	GQ       GQOptions
	// CompatTorchdiffeq reproduces torchdiffeq's step sequences: both passes
	// step past their final time and interpolate back, every backward
	// interval starts with a fresh initial-step search, and the seminorm
	// keeps the time adjoint in the norm. Otherwise the last step of each
	// solve lands on its final time and each backward interval starts with
	// the step size the previous one ended with.
	CompatTorchdiffeq bool
	// TimeGradients requests dL/dt_i for every observation time (one extra
	// evaluation per time).
	TimeGradients bool
	// Workers bounds the goroutines of the quadrature fan-out; 0 means
	// GOMAXPROCS. The result does not depend on it.
	Workers int
}

// GradStats reports the work of one gradient computation.
type GradStats struct {
	Forward  Stats
	Backward Stats
	// QuadratureNodes counts the Gauss–Legendre nodes (GQ methods); each
	// costs one parameter vector–Jacobian product.
	QuadratureNodes int
	// VJPs counts vector–Jacobian products in the backward pass.
	VJPs         int
	ForwardTime  time.Duration
	BackwardTime time.Duration
}

// GradResult is the output of GradientSolver.Gradient. Its slices belong to
// the GradientSolver and are overwritten by the next call.
type GradResult struct {
	Loss float64
	// Params is dL/dθ, in the layout of the field's Params.
	Params []float64
	// Z0 is dL/dz0 (B·D values).
	Z0 []float64
	// Times is dL/dt_i for every observation time when
	// GradOptions.TimeGradients is set, else nil.
	Times []float64
	// States holds z(t_i) for every time, len(ts) rows of B·D values.
	States []float64
	Stats  GradStats
}

// GradientSolver computes losses and gradients of a neural ODE
// dz/dt = f(t, z; θ) observed at times t_0 < t_1 < … < t_M (or decreasing).
// It owns its workspace: after the first call, calls of the same size
// reuse every buffer. It is not safe for concurrent use.
type GradientSolver struct {
	// A handle, so that a finalizer can stop the helper goroutines: the
	// state refers to itself (bound method values, the method's back
	// pointer), and a finalizer on an object in a cycle never runs.
	*gradState
}

// gradState is a GradientSolver's state.
type gradState struct {
	field  VectorField
	opts   GradOptions
	dim    int
	ev     Evaluator
	method gradStrategy // the gradient method: what is recorded, how the backward pass runs

	fwd *Solver
	bwd *Solver // nil for a method without a backward ODE (Direct)

	n, p int // state length B·D and parameter count

	states, lossGrad []float64
	res              GradResult

	// The time grid: the observation times merged with the field's break
	// points (see Breakpointer). Without break points grid is ts and
	// gridStates, gridGrad alias states, lossGrad.
	grid      []float64
	gridBuf   []float64
	obsRow    []int     // grid row of each observation time
	breaks    []float64 // the field's break points, when some lie inside the span
	hasBreaks bool
	// chunkSerial: runChunks runs the quadrature chunks one after another
	// on the caller's goroutine, which then give their products to g.ev
	// (already frozen, its weights packed for the backward solve) instead of
	// their own evaluators, which would each pack the weights again.
	chunkSerial      bool
	gridStates       []float64
	gridGrad         []float64
	selector         PieceSelector // g.ev's, if it has one
	piece            int           // piece being recorded by the forward hooks
	pieceLo, pieceHi []float64     // bounds of each forward piece

	// Scratch shared by the methods' right-hand sides and point products.
	negA, tmp []float64

	// The backward ODE: its state, outputs and error norm (see beginBackward).
	aug, augOut, outTimes []float64
	bnorm                 *GroupedNorm
	bnormN, bnormP        int // sizes bnorm was built for

	fRHS    Func                 // g.rhs, bound once so that passing it allocates nothing
	fPiece  func(lo, hi float64) // g.startPiece, bound once
	pool    *taskPool            // helpers of the quadrature fan-out (separate, so that they do not keep the solver alive)
	vecPool *taskPool            // helpers of the backward solver's elementwise passes (nil without a backward solve; g.ev's pool if it has one)
}

// gradStrategy is one gradient method. The GradientSolver runs the forward
// pass piece by piece, evaluates the loss and checks the result; the
// strategy decides what the forward pass records, what the backward ODE's
// state and error norm are, how the backward pass runs and how the time
// gradients are found. Adding a method is adding one implementation, a
// GradMethod constant and its row in gradMethods.
type gradStrategy interface {
	// forward prepares the forward record for states of length n and
	// returns the OnStep hook that fills it; nil records nothing.
	forward(n int) func(*StepInfo)
	// backwardState returns the layout of the backward ODE's state for
	// states of length n and p parameters. Methods without a backward ODE
	// are never asked.
	backwardState(n, p int) (backwardSpec, error)
	// backward runs the backward pass from g.gridGrad, filling g.res.Params
	// (zeroed) and g.res.Z0, and g.res.Times if the method has a time adjoint.
	backward() error
	// timeGradients fills g.res.Times after the backward pass, when
	// GradOptions.TimeGradients asks for them.
	timeGradients(ts []float64)
}

// backwardSpec describes the state of a backward ODE.
type backwardSpec struct {
	total  int     // state length
	tail   int     // trailing pure quadratures (Options.QuadratureTail)
	groups []Group // groups of its error norm
}

// gradMethods lists the gradient methods in GradMethod order.
var gradMethods = []struct {
	name        string
	backwardODE bool // the method solves an ODE backward (needs GradientSolver.bwd)
	strategy    func(g *gradState) gradStrategy
}{
	Direct:           {"direct", false, newDirectMethod},
	Adjoint:          {"adjoint", true, newAdjointMethod},
	SeminormAdjoint:  {"seminorm", true, newSeminormMethod},
	GQAdjoint:        {"gq", true, newGQMethod},
	GQInterpAdjoint:  {"gq-interp", true, newGQInterpMethod},
	GQAdaptive:       {"gq-adaptive", true, newGQAdaptiveMethod},
	GQAdaptiveInterp: {"gq-adaptive-interp", true, newGQAdaptiveInterpMethod},
}

// NewGradientSolver returns a GradientSolver for field with the given options.
func NewGradientSolver(field VectorField, opts GradOptions) (*GradientSolver, error) {
	if field == nil {
		return nil, invalidf("field", "nil vector field")
	}
	if field.Dim() < 1 {
		return nil, invalidf("field", "state dimension %d < 1", field.Dim())
	}
	if v, ok := field.(fieldValidator); ok {
		// Every method evaluates vector–Jacobian products (Direct through
		// the solver's stages), so the field must provide them.
		if err := v.validateField(true); err != nil {
			return nil, err
		}
	}
	if opts.Method < 0 || int(opts.Method) >= len(gradMethods) {
		return nil, invalidf("GradOptions.Method", "unknown method %d", int(opts.Method))
	}
	if opts.Forward.OnStep != nil || opts.Forward.QuadratureTail != 0 {
		return nil, invalidf("GradOptions.Forward", "OnStep and QuadratureTail are set by the gradient method")
	}
	if opts.Forward.Breaks != nil || (opts.Backward != nil && opts.Backward.Breaks != nil) {
		return nil, invalidf("GradOptions.Forward", "Breaks come from the field (see Breakpointer)")
	}
	if opts.GQ.C == 0 {
		opts.GQ.C = 0.1
	}
	if opts.GQ.Cap == 0 {
		opts.GQ.Cap = 64
	}
	if !(opts.GQ.C > 0) || math.IsInf(opts.GQ.C, 0) {
		return nil, invalidf("GradOptions.GQ.C", "must be a positive finite number, got %v", opts.GQ.C)
	}
	if opts.GQ.Cap < 1 || opts.GQ.Cap > MaxGaussLegendreNodes {
		return nil, invalidf("GradOptions.GQ.Cap", "must be in [1, %d], got %d", MaxGaussLegendreNodes, opts.GQ.Cap)
	}
	if opts.Workers < 0 {
		return nil, invalidf("GradOptions.Workers", "negative: %d", opts.Workers)
	}
	g := &gradState{field: field, opts: opts, dim: field.Dim()}
	fo := opts.Forward
	fo.Overshoot = fo.Overshoot || opts.CompatTorchdiffeq
	var err error
	if g.fwd, err = NewSolver(fo); err != nil {
		return nil, err
	}
	bo := opts.Forward
	if opts.Backward != nil {
		bo = *opts.Backward
		if bo.OnStep != nil || bo.QuadratureTail != 0 {
			return nil, invalidf("GradOptions.Backward", "OnStep and QuadratureTail are set by the gradient method")
		}
	}
	bo.Overshoot = bo.Overshoot || opts.CompatTorchdiffeq
	bo.Norm = nil
	if gradMethods[opts.Method].backwardODE {
		if g.bwd, err = NewSolver(bo); err != nil {
			return nil, err
		}
	}
	g.ev = field.NewEvaluator()
	g.selector, _ = g.ev.(PieceSelector)
	g.fRHS, g.fPiece = g.rhs, g.startPiece
	g.method = gradMethods[opts.Method].strategy(g)
	// The quadrature pool's helpers reference only the pool; stop them once
	// the solver is unreachable. The evaluators' own finalizers stop theirs
	// once the state, no longer reachable, is collected.
	g.pool = new(taskPool)
	ownVecPool := false
	if g.bwd != nil {
		// The backward state of the adjoints holds the parameter gradient:
		// its elementwise passes are long enough to share out, on the
		// evaluator's own pool where it has one (see poolSharer).
		if ps, ok := findEvaluator[poolSharer](g.ev); ok {
			g.vecPool = ps.workerPool()
		} else {
			g.vecPool, ownVecPool = new(taskPool), true
		}
		g.bwd.setVectorPool(g.vecPool)
	}
	h := &GradientSolver{g}
	runtime.SetFinalizer(h, func(h *GradientSolver) {
		h.pool.close()
		if ownVecPool {
			// A shared pool is the evaluator's, closed by its finalizer.
			h.vecPool.close()
		}
	})
	return h, nil
}

// Options returns the solver's options.
func (h *GradientSolver) Options() GradOptions { return h.opts }

// Gradient solves the ODE from z0 through the times ts, evaluates the loss
// on the states, and returns the loss and its gradients with respect to the
// parameters, z0 and (optionally) the times. z0 holds a batch of B samples
// (B·D values). Inputs are never modified; on failure the returned error
// wraps ErrInvalidInput, ErrNonFinite, ErrStepSizeUnderflow,
// ErrTooManySteps or ErrPanic; a panic in the field or the loss is
// recovered and returned as an error wrapping ErrPanic.
func (h *GradientSolver) Gradient(z0, ts []float64, loss Loss) (r *GradResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, panicError("vector field", p)
		}
	}()
	r, err = h.gradient(z0, ts, loss)
	runtime.KeepAlive(h) // no finalizer may close the pool during the call
	return r, err
}

func (g *gradState) gradient(z0, ts []float64, loss Loss) (*GradResult, error) {
	if err := g.validate(z0, ts, loss); err != nil {
		return nil, err
	}
	g.setup(ts, len(z0))
	g.setupGrid(ts)
	// θ is constant during a gradient: the evaluators may keep the weight
	// copies they make at their first call (freezing again discards them).
	freezeParams(g.ev, true)
	r := &g.res
	r.Stats = GradStats{}

	// Forward pass.
	start := time.Now()
	if err := g.forward(z0); err != nil {
		return nil, markPhase(err, "forward")
	}
	r.Stats.ForwardTime = time.Since(start)
	var err error

	// Loss.
	clear(g.lossGrad)
	if r.Loss, err = callLoss(loss, g.states, g.lossGrad); err != nil {
		return nil, err
	}
	if r.Loss != r.Loss || math.IsInf(r.Loss, 0) {
		return nil, &InputError{Field: "loss", Reason: fmt.Sprintf("value is %v", r.Loss), Err: ErrNonFinite}
	}
	if err := checkFinite("loss gradient", g.lossGrad); err != nil {
		return nil, err
	}
	if g.hasBreaks {
		clear(g.gridGrad)
		for i, row := range g.obsRow {
			copy(g.gridGrad[row*g.n:(row+1)*g.n], g.lossGrad[i*g.n:(i+1)*g.n])
		}
	}

	// Backward pass.
	start = time.Now()
	clear(r.Params)
	if err := g.method.backward(); err != nil {
		return nil, markPhase(err, "backward")
	}
	if g.opts.TimeGradients {
		g.method.timeGradients(ts)
	}
	// A last guard: the parameter products of the quadrature, or channels a
	// seminorm ignores, can overflow without any step seeing it.
	for _, v := range [][]float64{r.Params, r.Z0, r.Times} {
		if ok, i := allFinite(v); !ok {
			return nil, &SolveError{T: ts[0], Phase: "backward", Reason: fmt.Sprintf("non-finite gradient component %d (%v)", i, v[i]), Err: ErrNonFinite}
		}
	}
	r.Stats.BackwardTime = time.Since(start)
	return r, nil
}

func markPhase(err error, phase string) error {
	if se, ok := err.(*SolveError); ok && se.Phase == "" {
		c := *se
		c.Phase = phase
		return &c
	}
	return err
}

func (g *gradState) validate(z0, ts []float64, loss Loss) error {
	if loss == nil {
		return invalidf("loss", "nil loss")
	}
	if len(z0) == 0 || len(z0)%g.dim != 0 {
		return invalidf("z0", "has length %d, want a positive multiple of the state dimension %d", len(z0), g.dim)
	}
	if err := checkFinite("z0", z0); err != nil {
		return err
	}
	if err := checkFinite("params", g.field.Params()); err != nil {
		return err
	}
	if c, ok := g.field.(stateLengthChecker); ok {
		if err := c.checkStateLen(len(z0)); err != nil {
			return err
		}
	}
	_, err := validateTimes("ts", ts, 2, false)
	return err
}

// setup sizes the buffers for a state of length n and m times.
func (g *gradState) setup(ts []float64, n int) {
	m := len(ts)
	p := len(g.field.Params())
	if g.n != n || g.p != p || len(g.states) != m*n {
		g.n, g.p = n, p
		g.states = make([]float64, m*n)
		g.lossGrad = make([]float64, m*n)
		g.res.Params = make([]float64, p)
		g.res.Z0 = make([]float64, n)
		g.negA = make([]float64, n)
		g.tmp = make([]float64, n)
	}
	g.res.States = g.states
	if g.opts.TimeGradients {
		if len(g.res.Times) != m {
			g.res.Times = make([]float64, m)
		}
	} else {
		g.res.Times = nil
	}
}

// Breakpointer is implemented by vector fields that are discontinuous in t
// at known times, such as a WongZakai field driven by piecewise-linear noise.
// Breakpoints returns them in increasing order. The gradient methods never
// step across a break point inside the solve's span: every solve restarts
// there (re-evaluating f with the new piece; see Options.Breaks), and no
// quadrature interval straddles one. If the field's evaluators implement
// PieceSelector, the solver selects the piece of every sub-interval first.
type Breakpointer interface {
	Breakpoints() []float64
}

// setupGrid merges the observation times with the break points strictly
// inside their span.
func (g *gradState) setupGrid(ts []float64) {
	var bps []float64
	if bp, ok := g.field.(Breakpointer); ok {
		bps = bp.Breakpoints()
	}
	lo, hi := ts[0], ts[len(ts)-1]
	dir := 1.0
	if hi < lo {
		lo, hi, dir = hi, lo, -1
	}
	inside := 0
	for _, b := range bps {
		if b > lo && b < hi {
			inside++
		}
	}
	g.obsRow = g.obsRow[:0]
	if inside == 0 {
		g.hasBreaks, g.breaks = false, nil
		g.grid, g.gridStates, g.gridGrad = ts, g.states, g.lossGrad
		for i := range ts {
			g.obsRow = append(g.obsRow, i)
		}
		return
	}
	g.hasBreaks, g.breaks = true, bps
	// Merge in the direction of integration; a break point equal to an
	// observation time is kept once.
	g.gridBuf = g.gridBuf[:0]
	j, step := 0, 1
	if dir < 0 {
		j, step = len(bps)-1, -1
	}
	for _, t := range ts {
		for j >= 0 && j < len(bps) && (bps[j]-t)*dir <= 0 {
			b := bps[j]
			j += step
			if b <= lo || b >= hi {
				continue
			}
			if b != t {
				g.gridBuf = append(g.gridBuf, b)
			}
		}
		g.obsRow = append(g.obsRow, len(g.gridBuf))
		g.gridBuf = append(g.gridBuf, t)
	}
	g.grid = g.gridBuf
	n := g.n
	if cap(g.gridStates) < len(g.grid)*n || &g.gridStates[:1][0] == &g.states[:1][0] {
		g.gridStates = make([]float64, len(g.grid)*n)
		g.gridGrad = make([]float64, len(g.grid)*n)
	}
	g.gridStates = g.gridStates[:len(g.grid)*n]
	g.gridGrad = g.gridGrad[:len(g.grid)*n]
}

// selectPiece tells a piecewise field which piece [a, b] lies in.
func (g *gradState) selectPiece(a, b float64) {
	if g.selector != nil && g.hasBreaks {
		g.selector.SelectPiece(a, b)
	}
}

// forward solves from z0 through the grid, piece by piece between break
// points, recording what the method needs.
func (g *gradState) forward(z0 []float64) error {
	n := g.n
	rc := g.fwd.runConfig()
	rc.onStep = g.method.forward(n)
	rc.breaks, rc.onPiece = g.breaks, g.fPiece
	g.pieceLo, g.pieceHi = g.pieceLo[:0], g.pieceHi[:0]
	g.piece = -1
	st, err := g.fwd.run(g.fRHS, z0, g.grid, g.gridStates, rc)
	g.res.Stats.Forward = st
	if err != nil {
		return err
	}
	if g.hasBreaks {
		for i, row := range g.obsRow {
			copy(g.states[i*n:(i+1)*n], g.gridStates[row*n:(row+1)*n])
		}
	}
	return nil
}

// startPiece is called by the forward solve before each piece [lo, hi]
// between break points: it selects the field's piece and records the bounds
// for the backward pass.
func (g *gradState) startPiece(lo, hi float64) {
	g.piece++
	g.pieceLo, g.pieceHi = append(g.pieceLo, lo), append(g.pieceHi, hi)
	g.selectPiece(lo, hi)
}

// rhs is the forward vector field.
func (g *gradState) rhs(t float64, z, dz []float64) { g.ev.Eval(t, z, dz) }

// callLoss runs the user's loss, turning a panic into an error.
func callLoss(loss Loss, states, grad []float64) (v float64, err error) {
	defer func() {
		if p := recover(); p != nil {
			if le, ok := p.(*lossShapeError); ok {
				err = le.err // a ready-made loss given states of another shape
				return
			}
			err = &InputError{Field: "loss", Reason: fmt.Sprintf("panicked: %v", p), Err: ErrPanic}
		}
	}()
	return loss(states, grad), nil
}

// The backward ODE, shared by the adjoint and quadrature methods.

// beginBackward points the backward solver at the method's error norm and
// quadrature tail, keeping its workspace, and returns the zeroed backward
// state and the first step of the first interval.
func (g *gradState) beginBackward() ([]float64, float64, error) {
	if g.bnorm == nil || g.bnormN != g.n || g.bnormP != g.p {
		spec, err := g.method.backwardState(g.n, g.p)
		if err != nil {
			return nil, 0, err
		}
		nm, err := NewGroupedNorm(spec.total, spec.groups...)
		if err != nil {
			return nil, 0, err
		}
		g.bnorm, g.bnormN, g.bnormP = nm, g.n, g.p
		g.aug = make([]float64, spec.total)
		g.bwd.setErrorNorm(nm, spec.tail)
	}
	clear(g.aug)
	first := g.opts.Forward.FirstStep
	if g.opts.Backward != nil {
		first = g.opts.Backward.FirstStep
	}
	return g.aug, first, nil
}

// solveInterval integrates the backward state y from tFrom to tTo in
// place, with output at the extra times in between (written to g.augOut
// rows 1..len(extra)), and accumulates the statistics. onStep, if not
// nil, sees every accepted step.
func (g *gradState) solveInterval(f Func, y []float64, tFrom, tTo float64, extra []float64, first float64, onStep func(*StepInfo)) error {
	total := len(y)
	g.outTimes = append(append(append(g.outTimes[:0], tFrom), extra...), tTo)
	need := len(g.outTimes) * total
	if cap(g.augOut) < need {
		g.augOut = make([]float64, need)
	}
	out := g.augOut[:need]
	rc := g.bwd.runConfig()
	rc.firstStep, rc.onStep = first, onStep
	st, err := g.bwd.run(f, y, g.outTimes, out, rc)
	g.res.Stats.Backward.Add(st)
	if err != nil {
		return err
	}
	copy(y, out[need-total:])
	return nil
}

// nextFirstStep is the first step of the next backward interval: a fresh
// search in torchdiffeq's mode, otherwise the step the last interval ended with.
func (g *gradState) nextFirstStep() float64 {
	if g.opts.CompatTorchdiffeq {
		return 0 // Hairer's rule
	}
	return g.res.Stats.Backward.LastStep
}

// negate writes −a into g.negA: the cotangent of the adjoint dynamics
// da/dt = −aᵀ∂f/∂z.
func (g *gradState) negate(a []float64) []float64 {
	negA := g.negA[:len(a)]
	for i, v := range a {
		negA[i] = -v
	}
	return negA
}

// pointTimeGrad returns ∂L/∂z(t_i)·f(t_i, z(t_i)), the loss's derivative
// with respect to observation time t_i.
func (g *gradState) pointTimeGrad(t float64, i int) float64 {
	n := g.n
	g.ev.Eval(t, g.states[i*n:(i+1)*n], g.tmp)
	return Dot(g.lossGrad[i*n:(i+1)*n], g.tmp)
}

// pointTimeGradients fills dL/dt_i for the methods without a time adjoint:
// ∂L/∂z(t_i)·f(t_i, z_i) for i ≥ 1 and −a(t_0⁺)·f(t_0, z_0) for t_0.
func (g *gradState) pointTimeGradients(ts []float64) {
	r := &g.res
	n := g.n
	for i := 1; i < len(ts); i++ {
		row := g.obsRow[i]
		g.selectPiece(g.grid[row-1], g.grid[row]) // the left piece: z arrives from it
		r.Times[i] = g.pointTimeGrad(ts[i], i)
	}
	g.selectPiece(g.grid[0], g.grid[1])
	g.ev.Eval(ts[0], g.states[:n], g.tmp)
	s := 0.0
	for j, v := range g.tmp {
		s += (r.Z0[j] - g.lossGrad[j]) * v
	}
	r.Times[0] = -s
}

func allZero(x []float64) bool {
	for _, v := range x {
		if v != 0 {
			return false
		}
	}
	return true
}

// Direct: backpropagation through the recorded forward steps.

// directMethod is GradMethod Direct: the forward pass records every stage
// input, the backward pass is the discrete adjoint of the steps, and there
// is no backward ODE.
type directMethod struct {
	g            *gradState
	tape         stepRecord
	ybar, ydense []float64   // cotangents of the step's output and of its dense uses
	kbar         [][]float64 // cotangents of the stages (and f1 for non-FSAL methods)
	hook         func(*StepInfo)
}

func newDirectMethod(g *gradState) gradStrategy {
	m := &directMethod{g: g}
	m.hook = m.record
	return m
}

func (m *directMethod) forward(n int) func(*StepInfo) {
	tb := m.g.fwd.Method()
	if len(m.ybar) != n {
		m.ybar, m.ydense = make([]float64, n), make([]float64, n)
		nk := tb.denseVectors()
		m.kbar = make([][]float64, nk)
		for i := range m.kbar {
			m.kbar[i] = make([]float64, n)
		}
	}
	// The stage inputs; an FSAL method's last one is the next step's y0.
	m.tape.reset(tb, n, false, tb.Stages()-btoi(tb.FSAL))
	// Keep the field's activations, as autograd does: each stage's VJP then
	// skips its forward pass (see mlpState.keepActivations for the memory).
	keepActivations(m.g.ev, true)
	return m.hook
}

func (m *directMethod) record(si *StepInfo) {
	m.tape.push(si, m.g.piece)
}

func (m *directMethod) backwardState(n, p int) (backwardSpec, error) { return backwardSpec{}, nil }

func (m *directMethod) timeGradients(ts []float64) { m.g.pointTimeGradients(ts) }

// backward is the discrete adjoint of the recorded Runge–Kutta steps.
//
// Forward, a step is Y_i = y + h·Σ_{j<i} A_ij·k_j, k_i = f(t + c_i·h, Y_i),
// y1 = y + h·Σ b_i·k_i, and an observation inside the step is
// z(t + θh) = y + h·Σ β_i(θ)·K_i (denseWeights). Walking the steps backward
// with ȳ the cotangent of y1: k̄_i = h·b_i·ȳ + (dense terms) + Σ_{l>i} h·A_li·Ȳ_l,
// Ȳ_i = (∂f/∂z)ᵀ k̄_i, θ̄ += (∂f/∂θ)ᵀ k̄_i, and the cotangent of y is ȳ + Σ Ȳ_i.
// The point evaluation f(t_n, y_n) is shared by the previous step (its last
// FSAL stage, or f1) and this step (its first stage), so its cotangents are
// summed and it costs one product.
func (m *directMethod) backward() error {
	g := m.g
	tb := g.fwd.Method()
	tp := &m.tape
	n := g.n
	ns := tp.steps()
	nst := tb.Stages()
	inner := tp.nstages // stages with their own inputs: 0..inner-1
	lastK := tb.denseVectors() - 1
	r := &g.res
	gp := r.Params
	ybar := m.ybar
	clear(ybar)
	kPoint := g.tmp // cotangent on f(t_{n+1}, y_{n+1}), carried between steps
	clear(kPoint)
	stats := &r.Stats

	row := len(g.grid) - 1 // grid rows are walked from the last
	for s := ns - 1; s >= 0; s-- {
		t0, h, t1 := tp.t[s], tp.h[s], tp.t1[s]
		pc := tp.piece[s]
		g.selectPiece(g.pieceLo[pc], g.pieceHi[pc])
		row = m.denseCotangents(s, row)
		// The point evaluation at the step's end: this step's dense use
		// plus, within a piece, the next step's first stage.
		Axpy(1, m.kbar[lastK], kPoint)
		var yEnd []float64 // next step's input, or the final state
		if s == ns-1 {
			yEnd = g.fwd.lastState()
		} else {
			yEnd = tp.y0(s + 1)
		}
		if !allZero(kPoint) {
			g.ev.VJP(t1, yEnd, kPoint, nil, g.negA, gp, nil)
			stats.VJPs++
			Axpy(1, g.negA, ybar)
		}
		// Stage cotangents from y1.
		for j := 0; j < nst; j++ {
			if b := tb.B[j]; b != 0 {
				Axpy(h*b, ybar, m.kbar[j])
			}
		}
		// Inner stages, last to first; stage 0 is the point evaluation at y.
		for i := inner - 1; i >= 1; i-- {
			ki := m.kbar[i]
			if allZero(ki) {
				continue
			}
			g.ev.VJP(t0+tb.C[i]*h, tp.stage(s, i), ki, nil, g.negA, gp, nil)
			stats.VJPs++
			for j, a := range tb.A[i] {
				if a != 0 {
					Axpy(h*a, g.negA, m.kbar[j])
				}
			}
			Axpy(1, g.negA, ybar)
		}
		Axpy(1, m.ydense, ybar)
		copy(kPoint, m.kbar[0])
		// A piece starts here: f(t0, y) was evaluated afresh with this
		// piece, not shared with the previous step.
		if s == 0 || tp.piece[s-1] != pc {
			if !allZero(kPoint) {
				g.ev.VJP(t0, tp.y0(s), kPoint, nil, g.negA, gp, nil)
				stats.VJPs++
				Axpy(1, g.negA, ybar)
			}
			clear(kPoint)
		}
	}
	copy(r.Z0, ybar)
	Axpy(1, g.gridGrad[:n], r.Z0)
	keepActivations(g.ev, false)
	return nil
}

// denseCotangents starts the backward sweep of step s: it zeroes the stage
// cotangents and adds the loss gradients of the grid times in (t_s, t1_s],
// from grid row down, to ȳ (a time at the step's end) or to the stage
// cotangents through the dense output (a time inside it). It returns the
// first row not in the step.
func (m *directMethod) denseCotangents(s, row int) int {
	g := m.g
	tp, n := &m.tape, g.n
	h := tp.h[s]
	for _, kb := range m.kbar {
		clear(kb)
	}
	clear(m.ydense)
	for ; row >= 1; row-- {
		st, theta, exact := tp.locate(g.grid[row])
		if st != s {
			break
		}
		gi := g.gridGrad[row*n : (row+1)*n]
		if exact {
			Axpy(1, gi, m.ybar)
			continue
		}
		for j, b := range tp.interp.weights(theta) {
			if b != 0 {
				Axpy(h*b, gi, m.kbar[j])
			}
		}
		Axpy(1, gi, m.ydense)
	}
	return row
}

// Adjoint and SeminormAdjoint: the augmented backward ODE.

// adjointMethod is GradMethod Adjoint: nothing is recorded forward, and the
// augmented state [z, a, aθ, at] is solved backward with every channel in
// the error norm.
type adjointMethod struct {
	g      *gradState
	f      Func // m.rhs, bound once
	setsGp bool // the evaluator's VJP sets the parameter part (setParamGrad)
}

func newAdjointMethod(g *gradState) gradStrategy {
	m := &adjointMethod{g: g}
	m.f = m.rhs
	return m
}

func (m *adjointMethod) forward(n int) func(*StepInfo) { return nil }

func (m *adjointMethod) backwardState(n, p int) (backwardSpec, error) {
	return augmentedState(m.g, n, p, 1, 1)
}

// timeGradients has nothing to do: the time adjoint at gave them.
func (m *adjointMethod) timeGradients(ts []float64) {}

// augmentedState is the layout of [z, a, aθ, at] with weight wθ on each
// parameter tensor's group and wt on the time adjoint.
func augmentedState(g *gradState, n, p int, wθ, wt float64) (backwardSpec, error) {
	groups := []Group{{Name: "z", Start: 0, End: n, Weight: 1}, {Name: "a", Start: n, End: 2 * n, Weight: 1}}
	sizes := []int{p}
	if pt, ok := g.field.(ParamTensors); ok {
		sizes = pt.ParamSizes()
	}
	off := 2 * n
	for i, sz := range sizes {
		groups = append(groups, Group{Name: fmt.Sprintf("aθ[%d]", i), Start: off, End: off + sz, Weight: wθ})
		off += sz
	}
	if off != 2*n+p {
		return backwardSpec{}, invalidf("field.ParamSizes", "sizes sum to %d, field has %d parameters", off-2*n, p)
	}
	groups = append(groups, Group{Name: "at", Start: off, End: off + 1, Weight: wt})
	return backwardSpec{total: 2*n + p + 1, tail: p + 1, groups: groups}, nil
}

// rhs is the augmented backward dynamics of Chen et al. (2018), eq. (4)–(5):
// dz/dt = f, da/dt = −aᵀ∂f/∂z, daθ/dt = −aᵀ∂f/∂θ, dat/dt = −aᵀ∂f/∂t.
// One vector–Jacobian product with the cotangent −a gives all three.
func (m *adjointMethod) rhs(t float64, y, dy []float64) {
	g := m.g
	n, p := g.n, g.p
	negA := g.negate(y[n : 2*n])
	dp := dy[2*n : 2*n+p]
	if !m.setsGp {
		clear(dp)
	}
	g.ev.VJP(t, y[:n], negA, dy[:n], dy[n:2*n], dp, &dy[2*n+p])
}

// backward backsolves [z, a, aθ, at] interval by interval, resetting z to
// the stored forward state and adding ∂L/∂z(t_i) to a at each observation.
func (m *adjointMethod) backward() error {
	g := m.g
	n, p := g.n, g.p
	y, first, err := g.beginBackward()
	if err != nil {
		return err
	}
	// The right-hand side needs aᵀ∂f/∂θ alone: let the evaluator set it
	// rather than clear P entries before each evaluation.
	m.setsGp = setParamGrad(g.ev, true)
	defer setParamGrad(g.ev, false)
	r := &g.res
	grid := g.grid
	obs := len(g.obsRow) - 1
	for j := len(grid) - 1; j >= 1; j-- {
		g.selectPiece(grid[j-1], grid[j])
		copy(y[:n], g.gridStates[j*n:(j+1)*n]) // reset z to the forward value
		Axpy(1, g.gridGrad[j*n:(j+1)*n], y[n:2*n])
		if g.obsRow[obs] == j {
			if g.opts.TimeGradients {
				r.Times[obs] = g.pointTimeGrad(grid[j], obs)
				y[2*n+p] -= r.Times[obs]
			}
			obs--
		}
		if err := g.solveInterval(m.f, y, grid[j], grid[j-1], nil, first, nil); err != nil {
			return err
		}
		first = g.nextFirstStep()
	}
	r.Stats.VJPs = r.Stats.Backward.NFE
	copy(r.Params, y[2*n:2*n+p])
	copy(r.Z0, y[n:2*n])
	Axpy(1, g.gridGrad[:n], r.Z0)
	if g.opts.TimeGradients {
		r.Times[0] = y[2*n+p]
	}
	return nil
}

// seminormMethod is GradMethod SeminormAdjoint: Adjoint with zero weight
// on the parameter and time adjoints, which feed back into nothing (Kidger,
// Chen & Lyons 2021). torchdiffeq's seminorm keeps the time adjoint, so the
// compatibility mode does too.
type seminormMethod struct{ *adjointMethod }

func newSeminormMethod(g *gradState) gradStrategy {
	return seminormMethod{newAdjointMethod(g).(*adjointMethod)}
}

func (m seminormMethod) backwardState(n, p int) (backwardSpec, error) {
	wt := 0.0
	if m.g.opts.CompatTorchdiffeq {
		wt = 1
	}
	return augmentedState(m.g, n, p, 0, wt)
}

// GQAdjoint and GQInterpAdjoint: Gauss–Legendre quadrature of dL/dθ.

// gqMethod is GradMethod GQAdjoint: nothing is recorded forward, [z, a] is
// solved backward, and dL/dθ is the quadrature of aᵀ∂f/∂θ at the nodes,
// with z and a read from the backward solve's dense output.
type gqMethod struct {
	g *gradState
	q gqQuadrature
	f Func // m.rhs, bound once
}

func newGQMethod(g *gradState) gradStrategy {
	m := &gqMethod{g: g}
	m.q.init(g)
	m.f = m.rhs
	return m
}

func (m *gqMethod) forward(n int) func(*StepInfo) { return nil }

func (m *gqMethod) backwardState(n, p int) (backwardSpec, error) {
	return backwardSpec{total: 2 * n, groups: []Group{{Name: "z", Start: 0, End: n, Weight: 1}, {Name: "a", Start: n, End: 2 * n, Weight: 1}}}, nil
}

func (m *gqMethod) backward() error            { return m.q.backward(m.f, m) }
func (m *gqMethod) timeGradients(ts []float64) { m.g.pointTimeGradients(ts) }

// rhs is the [z, a] backward dynamics: dz/dt = f, da/dt = −aᵀ∂f/∂z.
func (m *gqMethod) rhs(t float64, y, dy []float64) { m.rhsTime(t, y, dy, nil) }

func (m *gqMethod) rhsTime(t float64, y, dy []float64, gt *float64) {
	g := m.g
	n := g.n
	g.ev.VJP(t, y[:n], g.negate(y[n:]), dy[:n], dy[n:], nil, gt)
}

// observe resets z to the forward state at grid row i and adds ∂L/∂z there to a.
func (m *gqMethod) observe(y []float64, i int) {
	g := m.g
	n := g.n
	copy(y[:n], g.gridStates[i*n:(i+1)*n])
	Axpy(1, g.gridGrad[i*n:(i+1)*n], y[n:2*n])
}

// node stores z and a at the node τ from the backward output row.
func (m *gqMethod) node(row []float64, tau float64) {
	n := m.g.n
	m.q.nodeZ = append(m.q.nodeZ, row[:n]...)
	m.q.nodeA = append(m.q.nodeA, row[n:]...)
}

func (m *gqMethod) adjoint(y []float64) []float64 { return y[m.g.n:] }

// gqInterpMethod is GradMethod GQInterpAdjoint: the forward pass records
// its steps for dense output, only a is solved backward, and z at the
// nodes and in the adjoint dynamics comes from the forward dense output.
type gqInterpMethod struct {
	g     *gradState
	q     gqQuadrature
	f     Func // m.rhs, bound once
	tape  stepRecord
	hook  func(*StepInfo)
	dense []float64
}

func newGQInterpMethod(g *gradState) gradStrategy {
	m := &gqInterpMethod{g: g}
	m.q.init(g)
	m.f, m.hook = m.rhs, m.record
	return m
}

func (m *gqInterpMethod) forward(n int) func(*StepInfo) {
	if len(m.dense) != n {
		m.dense = make([]float64, n)
	}
	m.tape.reset(m.g.fwd.Method(), n, true, 1)
	return m.hook
}

func (m *gqInterpMethod) record(si *StepInfo) {
	m.tape.push(si, m.g.piece)
}

func (m *gqInterpMethod) backwardState(n, p int) (backwardSpec, error) {
	return backwardSpec{total: n, groups: []Group{{Name: "a", Start: 0, End: n, Weight: 1}}}, nil
}

func (m *gqInterpMethod) backward() error            { return m.q.backward(m.f, m) }
func (m *gqInterpMethod) timeGradients(ts []float64) { m.g.pointTimeGradients(ts) }

// rhs is the adjoint dynamics da/dt = −aᵀ∂f/∂z(t, z(t)) with z(t) from
// the forward solve's dense output.
func (m *gqInterpMethod) rhs(t float64, a, da []float64) { m.rhsTime(t, a, da, nil) }

func (m *gqInterpMethod) rhsTime(t float64, a, da []float64, gt *float64) {
	g := m.g
	z := m.forwardAt(t)
	g.ev.VJP(t, z, g.negate(a), nil, da, nil, gt)
}

// forwardAt evaluates the forward solve's dense output at t into m.dense.
func (m *gqInterpMethod) forwardAt(t float64) []float64 {
	s, theta, _ := m.tape.locate(t)
	m.tape.at(s, theta, m.dense)
	return m.dense
}

// observe adds ∂L/∂z at grid row i to a.
func (m *gqInterpMethod) observe(y []float64, i int) {
	n := m.g.n
	Axpy(1, m.g.gridGrad[i*n:(i+1)*n], y)
}

// node stores a from the backward output row and z from the forward dense output.
func (m *gqInterpMethod) node(row []float64, tau float64) {
	m.q.nodeA = append(m.q.nodeA, row...)
	m.q.nodeZ = append(m.q.nodeZ, m.forwardAt(tau)...)
}

func (m *gqInterpMethod) adjoint(y []float64) []float64 { return y }

// gqBackward is what the two quadrature methods differ in: the backward
// state and where z at a node comes from.
type gqBackward interface {
	// observe prepares the backward state y at grid row i: a gains ∂L/∂z(t_i)
	// and a carried z is reset to the forward state.
	observe(y []float64, i int)
	// node stores z(τ) and a(τ), given the backward solve's output row at τ.
	node(row []float64, tau float64)
	// adjoint returns the part of the backward state that is a.
	adjoint(y []float64) []float64
	// rhsTime is the backward right-hand side that also writes the time
	// adjoint's derivative (−a)ᵀ∂f/∂t into *gt, from the same product.
	rhsTime(t float64, y, dy []float64, gt *float64)
}

// gqQuadrature collects the Gauss–Legendre nodes of a backward pass and
// evaluates dL/dθ = Σ_k W_k·a(τ_k)ᵀ ∂f/∂θ(τ_k, z(τ_k)) over them.
type gqQuadrature struct {
	g                          *gradState
	nodeT, nodeW, nodeZ, nodeA []float64
	extra                      []float64 // node times of the current interval
	chunkGrads                 [][]float64
	chunkEvals                 []Evaluator
	chunksNow                  int
	fChunk                     func(int) // q.chunk, bound once
}

func (q *gqQuadrature) init(g *gradState) {
	q.g = g
	q.fChunk = q.chunk
}

// nodes returns the node count of interval i by the published rule
// n_i = min(ceil(C·NFE_fwd·|Δ_i|/|t_M − t_0|), Cap), at least 1.
func (q *gqQuadrature) nodes(i int) int {
	g := q.g
	grid := g.grid
	span := math.Abs(grid[len(grid)-1] - grid[0])
	c := g.opts.GQ.C * float64(g.res.Stats.Forward.NFE) * math.Abs(grid[i]-grid[i-1]) / span
	k := math.Ceil(c)
	if k > float64(g.opts.GQ.Cap) {
		return g.opts.GQ.Cap
	}
	if k < 1 {
		return 1
	}
	return int(k)
}

// backward solves the backward state with f interval by interval,
// collects z and a at the Gauss–Legendre nodes of every interval, then
// evaluates the parameter products of all nodes together.
func (q *gqQuadrature) backward(f Func, v gqBackward) error {
	g := q.g
	n := g.n
	y, first, err := g.beginBackward()
	if err != nil {
		return err
	}
	total := len(y)
	r := &g.res
	q.nodeT, q.nodeW = q.nodeT[:0], q.nodeW[:0]
	q.nodeZ, q.nodeA = q.nodeZ[:0], q.nodeA[:0]
	ts := g.grid
	for i := len(ts) - 1; i >= 1; i-- {
		g.selectPiece(ts[i-1], ts[i])
		v.observe(y, i)
		k := q.nodes(i)
		rule, err := GaussLegendre(k)
		if err != nil {
			return err
		}
		half, mid := (ts[i]-ts[i-1])/2, (ts[i]+ts[i-1])/2
		// Nodes in the order the backward solve meets them: from t_i toward t_{i−1}.
		q.extra = q.extra[:0]
		for j := k - 1; j >= 0; j-- {
			q.extra = append(q.extra, half*rule.Nodes[j]+mid)
		}
		if !strictlyBetween(q.extra, ts[i], ts[i-1]) {
			// The interval is too short for k distinct nodes in float64
			// (a few ulps): one node at t_i with weight Δ, exact to
			// O(Δ²), from the state the solve starts from.
			q.nodeT = append(q.nodeT, ts[i])
			q.nodeW = append(q.nodeW, ts[i]-ts[i-1])
			v.node(y, ts[i])
			if err := g.solveInterval(f, y, ts[i], ts[i-1], nil, first, nil); err != nil {
				return err
			}
			first = g.nextFirstStep()
			continue
		}
		for j := k - 1; j >= 0; j-- {
			q.nodeT = append(q.nodeT, half*rule.Nodes[j]+mid)
			q.nodeW = append(q.nodeW, half*rule.Weights[j])
		}
		if err := g.solveInterval(f, y, ts[i], ts[i-1], q.extra, first, nil); err != nil {
			return err
		}
		for j := 1; j <= k; j++ {
			v.node(g.augOut[j*total:(j+1)*total], q.extra[j-1])
		}
		first = g.nextFirstStep()
	}
	r.Stats.QuadratureNodes = len(q.nodeT)
	r.Stats.VJPs = r.Stats.Backward.NFE + len(q.nodeT)
	copy(r.Z0, v.adjoint(y))
	Axpy(1, g.gridGrad[:n], r.Z0)
	// Cotangents W_k·a(τ_k): dL/dθ = Σ_k W_k·a(τ_k)ᵀ ∂f/∂θ(τ_k, z(τ_k)).
	for k, w := range q.nodeW {
		Scale(w, q.nodeA[k*n:(k+1)*n])
	}
	return q.sum()
}

// strictlyBetween reports whether x runs strictly monotonically from just
// after from to just before to (either direction of time).
func strictlyBetween(x []float64, from, to float64) bool {
	dir := math.Copysign(1, to-from)
	prev := from
	for _, v := range x {
		if !((v-prev)*dir > 0) {
			return false
		}
		prev = v
	}
	return (to-prev)*dir > 0
}

// quadChunks is the number of chunks the quadrature nodes are split into.
// It is fixed, independent of GOMAXPROCS and of the worker count, so that
// the summation order, and with it every bit of the result, is too.
const quadChunks = 4

// quadSerialWork is the amount of work (nodes · batch · parameters) below
// which the chunks run on the calling goroutine: waking a helper costs
// microseconds, a node's product on a small network less, and a fanned-out
// chunk's own evaluator packs its own copy of the weights. Chosen by
// TestCalibrateQuadrature (no gain from fanning out up to 1.4·10⁶ on the
// AVX-512 kernels); see calibrate.md.
var quadSerialWork = 1 << 21

// sum evaluates Σ_k (W_k a_k)ᵀ ∂f/∂θ(τ_k, z_k) into g.res.Params.
// The nodes are split into quadChunks contiguous chunks; each chunk sums into
// its own buffer and the buffers are added in chunk order. Autonomous fields
// take a whole chunk as one large batch.
func (q *gqQuadrature) sum() error {
	g := q.g
	nodes := len(q.nodeT)
	if nodes == 0 {
		return nil
	}
	chunks := min(quadChunks, nodes)
	for len(q.chunkGrads) < chunks {
		q.chunkGrads = append(q.chunkGrads, make([]float64, g.p))
		q.chunkEvals = append(q.chunkEvals, g.field.NewEvaluator())
	}
	for c := 0; c < chunks; c++ {
		// θ is constant here: the evaluator may pack its weights once.
		freezeParams(q.chunkEvals[c], true)
		if len(q.chunkGrads[c]) != g.p {
			q.chunkGrads[c] = make([]float64, g.p)
		}
		clear(q.chunkGrads[c])
	}
	q.chunksNow = chunks
	rows := g.n / g.dim
	if !isTimeDependent(g.field) {
		rows *= (nodes + chunks - 1) / chunks
	}
	if err := g.runChunks(q.chunkEvals[0], chunks, rows, nodes*g.n*g.p, q.fChunk); err != nil {
		return err
	}
	gp := g.res.Params
	for c := 0; c < chunks; c++ {
		Axpy(1, q.chunkGrads[c], gp)
	}
	return nil
}

// chunk evaluates the parameter products of quadrature chunk c into its
// own buffer.
func (q *gqQuadrature) chunk(c int) {
	g := q.g
	nodes, chunks, n := len(q.nodeT), q.chunksNow, g.n
	lo, hi := c*nodes/chunks, (c+1)*nodes/chunks
	ev, gp := q.chunkEvals[c], q.chunkGrads[c]
	if g.chunkSerial {
		ev = g.ev
	}
	if !isTimeDependent(g.field) {
		// One product over the whole chunk as a single large batch.
		ev.VJP(0, q.nodeZ[lo*n:hi*n], q.nodeA[lo*n:hi*n], nil, nil, gp, nil)
		return
	}
	for k := lo; k < hi; k++ {
		ev.VJP(q.nodeT[k], q.nodeZ[k*n:(k+1)*n], q.nodeA[k*n:(k+1)*n], nil, nil, gp, nil)
	}
}

// runChunks runs task(0 … chunks−1), the quadrature chunks, serially or
// fanned out over at most opts.Workers (default GOMAXPROCS) goroutines.
// They run serially when the work (multiply–adds) is below quadSerialWork,
// or when the field already splits one chunk's product of the given rows
// over the cores itself (ev0 is a chunk's evaluator), since fanning out as
// well would only oversubscribe them. The result does not depend on the
// choice: every chunk sums into its own buffer.
func (g *gradState) runChunks(ev0 Evaluator, chunks, rows, work int, task func(int)) error {
	workers := g.opts.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, chunks)
	if sp, ok := findEvaluator[interface{ splits(rows int) bool }](ev0); ok && sp.splits(rows) {
		workers = 1
	}
	if workers <= 1 || work < quadSerialWork {
		g.chunkSerial = true
		defer func() { g.chunkSerial = false }()
		for c := 0; c < chunks; c++ {
			task(c)
		}
		return nil
	}
	return fanOut(g.pool, workers, chunks, task)
}

// fanOut runs task(c) for c in [0, tasks) on at most the given number of
// goroutines (the caller's and the pool's helpers), each task once. A panic
// in a task is recovered and returned as an error wrapping ErrPanic, never
// left to crash the process.
func fanOut(pool *taskPool, workers, tasks int, task func(int)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError("a quadrature worker", p)
		}
	}()
	pool.limit = workers
	pool.run(tasks, task)
	return nil
}

// Error-controlled Gauss–Legendre quadrature adjoint (GQAdaptive,
// GQAdaptiveInterp).
//
// The backward pass is that of GQAdjoint (GQInterpAdjoint): [z, a] (a alone)
// is solved backward interval by interval with [z, a] (a) in the error norm,
// but instead of stopping at pre-computed nodes every accepted backward step
// is recorded with its dense output, so that z(τ) and a(τ) are available
// at any τ afterwards. The backward state carries one more channel, the
// shift q' = −Σ_b a_b, in its error norm (see gqaMethod.rhs): without it the
// [z, a] norm alone can let the steps run longer than the adjoint's, whose
// parameter channels also bound them, and the quadrature then inherits the
// coarser [z, a] solution (case1 at 1e-8: 7× the adjoint's error). The
// nodes read the steps' dense output, or (GQAdaptive with a fifth-order
// tableau) on a step whose dense output is less accurate than the solve
// itself (its size set by the growth limit, not by its error), a
// fifth-order interpolant that costs two evaluations (see refine).
// dL/dθ = ∫ a(τ)ᵀ ∂f/∂θ(τ, z(τ)) dτ is then integrated on each observation
// interval (between break points) by an adaptive Gauss–Legendre rule whose
// node count is set by the backward tolerances:
//
//  1. A panel (initially the whole interval) gets an n-point Gauss rule,
//     one node per backward step on the interval and at least one per
//     digit asked, n = max(4, steps, ⌈log₁₀(1/rtol)⌉) — or at least 6 on
//     an interval crossed in one or two steps (see gqaFirstRule). From six
//     nodes on, the node products also give the top Legendre coefficients
//     T_j of the integrand's interpolant (degrees n−4 … n−1, per
//     parameter). A Gauss rule errs by about its first non-integrated
//     coefficient, T_{2n} ≈ T_{n−1}·ρ^{(n+1)/2} with ρ the decay over two
//     degrees (or T_{n−1} itself without a clear decay). If 10× that is
//     within the tolerance of every parameter block, the Gauss value is
//     accepted: n products, the cost of the published rule with the same
//     n. Rules of four or five nodes go straight to step 3.
//  2. If the top coefficients exceed half of ∫|g| the integrand is not
//     resolved at all: a fresh rule of twice the size (at most twice).
//  3. Otherwise the n+1 Kronrod nodes of the Gauss–Kronrod extension are
//     added (the Gauss products are reused); |K − G| estimates G's error
//     ε, and K (exact to degree 3n+1) is accepted if its estimated error
//     ε·sqrt(ε/|K|) is within the tolerance (see kronrodOK).
//  4. Otherwise the panel is bisected and each half starts at step 1.
//
// The tolerance of block b (each tensor of ParamTensors, or all parameters)
// is the scaled RMS norm of the solves: sqrt(mean_i (e_i/(atol·ℓ +
// rtol·|I_i|))²) ≤ 1 with the backward rtol, atol, I the panel's integral
// and ℓ the panel's fraction of its interval.
//
// Cost. Backward: the same [z, a] solve as GQAdjoint (per evaluation a
// vector–Jacobian product without the weight gradient: two matrix products
// per layer where the adjoints' product with the weight gradient has
// three). Quadrature: one parameter product per node (forward pass, reverse
// sweep and weight gradient: three products per layer), n per accepted
// Gauss panel, 2n+1 per Kronrod panel, plus seven sums over the P
// parameters per node for the value and the estimates (one pass, eight
// lanes at a time on AVX-512; from stored products when n·P is small);
// the published rule pays ⌈C·NFE_fwd·Δ/T⌉ (5 at C = 0.1 on a
// 50-evaluation solve), and refine two evaluations per refined step. The
// adaptive rule therefore costs less than the seminorm adjoint only while
// its nodes stay below about a third of the backward evaluations (the
// weight-gradient product the adjoints add to every evaluation, each node
// costing about three): the first rule's Kronrod extension has about two
// nodes per backward step, against six evaluations per Dormand–Prince
// step (on the wscale-3 perf cases 9 / 15–17 / 33–39 nodes against 26–32
// / 50–62 / 104–122 evaluations at 1e-4 / 1e-6 / 1e-8). Intervals crossed
// in one or two steps need six or more nodes each, more than the adjoints
// spend there. Memory: the
// backward steps with their dense output, O(steps·stages·B·D), like
// GQInterpAdjoint's forward record, and one buffer of stored node products
// (at most gqaStoreMax values, 16 MiB).
//
// The quadrature runs over the intervals in quadChunks fixed tasks, each
// summing into its own buffer (added in task order) with one evaluator,
// so the result does not depend on GOMAXPROCS; nothing is allocated in
// steady state.

// gqaMaxDepth bounds the bisections of a panel; at this depth (a panel
// 2⁻¹² of its interval) the Kronrod value is accepted as it is.
const gqaMaxDepth = 12

// gqaMaxN bounds the Gauss nodes of a panel.
const gqaMaxN = 48

// gqaMinN is the smallest Gauss rule judged by its own Legendre
// coefficients: the decay of the top four is meaningless for fewer nodes.
const gqaMinN = 6

// gqaMinRule is the smallest Gauss rule; below gqaMinN nodes only its
// Kronrod extension judges it.
const gqaMinRule = 4

// gqaRetries bounds the fresh Gauss rules a panel tries before its
// Kronrod extension and bisection.
const gqaRetries = 2

// gqaSafety multiplies the decay-predicted error of step 1.
const gqaSafety = 10

// gqaResolved is the largest top Legendre coefficient, relative to ∫|g|,
// at which the integrand counts as resolved by a Gauss rule; beyond it the
// rule sees an oscillation it cannot follow, and a rule of twice the size
// beats the Kronrod extension and bisection.
const gqaResolved = 0.5

// gqaTimeChannel puts the time channel in gq-adaptive's backward norm for
// time-dependent fields (see gqaMethod.rhs); a variable so that tests can
// switch it off.
var gqaTimeChannel = true

// gqaMethod is GradMethod GQAdaptive or GQAdaptiveInterp. It shares the
// published methods' backward ODE (its base: the state, its norm, the
// observation jumps, the right-hand side and, for the interp variant, the
// forward record) and replaces their fixed nodes by an error-controlled
// quadrature on the recorded backward steps.
type gqaMethod struct {
	g      *gradState
	base   gqaBase
	extra  int             // channels after the base's state: shift (D), time (1, if timeCh)
	timeCh bool            // the field is time-dependent: the time channel is in the norm
	fShift Func            // m.rhs, bound once: f plus the shift channel
	fwd    *stepRecord     // forward record (interp variant), else nil
	tape   stepRecord      // backward steps of every interval, in solve order
	hook   func(*StepInfo) // m.record, bound once
	fChunk func(int)       // m.chunk, bound once

	first, last []int // tape steps of grid interval i: [first[i], last[i])
	nodes0      []int // first Gauss rule size of interval i
	blocks      []int // parameter block boundaries, len = blocks+1
	chunks      []*gqaChunk
	nChunks     int
	rtol, atol  float64

	store []float64 // the stored products when the chunks run serially

	// Fifth-order node values on the backward steps whose dense output is
	// the weak link (see refine): fine[s] is the offset in fineData of
	// step s's y1 − y0, f(⅓), f(⅔) (three state vectors), or −1.
	fine      []int
	fineData  []float64
	fineU     []float64 // refine's scratch: z differences, the dense output at ⅓ or ⅔
	fineEvals int

	// The pass being split over g.vecPool (see split): only when the
	// chunks run serially, so one at a time. Its operands (a node's
	// update, a stage's stored products, an Axpy's) and the range
	// functions reading them, bound once so that a split allocates nothing.
	cur                              *gqaNodeSums
	curStored                        *gqaStoredSums
	axAlpha                          float64
	axX, axY                         []float64
	sumRange, storedRange, axpyRange func(lo, hi int)
	splitF                           func(lo, hi int)
	splitN                           int
	splitTask                        func(int)
}

// gqaNodeSums adds one Gauss node's weighted parameter product v to the
// seven sums of a stage (Gauss, Kronrod, Gauss of |g|, four Legendre tail
// coefficients), or sets them from it for the stage's first node.
type gqaNodeSums struct {
	v, ig, sk, ab         []float64
	t0, t1, t2, t3        []float64
	w, wk, c0, c1, c2, c3 float64
	first                 bool
}

// apply updates the sums over [lo, hi): one pass over the product for all
// seven (on large networks seven separate passes cost a few per cent of
// the gradient). Each element is computed alone, so any split gives the
// same sums.
func (a *gqaNodeSums) apply(lo, hi int) {
	if m := (hi - lo) &^ 7; useAVX512 && m > 0 {
		// Eight components at a time on AVX-512, the rest below. The
		// kernel reads and writes [lo, lo+m) of every slice: checked here.
		_, _, _, _ = a.v[lo+m-1], a.ig[lo+m-1], a.sk[lo+m-1], a.ab[lo+m-1]
		_, _, _, _ = a.t0[lo+m-1], a.t1[lo+m-1], a.t2[lo+m-1], a.t3[lo+m-1]
		coef := [6]float64{a.w, a.wk, a.c0, a.c1, a.c2, a.c3}
		out := [7]*float64{&a.ig[lo], &a.sk[lo], &a.ab[lo], &a.t0[lo], &a.t1[lo], &a.t2[lo], &a.t3[lo]}
		gqaNodeAVX512(&a.v[lo], m, &coef[0], &out, a.first)
		lo += m
	}
	v := a.v[lo:hi]
	ig, sk, ab := a.ig[lo:hi][:len(v)], a.sk[lo:hi][:len(v)], a.ab[lo:hi][:len(v)]
	t0, t1, t2, t3 := a.t0[lo:hi][:len(v)], a.t1[lo:hi][:len(v)], a.t2[lo:hi][:len(v)], a.t3[lo:hi][:len(v)]
	w, wk, c0, c1, c2, c3 := a.w, a.wk, a.c0, a.c1, a.c2, a.c3
	if a.first {
		for j, g := range v {
			ig[j], sk[j], ab[j] = w*g, wk*g, math.Abs(w*g)
			t0[j], t1[j], t2[j], t3[j] = c0*g, c1*g, c2*g, c3*g
		}
		return
	}
	for j, g := range v {
		ig[j] += float64(w * g)
		sk[j] += float64(wk * g)
		ab[j] += math.Abs(float64(w * g))
		t0[j] += float64(c0 * g)
		t1[j] += float64(c1 * g)
		t2[j] += float64(c2 * g)
		t3[j] += float64(c3 * g)
	}
}

// gqaStoreMax bounds the stored node products of one Gauss stage
// (elements; 16 MiB, the one buffer of a gradient solver): larger stages,
// and quadrature chunks that fan out, update the sums node by node.
const gqaStoreMax = 1 << 21

// gqaStoredSums forms a Gauss stage's seven sums from its n stored node
// products vs (node k at vs[k·p:(k+1)·p]) in one pass: the same operations
// in the same order as n calls of gqaNodeSums.apply, so the same sums (up
// to the payload of a NaN, which stays a NaN).
type gqaStoredSums struct {
	vs             []float64
	p, n           int
	ig, sk, ab     []float64
	t0, t1, t2, t3 []float64
	coef           [6 * gqaMaxN]float64 // w, wk, c0…c3 of node k at 6k…6k+5
}

// apply forms the sums over [lo, hi). The products are rounded explicitly
// (float64), as in gqaNodeSums.apply, so that a compiler that fuses
// multiply–adds cannot make the two paths differ.
func (a *gqaStoredSums) apply(lo, hi int) {
	if m := (hi - lo) &^ 7; useAVX512 && m > 0 {
		// Eight components at a time on AVX-512, the rest below. The
		// kernel reads and writes [lo, lo+m) of every slice: checked here.
		_ = a.vs[(a.n-1)*a.p+lo+m-1]
		_, _, _, _ = a.ig[lo+m-1], a.sk[lo+m-1], a.ab[lo+m-1], a.t0[lo+m-1]
		_, _, _ = a.t1[lo+m-1], a.t2[lo+m-1], a.t3[lo+m-1]
		out := [7]*float64{&a.ig[lo], &a.sk[lo], &a.ab[lo], &a.t0[lo], &a.t1[lo], &a.t2[lo], &a.t3[lo]}
		gqaSumsAVX512(&a.vs[lo], a.p, a.n, m, &a.coef[0], &out)
		lo += m
	}
	ig, sk, ab := a.ig[lo:hi], a.sk[lo:hi], a.ab[lo:hi]
	t0, t1, t2, t3 := a.t0[lo:hi][:len(ig)], a.t1[lo:hi][:len(ig)], a.t2[lo:hi][:len(ig)], a.t3[lo:hi][:len(ig)]
	sk, ab = sk[:len(ig)], ab[:len(ig)]
	p, n := a.p, a.n
	for j := range ig {
		g, c := a.vs[lo+j], a.coef[0:6:6]
		sig, ssk, sab := float64(c[0]*g), float64(c[1]*g), math.Abs(float64(c[0]*g))
		s0, s1, s2, s3 := float64(c[2]*g), float64(c[3]*g), float64(c[4]*g), float64(c[5]*g)
		for k := 1; k < n; k++ {
			g, c = a.vs[k*p+lo+j], a.coef[6*k:6*k+6:6*k+6]
			sig += float64(c[0] * g)
			ssk += float64(c[1] * g)
			sab += math.Abs(float64(c[0] * g))
			s0 += float64(c[2] * g)
			s1 += float64(c[3] * g)
			s2 += float64(c[4] * g)
			s3 += float64(c[5] * g)
		}
		ig[j], sk[j], ab[j] = sig, ssk, sab
		t0[j], t1[j], t2[j], t3[j] = s0, s1, s2, s3
	}
}

// splits reports whether a pass over n values is split over g.vecPool:
// only when the quadrature runs serially (the chunks fanned out share no
// pool) and n is long. Only then may the pass's operands sit in m's fields
// (cur, curStored, ax*) for the range functions: serially one pass runs at
// a time, while fanned-out chunks share m and must pass their operands
// directly. Every pass is elementwise, so the split changes no result.
func (m *gqaMethod) splits(n int) bool {
	g := m.g
	return g.chunkSerial && g.vecPool != nil && n >= vecParallelMin
}

// split runs f over [0, n) in fixed chunks of vecChunk on g.vecPool (see
// splits).
func (m *gqaMethod) split(n int, f func(lo, hi int)) {
	m.splitF, m.splitN = f, n
	m.g.vecPool.run((n+vecChunk-1)/vecChunk, m.splitTask)
	m.splitF = nil
}

func (m *gqaMethod) splitChunk(i int) {
	m.splitF(i*vecChunk, min((i+1)*vecChunk, m.splitN))
}

// applyStored forms a stage's sums from its stored products.
func (m *gqaMethod) applyStored(u *gqaStoredSums) {
	if !m.splits(u.p) {
		u.apply(0, u.p)
		return
	}
	m.curStored = u
	m.split(u.p, m.storedRange)
	m.curStored = nil
}

// applySums adds one node's product to the stage's sums.
func (m *gqaMethod) applySums(u *gqaNodeSums) {
	if !m.splits(len(u.v)) {
		u.apply(0, len(u.v))
		return
	}
	m.cur = u
	m.split(len(u.v), m.sumRange)
	m.cur = nil
}

// axpy is Axpy(alpha, x, y): a Kronrod node's share of the sum, or an
// accepted panel's value.
func (m *gqaMethod) axpy(alpha float64, x, y []float64) {
	if !m.splits(len(x)) {
		Axpy(alpha, x, y)
		return
	}
	m.axAlpha, m.axX, m.axY = alpha, x, y
	m.split(len(x), m.axpyRange)
	m.axX, m.axY = nil, nil
}

// gqaBase is what the adaptive methods take from GQAdjoint / GQInterpAdjoint.
type gqaBase interface {
	gradStrategy
	gqBackward
}

func newGQAdaptiveMethod(g *gradState) gradStrategy {
	b := newGQMethod(g).(*gqMethod)
	return newGQA(g, b, nil)
}

func newGQAdaptiveInterpMethod(g *gradState) gradStrategy {
	b := newGQInterpMethod(g).(*gqInterpMethod)
	return newGQA(g, b, &b.tape)
}

func newGQA(g *gradState, b gqaBase, fwd *stepRecord) *gqaMethod {
	m := &gqaMethod{g: g, base: b, fwd: fwd}
	m.hook, m.fChunk, m.fShift = m.record, m.chunk, m.rhs
	m.splitTask = m.splitChunk
	m.sumRange = func(lo, hi int) { m.cur.apply(lo, hi) }
	m.storedRange = func(lo, hi int) { m.curStored.apply(lo, hi) }
	m.axpyRange = func(lo, hi int) { Axpy(m.axAlpha, m.axX[lo:hi], m.axY[lo:hi]) }
	return m
}

func (m *gqaMethod) forward(n int) func(*StepInfo) { return m.base.forward(n) }

// backwardState is the base's state followed by the shift channel (D pure
// quadratures) and, for a time-dependent field, the time channel (one),
// each in a group of its own (see gqaMethod.rhs).
func (m *gqaMethod) backwardState(n, p int) (backwardSpec, error) {
	spec, err := m.base.backwardState(n, p)
	if err != nil {
		return spec, err
	}
	d := m.g.dim
	m.extra = d
	spec.groups = append(append([]Group(nil), spec.groups...), Group{Name: "shift", Start: spec.total, End: spec.total + d, Weight: 1})
	if m.timeCh = gqaTimeChannel && isTimeDependent(m.g.field); m.timeCh {
		spec.groups = append(spec.groups, Group{Name: "time", Start: spec.total + d, End: spec.total + d + 1, Weight: 1})
		m.extra++
	}
	spec.total += m.extra
	spec.tail += m.extra
	return spec, nil
}

// rhs is the base's backward dynamics plus the shift channel
// d/dt q = −Σ_b a_b (the batch rows of a summed): the parameter adjoint of
// a constant c added to f, ∂f/∂c = I, which every field could have. Its
// error estimate is the adjoint's for such a parameter, so the backward
// steps shrink where the gradient integral changes fast, as the adjoint's
// do (the adjoint's binding group is often the output bias, whose integrand
// is exactly this sum), at B·D additions per evaluation instead of the
// weight-gradient product. The quadrature, not q, gives dL/dθ.
//
// For a time-dependent field the time channel d/dt q_t = −aᵀ∂f/∂t joins
// them: the full adjoint's time adjoint, also a pure quadrature, which the
// seminorm adjoint leaves out of its norm and the adjoint keeps. Where the
// adjoint is the more accurate of the two on time-input problems, it is
// this channel that shrinks its steps (a 6x64x16 tanh problem at 1e-6: the
// seminorm with it takes the adjoint's 117 evaluations instead of 81 and
// matches its error, 8.7e-6 against 3.3e-5), so gq-adaptive keeps it, at
// one more column of the input product per evaluation.
func (m *gqaMethod) rhs(t float64, y, dy []float64) {
	d := m.g.dim
	nb := len(y) - m.extra
	var gt *float64
	if m.timeCh {
		gt = &dy[nb+d]
	}
	m.base.rhsTime(t, y[:nb], dy[:nb], gt)
	a := m.base.adjoint(y[:nb])
	dq := dy[nb : nb+d]
	clear(dq)
	for b := 0; b < len(a); b += d {
		for j, v := range a[b : b+d] {
			dq[j] -= v
		}
	}
}
func (m *gqaMethod) timeGradients(ts []float64) { m.base.timeGradients(ts) }
func (m *gqaMethod) record(si *StepInfo)        { m.tape.push(si, 0) }

// gqaChunk is the workspace of one quadrature task.
type gqaChunk struct {
	ev                      Evaluator
	use                     Evaluator     // ev, or g.ev when the chunks run serially
	upd                     gqaNodeSums   // the current node's update of the stage's sums
	stored                  gqaStoredSums // or the stage's stored products and weights
	sum                     []float64     // integral over the task's intervals
	gk, ig, sk, ab          []float64     // node product, Gauss sum, Kronrod sum, Gauss sum of |g|
	tail                    [4][]float64
	y, z                    []float64   // interpolated backward and forward states
	ipB, ipF                interpolant // backward and forward dense output
	kvB, kvF                [][]float64
	stack                   []gqaPanel
	nodes, kronrod, retries int
	bisections, capped      int
}

type gqaPanel struct {
	lo, hi float64 // panel ends, in the interval's forward orientation
	frac   float64 // panel length / interval length
	depth  int
}

// setBlocks splits the parameters into the field's tensors (one block if
// it has no ParamTensors or their sizes do not add up).
func (m *gqaMethod) setBlocks() {
	g := m.g
	if len(m.blocks) >= 2 && m.blocks[len(m.blocks)-1] == g.p {
		// Set by an earlier gradient of the same field: ParamSizes
		// allocates its answer, and the tensors do not change.
		return
	}
	m.blocks = append(m.blocks[:0], 0)
	if pt, ok := g.field.(ParamTensors); ok {
		off := 0
		for _, sz := range pt.ParamSizes() {
			off += sz
			m.blocks = append(m.blocks, off)
		}
		if off == g.p {
			return
		}
		m.blocks = m.blocks[:1]
	}
	m.blocks = append(m.blocks, g.p)
}

// backward solves the base's backward state interval by interval,
// recording every accepted step, then integrates dL/dθ over the intervals.
func (m *gqaMethod) backward() error {
	y, first, err := m.g.beginBackward()
	if err != nil {
		return err
	}
	g, n := m.g, m.g.n
	nb := len(y) - m.extra // the base's state, without the shift and time channels
	m.setBlocks()
	m.rtol, m.atol = g.bwd.rtol, g.bwd.atol
	m.tape.reset(g.bwd.Method(), nb, true, 1)
	m.fine, m.fineData, m.fineEvals = m.fine[:0], m.fineData[:0], 0
	grid := g.grid
	nGrid := len(grid)
	m.first, m.last, m.nodes0 = resizeInts(m.first, nGrid), resizeInts(m.last, nGrid), resizeInts(m.nodes0, nGrid)
	r := &g.res
	for i := nGrid - 1; i >= 1; i-- {
		g.selectPiece(grid[i-1], grid[i])
		m.base.observe(y, i)
		m.first[i] = m.tape.steps()
		if err := g.solveInterval(m.fShift, y, grid[i], grid[i-1], nil, first, m.hook); err != nil {
			return err
		}
		m.last[i] = m.tape.steps()
		m.nodes0[i] = gqaFirstRule(m.last[i]-m.first[i], m.rtol)
		m.refine(i, y[:nb])
		first = g.nextFirstStep()
	}
	r.Stats.Backward.NFE += m.fineEvals
	copy(r.Z0, m.base.adjoint(y[:nb]))
	Axpy(1, g.gridGrad[:n], r.Z0)
	if err := m.quadrature(nGrid - 1); err != nil {
		return err
	}
	r.Stats.VJPs = r.Stats.Backward.NFE + r.Stats.QuadratureNodes
	return nil
}

// gqaDenseRatio is how far a backward step's dense-output error estimate
// may exceed the backward solve's measured error before refine gives the
// step fifth-order node values. (A variable so that tests can switch
// refine off.) On the wscale-3 perf cases the ratio stays below 1.5 at
// every tolerance; where the dense output is the weak link it is 10–15;
// 3 sits between values seen (2.3 and 3.8), not at one.
var gqaDenseRatio = 3.0

// refine gives fifth-order node values to the backward steps of interval i
// whose dense output is less accurate than the solve itself.
//
// The nodes read the Dormand–Prince dense output, fourth order: inside a
// step it errs by about the step's local error estimate δ = ‖h·Σ E_j k_j‖,
// while the step's ends carry the fifth-order solution, which the adjoints
// integrate with. Where the steps are error-controlled the two are alike
// and the solve's accumulated error ε dominates; where a step is far
// shorter in error than the tolerance allows (its size set by the growth
// limit or the interval's end) δ can exceed ε ten- to fifteenfold and the
// quadrature then reads values far worse than the solve's (case1 at 1e-6:
// 1.8× the adjoints' error before any quadrature error). ε is measured for
// free: the backward solve's z at the interval's start against the forward
// solution there. On a step with δ > gqaDenseRatio·ε the values come from
// the quintic with p(0) = y0, p(1) = y1, p′ = h·f at θ = 0, ⅓, ⅔, 1, f at ⅓
// and ⅔ evaluated on the dense output (two evaluations; a bootstrapped
// interpolant, Enright et al. 1986: the fourth-order values inside f give
// fifth-order derivative data). Only GQAdaptive (GQAdaptiveInterp's
// backward state has no z to measure ε with) and only for tableaus of
// order 5 and more with an error estimate (Dormand–Prince, Tsitouras).
func (m *gqaMethod) refine(i int, y []float64) {
	g, tp := m.g, &m.tape
	for s := m.first[i]; s < m.last[i]; s++ {
		m.fine = append(m.fine, -1)
	}
	tb := tp.tb
	if m.fwd != nil || !tb.Adaptive() || tb.Order < 5 {
		// The interp variant has no z to measure ε with; below fifth
		// order the step's ends are no more accurate than its dense output.
		return
	}
	n, nb := g.n, tp.n
	if len(m.fineU) != nb {
		m.fineU = make([]float64, nb)
	}
	// ε: the relative distance of the backward z from the forward one.
	zf, d := g.gridStates[(i-1)*n:i*n], m.fineU[:n]
	copy(d, y[:n])
	Axpy(-1, zf, d)
	z2 := Dot(zf, zf)
	if !(z2 > 0) {
		return
	}
	eps := math.Sqrt(Dot(d, d) / z2)
	for s := m.first[i]; s < m.last[i]; s++ {
		// δ: the step's error estimate h·Σ E_j k_j on z, relative.
		h, y0 := tp.h[s], tp.y0(s)
		e := m.fineU[:n]
		clear(e)
		for k, w := range tb.E {
			if w != 0 {
				Axpy(h*w, tp.vec(s, 1+k)[:n], e)
			}
		}
		y2 := Dot(y0[:n], y0[:n])
		if !(y2 > 0) || !(math.Sqrt(Dot(e, e)/y2) > gqaDenseRatio*eps) {
			continue
		}
		off := len(m.fineData)
		m.fineData = slices.Grow(m.fineData, 3*nb)[:off+3*nb]
		dy, fa, fb := m.fineData[off:off+nb], m.fineData[off+nb:off+2*nb], m.fineData[off+2*nb:off+3*nb]
		tp.atWith(&tp.interp, tp.kv, s, 1, dy)
		Axpy(-1, y0, dy)
		for k, dst := range [2][]float64{fa, fb} {
			th := float64(k+1) / 3
			tp.atWith(&tp.interp, tp.kv, s, th, m.fineU)
			m.base.rhsTime(tp.t[s]+th*h, m.fineU, dst, nil)
		}
		m.fineEvals += 2
		m.fine[s] = off
	}
}

// fineAt writes the refined value of tape step s at fraction θ into dst:
// the quintic of refine, p(θ) = y0 + w_Δ·(y1 − y0) + h·(w_0 f0 + w_1 f1 +
// w_⅓ f(⅓) + w_⅔ f(⅔)), weights from solving its five conditions.
func (m *gqaMethod) fineAt(s int, th float64, dst []float64) {
	tp := &m.tape
	nb := tp.n
	off := m.fine[s]
	dy, fa, fb := m.fineData[off:off+nb], m.fineData[off+nb:off+2*nb], m.fineData[off+2*nb:off+3*nb]
	f0, f1 := tp.vec(s, 1), tp.vec(s, tp.nk)
	u, v := th-1, 3*th
	wd := -th * th * (((54*th-135)*th+110)*th - 30)
	w0 := th * u * u * (((27*th - 18) * th) + 4) / 4
	w1 := th * th * u * ((27*th-36)*th + 13) / 4
	wa := 27 * th * th * u * u * (v - 1) / 4
	wb := 27 * th * th * u * u * (v - 2) / 4
	h := tp.h[s]
	for j, y0 := range tp.y0(s) {
		dst[j] = y0 + wd*dy[j] + h*(w0*f0[j]+w1*f1[j]+wa*fa[j]+wb*fb[j])
	}
}

// gqaFirstRule is the Gauss rule size an interval starts with: one node per
// backward step taken on it (the steps follow the dynamics of [z, a], and
// with them the integrand's; on long intervals the dense output the nodes
// read is piecewise, and its joins slow a single rule's convergence to
// algebraic, so the nodes have to grow with the steps) and at least one
// per digit of rtol. Its Kronrod extension then has 2n+1 nodes, about two
// per step against the six evaluations of a Dormand–Prince step, each of
// which the adjoints pay a weight-gradient product for. An interval
// crossed in one or two steps has an integrand a 6-point rule usually
// resolves; it starts there, where its own estimate can accept it without
// the extension. A guess either way: the estimates correct it.
func gqaFirstRule(steps int, rtol float64) int {
	digits := int(math.Ceil(-math.Log10(rtol)))
	k := max(gqaMinRule, steps, digits)
	if steps <= 2 {
		k = max(gqaMinN, digits)
	}
	return min(k, gqaMaxN)
}

func resizeInts(x []int, n int) []int {
	if cap(x) < n {
		return make([]int, n)
	}
	return x[:n]
}

// quadrature integrates the intervals 1…intervals in a fixed number of
// tasks of contiguous intervals, each summing into its own buffer; the
// buffers are added in task order, so the result does not depend on the
// number of goroutines.
func (m *gqaMethod) quadrature(intervals int) error {
	g, q := m.g, m
	chunks := min(quadChunks, intervals)
	for len(q.chunks) < chunks {
		q.chunks = append(q.chunks, &gqaChunk{ev: g.field.NewEvaluator()})
	}
	for _, c := range q.chunks[:chunks] {
		// θ is constant here: the evaluator may pack its weights once.
		freezeParams(c.ev, true)
		c.ensure(g.p, g.n, g.bwd.Method(), g.fwd.Method())
		clear(c.sum)
		c.nodes, c.kronrod, c.retries, c.bisections, c.capped = 0, 0, 0, 0, 0
	}
	q.nChunks = chunks
	if err := gqaBuildRules(); err != nil {
		return err
	}
	// Every node is one product of batch g.n/g.dim; an interval takes at
	// least gqaMinN of them (a smaller rule's Kronrod extension has more).
	if err := g.runChunks(q.chunks[0].ev, chunks, g.n/g.dim, intervals*gqaMinN*g.n*g.p, q.fChunk); err != nil {
		return err
	}
	st := &g.res.Stats
	for _, c := range q.chunks[:chunks] {
		Axpy(1, c.sum, g.res.Params)
		st.QuadratureNodes += c.nodes
	}
	return nil
}

func (c *gqaChunk) ensure(p, n int, bwd, fwd *Tableau) {
	if len(c.sum) != p {
		c.sum, c.gk, c.ig, c.sk, c.ab = make([]float64, p), make([]float64, p), make([]float64, p), make([]float64, p), make([]float64, p)
		for j := range c.tail {
			c.tail[j] = make([]float64, p)
		}
	}
	if len(c.y) != 2*n {
		c.y, c.z = make([]float64, 2*n), make([]float64, n)
	}
	if c.ipB.tb != bwd {
		c.ipB.init(bwd)
		c.kvB = make([][]float64, bwd.denseVectors())
	}
	if c.ipF.tb != fwd {
		c.ipF.init(fwd)
		c.kvF = make([][]float64, fwd.denseVectors())
	}
}

// gqaTails holds, for every Gauss rule size n ≤ gqaMaxN, the weights
// (2j+1)·w_k·P_j(x_k) of the Legendre coefficients j = n−1, n−2, n−3, n−4
// (four rows of n values), so that T_j = h·Σ_k row_j[k]·g(x_k) is the
// coefficient of P_j in the interpolant of g on [mid−h, mid+h], scaled like
// the integral h·Σ w g. Built once with the rules (gqaBuildRules).
var (
	gqaTails    [gqaMaxN + 1][]float64
	gqaRulesErr error
	gqaOnce     sync.Once
)

// gqaBuildRules builds the Gauss–Kronrod rules and tail weights of every
// size the adaptive quadrature may use, once per process.
func gqaBuildRules() error {
	gqaOnce.Do(func() {
		for n := gqaMinRule; n <= gqaMaxN; n++ {
			gl, err := GaussLegendre(n)
			if err == nil {
				_, err = GaussKronrod(n)
			}
			if err != nil {
				gqaRulesErr = err
				return
			}
			w := make([]float64, 4*n)
			pj := make([]float64, n)
			for k, x := range gl.Nodes {
				// P_0 … P_{n−1} at x by the three-term recurrence.
				pj[0], pj[1] = 1, x
				for j := 1; j+1 < n; j++ {
					pj[j+1] = (float64(2*j+1)*x*pj[j] - float64(j)*pj[j-1]) / float64(j+1)
				}
				for r := 0; r < 4; r++ {
					j := n - 1 - r
					w[r*n+k] = float64(2*j+1) * gl.Weights[k] * pj[j]
				}
			}
			gqaTails[n] = w
		}
	})
	return gqaRulesErr
}

// chunk integrates the intervals of task c.
func (m *gqaMethod) chunk(c int) {
	g, q := m.g, m
	ch := q.chunks[c]
	ch.use = ch.ev
	if g.chunkSerial {
		ch.use = g.ev
	}
	defer func() { ch.use = nil }()
	intervals := len(g.grid) - 1
	lo, hi := c*intervals/q.nChunks, (c+1)*intervals/q.nChunks
	sel, _ := ch.use.(PieceSelector)
	for i := lo + 1; i <= hi; i++ {
		if sel != nil && g.hasBreaks {
			sel.SelectPiece(g.grid[i-1], g.grid[i])
		}
		m.interval(ch, i)
	}
}

// interval integrates grid interval i into ch.sum by adaptive bisection.
func (m *gqaMethod) interval(ch *gqaChunk, i int) {
	g := m.g
	n := m.nodes0[i]
	ch.stack = append(ch.stack[:0], gqaPanel{lo: g.grid[i-1], hi: g.grid[i], frac: 1})
	for len(ch.stack) > 0 {
		pn := ch.stack[len(ch.stack)-1]
		ch.stack = ch.stack[:len(ch.stack)-1]
		if m.panel(ch, i, n, pn) {
			continue
		}
		// Bisect; the upper half is pushed first so that panels are
		// integrated from the low end (a fixed order either way).
		mid := 0.5*pn.lo + 0.5*pn.hi
		ch.bisections++
		ch.stack = append(ch.stack, gqaPanel{mid, pn.hi, pn.frac / 2, pn.depth + 1}, gqaPanel{pn.lo, mid, pn.frac / 2, pn.depth + 1})
	}
}

// panel integrates one panel: the n-point Gauss rule, accepted if the
// decay of its Legendre coefficients predicts an error within the
// tolerance; while the integrand is not resolved (up to gqaRetries
// times), a fresh Gauss rule of twice the size; then the Kronrod extension
// of the last Gauss rule, accepted by kronrodOK. A rule of fewer than
// gqaMinN nodes whose extension fails starts over once with gqaMinN nodes,
// which can judge themselves (on case3 at 1e-5: 24 nodes instead of 33
// with a bisection). It adds an accepted value to ch.sum and reports
// whether it accepted one (false: bisect).
func (m *gqaMethod) panel(ch *gqaChunk, i, n int, pn gqaPanel) bool {
	half, mid := 0.5*pn.hi-0.5*pn.lo, 0.5*pn.lo+0.5*pn.hi
	for {
		ok, resolved := m.gaussStage(ch, i, n, half, mid, pn.frac)
		for tries := 0; !ok && !resolved && tries < gqaRetries && n < gqaMaxN; tries++ {
			n = min(2*n, gqaMaxN)
			ch.retries++
			ok, resolved = m.gaussStage(ch, i, n, half, mid, pn.frac)
		}
		if ok {
			m.axpy(1, ch.ig, ch.sum)
			return true
		}
		ch.kronrod++
		gk, _ := GaussKronrod(n) // built by gqaBuildRules
		for k, x := range gk.Nodes {
			if gk.IsGauss[k] {
				continue
			}
			m.node(ch, i, mid+half*x, ch.gk)
			m.axpy(half*gk.Weights[k], ch.gk, ch.sk)
		}
		if m.kronrodOK(ch, pn.frac) || pn.depth >= gqaMaxDepth {
			if pn.depth >= gqaMaxDepth {
				ch.capped++
			}
			m.axpy(1, ch.sk, ch.sum)
			return true
		}
		if n >= gqaMinN {
			return false
		}
		n = gqaMinN
		ch.retries++
	}
}

// gaussStage evaluates the n-point Gauss rule on the panel mid ± half into
// ch.ig, the Gauss nodes' share of the Kronrod sum into ch.sk, ∫|g| into
// ch.ab and the top Legendre coefficients into ch.tail, then judges it
// (see spectralOK).
func (m *gqaMethod) gaussStage(ch *gqaChunk, i, n int, half, mid, frac float64) (ok, resolved bool) {
	gk, _ := GaussKronrod(n)
	tw := gqaTails[n]
	p := len(ch.gk)
	if m.g.chunkSerial && n*p <= gqaStoreMax {
		// Keep the n products and form the seven sums in one pass over
		// them (gqaStoredSums): per component n reads and seven writes,
		// where updating the sums node by node reads and writes all seven
		// n times (on a large network a memory-bound 8% of the gradient).
		// Only chunks that run one after another store (one buffer, made
		// once at its largest size for this P, so that neither a later
		// gradient's larger n nor fanned-out chunks add memory).
		if len(m.store) < n*p {
			m.store = make([]float64, min(gqaMaxN, gqaStoreMax/p)*p)
		}
		u := &ch.stored
		*u = gqaStoredSums{vs: m.store[:n*p], p: p, ig: ch.ig, sk: ch.sk, ab: ch.ab,
			t0: ch.tail[0], t1: ch.tail[1], t2: ch.tail[2], t3: ch.tail[3]}
		gi := 0
		for k, x := range gk.Nodes {
			if !gk.IsGauss[k] {
				continue
			}
			m.node(ch, i, mid+half*x, u.vs[gi*p:(gi+1)*p])
			cf := u.coef[6*gi : 6*gi+6]
			cf[0], cf[1] = half*gk.GaussWeights[k], half*gk.Weights[k]
			cf[2], cf[3], cf[4], cf[5] = half*tw[gi], half*tw[n+gi], half*tw[2*n+gi], half*tw[3*n+gi]
			gi++
		}
		u.n = gi
		m.applyStored(u)
		return m.spectralOK(ch, n, frac)
	}
	gi := 0 // index of the Gauss node
	for k, x := range gk.Nodes {
		if !gk.IsGauss[k] {
			continue
		}
		m.node(ch, i, mid+half*x, ch.gk)
		ch.upd = gqaNodeSums{v: ch.gk, ig: ch.ig, sk: ch.sk, ab: ch.ab,
			t0: ch.tail[0], t1: ch.tail[1], t2: ch.tail[2], t3: ch.tail[3],
			w: half * gk.GaussWeights[k], wk: half * gk.Weights[k],
			c0: half * tw[gi], c1: half * tw[n+gi], c2: half * tw[2*n+gi], c3: half * tw[3*n+gi],
			first: gi == 0}
		m.applySums(&ch.upd)
		gi++
	}
	ch.upd = gqaNodeSums{}
	return m.spectralOK(ch, n, frac)
}

// node writes the parameter product a(τ)ᵀ ∂f/∂θ(τ, z(τ)) into dst (ch.gk
// or a row of m.store), with a (and z) from the backward dense output of
// interval i and, for the interp variant, z from the forward dense output.
func (m *gqaMethod) node(ch *gqaChunk, i int, tau float64, dst []float64) {
	n := m.g.n
	tp := &m.tape
	// The backward steps of interval i run from grid[i] toward grid[i−1].
	s := m.first[i]
	for s+1 < m.last[i] && (tp.t1[s]-tau)*tp.h[s] < 0 {
		s++
	}
	y := ch.y[:tp.n]
	if th := (tau - tp.t[s]) / tp.h[s]; m.fine[s] >= 0 {
		m.fineAt(s, th, y)
	} else {
		tp.atWith(&ch.ipB, ch.kvB, s, th, y)
	}
	z, a := y, y
	if m.fwd != nil {
		z = ch.z
		fs, theta, _ := m.fwd.locate(tau)
		m.fwd.atWith(&ch.ipF, ch.kvF, fs, theta, z)
	} else {
		z, a = y[:n], y[n:]
	}
	// The evaluator sets the product rather than adding it, if it can:
	// clearing all P entries first would be a serial pass per node.
	if !setParamGrad(ch.use, true) {
		clear(dst)
	}
	ch.use.VJP(tau, z, a, nil, nil, dst, nil)
	setParamGrad(ch.use, false)
	ch.nodes++
}

// spectralOK predicts the n-point Gauss rule's error from its top
// Legendre coefficients T_{n−1…n−4} and reports whether it is within the
// tolerance of every block. The integrand counts as resolved (reported)
// when the top coefficients are below gqaResolved of ∫|g|. The error of a
// Gauss rule is about its first non-integrated coefficient: where the
// coefficients decay, ρ = (‖T_{n−1}‖+‖T_{n−2}‖)/(‖T_{n−3}‖+‖T_{n−4}‖) < ½,
// T_{2n} ≈ T_{n−1}·ρ^{(n+1)/2}; otherwise T_{n−1} itself. Times gqaSafety,
// per component.
func (q *gqaMethod) spectralOK(ch *gqaChunk, n int, frac float64) (ok, resolved bool) {
	if n < gqaMinN {
		// Too few coefficients to see a decay: the Kronrod extension judges.
		return false, true
	}
	ok = true
	for b := 0; b+1 < len(q.blocks); b++ {
		lo, hi := q.blocks[b], q.blocks[b+1]
		if hi == lo {
			continue
		}
		s1 := rms(ch.tail[0][lo:hi]) + rms(ch.tail[1][lo:hi])
		s2 := rms(ch.tail[2][lo:hi]) + rms(ch.tail[3][lo:hi])
		if s1 == 0 {
			continue
		}
		if !(s1 <= gqaResolved*rms(ch.ab[lo:hi])) {
			return false, false
		}
		// Without a clear decay the top coefficients themselves bound the
		// error (the interpolant is resolved to their size).
		fac := float64(gqaSafety)
		if rho := s1 / s2; rho < 0.5 {
			fac *= math.Pow(rho, 0.5*float64(n+1))
		}
		sum := 0.0
		t0, t1, ig := ch.tail[0][lo:hi], ch.tail[1][lo:hi], ch.ig[lo:hi]
		for j := range ig {
			e := fac * (math.Abs(t0[j]) + math.Abs(t1[j]))
			sc := q.atol*frac + q.rtol*math.Abs(ig[j])
			sum += (e / sc) * (e / sc)
		}
		if !(sum <= float64(hi-lo)) {
			ok = false
		}
	}
	return ok, true
}

// kronrodOK reports whether the Kronrod value is within the tolerance of
// every block. |K − G| estimates the error ε of the Gauss rule; K, exact
// to degree 3n+1 against G's 2n−1, errs by about ε^{3/2} in relative
// terms (an analytic integrand's coefficients decay geometrically), so
// its estimate is |K − G|·min(1, sqrt(‖K − G‖/‖K‖)) per block: the
// power-3/2 rule of QUADPACK's dqk routines (Piessens et al. 1983), there
// with a further factor 200 that would cost a bisection for every
// interval at the tolerances used here.
func (q *gqaMethod) kronrodOK(ch *gqaChunk, frac float64) bool {
	for b := 0; b+1 < len(q.blocks); b++ {
		lo, hi := q.blocks[b], q.blocks[b+1]
		if hi == lo {
			continue
		}
		ig, sk := ch.ig[lo:hi], ch.sk[lo:hi]
		d, k := 0.0, 0.0
		for j := range ig {
			e := sk[j] - ig[j]
			d += e * e
			k += sk[j] * sk[j]
		}
		damp := 1.0
		if k > 0 {
			damp = math.Min(1, math.Sqrt(math.Sqrt(d/k)))
		}
		sum := 0.0
		for j := range ig {
			e := damp * (sk[j] - ig[j])
			sc := q.atol*frac + q.rtol*math.Abs(sk[j])
			sum += (e / sc) * (e / sc)
		}
		if !(sum <= float64(hi-lo)) {
			return false
		}
	}
	return true
}
