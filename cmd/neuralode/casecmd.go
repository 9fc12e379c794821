package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/neuralode/neuralode"
)

// caseFlags are the flags of the commands that work on one case file
// (solve, grad): the file, the tolerances and the output switches.
type caseFlags struct {
	path string
	tol  tolFlags
	out  outputFlags
	set  map[string]bool
}

func (c *caseFlags) register(fs *flag.FlagSet, what string) {
	fs.StringVar(&c.path, "case", "", "case file (JSON; the format is documented with neuralode.Case; required)")
	c.tol.register(fs, what, 0, 0, "the case's")
	c.out.register(fs, "print one JSON object on stdout instead of the summary")
}

// load validates the flags given and loads the case and its network.
func (c *caseFlags) load(fs *flag.FlagSet) (*neuralode.Case, *neuralode.MLP, error) {
	c.set = flagsSet(fs)
	if c.path == "" {
		return nil, nil, usagef("--case is required")
	}
	if err := c.tol.check(c.set); err != nil {
		return nil, nil, err
	}
	return loadCaseModel(c.path)
}

// emit prints a command's result: JSON with --json, else through print; a
// failed command prints its error instead. It returns the exit status.
func (c *caseFlags) emit(stdout, stderr io.Writer, cmd string, res any, err error, print func() error) int {
	if err == nil {
		if c.out.json {
			err = writeJSON(stdout, res)
		} else {
			err = print()
		}
	}
	if err != nil {
		return fail(stderr, cmd, err)
	}
	return 0
}

// tolerances returns the flag tolerances, defaulting to the case's.
func (c *caseFlags) tolerances(cs *neuralode.Case) (float64, float64) {
	return c.tol.resolve(c.set, cs.RTol, cs.ATol)
}

// loadCaseModel loads a case and builds its network.
func loadCaseModel(path string) (*neuralode.Case, *neuralode.MLP, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, nil, fmt.Errorf("--case %s: is a directory, want a case file", path)
	}
	c, err := neuralode.LoadCase(path)
	if err != nil {
		return nil, nil, err
	}
	m, err := c.MLP()
	if err != nil {
		return nil, nil, err
	}
	return c, m, nil
}

func parseCompat(s string) (bool, error) {
	switch s {
	case "", "none":
		return false, nil
	case "torchdiffeq":
		return true, nil
	}
	return false, usagef("--compat %q: want torchdiffeq or none", s)
}

// methodAndCompat parses the --method and --compat flags of solve and grad:
// parse maps the method's name (want lists the accepted ones for the usage
// error), parseCompat the compatibility mode.
func methodAndCompat[M any](parse func(string) (M, error), method, want, compat string) (M, bool, error) {
	m, err := parse(method)
	if err != nil {
		return m, false, usagef("--method %q: want %s", method, want)
	}
	over, err := parseCompat(compat)
	return m, over, err
}

// rows splits a flat batch into rows of length d.
func rows(x []float64, d int) [][]float64 {
	out := make([][]float64, 0, len(x)/d)
	for i := 0; i+d <= len(x); i += d {
		out = append(out, append([]float64(nil), x[i:i+d]...))
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// caseTargets concatenates a case's targets in observation order.
func caseTargets(c *neuralode.Case) []float64 {
	var targets []float64
	for _, tr := range c.TargetsFlat() {
		targets = append(targets, tr...)
	}
	return targets
}

// errOverflow reports a result too large for float64.
var errOverflow = errors.New("the result overflows float64 (an initial state or target near ±1.8e308?)")

// checkFinite returns errOverflow, naming what, if any value is not finite.
func checkFinite(what string, xs ...float64) error {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%s is %v: %w", what, x, errOverflow)
		}
	}
	return nil
}

func runSolve(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("solve", "Integrates a case file's network from its z0 through its times and prints the loss,\n"+
		"the final state z_T (B×D) and the step counts; --json prints them as one JSON object.", stdout)
	var cf caseFlags
	cf.register(fs, "of the solve")
	method := fs.String("method", "dopri5", "Runge–Kutta method: dopri5, bosh3, tsit5, rk4, midpoint, euler")
	step := fs.Float64("step", 0, "fixed step size (required by rk4, midpoint, euler; turns adaptivity off otherwise)")
	compat := fs.String("compat", "none", "torchdiffeq: step past the final time and interpolate back, as torchdiffeq does")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	res, err := solveCase(fs, &cf, *method, *step, *compat)
	return cf.emit(stdout, stderr, "solve", res, err, func() error { return printSolve(stdout, res) })
}

// solveResult is the output of solve (its --json form).
type solveResult struct {
	Loss          float64     `json:"loss"`
	ZT            [][]float64 `json:"z_T"`
	NFE           int         `json:"nfe"`
	StepsAccepted int         `json:"steps_accepted"`
	StepsRejected int         `json:"steps_rejected"`
}

func solveCase(fs *flag.FlagSet, cf *caseFlags, method string, step float64, compat string) (*solveResult, error) {
	tb, over, err := methodAndCompat(neuralode.TableauByName, method, "dopri5, bosh3, tsit5, rk4, midpoint or euler", compat)
	if err != nil {
		return nil, err
	}
	set := flagsSet(fs)
	if set["step"] {
		if err := positiveFlag("step", step); err != nil {
			return nil, err
		}
	}
	c, m, err := cf.load(fs)
	if err != nil {
		return nil, err
	}
	rt, at := cf.tolerances(c)
	z0 := c.Z0Flat()
	// Predict evaluates with the parameters frozen: the weights are packed
	// once for the solve, not at every evaluation.
	out, st, err := neuralode.Predict(m, neuralode.Options{Method: tb, RTol: rt, ATol: at, Step: step, Overshoot: over}, z0, c.T)
	if err != nil {
		return nil, err
	}
	lossFn, err := c.Loss()
	if err != nil {
		return nil, err
	}
	loss := lossFn(out, make([]float64, len(out)))
	n := len(z0)
	if err := checkFinite("the state", out...); err != nil {
		return nil, err
	}
	if err := checkFinite("the loss", loss); err != nil {
		return nil, err
	}
	return &solveResult{Loss: loss, ZT: rows(out[len(out)-n:], c.D), NFE: st.NFE,
		StepsAccepted: st.Accepted, StepsRejected: st.Rejected}, nil
}

func printSolve(w io.Writer, r *solveResult) error {
	fmt.Fprintf(w, "loss            %.17g\n", r.Loss)
	fmt.Fprintf(w, "evaluations     %d (%d steps accepted, %d rejected)\n", r.NFE, r.StepsAccepted, r.StepsRejected)
	fmt.Fprintf(w, "final state z_T (%d samples):\n", len(r.ZT))
	return printMatrix(w, r.ZT)
}

// printMatrix prints one row per line, values in shortest round-trip form.
func printMatrix(w io.Writer, m [][]float64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, row := range m {
		for _, v := range row {
			fmt.Fprintf(tw, "%.6g\t", v)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// gradResult is the output of grad (its --json form).
type gradResult struct {
	Method          string                `json:"method"`
	Loss            float64               `json:"loss"`
	Grad            []neuralode.CaseLayer `json:"grad"`
	GradZ0          [][]float64           `json:"grad_z0"`
	NFEForward      int                   `json:"nfe_forward"`
	NFEBackward     int                   `json:"nfe_backward"`
	QuadratureNodes int                   `json:"quadrature_nodes"`
	Seconds         float64               `json:"seconds"`
}

func runGrad(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("grad", "Computes a case file's loss and its gradient with the chosen method and prints a summary:\n"+
		"the loss, the evaluations and the norm of the gradient of every layer. --json prints one JSON\n"+
		"object instead: loss, grad (same layout as the case's layers), grad_z0, nfe_forward,\n"+
		"nfe_backward, quadrature_nodes, seconds.", stdout)
	var cf caseFlags
	cf.register(fs, "of both passes")
	method := fs.String("method", "direct", "gradient method: "+strings.Join(allMethods, ", "))
	gqC := fs.Float64("gq-c", 0.1, "GQ node-count factor C: n_i = ceil(C·NFE_fwd·Δ_i/(t_M−t_0))")
	gqCap := fs.Int("gq-cap", 64, fmt.Sprintf("largest number of GQ nodes per interval (1…%d)", neuralode.MaxGaussLegendreNodes))
	compat := fs.String("compat", "none", "torchdiffeq: reproduce torchdiffeq's step sequences")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	res, err := gradCase(fs, &cf, *method, *gqC, *gqCap, *compat)
	return cf.emit(stdout, stderr, "grad", res, err, func() error { return printGrad(stdout, res) })
}

func gradCase(fs *flag.FlagSet, cf *caseFlags, method string, gqC float64, gqCap int, compat string) (*gradResult, error) {
	gm, over, err := methodAndCompat(neuralode.ParseGradMethod, method, "one of "+strings.Join(allMethods, ", "), compat)
	if err != nil {
		return nil, err
	}
	if err := positiveFlag("gq-c", gqC); err != nil {
		return nil, err
	}
	if gqCap < 1 || gqCap > neuralode.MaxGaussLegendreNodes {
		return nil, usagef("--gq-cap %d: must be in 1…%d", gqCap, neuralode.MaxGaussLegendreNodes)
	}
	c, m, err := cf.load(fs)
	if err != nil {
		return nil, err
	}
	rt, at := cf.tolerances(c)
	g, err := neuralode.NewGradientSolver(m, neuralode.GradOptions{
		Method:            gm,
		Forward:           neuralode.Options{RTol: rt, ATol: at},
		GQ:                neuralode.GQOptions{C: gqC, Cap: gqCap},
		CompatTorchdiffeq: over,
	})
	if err != nil {
		return nil, err
	}
	loss, err := c.Loss()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	r, err := g.Gradient(c.Z0Flat(), c.T, loss)
	if err != nil {
		if errors.Is(err, neuralode.ErrNonFinite) {
			return nil, fmt.Errorf("%v: %w", cliError(err), errOverflow)
		}
		return nil, err
	}
	secs := time.Since(start).Seconds()
	if err := checkFinite("the gradient", r.Params...); err != nil {
		return nil, err
	}
	layers, err := neuralode.UnflattenLayers(m, r.Params)
	if err != nil {
		return nil, err
	}
	return &gradResult{Method: gm.String(), Loss: r.Loss, Grad: layers, GradZ0: rows(r.Z0, c.D),
		NFEForward: r.Stats.Forward.NFE, NFEBackward: r.Stats.Backward.NFE,
		QuadratureNodes: r.Stats.QuadratureNodes, Seconds: secs}, nil
}

func printGrad(w io.Writer, r *gradResult) error {
	fmt.Fprintf(w, "method          %s\n", r.Method)
	fmt.Fprintf(w, "loss            %.17g\n", r.Loss)
	fmt.Fprintf(w, "evaluations     %d forward, %d backward, %d quadrature nodes\n", r.NFEForward, r.NFEBackward, r.QuadratureNodes)
	fmt.Fprintf(w, "seconds         %.4g\n", r.Seconds)
	fmt.Fprintf(w, "gradient norms per layer (the full gradient: --json):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "layer\tshape\t‖dL/dW‖\t‖dL/db‖\t\n")
	for i, l := range r.Grad {
		var nw, nb float64
		cols := 0
		for _, row := range l.W {
			cols = len(row)
			for _, v := range row {
				nw += v * v
			}
		}
		for _, v := range l.B {
			nb += v * v
		}
		fmt.Fprintf(tw, "%d\t%d×%d\t%.4g\t%.4g\t\n", i, len(l.W), cols, math.Sqrt(nw), math.Sqrt(nb))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "gradient with respect to z0 (%d samples):\n", len(r.GradZ0))
	return printMatrix(w, r.GradZ0)
}
