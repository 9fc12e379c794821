package neuralode

import (
	"fmt"
	"math"
	"sort"
)

// Func is the right-hand side of an ODE dy/dt = f(t, y): it writes f(t, y)
// into dydt (same length as y) and must not keep either slice.
type Func func(t float64, y, dydt []float64)

// Tableau is the Butcher tableau of an explicit Runge–Kutta method, as data.
//
// Stage i (0-based) evaluates k_i = f(t + C[i]·h, y + h·Σ_{j<i} A[i][j]·k_j);
// the step is y1 = y + h·Σ B[i]·k_i. An embedded pair also has error weights
// E = B − B̂, and the local error estimate is h·Σ E[i]·k_i.
type Tableau struct {
	Name string
	C    []float64   // nodes, one per stage
	A    [][]float64 // A[i] holds the i coefficients of stage i (A[0] is empty)
	B    []float64   // weights of the propagated solution
	// E holds the error weights B − B̂; nil for a fixed-step method.
	E []float64
	// BMid, if not nil, gives the solution at the half step,
	// y(t+h/2) ≈ y + h·Σ BMid[i]·k_i. Dense output is then the quartic through
	// y0, y1, f0, f1 and this midpoint (Shampine 1986, as in torchdiffeq);
	// without it dense output is the cubic Hermite interpolant through
	// y0, y1, f0, f1.
	BMid []float64
	// Order is the order of the propagated solution; the step-size
	// controller uses the exponent 1/Order, as torchdiffeq does.
	Order int
	// FSAL marks a first-same-as-last method: the last stage is f(t+h, y1)
	// and is reused as the first stage of the next step.
	FSAL bool
}

// Adaptive reports whether the method has an embedded error estimate.
func (tb *Tableau) Adaptive() bool { return tb.E != nil }

// Stages returns the number of stages.
func (tb *Tableau) Stages() int { return len(tb.C) }

// DormandPrince5 is the Dormand–Prince 5(4) pair with Shampine's error
// weights and dense output, exactly as torchdiffeq's "dopri5" (7 stages, FSAL).
// Its error estimate is 2/3 of SciPy RK45's, so equal tolerances are not
// equal across libraries.
var DormandPrince5 = &Tableau{
	Name: "dopri5",
	C:    []float64{0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1},
	A: [][]float64{
		{},
		{1.0 / 5},
		{3.0 / 40, 9.0 / 40},
		{44.0 / 45, -56.0 / 15, 32.0 / 9},
		{19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
		{9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
		{35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84},
	},
	B: []float64{35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0},
	E: []float64{
		35.0/384 - 1951.0/21600, 0, 500.0/1113 - 22642.0/50085, 125.0/192 - 451.0/720,
		-2187.0/6784 + 12231.0/42400, 11.0/84 - 649.0/6300, -1.0 / 60,
	},
	BMid: []float64{
		6025192743.0 / 30085553152 / 2, 0, 51252292925.0 / 65400821598 / 2,
		-2691868925.0 / 45128329728 / 2, 187940372067.0 / 1594534317056 / 2,
		-1776094331.0 / 19743644256 / 2, 11237099.0 / 235043384 / 2,
	},
	Order: 5,
	FSAL:  true,
}

// BogackiShampine3 is the Bogacki–Shampine 3(2) pair ("bosh3"; 4 stages, FSAL).
var BogackiShampine3 = &Tableau{
	Name: "bosh3",
	C:    []float64{0, 1.0 / 2, 3.0 / 4, 1},
	A: [][]float64{
		{},
		{1.0 / 2},
		{0, 3.0 / 4},
		{2.0 / 9, 1.0 / 3, 4.0 / 9},
	},
	B:     []float64{2.0 / 9, 1.0 / 3, 4.0 / 9, 0},
	E:     []float64{2.0/9 - 7.0/24, 1.0/3 - 1.0/4, 4.0/9 - 1.0/3, -1.0 / 8},
	Order: 3,
	FSAL:  true,
}

// Tsitouras5 is Tsitouras' 5(4) pair ("tsit5"; 7 stages, FSAL; Tsitouras,
// Comput. Math. Appl. 62, 2011). Dense output uses the quartic through the
// midpoint of Tsitouras' continuous extension.
var Tsitouras5 = &Tableau{
	Name: "tsit5",
	C:    []float64{0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1},
	A: [][]float64{
		{},
		{0.161},
		{-0.008480655492356989, 0.335480655492357},
		{2.897153057105493, -6.359448489975075, 4.3622954328695815},
		{5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525},
		{5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383},
		{0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774},
	},
	B: []float64{0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774, 0},
	E: []float64{
		-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
		-0.1447110071732629, 0.5823571654525552, -0.45808210592918697, 1.0 / 66,
	},
	BMid:  tsit5Mid(),
	Order: 5,
	FSAL:  true,
}

// tsit5Mid evaluates Tsitouras' continuous-extension weights b_i(θ) at θ = 1/2.
func tsit5Mid() []float64 {
	const th = 0.5
	t2 := th * th
	return []float64{
		-1.0530884977290216 * th * (th - 1.3299890189751412) * (t2 - 1.4364028541716351*th + 0.7139816917074209),
		0.1017 * t2 * (t2 - 2.1966568338249754*th + 1.2949852507374631),
		2.490627285651252793 * t2 * (t2 - 2.38535645472061657*th + 1.57803468208092486),
		-16.54810288924490272 * (th - 1.21712927295533244) * (th - 0.61620406037800089) * t2,
		47.37952196281928122 * (th - 1.203071208372362603) * (th - 0.658047292653547382) * t2,
		-34.87065786149660974 * (th - 1.2) * (th - 0.666666666666666667) * t2,
		2.5 * (th - 1) * (th - 0.6) * t2,
	}
}

// RK4 is the classical fourth-order Runge–Kutta method (fixed step).
var RK4 = &Tableau{
	Name:  "rk4",
	C:     []float64{0, 1.0 / 2, 1.0 / 2, 1},
	A:     [][]float64{{}, {1.0 / 2}, {0, 1.0 / 2}, {0, 0, 1}},
	B:     []float64{1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6},
	Order: 4,
}

// Midpoint is the explicit midpoint method (second order, fixed step).
var Midpoint = &Tableau{
	Name:  "midpoint",
	C:     []float64{0, 1.0 / 2},
	A:     [][]float64{{}, {1.0 / 2}},
	B:     []float64{0, 1},
	Order: 2,
}

// Euler is the explicit Euler method (first order, fixed step).
var Euler = &Tableau{
	Name:  "euler",
	C:     []float64{0},
	A:     [][]float64{{}},
	B:     []float64{1},
	Order: 1,
}

// TableauByName returns the built-in method with the given name: "dopri5",
// "bosh3", "tsit5", "rk4", "midpoint" or "euler".
func TableauByName(name string) (*Tableau, error) {
	for _, tb := range []*Tableau{DormandPrince5, BogackiShampine3, Tsitouras5, RK4, Midpoint, Euler} {
		if tb.Name == name {
			return tb, nil
		}
	}
	return nil, invalidf("method", "unknown method %q (want dopri5, bosh3, tsit5, rk4, midpoint or euler)", name)
}

// validate checks the tableau's shape and, for FSAL methods, that the last
// stage really is f(t+h, y1).
func (tb *Tableau) validate() error {
	s := len(tb.C)
	if s == 0 {
		return invalidf("Tableau.C", "no stages")
	}
	if len(tb.A) != s || len(tb.B) != s {
		return invalidf("Tableau", "%q: %d nodes, %d rows of A, %d weights", tb.Name, s, len(tb.A), len(tb.B))
	}
	if tb.E != nil && len(tb.E) != s {
		return invalidf("Tableau.E", "%q: %d error weights for %d stages", tb.Name, len(tb.E), s)
	}
	if tb.BMid != nil && len(tb.BMid) != s {
		return invalidf("Tableau.BMid", "%q: %d midpoint weights for %d stages", tb.Name, len(tb.BMid), s)
	}
	if tb.C[0] != 0 {
		return invalidf("Tableau.C", "%q: first node must be 0", tb.Name)
	}
	for i, row := range tb.A {
		if len(row) != i {
			return invalidf("Tableau.A", "%q: row %d has %d entries, want %d", tb.Name, i, len(row), i)
		}
		if err := checkFinite(fmt.Sprintf("Tableau.A[%d]", i), row); err != nil {
			return err
		}
	}
	for _, v := range [][]float64{tb.C, tb.B, tb.E, tb.BMid} {
		if err := checkFinite("Tableau", v); err != nil {
			return err
		}
	}
	if tb.Order < 1 {
		return invalidf("Tableau.Order", "%q: order %d < 1", tb.Name, tb.Order)
	}
	if tb.FSAL {
		if tb.C[s-1] != 1 || tb.B[s-1] != 0 {
			return invalidf("Tableau.FSAL", "%q: the last stage of an FSAL method must have node 1 and weight 0", tb.Name)
		}
		for j, a := range tb.A[s-1] {
			if a != tb.B[j] {
				return invalidf("Tableau.FSAL", "%q: the last row of A must equal B", tb.Name)
			}
		}
	}
	return nil
}

// denseVectors is the number of vectors the dense output combines: the
// stages, plus f(t1, y1) for methods that are not FSAL.
func (tb *Tableau) denseVectors() int {
	if tb.FSAL {
		return len(tb.C)
	}
	return len(tb.C) + 1
}

// denseWeights writes β(θ) into beta (length denseVectors()) so that the
// dense output on a step from (t, y0) with size h is
//
//	y(t + θh) = y0 + h·Σ β_i(θ)·K_i,
//
// where K holds the stages and, for non-FSAL methods, f(t+h, y1) last. The
// interpolant is linear in the stages, which is what lets the Direct method
// differentiate it exactly.
func (tb *Tableau) denseWeights(theta float64, beta []float64) {
	s := len(tb.C)
	last := s - 1 // index of f(t1, y1) in K
	if !tb.FSAL {
		last = s
		beta[s] = 0
	}
	th2 := theta * theta
	th3 := th2 * theta
	if tb.BMid != nil {
		// Quartic p(θ) through y0, y1, ymid (θ=½) with p'(0) = h·f0,
		// p'(1) = h·f1, written as p = w0·y0 + w1·y1 + wm·ymid + h(v0·f0 + v1·f1).
		th4 := th3 * theta
		w1 := -8*th4 + 14*th3 - 5*th2
		wm := 16*th4 - 32*th3 + 16*th2
		v0 := -2*th4 + 5*th3 - 4*th2 + theta
		v1 := 2*th4 - 3*th3 + th2
		for i := 0; i < s; i++ {
			beta[i] = w1*tb.B[i] + wm*tb.BMid[i]
		}
		beta[0] += v0
		beta[last] += v1
		return
	}
	// Cubic Hermite: p = h00·y0 + h01·y1 + h(h10·f0 + h11·f1).
	h01 := -2*th3 + 3*th2
	h10 := th3 - 2*th2 + theta
	h11 := th3 - th2
	for i := 0; i < s; i++ {
		beta[i] = h01 * tb.B[i]
	}
	beta[0] += h10
	beta[last] += h11
}

// Controller is a step-size controller. After every attempted step of an
// adaptive method the solver computes the error ratio r, the norm of the
// error estimate scaled by ATol + RTol·|y| (the step is accepted when r ≤ 1),
// and multiplies the step size by the controller's factor. IController and
// PIController are the implementations; a nil Controller in Options means
// IController{}, torchdiffeq's.
type Controller interface {
	// Prepare validates the controller for a method of the given order and
	// returns it with its defaults filled in.
	Prepare(order int) (Controller, error)
	// Factor returns the step-size factor after a step with error ratio r,
	// accepted or rejected. prev is the ratio of the previous accepted step
	// of the solve (bounded below by 1e-4; 1 before the first).
	Factor(r, prev float64, accepted bool) float64
}

// IController is the integral controller: the factor is
// Safety·r^(−1/Order), limited to [MinFactor, MaxFactor], and an accepted
// step never shrinks the next one. The zero value means torchdiffeq's
// constants: safety 0.9, factor limited to [0.2, 10].
type IController struct {
	Safety    float64 // default 0.9
	MinFactor float64 // smallest factor after a rejected step; default 0.2
	MaxFactor float64 // largest factor; default 10
	order     int     // set by Prepare
}

// Prepare fills in the defaults and checks the constants.
func (c IController) Prepare(order int) (Controller, error) {
	p, err := c.pi(order).Prepare(order)
	if err != nil {
		return nil, err
	}
	pc := p.(PIController)
	return IController{Safety: pc.Safety, MinFactor: pc.MinFactor, MaxFactor: pc.MaxFactor, order: order}, nil
}

// Factor returns Safety·r^(−1/Order) limited as described; prev is not used.
func (c IController) Factor(r, prev float64, accepted bool) float64 {
	return c.pi(c.order).Factor(r, prev, accepted)
}

// pi is the equivalent PIController: Alpha = 1/order, Beta = 0.
func (c IController) pi(order int) PIController {
	return PIController{Safety: c.Safety, MinFactor: c.MinFactor, MaxFactor: c.MaxFactor, Alpha: 1 / float64(order), order: order}
}

// PIController is Gustafsson's proportional–integral controller: on an
// accepted step the factor is Safety·r^(−Alpha)·prev^(Beta), limited to
// [1, MaxFactor] when r < 1 (an accepted step never shrinks the next one)
// and to [MinFactor, MaxFactor] otherwise. A rejected step always uses
// the integral law Safety·r^(−1/Order), at least MinFactor. With Alpha =
// 1/Order and Beta = 0 it is the IController.
type PIController struct {
	Safety    float64 // default 0.9
	MinFactor float64 // smallest factor after a rejected step; default 0.2
	MaxFactor float64 // largest factor; default 10
	Alpha     float64 // exponent on the current ratio; default 1/Order
	Beta      float64 // exponent on the previous ratio; default 0
	order     int
}

// Prepare fills in the defaults and checks the constants.
func (c PIController) Prepare(order int) (Controller, error) {
	if c.Safety == 0 {
		c.Safety = 0.9
	}
	if c.MinFactor == 0 {
		c.MinFactor = 0.2
	}
	if c.MaxFactor == 0 {
		c.MaxFactor = 10
	}
	if c.Alpha == 0 {
		c.Alpha = 1 / float64(order)
	}
	c.order = order
	if !(c.Safety > 0 && c.Safety <= 1) || !(c.MinFactor > 0 && c.MinFactor <= 1) || !(c.MaxFactor >= 1) ||
		math.IsInf(c.MaxFactor, 0) || !(c.Alpha > 0) || !(c.Beta >= 0) || math.IsInf(c.Alpha+c.Beta, 0) || order < 1 {
		return nil, invalidf("Options.Controller", "need 0 < Safety ≤ 1, 0 < MinFactor ≤ 1 ≤ MaxFactor < ∞, Alpha > 0, Beta ≥ 0; got %+v", c)
	}
	return c, nil
}

// Factor returns the step-size factor (see PIController).
func (c PIController) Factor(r, prev float64, accepted bool) float64 {
	if !accepted {
		fac := math.Max(c.Safety/math.Pow(r, 1/float64(c.order)), c.MinFactor)
		return math.Min(fac, c.MaxFactor)
	}
	if r == 0 {
		return c.MaxFactor
	}
	lo := c.MinFactor
	if r < 1 {
		lo = 1 // an accepted step never shrinks the next one
	}
	g := c.Safety / math.Pow(r, c.Alpha)
	if c.Beta != 0 {
		g *= math.Pow(prev, c.Beta)
	}
	return math.Min(c.MaxFactor, math.Max(g, lo))
}

// Options configures a Solver. The zero value is usable: Dormand–Prince 5(4)
// at torchdiffeq's default tolerances with the RMS norm.
type Options struct {
	// Method is the Runge–Kutta tableau; default DormandPrince5.
	Method *Tableau
	// RTol and ATol are the relative and absolute tolerances. Both zero means
	// torchdiffeq's defaults (1e-7, 1e-9); otherwise both must be positive.
	RTol, ATol float64
	// Norm measures the scaled error; default RMSNorm.
	Norm Norm
	// Controller chooses the step sizes of adaptive methods; nil means
	// IController{}.
	Controller Controller
	// FirstStep is the size of the first step; zero selects it with Hairer's
	// rule (two function evaluations), using Norm.
	FirstStep float64
	// MinStep and MaxStep bound the step size (0: no bound). A step that
	// would have to be shorter than MinStep fails with ErrStepSizeUnderflow.
	MinStep, MaxStep float64
	// MaxSteps bounds the number of attempted steps (accepted plus rejected)
	// over a whole solve; default 100000.
	MaxSteps int
	// Step is the step size of fixed-step methods (required for them). With
	// an adaptive method a positive Step turns adaptivity off.
	Step float64
	// Overshoot reproduces torchdiffeq: the solver steps past the final time
	// and interpolates back, instead of shortening the last step to end
	// exactly at the final time (the default, as SciPy, diffrax and
	// DifferentialEquations.jl do, so f is never evaluated outside the interval).
	Overshoot bool
	// QuadratureTail marks the last QuadratureTail components of the state
	// as pure quadratures: f never reads them (it may only write their
	// derivatives). Stage values are then not formed for them, which saves
	// one pass over them per stage. The adjoint methods use it for the
	// parameter adjoint, whose size is the number of parameters.
	QuadratureTail int
	// OnStep, if not nil, is called after every accepted step with views of
	// the step's data, valid only during the call.
	OnStep func(*StepInfo)
	// Breaks lists times, in increasing order, at which f or one of its
	// derivatives may jump, such as a Breakpointer's Breakpoints. No step
	// crosses a break point inside a solve's span: the step before it ends
	// exactly there, and the solve restarts from it as a new piece, with f
	// evaluated afresh, the step size the controller proposed and the
	// controller's memory cleared. f is evaluated one ulp inside the piece
	// instead of on the break point itself, so that it may test t < b or
	// t ≤ b alike. The error estimate never sees the jump, so no steps are
	// rejected or shrunk to resolve it.
	Breaks []float64
}

// StepInfo describes an accepted step from T to T+H, for Options.OnStep.
// Its slices are views into the solver's workspace.
type StepInfo struct {
	T, H float64
	// T1 is the time the step ends at, exactly as the solver advances to it
	// (the last step of a solve ends exactly at the final time).
	T1     float64
	Y0, Y1 []float64
	// Stages holds the stage inputs Y_i, so that K[i] = f(T + C[i]·H, Stages[i]).
	// Stages[0] is Y0. Under Options.QuadratureTail their tails are stale.
	Stages [][]float64
	// K holds the stage derivatives and, for non-FSAL methods, f(T+H, Y1)
	// as a last entry when it was evaluated (nil entry otherwise).
	K [][]float64
}

// Stats counts the work of a solve.
type Stats struct {
	NFE      int // function evaluations, initial-step selection included
	Accepted int // accepted steps
	Rejected int // rejected steps
	// LastStep is the step size the controller proposed after the last
	// accepted step (unsigned); pass it as FirstStep to continue a solve.
	LastStep float64
}

// Add adds the counts of o to s and takes o's LastStep.
func (s *Stats) Add(o Stats) {
	s.NFE += o.NFE
	s.Accepted += o.Accepted
	s.Rejected += o.Rejected
	s.LastStep = o.LastStep
}

const defaultMaxSteps = 100000

// Solver integrates ODEs with an explicit Runge–Kutta method. It keeps its
// workspace between calls: after the first solve of a given size, solves of
// the same size allocate nothing per step. A Solver is not safe for
// concurrent use; use one per goroutine.
type Solver struct {
	opts  Options
	tb    *Tableau
	rtol  float64
	atol  float64
	norm  Norm
	ctrl  Controller // prepared for tb.Order
	isRMS bool

	// Nonzero coefficient pattern of the tableau, per stage row.
	aIdx [][]int
	bIdx []int
	eIdx []int

	n      int
	y      []float64
	y1     []float64
	errBuf []float64
	stages [][]float64 // stage inputs
	k      [][]float64 // stage derivatives (+ f1 for non-FSAL)
	coef   []float64
	vecs   [][]float64

	// vec, when set (GradientSolver does it for the backward solve, whose
	// state holds the parameter gradient), runs the elementwise passes over
	// long states (linComb, the error scaling) in fixed chunks on its
	// helpers; lc and errScale hold the current pass's operands for the
	// chunk tasks, bound once in lcTask and scaleTask.
	vec       *taskPool
	lc        linCombArgs
	lcTask    func(int)
	scaleTask func(int)
	interp    interpolant // dense output of the current step
	piece     pieceBounds // the piece being integrated, if bounded by break points
	info      StepInfo
}

// NewSolver validates opts and returns a Solver.
func NewSolver(opts Options) (*Solver, error) {
	s := &Solver{opts: opts}
	if err := s.setOptions(opts); err != nil {
		return nil, err
	}
	return s, nil
}

// Options returns the solver's options with defaults filled in.
func (s *Solver) Options() Options {
	o := s.opts
	o.Method, o.RTol, o.ATol, o.Norm, o.Controller = s.tb, s.rtol, s.atol, s.norm, s.ctrl
	return o
}

// SetOptions replaces the solver's options, keeping its workspace.
func (s *Solver) SetOptions(opts Options) error { return s.setOptions(opts) }

func (s *Solver) setOptions(opts Options) error {
	tb := opts.Method
	if tb == nil {
		tb = DormandPrince5
	}
	if err := tb.validate(); err != nil {
		return err
	}
	rtol, atol := opts.RTol, opts.ATol
	if rtol == 0 && atol == 0 {
		rtol, atol = 1e-7, 1e-9
	}
	if !(rtol > 0) || math.IsInf(rtol, 0) {
		return invalidf("Options.RTol", "must be a positive finite number, got %v", opts.RTol)
	}
	if !(atol > 0) || math.IsInf(atol, 0) {
		return invalidf("Options.ATol", "must be a positive finite number, got %v", opts.ATol)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"Options.FirstStep", opts.FirstStep}, {"Options.MinStep", opts.MinStep}, {"Options.MaxStep", opts.MaxStep}, {"Options.Step", opts.Step}} {
		if !(p.v >= 0) || math.IsInf(p.v, 0) {
			return invalidf(p.name, "must be a finite non-negative number, got %v", p.v)
		}
	}
	if opts.MaxStep > 0 && opts.MinStep > opts.MaxStep {
		return invalidf("Options.MinStep", "%v exceeds MaxStep %v", opts.MinStep, opts.MaxStep)
	}
	if opts.MaxSteps < 0 {
		return invalidf("Options.MaxSteps", "negative: %d", opts.MaxSteps)
	}
	if opts.QuadratureTail < 0 {
		return invalidf("Options.QuadratureTail", "negative: %d", opts.QuadratureTail)
	}
	if len(opts.Breaks) > 0 {
		if _, err := validateTimes("Options.Breaks", opts.Breaks, 1, true); err != nil {
			return err
		}
	}
	opts.Breaks = append([]float64(nil), opts.Breaks...) // the caller may reuse the slice
	if !tb.Adaptive() && opts.Step <= 0 {
		return invalidf("Options.Step", "fixed-step method %q needs a positive Step", tb.Name)
	}
	c := opts.Controller
	if c == nil {
		c = IController{}
	}
	c, err := c.Prepare(tb.Order)
	if err != nil {
		return err
	}
	norm := opts.Norm
	if norm == nil {
		norm = RMSNorm{}
	}
	_, isRMS := norm.(RMSNorm)

	sameMethod := s.tb == tb
	s.opts, s.tb, s.rtol, s.atol, s.norm, s.ctrl, s.isRMS = opts, tb, rtol, atol, norm, c, isRMS
	if sameMethod {
		return nil // keep the workspace
	}
	st := tb.Stages()
	s.aIdx = make([][]int, st)
	for i, row := range tb.A {
		for j, a := range row {
			if a != 0 {
				s.aIdx[i] = append(s.aIdx[i], j)
			}
		}
	}
	s.bIdx, s.eIdx = nil, nil
	for j := range tb.B {
		if tb.B[j] != 0 {
			s.bIdx = append(s.bIdx, j)
		}
		if tb.E != nil && tb.E[j] != 0 {
			s.eIdx = append(s.eIdx, j)
		}
	}
	s.n = -1 // force the workspace to be (re)shaped
	s.k, s.stages = nil, nil
	return nil
}

// Method returns the solver's tableau.
func (s *Solver) Method() *Tableau { return s.tb }

// ensure sizes the workspace for states of length n.
func (s *Solver) ensure(n int) {
	if s.n == n {
		return
	}
	s.n = n
	st := s.tb.Stages()
	nk := s.tb.denseVectors()
	buf := make([]float64, n*(3+st+nk))
	take := func() []float64 {
		v := buf[:n:n]
		buf = buf[n:]
		return v
	}
	s.y, s.y1, s.errBuf = take(), take(), take()
	s.stages = make([][]float64, st)
	for i := 1; i < st; i++ {
		s.stages[i] = take()
	}
	s.k = make([][]float64, nk)
	for i := range s.k {
		s.k[i] = take()
	}
	s.interp.init(s.tb)
	s.coef = make([]float64, nk)
	s.vecs = make([][]float64, nk)
	s.info.K = make([][]float64, nk)
	s.info.Stages = make([][]float64, st)
}

// validateTimes checks a time grid: at least minLen times, all finite,
// strictly monotone, and strictly increasing if increasing is set. It
// returns the direction (+1 or −1; +1 for a single time). Every time grid
// the package accepts is checked here: solve and observation times, break
// points, quadrature partitions, noise grids and SDE output times.
func validateTimes(field string, ts []float64, minLen int, increasing bool) (float64, error) {
	if len(ts) < max(minLen, 1) {
		return 0, invalidf(field, "need at least %d times, got %d", max(minLen, 1), len(ts))
	}
	if err := checkFinite(field, ts); err != nil {
		return 0, err
	}
	if len(ts) == 1 {
		return 1, nil
	}
	dir := 1.0
	if ts[1] < ts[0] && !increasing {
		dir = -1
	}
	for i := 1; i < len(ts); i++ {
		if !((ts[i]-ts[i-1])*dir > 0) {
			if increasing {
				return 0, invalidf(field, "not strictly increasing at index %d (%v after %v)", i, ts[i], ts[i-1])
			}
			return 0, invalidf(field, "times must be strictly increasing or strictly decreasing: t[%d]=%v, t[%d]=%v", i-1, ts[i-1], i, ts[i])
		}
	}
	return dir, nil
}

// Solve integrates y' = f(t, y) from y(ts[0]) = y0 through the times ts
// (strictly increasing or strictly decreasing) and writes y(ts[i]) into
// out[i·n:(i+1)·n], n = len(y0); out[0:n] is y0. Output times between steps
// are served by the dense output; steps are not shortened to hit them.
//
// On failure the returned error wraps ErrInvalidInput, ErrNonFinite,
// ErrStepSizeUnderflow, ErrTooManySteps or ErrPanic (a panic in f is
// recovered), and y0 and ts are unchanged (out may hold partial results).
func (s *Solver) Solve(f Func, y0, ts, out []float64) (Stats, error) {
	return s.run(f, y0, ts, out, s.runConfig())
}

// runConfig is what may vary between the solves of one Solver without
// changing its Options: the gradient methods solve piece by piece and
// interval by interval, each starting with the step the last one ended with,
// and record the steps they need through onStep.
type runConfig struct {
	firstStep float64 // as Options.FirstStep
	overshoot bool    // as Options.Overshoot
	onStep    func(*StepInfo)
	// onPiece, if not nil, is called before each piece between break
	// points is integrated, with its first and last time.
	onPiece func(t0, t1 float64)
	breaks  []float64 // as Options.Breaks
}

// runConfig returns the configuration the Options ask for.
func (s *Solver) runConfig() runConfig {
	return runConfig{firstStep: s.opts.FirstStep, overshoot: s.opts.Overshoot, onStep: s.opts.OnStep, breaks: s.opts.Breaks}
}

// setErrorNorm replaces the error norm and the quadrature tail, keeping the
// workspace (a backward solve measures its augmented state with a norm of
// its own).
func (s *Solver) setErrorNorm(norm Norm, tail int) {
	_, isRMS := norm.(RMSNorm)
	s.norm, s.isRMS = norm, isRMS
	s.opts.Norm, s.opts.QuadratureTail = norm, tail
}

// lastState returns the state at the end of the last accepted step: y at
// the final time, or past it when the solve overshot. It is valid until the
// next solve.
func (s *Solver) lastState() []float64 { return s.y }

// run solves like Solve, configured by rc instead of the Options.
func (s *Solver) run(f Func, y0, ts, out []float64, rc runConfig) (st Stats, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError("ODE right-hand side", p)
		}
	}()
	n := len(y0)
	if f == nil {
		return st, invalidf("f", "nil function")
	}
	dir, err := validateTimes("ts", ts, 1, false)
	if err != nil {
		return st, err
	}
	if len(out) != len(ts)*n {
		return st, invalidf("out", "has length %d, want len(ts)·len(y0) = %d", len(out), len(ts)*n)
	}
	if err := checkFinite("y0", y0); err != nil {
		return st, err
	}
	if lc, ok := s.norm.(lengthChecker); ok && lc.Len() != n {
		return st, invalidf("Options.Norm", "built for states of length %d, state has length %d", lc.Len(), n)
	}
	if s.opts.QuadratureTail > n {
		return st, invalidf("Options.QuadratureTail", "%d exceeds the state length %d", s.opts.QuadratureTail, n)
	}
	s.ensure(n)
	copy(out[:n], y0)
	if len(ts) == 1 {
		return st, nil
	}
	copy(s.y, y0)
	return s.pieces(f, ts, out, dir, rc)
}

// pieces integrates from s.y = y(ts[0]) through ts, one piece between
// consecutive break points at a time (see Options.Breaks): every piece
// starts afresh with f evaluated at its start, with the step size the last
// piece ended with and the controller's memory cleared; only the last piece
// may overshoot.
func (s *Solver) pieces(f Func, ts, out []float64, dir float64, rc runConfig) (st Stats, err error) {
	n := s.n
	tEnd := ts[len(ts)-1]
	budget := s.opts.maxSteps()
	overshoot := rc.overshoot
	t0, row := ts[0], 1 // start of the piece and its first output row
	bi, step := 0, 1    // next break point, walked in the direction of integration
	if dir < 0 {
		bi, step = len(rc.breaks)-1, -1
	}
	for row < len(ts) {
		end := tEnd
		for ; bi >= 0 && bi < len(rc.breaks); bi += step {
			if b := rc.breaks[bi]; (b-t0)*dir > 0 {
				if (b-tEnd)*dir < 0 {
					end = b
				}
				break
			}
		}
		last := row // outputs of the piece: rows row..last-1, times in (t0, end]
		for last < len(ts) && (ts[last]-end)*dir <= 0 {
			last++
		}
		rc.overshoot = overshoot && end == tEnd
		if rc.onPiece != nil {
			rc.onPiece(t0, end)
		} else {
			s.piece = pieceBounds{start: t0, end: end, atStart: t0 != ts[0], atEnd: end != tEnd, dir: dir}
		}
		ps, err := s.integrate(f, t0, end, ts[row:last], out[row*n:last*n], dir, budget-st.Accepted-st.Rejected, rc)
		s.piece = pieceBounds{}
		st.Add(ps)
		if err != nil {
			return st, err
		}
		rc.firstStep = ps.LastStep
		t0, row = end, last
	}
	return st, nil
}

// pieceBounds is the piece being integrated when it starts or ends at a
// break point. f is then never evaluated on the break point itself or
// beyond it (where rounding of t + c·h can put a stage), but one ulp inside
// the piece: a plain Func cannot tell which side of a jump it is asked
// about, and evaluating it on the wrong side would show the jump to the
// error estimate after all. (A GradientSolver selects the piece of a
// piecewise field explicitly instead; see PieceSelector.)
type pieceBounds struct {
	start, end     float64
	atStart, atEnd bool // start, end is a break point
	dir            float64
}

// evalTime returns the time at which to evaluate f for the time t of the
// current piece (see pieceBounds).
func (s *Solver) evalTime(t float64) float64 {
	if !s.piece.atStart && !s.piece.atEnd {
		return t // the common case, kept small enough to inline
	}
	return s.piece.inside(t)
}

// inside returns t, or the time one ulp inside the piece when t lies on or
// beyond a break point that bounds it.
func (pb *pieceBounds) inside(t float64) float64 {
	if pb.atEnd && (t-pb.end)*pb.dir >= 0 {
		return math.Nextafter(pb.end, pb.start)
	}
	if pb.atStart && (t-pb.start)*pb.dir <= 0 {
		return math.Nextafter(pb.start, pb.end)
	}
	return t
}

// integrate runs the step loop from s.y = y(t0) to tEnd with output at the
// times ts in (t0, tEnd] (out has a row for each), attempting at most
// maxSteps steps.
func (s *Solver) integrate(f Func, t0, tEnd float64, ts, out []float64, dir float64, maxSteps int, rc runConfig) (st Stats, err error) {
	tb, o := s.tb, &s.opts
	head := s.n - o.QuadratureTail
	nst := tb.Stages()
	t := t0
	k := s.k

	// f at the start; FSAL methods then carry it from step to step.
	f(s.evalTime(t), s.y, k[0])
	st.NFE++

	adaptive := tb.Adaptive() && o.Step == 0
	var h float64 // signed
	switch {
	case !adaptive:
		h = dir * o.Step
	case rc.firstStep > 0:
		h = dir * rc.firstStep
	default:
		h = dir * s.initialStep(f, t, s.y, k[0], dir)
		st.NFE++
	}
	if o.MaxStep > 0 && math.Abs(h) > o.MaxStep {
		h = dir * o.MaxStep
	}
	rPrev := 1.0
	next := 0 // next output index
	for next < len(ts) || (t-tEnd)*dir < 0 {
		if st.Accepted+st.Rejected >= maxSteps {
			return st, &SolveError{T: t, Step: h, Reason: fmt.Sprintf("%d steps attempted without reaching t=%g", o.maxSteps(), tEnd), Err: ErrTooManySteps}
		}
		t1 := t + h
		if !rc.overshoot {
			// Shorten the last step to land on tEnd; stretch a step that would
			// leave a sliver shorter than a billionth of the step.
			if rem := tEnd - t; (h-rem)*dir > 0 || math.Abs(rem-h) <= 1e-9*math.Abs(h) {
				h, t1 = rem, tEnd
			}
		}
		if t1 == t || (o.MinStep > 0 && math.Abs(h) < o.MinStep && t1 != tEnd) {
			return st, &SolveError{T: t, Step: h, Reason: "step size underflow", Err: ErrStepSizeUnderflow}
		}
		s.step(f, t, h, head)
		st.NFE += nst - 1

		ratio := 0.0
		if adaptive {
			ratio = s.errorRatio(h)
			if ratio-ratio != 0 { // NaN or Inf
				return st, &SolveError{T: t, Step: h, Reason: "non-finite state or derivative during the step", Err: ErrNonFinite}
			}
		} else if ok, _ := allFinite(s.y1); !ok {
			return st, &SolveError{T: t, Step: h, Reason: "non-finite state or derivative during the step", Err: ErrNonFinite}
		}

		if adaptive && ratio > 1 {
			st.Rejected++
			h *= s.ctrl.Factor(ratio, rPrev, false)
			if o.MinStep > 0 && math.Abs(h) < o.MinStep {
				return st, &SolveError{T: t, Step: h, Reason: fmt.Sprintf("step size %g below MinStep %g", math.Abs(h), o.MinStep), Err: ErrStepSizeUnderflow}
			}
			continue
		}
		st.Accepted++

		// f(t1, y1): the last stage of FSAL methods; for the others it is
		// evaluated when another step follows or the dense output needs it.
		needF1 := !tb.FSAL && ((tEnd-t1)*dir > 0 || rc.onStep != nil || (next < len(ts) && (ts[next]-t1)*dir < 0))
		if needF1 {
			f(s.evalTime(t1), s.y1, k[nst])
			st.NFE++
		}
		if rc.onStep != nil {
			s.reportStep(t, h, t1, rc.onStep)
		}
		if next, err = s.outputs(ts, out, next, t, h, t1, dir); err != nil {
			return st, err
		}

		// Next step size.
		if adaptive {
			h *= s.ctrl.Factor(ratio, rPrev, true)
			rPrev = math.Max(ratio, 1e-4)
			if o.MaxStep > 0 && math.Abs(h) > o.MaxStep {
				h = dir * o.MaxStep
			}
		}
		// Advance: y ← y1, k[0] ← f(t1, y1).
		s.y, s.y1 = s.y1, s.y
		if tb.FSAL {
			k[0], k[nst-1] = k[nst-1], k[0]
		} else if needF1 {
			k[0], k[nst] = k[nst], k[0]
		}
		t = t1
	}
	st.LastStep = math.Abs(h)
	return st, nil
}

// maxSteps is MaxSteps with its default.
func (o *Options) maxSteps() int {
	if o.MaxSteps == 0 {
		return defaultMaxSteps
	}
	return o.MaxSteps
}

// reportStep calls onStep with views of the step just accepted.
func (s *Solver) reportStep(t, h, t1 float64, onStep func(*StepInfo)) {
	nst := s.tb.Stages()
	s.info.T, s.info.H, s.info.T1, s.info.Y0, s.info.Y1 = t, h, t1, s.y, s.y1
	copy(s.info.Stages, s.stages)
	s.info.Stages[0] = s.y
	if s.tb.FSAL {
		s.info.Stages[nst-1] = s.y1
	}
	copy(s.info.K, s.k)
	onStep(&s.info)
}

// outputs writes the outputs at the times ts[next…] inside the accepted
// step (t, t1] and returns the next output index.
func (s *Solver) outputs(ts, out []float64, next int, t, h, t1, dir float64) (int, error) {
	n := s.n
	for next < len(ts) && (ts[next]-t1)*dir <= 0 {
		dst := out[next*n : (next+1)*n]
		if ts[next] == t1 {
			copy(dst, s.y1)
		} else {
			s.denseAt((ts[next]-t)/h, h, dst)
		}
		// Every output is checked: a finite step can still have an
		// infinite derivative at its end (fixed-step methods have no
		// error estimate to see it), and a seminorm does not look at
		// its zero-weight channels at all.
		if ok, i := allFinite(dst); !ok {
			return next, &SolveError{T: ts[next], Step: h, Reason: fmt.Sprintf("non-finite output (component %d)", i), Err: ErrNonFinite}
		}
		next++
	}
	return next, nil
}

// step computes one Runge–Kutta step of size h from (t, s.y) into s.y1 and,
// for adaptive methods, the error estimate into s.errBuf. k[0] = f(t, y)
// must be current. Only the first head components of stage inputs are formed.
func (s *Solver) step(f Func, t, h float64, head int) {
	tb := s.tb
	nst := tb.Stages()
	y := s.y
	s.stages[0] = y
	for i := 1; i < nst; i++ {
		dst := s.stages[i]
		fsalLast := tb.FSAL && i == nst-1
		s.gather(tb.A[i], s.aIdx[i], h)
		if fsalLast {
			// The last stage input is y1 itself: form it over the whole state.
			s.linComb(dst, y, s.coef[:len(s.aIdx[i])], s.vecs[:len(s.aIdx[i])])
		} else {
			LinComb(dst[:head], y[:head], s.coef[:len(s.aIdx[i])], s.vecs[:len(s.aIdx[i])])
		}
		f(s.evalTime(t+tb.C[i]*h), dst, s.k[i])
	}
	if tb.FSAL {
		// y1 is the last stage input; swap buffers instead of copying.
		s.y1, s.stages[nst-1] = s.stages[nst-1], s.y1
	} else {
		s.gather(tb.B, s.bIdx, h)
		s.linComb(s.y1, y, s.coef[:len(s.bIdx)], s.vecs[:len(s.bIdx)])
	}
	if tb.E != nil {
		s.gather(tb.E, s.eIdx, h)
		e := s.errBuf[:errorLen(s.norm, len(s.errBuf))]
		s.linComb(e, nil, s.coef[:len(s.eIdx)], s.vecs[:len(s.eIdx)])
	}
}

// Elementwise passes over states of at least vecParallelMin components run
// in chunks of vecChunk on Solver.vec. Each element is computed as in the
// serial pass, so the chunking changes neither the results nor their
// independence of GOMAXPROCS; a chunk (64 KiB per vector) also keeps
// LinComb's repeated passes over dst in the core's L2.
const (
	vecChunk       = 1 << 13
	vecParallelMin = 1 << 16
	// maxLinCombVecs bounds the vectors one chunked linComb combines (the
	// chunk slices live in a fixed array); longer ones run serially.
	maxLinCombVecs = 16
)

// linCombArgs are the operands of a chunked pass: LinComb(dst, base, coef,
// vecs), or the error scaling of dst against y0 and y1.
type linCombArgs struct {
	dst, base, coef []float64
	vecs            [][]float64
	y0, y1          []float64
}

// setVectorPool lets the solver run its long elementwise passes on p (nil:
// serially) and binds the chunk tasks.
func (s *Solver) setVectorPool(p *taskPool) {
	s.vec = p
	if s.lcTask == nil {
		s.lcTask, s.scaleTask = s.linCombChunk, s.scaleChunk
	}
}

// linComb is LinComb(dst, base, coef, vecs), split into chunks on s.vec
// for long vectors.
func (s *Solver) linComb(dst, base, coef []float64, vecs [][]float64) {
	if s.vec == nil || len(dst) < vecParallelMin || len(vecs) > maxLinCombVecs {
		LinComb(dst, base, coef, vecs)
		return
	}
	s.lc = linCombArgs{dst: dst, base: base, coef: coef, vecs: vecs}
	s.vec.run((len(dst)+vecChunk-1)/vecChunk, s.lcTask)
	s.lc = linCombArgs{}
}

func (s *Solver) linCombChunk(i int) {
	a := &s.lc
	lo, hi := i*vecChunk, min((i+1)*vecChunk, len(a.dst))
	var parts [maxLinCombVecs][]float64
	vs := parts[:len(a.vecs)]
	for j, v := range a.vecs {
		vs[j] = v[lo:hi]
	}
	var base []float64
	if a.base != nil {
		base = a.base[lo:hi]
	}
	LinComb(a.dst[lo:hi], base, a.coef, vs)
}

// scaleError divides e[i] by atol + rtol·max(|y0_i|, |y1_i|), in chunks on
// s.vec for long vectors.
func (s *Solver) scaleError(e, y0, y1 []float64) {
	if s.vec == nil || len(e) < vecParallelMin {
		scaleErrorRange(e, y0, y1, s.atol, s.rtol)
		return
	}
	s.lc = linCombArgs{dst: e, y0: y0, y1: y1}
	s.vec.run((len(e)+vecChunk-1)/vecChunk, s.scaleTask)
	s.lc = linCombArgs{}
}

func (s *Solver) scaleChunk(i int) {
	a := &s.lc
	lo, hi := i*vecChunk, min((i+1)*vecChunk, len(a.dst))
	scaleErrorRange(a.dst[lo:hi], a.y0[lo:hi], a.y1[lo:hi], s.atol, s.rtol)
}

func scaleErrorRange(e, y0, y1 []float64, atol, rtol float64) {
	y0, y1 = y0[:len(e)], y1[:len(e)]
	for i := range e {
		e[i] /= atol + rtol*math.Max(math.Abs(y0[i]), math.Abs(y1[i]))
	}
}

// gather loads h·w[j] and k[j] for the nonzero indices idx into s.coef, s.vecs.
func (s *Solver) gather(w []float64, idx []int, h float64) {
	for m, j := range idx {
		s.coef[m] = h * w[j]
		s.vecs[m] = s.k[j]
	}
}

// errorRatio returns norm(err_i / (atol + rtol·max(|y0_i|, |y1_i|))).
func (s *Solver) errorRatio(h float64) float64 {
	y0, y1, e := s.y, s.y1[:len(s.y)], s.errBuf[:len(s.y)]
	atol, rtol := s.atol, s.rtol
	if s.isRMS {
		var s0, s1 float64
		i := 0
		for ; i <= len(e)-2; i += 2 {
			a := e[i] / (atol + rtol*math.Max(math.Abs(y0[i]), math.Abs(y1[i])))
			b := e[i+1] / (atol + rtol*math.Max(math.Abs(y0[i+1]), math.Abs(y1[i+1])))
			s0 += a * a
			s1 += b * b
		}
		sum := s0 + s1
		for ; i < len(e); i++ {
			a := e[i] / (atol + rtol*math.Max(math.Abs(y0[i]), math.Abs(y1[i])))
			sum += a * a
		}
		if len(e) == 0 {
			return 0
		}
		return math.Sqrt(sum / float64(len(e)))
	}
	// Components the norm gives no weight are neither formed (step) nor
	// scaled: what is left of them in e is never read.
	s.scaleError(e[:errorLen(s.norm, len(e))], y0, y1)
	return s.norm.Norm(e)
}

// initialStep selects the first step size by Hairer, Nørsett & Wanner I,
// II.4 (as torchdiffeq and SciPy do), using the solver's norm. It evaluates f
// once (the Euler probe); f0 = f(t0, y0) is given.
func (s *Solver) initialStep(f Func, t0 float64, y0, f0 []float64, dir float64) float64 {
	// The scaled vectors are formed only where the norm reads them, and the
	// Euler probe only where f reads it (not the quadrature tail): for an
	// adjoint these loops would otherwise pass over the whole parameter
	// gradient, serially.
	sc := s.errBuf
	m := errorLen(s.norm, len(sc))
	for i, v := range y0[:m] {
		sc[i] = v / (s.atol + math.Abs(v)*s.rtol)
	}
	d0 := s.norm.Norm(sc)
	for i, v := range f0[:m] {
		sc[i] = v / (s.atol + math.Abs(y0[i])*s.rtol)
	}
	d1 := s.norm.Norm(sc)
	h0 := 1e-6
	if !(d0 < 1e-5 || d1 < 1e-5) {
		h0 = 0.01 * d0 / d1
	}
	probe, f1 := s.y1, s.k[1%len(s.k)]
	for i := range probe[:len(probe)-s.opts.QuadratureTail] {
		probe[i] = y0[i] + h0*dir*f0[i]
	}
	f(s.evalTime(t0+h0*dir), probe, f1)
	for i := range sc[:m] {
		sc[i] = (f1[i] - f0[i]) / (s.atol + math.Abs(y0[i])*s.rtol)
	}
	d2 := s.norm.Norm(sc) / h0
	var h1 float64
	if d1 <= 1e-15 && d2 <= 1e-15 {
		h1 = math.Max(1e-6, h0*1e-3)
	} else {
		h1 = math.Pow(0.01/math.Max(d1, d2), 1/float64(s.tb.Order))
	}
	h := math.Min(100*h0, h1)
	if h != h || h <= 0 { // a non-finite f0 or f1; the first step will report it
		h = 1e-6
	}
	return h
}

// denseAt evaluates the dense output of the step just accepted (from s.y
// with size h, stages in s.k) at fraction theta into dst.
func (s *Solver) denseAt(theta, h float64, dst []float64) {
	s.interp.eval(s.y, s.k, theta, h, dst)
}

// interpolant evaluates a tableau's dense output on one step,
// y(t + θh) = y0 + h·Σ β_j(θ)·K_j (see Tableau.denseWeights), with scratch
// of its own so that evaluating allocates nothing.
type interpolant struct {
	tb   *Tableau
	beta []float64
	coef []float64
	vecs [][]float64
}

func (ip *interpolant) init(tb *Tableau) {
	nk := tb.denseVectors()
	ip.tb = tb
	ip.beta, ip.coef, ip.vecs = make([]float64, nk), make([]float64, nk), make([][]float64, nk)
}

// weights returns β(θ), valid until the next call.
func (ip *interpolant) weights(theta float64) []float64 {
	ip.tb.denseWeights(theta, ip.beta)
	return ip.beta
}

// eval writes y0 + h·Σ β_j(θ)·k_j into dst; nil entries of k (an f1 that
// was not evaluated) must have zero weight.
func (ip *interpolant) eval(y0 []float64, k [][]float64, theta, h float64, dst []float64) {
	m := 0
	for j, b := range ip.weights(theta) {
		if b != 0 && k[j] != nil {
			ip.coef[m] = h * b
			ip.vecs[m] = k[j]
			m++
		}
	}
	LinComb(dst, y0, ip.coef[:m], ip.vecs[:m])
}

// stepRecord records the accepted steps of a solve (through
// Options.OnStep-style hooks) and evaluates their dense output. It serves
// DenseSolution, the forward state of GQInterpAdjoint and the Direct
// method's tape. Per step it keeps the start time, end time and size, the
// piece it belongs to (break points separate pieces), the start state y0,
// and, as asked, the dense vectors K (for evaluating the interpolant) and
// the stage inputs Y_1…Y_{stages−1} (for differentiating the step).
type stepRecord struct {
	tb       *Tableau
	n        int
	nk       int // dense vectors per step (0: not recorded)
	nstages  int // stage inputs per step, Y_0 = y0 included
	perStep  int // vectors per step
	t, t1, h []float64
	piece    []int
	data     []float64
	kv       [][]float64 // views of one step's K, for the interpolant
	interp   interpolant
}

// reset empties the record for steps of tb on states of length n, keeping
// its memory. dense asks for the dense vectors, stages for the stage inputs
// 0..stages−1 (at least 1: y0 is always kept).
func (r *stepRecord) reset(tb *Tableau, n int, dense bool, stages int) {
	if r.tb != tb {
		r.interp.init(tb)
		r.kv = make([][]float64, tb.denseVectors())
	}
	r.tb, r.n, r.nk, r.nstages = tb, n, 0, max(stages, 1)
	if dense {
		r.nk = tb.denseVectors()
	}
	r.perStep = r.nstages + r.nk
	r.t, r.t1, r.h, r.data, r.piece = r.t[:0], r.t1[:0], r.h[:0], r.data[:0], r.piece[:0]
}

// push records the accepted step si as part of the given piece.
func (r *stepRecord) push(si *StepInfo, piece int) {
	r.piece = append(r.piece, piece)
	r.t = append(r.t, si.T)
	r.t1 = append(r.t1, si.T1)
	r.h = append(r.h, si.H)
	r.data = append(r.data, si.Y0[:r.n]...)
	for _, k := range si.K[:r.nk] {
		r.data = append(r.data, k[:r.n]...)
	}
	for _, y := range si.Stages[1:r.nstages] {
		r.data = append(r.data, y[:r.n]...)
	}
}

func (r *stepRecord) steps() int { return len(r.t) }

// vec returns vector j of step i.
func (r *stepRecord) vec(i, j int) []float64 {
	off := (i*r.perStep + j) * r.n
	return r.data[off : off+r.n : off+r.n]
}

// y0 returns the state at the start of step i.
func (r *stepRecord) y0(i int) []float64 { return r.vec(i, 0) }

// stage returns the input Y_j of stage j (< stages) of step i; Y_0 is y0.
func (r *stepRecord) stage(i, j int) []float64 {
	if j == 0 {
		return r.y0(i)
	}
	return r.vec(i, r.nk+j)
}

// locate returns the step containing time t (t_i < t ≤ t1_i in the
// direction of integration; the first step for t at or before its start)
// and the fraction θ into it; exact reports that t is the step's end.
func (r *stepRecord) locate(t float64) (step int, theta float64, exact bool) {
	dir := 1.0
	if r.h[0] < 0 {
		dir = -1
	}
	i := sort.Search(len(r.t), func(i int) bool { return (r.t[i]-t)*dir >= 0 }) - 1
	if i < 0 {
		i = 0
	}
	if t == r.t1[i] {
		return i, 1, true
	}
	return i, (t - r.t[i]) / r.h[i], false
}

// at writes the dense output of step i at fraction theta into dst.
func (r *stepRecord) at(i int, theta float64, dst []float64) {
	r.atWith(&r.interp, r.kv, i, theta, dst)
}

// atWith is at with the caller's interpolant and vector views, so that
// concurrent quadrature tasks can read one record.
func (r *stepRecord) atWith(ip *interpolant, kv [][]float64, i int, theta float64, dst []float64) {
	for j := range kv {
		kv[j] = r.vec(i, 1+j)
	}
	ip.eval(r.y0(i), kv, theta, r.h[i], dst)
}

// DenseSolution is a finished solve that can be evaluated anywhere inside
// its time span, by the same interpolant the solver uses for output times.
// It stores every accepted step (O(steps·stages·n) memory).
type DenseSolution struct {
	rec   stepRecord
	n     int
	dir   float64
	t0    float64
	tEnd  float64
	final []float64
}

// SolveDense solves like Solve and also returns the dense solution over
// [ts[0], ts[len(ts)-1]].
func (s *Solver) SolveDense(f Func, y0, ts, out []float64) (*DenseSolution, Stats, error) {
	d := &DenseSolution{n: len(y0)}
	d.rec.reset(s.tb, len(y0), true, 1)
	user := s.opts.OnStep
	rec := func(si *StepInfo) {
		d.rec.push(si, 0)
		if user != nil {
			user(si)
		}
	}
	rc := s.runConfig()
	rc.onStep = rec
	st, err := s.run(f, y0, ts, out, rc)
	if err != nil {
		return nil, st, err
	}
	d.dir, _ = validateTimes("ts", ts, 1, false)
	d.t0, d.tEnd = ts[0], ts[len(ts)-1]
	d.final = append([]float64(nil), out[len(out)-len(y0):]...)
	return d, st, nil
}

// Span returns the first and last time of the solution.
func (d *DenseSolution) Span() (t0, t1 float64) { return d.t0, d.tEnd }

// Steps returns the number of stored steps.
func (d *DenseSolution) Steps() int { return d.rec.steps() }

// At writes the solution at time t into dst (length n). t must lie within
// the span. At is not safe for concurrent use (it reuses scratch space).
func (d *DenseSolution) At(t float64, dst []float64) error {
	if len(dst) != d.n {
		return invalidf("dst", "has length %d, want %d", len(dst), d.n)
	}
	if t != t || (t-d.t0)*d.dir < 0 || (t-d.tEnd)*d.dir > 0 {
		return invalidf("t", "%v outside the solution's span [%v, %v]", t, d.t0, d.tEnd)
	}
	steps := d.rec.steps()
	switch {
	case steps > 0 && t == d.t0:
		copy(dst, d.rec.y0(0))
	case steps == 0 || t == d.tEnd:
		copy(dst, d.final)
	default:
		i, theta, exact := d.rec.locate(t)
		if exact && i+1 < steps {
			copy(dst, d.rec.y0(i+1)) // where the interpolant of step i+1 starts
		} else {
			d.rec.at(i, theta, dst)
		}
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
