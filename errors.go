package neuralode

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the package returns wraps one of these, so callers
// can classify failures with errors.Is; the concrete types below carry details
// (the time, the field, the step size) for errors.As.
var (
	// ErrInvalidInput reports a malformed argument: wrong lengths, times that are
	// not strictly monotone, non-positive tolerances, bad option values.
	ErrInvalidInput = errors.New("neuralode: invalid input")
	// ErrNonFinite reports a NaN or infinite value in an input, a state or a derivative.
	ErrNonFinite = errors.New("neuralode: non-finite value")
	// ErrStepSizeUnderflow reports that the adaptive step size fell below the
	// smallest step the solver may take.
	ErrStepSizeUnderflow = errors.New("neuralode: step size underflow")
	// ErrTooManySteps reports that a solve attempted more steps than allowed.
	ErrTooManySteps = errors.New("neuralode: too many steps")
	// ErrNoConvergence reports that an iterative method did not converge.
	ErrNoConvergence = errors.New("neuralode: no convergence")
	// ErrPanic reports a panic inside a user callback, recovered and returned
	// as an error.
	ErrPanic = errors.New("neuralode: panic in callback")
)

// InputError describes an invalid argument. It wraps ErrInvalidInput, or
// ErrNonFinite when the argument holds NaN or Inf.
type InputError struct {
	Field  string // the argument or option at fault, e.g. "z0" or "Options.RTol"
	Reason string // what is wrong with it
	Err    error  // ErrInvalidInput or ErrNonFinite
}

// Error returns "neuralode: field: reason".
func (e *InputError) Error() string {
	return fmt.Sprintf("neuralode: %s: %s", e.Field, e.Reason)
}

// Unwrap returns the sentinel error, for errors.Is.
func (e *InputError) Unwrap() error { return e.Err }

func invalidf(field, format string, args ...any) error {
	return &InputError{Field: field, Reason: fmt.Sprintf(format, args...), Err: ErrInvalidInput}
}

// SolveError describes a failure during integration at time T. It wraps
// ErrNonFinite, ErrStepSizeUnderflow, ErrTooManySteps or ErrPanic.
type SolveError struct {
	T      float64 // the time at which the failure was detected
	Step   float64 // the step size being attempted, if any
	Phase  string  // "forward", "backward", or "" for a plain solve
	Reason string
	Err    error
}

// Error describes the failure with its phase, time and step size.
func (e *SolveError) Error() string {
	p := ""
	if e.Phase != "" {
		p = e.Phase + " "
	}
	if e.Step == 0 {
		return fmt.Sprintf("neuralode: %ssolve failed at t=%g: %s", p, e.T, e.Reason)
	}
	return fmt.Sprintf("neuralode: %ssolve failed at t=%g (step %g): %s", p, e.T, e.Step, e.Reason)
}

// Unwrap returns the sentinel error, for errors.Is.
func (e *SolveError) Unwrap() error { return e.Err }

// allFinite reports whether every element of x is finite, and the index of
// the first that is not.
func allFinite(x []float64) (bool, int) {
	for i, v := range x {
		if v-v != 0 { // NaN-NaN and Inf-Inf are NaN; finite v-v is 0.
			return false, i
		}
	}
	return true, -1
}

func checkFinite(field string, x []float64) error {
	if ok, i := allFinite(x); !ok {
		return &InputError{Field: field, Reason: fmt.Sprintf("element %d is %v", i, x[i]), Err: ErrNonFinite}
	}
	return nil
}

// panicError converts a recovered panic value into a *SolveError wrapping
// ErrPanic, naming where it was caught.
func panicError(where string, p any) error {
	return &SolveError{Reason: fmt.Sprintf("panic in %s: %v", where, p), Err: ErrPanic}
}
