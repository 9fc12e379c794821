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
// hand-written derivatives. It keeps no scratch space, so NewEvaluator
// returns the field itself and its functions must be safe for concurrent use.
type FuncField struct {
	D int       // state dimension of one sample
	P []float64 // parameters (may be nil)
	// F writes f(t, z) into dz for a batch z of length B·D.
	F func(t float64, z, dz []float64)
	// VJPFunc implements Evaluator.VJP; it may be nil when no gradient is needed.
	VJPFunc func(t float64, z, a, f, gz, gp []float64, gt *float64)
	// Autonomous reports that F does not depend on t.
	Autonomous bool
}

// Dim returns ff.D.
func (ff *FuncField) Dim() int { return ff.D }

// Params returns ff.P.
func (ff *FuncField) Params() []float64 { return ff.P }

// BindParams makes ff.P alias p (len(p) must equal len(ff.P)), so that a
// FuncField can share a joint parameter vector, as in NewWongZakai. It only
// takes effect if F and VJPFunc read the parameters through ff.P when called.
func (ff *FuncField) BindParams(p []float64) error {
	if len(p) != len(ff.P) {
		return invalidf("FuncField.BindParams", "got %d parameters, the field has %d", len(p), len(ff.P))
	}
	ff.P = p
	return nil
}

// NewEvaluator returns ff itself.
func (ff *FuncField) NewEvaluator() Evaluator { return ff }

// TimeDependent reports !ff.Autonomous.
func (ff *FuncField) TimeDependent() bool { return !ff.Autonomous }

// Eval calls ff.F.
func (ff *FuncField) Eval(t float64, z, dz []float64) { ff.F(t, z, dz) }

// VJP calls ff.VJPFunc; it panics if VJPFunc is nil.
func (ff *FuncField) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	ff.VJPFunc(t, z, a, f, gz, gp, gt)
}

// ParamTensors is implemented by vector fields whose parameter vector is a
// concatenation of tensors (for an MLP: W0, b0, W1, b1, …). ParamSizes
// returns their lengths in order; they sum to len(Params()). The full
// adjoint norm measures each tensor separately, as torchdiffeq does.
type ParamTensors interface {
	ParamSizes() []int
}
