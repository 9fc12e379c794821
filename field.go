package neuralode

import (
	"fmt"
	"math"
	"sort"
)

// VectorField is a batched, parameterised right-hand side dz/dt = f(t, z; θ).
//
// States are flat and batch-major: a batch of B samples of dimension D is a
// slice of length B·D with sample b, component d at index b·D+d. Every sample
// sees the same t and θ. The parameter vector θ is owned by the field and is
// returned, as a live view, by Params; optimisers update it in place and
// gradients use its layout.
type VectorField interface {
	// Dim returns D, the state dimension of one sample.
	Dim() int
	// Params returns the field's parameter vector θ (not a copy).
	Params() []float64
	// NewEvaluator returns an Evaluator with its own scratch space.
	NewEvaluator() Evaluator
}

// Evaluator evaluates a VectorField and its vector–Jacobian products.
//
// An Evaluator is used by one goroutine at a time; several Evaluators of one
// field may run concurrently as long as nobody modifies the parameters.
// After the first call for a given batch size, calls allocate nothing.
type Evaluator interface {
	// Eval writes f(t, z) into dz; len(z) = len(dz) = B·D.
	Eval(t float64, z, dz []float64)

	// VJP evaluates vector–Jacobian products for the cotangent a (length B·D)
	// at (t, z). Each output is optional (nil skips its work):
	//   f  (length B·D) is overwritten with f(t, z);
	//   gz (length B·D) is overwritten with aᵀ∂f/∂z, row by row;
	//   gp (length P) has aᵀ∂f/∂θ, summed over the batch, ADDED to it;
	//   gt, if non-nil, is overwritten with aᵀ∂f/∂t summed over the batch.
	VJP(t float64, z, a, f, gz, gp []float64, gt *float64)
}

// EvaluatorWrapper is implemented by an Evaluator that forwards Eval and
// VJP, arguments and results unchanged, to another one (to count calls, log,
// or stop a long computation). The solvers look through it for the work an
// evaluator of this package can save when told how it will be called (the
// weights packed once per solve, activations kept for backpropagation, the
// parameter gradient set rather than added): without Unwrap a wrapped MLP
// would pack its weights at every evaluation.
type EvaluatorWrapper interface {
	Evaluator
	// Unwrap returns the evaluator this one forwards to.
	Unwrap() Evaluator
}

// findEvaluator returns the first of ev and the evaluators it wraps
// (EvaluatorWrapper) that is a T.
func findEvaluator[T any](ev Evaluator) (T, bool) {
	for depth := 0; ev != nil && depth < 16; depth++ {
		if t, ok := ev.(T); ok {
			return t, true
		}
		w, ok := ev.(EvaluatorWrapper)
		if !ok {
			break
		}
		ev = w.Unwrap()
	}
	var zero T
	return zero, false
}

// TimeDependent is implemented by vector fields that can report whether f
// depends explicitly on t. Fields that do not implement it are treated as
// time-dependent.
type TimeDependent interface {
	TimeDependent() bool
}

// isTimeDependent reports whether f may depend on t explicitly.
func isTimeDependent(f VectorField) bool {
	if td, ok := f.(TimeDependent); ok {
		return td.TimeDependent()
	}
	return true
}

// FuncField adapts plain functions to a VectorField, for fields with
// hand-written derivatives. The parameters are an argument of both
// functions: F and VJPFunc receive the field's current parameter vector as
// p (always ff.P at the time of the call), so a field bound to a joint
// vector (BindParams, NewWongZakai) or updated by an optimiser is seen by
// them. Read θ from p, never from a slice captured when the field was
// built: that slice goes stale as soon as the field is rebound.
//
// FuncField keeps no scratch space, so NewEvaluator returns the field itself
// and its functions must be safe for concurrent use. Hand-written
// derivatives are easy to get subtly wrong (a VJPFunc that does not fill f
// when asked gives the adjoint methods a wrong gradient without any error):
// check them with CheckVJP before training.
type FuncField struct {
	D int       // state dimension of one sample
	P []float64 // parameters (may be nil)
	// F writes f(t, z; p) into dz for a batch z of length B·D.
	F func(t float64, z, p, dz []float64)
	// VJPFunc implements Evaluator.VJP with the parameters p passed
	// explicitly. Every gradient method needs it (NewGradientSolver rejects
	// a FuncField without it); only plain solves may leave it nil.
	VJPFunc func(t float64, z, p, a, f, gz, gp []float64, gt *float64)
	// Autonomous reports that F does not depend on t.
	Autonomous bool

	wzBound bool // bound into a WongZakai's joint parameter vector
}

// Dim returns ff.D.
func (ff *FuncField) Dim() int { return ff.D }

// Params returns ff.P.
func (ff *FuncField) Params() []float64 { return ff.P }

// BindParams makes ff.P alias p (len(p) must equal len(ff.P)), so that a
// FuncField can share a joint parameter vector, as in NewWongZakai. F and
// VJPFunc see the new vector through their p argument.
func (ff *FuncField) BindParams(p []float64) error {
	if len(p) != len(ff.P) {
		return invalidf("FuncField.BindParams", "got %d parameters, the field has %d", len(p), len(ff.P))
	}
	ff.P = p
	ff.wzBound = false
	return nil
}

func (ff *FuncField) wzBinding() *bool { return &ff.wzBound }

// validateField reports a FuncField that cannot be evaluated: no F, no
// VJPFunc when derivatives are needed, or a non-positive dimension.
func (ff *FuncField) validateField(needVJP bool) error {
	switch {
	case ff.D < 1:
		return invalidf("FuncField.D", "state dimension %d, want ≥ 1", ff.D)
	case ff.F == nil:
		return invalidf("FuncField.F", "is nil")
	case needVJP && ff.VJPFunc == nil:
		return invalidf("FuncField.VJPFunc", "is nil, but the gradient methods need vector–Jacobian products")
	}
	return nil
}

// NewEvaluator returns ff itself.
func (ff *FuncField) NewEvaluator() Evaluator { return ff }

// TimeDependent reports !ff.Autonomous.
func (ff *FuncField) TimeDependent() bool { return !ff.Autonomous }

// Eval calls ff.F with the current parameters ff.P.
func (ff *FuncField) Eval(t float64, z, dz []float64) { ff.F(t, z, ff.P, dz) }

// VJP calls ff.VJPFunc with the current parameters ff.P; it panics if
// VJPFunc is nil (the solvers recover that as ErrPanic, and
// NewGradientSolver rejects such a field up front).
func (ff *FuncField) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	ff.VJPFunc(t, z, ff.P, a, f, gz, gp, gt)
}

// fieldValidator is implemented by fields that can tell up front that they
// cannot be evaluated (a FuncField without F, say), so that constructors
// reject them instead of the solve panicking.
type fieldValidator interface {
	validateField(needVJP bool) error
}

// stateLengthChecker is implemented by fields that accept only some state
// lengths (a WongZakai field's noise fixes B·D), checked before a solve.
type stateLengthChecker interface {
	checkStateLen(n int) error
}

// wzBindable is implemented by the package's fields that can join a
// WongZakai; wzBinding points at the flag that says they already have.
type wzBindable interface {
	wzBinding() *bool
}

// ParamTensors is implemented by vector fields whose parameter vector is a
// concatenation of tensors (for an MLP: W0, b0, W1, b1, …). ParamSizes
// returns their lengths in order; they sum to len(Params()). The full
// adjoint norm measures each tensor separately, as torchdiffeq does.
type ParamTensors interface {
	ParamSizes() []int
}

// VJPCheckOptions configures CheckVJP.
type VJPCheckOptions struct {
	T float64   // the time of the check
	Z []float64 // a batch of states, B·D values (keep B small: the cost is O((B·D + P)·B·D))
	// A is the cotangent (B·D values); nil uses a fixed pseudo-random one.
	A []float64
	// Step is the relative finite-difference step h·max(1, |x|); default 1e-6.
	Step float64
	// Tol bounds |product − reference| by Tol·max(1, max |reference|) for
	// each product; default 1e-6.
	Tol float64
}

// VJPMismatchError reports a vector–Jacobian product that disagrees with
// its reference: f with Eval, ∂/∂z, ∂/∂θ and ∂/∂t with central finite
// differences of aᵀf. It wraps ErrInvalidInput.
type VJPMismatchError struct {
	Product string // "f", "gz", "gp" or "gt"
	Call    string // the outputs the call asked for, e.g. "f, gz, gp, gt" or "gp alone"
	Index   int    // the component that differs most
	Got     float64
	Want    float64
}

// Error describes the mismatch.
func (e *VJPMismatchError) Error() string {
	return fmt.Sprintf("neuralode: VJP check: %s[%d] = %v in a call asking for %s, reference %v",
		e.Product, e.Index, e.Got, e.Call, e.Want)
}

// Unwrap returns ErrInvalidInput.
func (e *VJPMismatchError) Unwrap() error { return ErrInvalidInput }

// CheckVJP verifies a field's vector–Jacobian products at (opts.T, opts.Z)
// against references: the f output against Eval, aᵀ∂f/∂z, aᵀ∂f/∂θ and
// aᵀ∂f/∂t against central differences of aᵀf(t, z; θ) (θ is perturbed in
// place in Params and restored). It checks the Evaluator contract too: each
// product is requested alone, all together, and all but f, with the
// outputs prefilled with garbage, so an output that is not overwritten (f,
// gz, gt) or not added to (gp) is caught. Run it on a hand-written field
// (FuncField) before training: a wrong product gives the gradient methods
// a wrong gradient without any error. It returns nil, a *VJPMismatchError,
// an *InputError for bad options, or an error wrapping ErrPanic if the
// field panics.
func CheckVJP(field VectorField, opts VJPCheckOptions) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError("vector field", p)
		}
	}()
	a, step, tol, err := checkVJPOptions(field, opts)
	if err != nil {
		return err
	}
	ev := field.NewEvaluator()
	want := vjpByDifferences(ev, opts.T, opts.Z, a, field.Params(), step)
	return compareVJPCalls(ev, opts.T, opts.Z, a, len(field.Params()), want, tol)
}

// checkVJPOptions validates CheckVJP's arguments and returns the cotangent
// (opts.A or a fixed pseudo-random one), the difference step and the
// tolerance with their defaults applied.
func checkVJPOptions(field VectorField, opts VJPCheckOptions) (a []float64, step, tol float64, err error) {
	if field == nil {
		return nil, 0, 0, invalidf("field", "nil vector field")
	}
	if v, ok := field.(fieldValidator); ok {
		if err := v.validateField(true); err != nil {
			return nil, 0, 0, err
		}
	}
	d, n := field.Dim(), len(opts.Z)
	if d < 1 || n == 0 || n%d != 0 {
		return nil, 0, 0, invalidf("VJPCheckOptions.Z", "has length %d, want a positive multiple of the dimension %d", n, d)
	}
	if c, ok := field.(stateLengthChecker); ok {
		if err := c.checkStateLen(n); err != nil {
			return nil, 0, 0, err
		}
	}
	a = opts.A
	if a == nil {
		a = make([]float64, n)
		x := uint64(0x9e3779b97f4a7c15)
		for i := range a {
			x = x*6364136223846793005 + 1442695040888963407
			a[i] = float64(x>>11)/(1<<53)*2 - 1
		}
	} else if len(a) != n {
		return nil, 0, 0, invalidf("VJPCheckOptions.A", "has length %d, want %d", len(a), n)
	}
	step, tol = opts.Step, opts.Tol
	if step == 0 {
		step = 1e-6
	}
	if tol == 0 {
		tol = 1e-6
	}
	if !(step > 0 && step < 1) || !(tol > 0) || math.IsInf(tol, 0) {
		return nil, 0, 0, invalidf("VJPCheckOptions", "Step %v must be in (0, 1) and Tol %v positive and finite", opts.Step, opts.Tol)
	}
	for _, x := range []struct {
		name string
		v    []float64
	}{{"VJPCheckOptions.Z", opts.Z}, {"VJPCheckOptions.A", a}, {"VJPCheckOptions.T", []float64{opts.T}}, {"params", field.Params()}} {
		if err := checkFinite(x.name, x.v); err != nil {
			return nil, 0, 0, err
		}
	}
	return a, step, tol, nil
}

// vjpProducts holds f and the three products aᵀ∂f/∂z, aᵀ∂f/∂θ, aᵀ∂f/∂t.
type vjpProducts struct {
	f, gz, gp []float64
	gt        float64
}

// vjpByDifferences computes the reference products: f by Eval, the
// derivatives by central differences of aᵀf in each argument (θ is
// perturbed in place and restored).
func vjpByDifferences(ev Evaluator, t float64, z0, a, theta []float64, step float64) vjpProducts {
	n := len(z0)
	z := append([]float64(nil), z0...)
	buf := make([]float64, n)
	// aᵀf at the current arguments.
	dot := func() float64 {
		ev.Eval(t, z, buf)
		return Dot(a, buf)
	}
	central := func(x *float64) float64 {
		x0 := *x
		// Restored even if the field panics at a perturbed point: θ is
		// the caller's.
		defer func() { *x = x0 }()
		h := step * math.Max(1, math.Abs(x0))
		*x = x0 + h
		up := dot()
		*x = x0 - h
		down := dot()
		return (up - down) / (2 * h)
	}
	w := vjpProducts{f: make([]float64, n), gz: make([]float64, n), gp: make([]float64, len(theta))}
	ev.Eval(t, z, w.f)
	for i := range z {
		w.gz[i] = central(&z[i])
	}
	for k := range theta {
		w.gp[k] = central(&theta[k])
	}
	w.gt = central(&t)
	return w
}

// compareVJPCalls asks the evaluator for each output alone, all together
// and all but f, with the outputs prefilled (NaN, or 1 for the accumulated
// gp) so that an output left unwritten, or gp assigned instead of added
// to, shows.
func compareVJPCalls(ev Evaluator, t float64, z, a []float64, np int, want vjpProducts, tol float64) error {
	n := len(z)
	calls := []struct {
		name          string
		f, gz, gp, gt bool
	}{
		{"f, gz, gp, gt", true, true, true, true},
		{"gz, gp, gt", false, true, true, true},
		{"f alone", true, false, false, false},
		{"gz alone", false, true, false, false},
		{"gp alone", false, false, true, false},
		{"gt alone", false, false, false, true},
	}
	nan := math.NaN()
	for _, c := range calls {
		var f, gz, gp []float64
		var gt *float64
		if c.f {
			f = make([]float64, n)
			fill(f, nan)
		}
		if c.gz {
			gz = make([]float64, n)
			fill(gz, nan)
		}
		if c.gp {
			// gp is accumulated into: start from 1 and subtract it after.
			gp = make([]float64, np)
			fill(gp, 1)
		}
		if c.gt {
			gt = new(float64)
			*gt = nan
		}
		ev.VJP(t, z, a, f, gz, gp, gt)
		for i := range gp {
			gp[i]--
		}
		for _, p := range []struct {
			name      string
			got, want []float64
		}{{"f", f, want.f}, {"gz", gz, want.gz}, {"gp", gp, want.gp}} {
			if p.got == nil {
				continue
			}
			if e := compareProducts(p.got, p.want, tol); e != nil {
				e.Product, e.Call = p.name, c.name
				return e
			}
		}
		if gt != nil {
			if e := compareProducts([]float64{*gt}, []float64{want.gt}, tol); e != nil {
				e.Product, e.Call = "gt", c.name
				return e
			}
		}
	}
	return nil
}

func fill(x []float64, v float64) {
	for i := range x {
		x[i] = v
	}
}

// compareProducts returns the worst component of got that differs from want
// by more than tol·max(1, max|want|), or nil.
func compareProducts(got, want []float64, tol float64) *VJPMismatchError {
	scale := 1.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(v))
	}
	worst, at := 0.0, -1
	for i := range want {
		d := math.Abs(got[i] - want[i])
		if !(d <= tol*scale) && (at < 0 || !(d <= worst)) { // NaN counts as worst
			worst, at = d, i
			if d != d {
				break
			}
		}
	}
	if at < 0 {
		return nil
	}
	return &VJPMismatchError{Index: at, Got: got[at], Want: want[at]}
}

// Predict integrates a (typically trained) field dz/dt = field(t, z) from
// z0 at ts[0] through the times ts, strictly increasing or decreasing and
// independent of the times it was trained on, and returns z(ts[i]) for
// every i (len(ts)·len(z0) values, row 0 is z0). It is the way to evaluate
// a trained or loaded model at arbitrary times. opts configures the solver
// as for NewSolver (the zero value is Dormand–Prince at torchdiffeq's
// tolerances, rtol 1e-7 and atol 1e-9); the field's break points
// (Breakpointer) are added to opts.Breaks, so no step crosses them, as in
// the gradient methods. For a continuous trajectory evaluated at many
// times, SolveDense with an Evaluator's Eval as the Func returns an
// interpolant instead.
func Predict(field VectorField, opts Options, z0, ts []float64) (out []float64, st Stats, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, panicError("vector field", p)
		}
	}()
	if field == nil {
		return nil, st, invalidf("field", "nil vector field")
	}
	if v, ok := field.(fieldValidator); ok {
		if err := v.validateField(false); err != nil {
			return nil, st, err
		}
	}
	d, n := field.Dim(), len(z0)
	if d < 1 || n == 0 || n%d != 0 {
		return nil, st, invalidf("z0", "has length %d, want a positive multiple of the state dimension %d", n, d)
	}
	if c, ok := field.(stateLengthChecker); ok {
		if err := c.checkStateLen(n); err != nil {
			return nil, st, err
		}
	}
	if err := checkFinite("params", field.Params()); err != nil {
		return nil, st, err
	}
	if bp, ok := field.(Breakpointer); ok && len(bp.Breakpoints()) > 0 {
		br := append(append([]float64(nil), opts.Breaks...), bp.Breakpoints()...)
		sort.Float64s(br)
		opts.Breaks = br[:0]
		for i, b := range br {
			if i == 0 || b != br[i-1] {
				opts.Breaks = append(opts.Breaks, b)
			}
		}
	}
	s, err := NewSolver(opts)
	if err != nil {
		return nil, st, err
	}
	ev := field.NewEvaluator()
	freezeParams(ev, true) // θ is constant during the solve: pack weights once
	// The evaluator may be one the caller holds (behind a wrapper): it must
	// see later parameter updates again.
	defer freezeParams(ev, false)
	out = make([]float64, len(ts)*n)
	st, err = s.Solve(ev.Eval, z0, ts, out)
	if err != nil {
		return nil, st, err
	}
	return out, st, nil
}
