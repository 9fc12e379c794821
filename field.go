package neuralode

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
