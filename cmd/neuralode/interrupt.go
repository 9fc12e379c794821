package main

// Interrupts: the first SIGINT/SIGTERM asks training to stop, the second
// exits at once. A stop request is honoured inside a step too: the vector
// field is wrapped so that, once a stop is requested, every evaluation
// returns NaN, the solver fails at its next step, and the run saves the state
// of the last completed optimiser step (a step is never half applied).

import (
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/neuralode/neuralode"
)

// interrupts are the stop checks of a training run: betweenSteps is polled
// after every optimiser step, withinStep inside every evaluation of the
// vector field. Either may be nil.
type interrupts struct {
	betweenSteps func() bool
	withinStep   func() bool
}

// interruptHandler turns signals into a stop request (first signal) and a
// forced exit (second signal).
type interruptHandler struct {
	flag   atomic.Bool
	stderr io.Writer
	exit   func(code int)
}

func newInterruptHandler(stderr io.Writer, exit func(int)) *interruptHandler {
	return &interruptHandler{stderr: stderr, exit: exit}
}

// requested reports whether a stop was requested.
func (h *interruptHandler) requested() bool { return h.flag.Load() }

// watch consumes signals until sigs is closed.
func (h *interruptHandler) watch(sigs <-chan os.Signal) {
	n := 0
	for range sigs {
		n++
		if n == 1 {
			h.flag.Store(true)
			fmt.Fprintln(h.stderr, "neuralode: interrupt: stopping and saving a checkpoint (interrupt again to exit at once)")
			continue
		}
		removeTempFiles()
		fmt.Fprintln(h.stderr, "neuralode: second interrupt: exiting without saving")
		h.exit(exitInterrupted)
		return
	}
}

// tempFiles holds the temporary files of saves in progress, removed by a
// forced exit.
var tempFiles sync.Map // path → struct{}

func removeTempFiles() {
	tempFiles.Range(func(k, _ any) bool {
		os.Remove(k.(string))
		return true
	})
}

// abortableField wraps a vector field so that its evaluations fail fast (NaN
// outputs) once abort reports true. It forwards the optional interfaces the
// gradient solvers look for, so the wrapped field integrates bit for bit as
// the field itself.
type abortableField struct {
	neuralode.VectorField
	abort func() bool
}

// TimeDependent forwards the field's answer (time-dependent if it has none).
func (f *abortableField) TimeDependent() bool {
	if td, ok := f.VectorField.(neuralode.TimeDependent); ok {
		return td.TimeDependent()
	}
	return true
}

// ParamSizes forwards the field's tensor sizes (one tensor if it has none).
func (f *abortableField) ParamSizes() []int {
	if pt, ok := f.VectorField.(neuralode.ParamTensors); ok {
		return pt.ParamSizes()
	}
	return []int{len(f.Params())}
}

// Breakpoints forwards the field's break points (none if it has none).
func (f *abortableField) Breakpoints() []float64 {
	if bp, ok := f.VectorField.(neuralode.Breakpointer); ok {
		return bp.Breakpoints()
	}
	return nil
}

// NewEvaluator wraps the field's evaluator.
func (f *abortableField) NewEvaluator() neuralode.Evaluator {
	ev := f.VectorField.NewEvaluator()
	sel, _ := ev.(neuralode.PieceSelector)
	return &abortableEval{ev: ev, sel: sel, abort: f.abort}
}

type abortableEval struct {
	ev    neuralode.Evaluator
	sel   neuralode.PieceSelector
	abort func() bool
}

func fillNaN(x []float64) {
	for i := range x {
		x[i] = math.NaN()
	}
}

var _ neuralode.EvaluatorWrapper = (*abortableEval)(nil)

// Unwrap returns the field's own evaluator, so that the solvers still
// find what it can save (weights packed once per solve, kept activations).
func (e *abortableEval) Unwrap() neuralode.Evaluator { return e.ev }

// Eval evaluates the field, or writes NaN once aborted.
func (e *abortableEval) Eval(t float64, z, dz []float64) {
	if e.abort() {
		fillNaN(dz)
		return
	}
	e.ev.Eval(t, z, dz)
}

// VJP evaluates the products, or writes NaN into the overwritten outputs
// once aborted (gp, which is added to, is left alone: the caller discards
// an aborted step's gradient).
func (e *abortableEval) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	if e.abort() {
		fillNaN(f)
		fillNaN(gz)
		if gt != nil {
			*gt = math.NaN()
		}
		return
	}
	e.ev.VJP(t, z, a, f, gz, gp, gt)
}

// SelectPiece forwards to the field's evaluator when it selects pieces.
func (e *abortableEval) SelectPiece(a, b float64) {
	if e.sel != nil {
		e.sel.SelectPiece(a, b)
	}
}
