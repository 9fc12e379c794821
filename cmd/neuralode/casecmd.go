package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/neuralode/neuralode"
)

// loadCaseModel loads a case and builds its network.
func loadCaseModel(path string) (*neuralode.Case, *neuralode.MLP, error) {
	if path == "" {
		return nil, nil, fmt.Errorf("--case is required")
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

// tolerances returns the flag tolerances, defaulting to the case's.
func tolerances(c *neuralode.Case, rtol, atol float64) (float64, float64) {
	if rtol == 0 {
		rtol = c.RTol
	}
	if atol == 0 {
		atol = c.ATol
	}
	return rtol, atol
}

func parseCompat(s string) (bool, error) {
	switch s {
	case "", "none":
		return false, nil
	case "torchdiffeq":
		return true, nil
	}
	return false, fmt.Errorf("--compat %q: want torchdiffeq or none", s)
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

func runSolve(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("solve", "Integrates a case file's network from its z0 through its times and prints one JSON\n"+
		"object: loss, z_T (B×D), nfe, steps_accepted, steps_rejected.", stdout)
	path := fs.String("case", "", "case file (JSON; the format is documented with neuralode.Case)")
	method := fs.String("method", "dopri5", "Runge–Kutta method: dopri5, bosh3, tsit5, rk4, midpoint, euler")
	rtol := fs.Float64("rtol", 0, "relative tolerance (default: the case's)")
	atol := fs.Float64("atol", 0, "absolute tolerance (default: the case's)")
	step := fs.Float64("step", 0, "fixed step size (required by rk4, midpoint, euler; turns adaptivity off otherwise)")
	compat := fs.String("compat", "none", "torchdiffeq: step past the final time and interpolate back, as torchdiffeq does")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	tb, err := neuralode.TableauByName(*method)
	if err != nil {
		return usageErr(stderr, "solve", "--method %q: want dopri5, bosh3, tsit5, rk4, midpoint or euler", *method)
	}
	over, err := parseCompat(*compat)
	if err != nil {
		return usageErr(stderr, "solve", "%v", err)
	}
	if *rtol < 0 || *atol < 0 || *step < 0 || math.IsNaN(*rtol+*atol+*step) {
		return usageErr(stderr, "solve", "tolerances and step must be positive")
	}
	c, m, err := loadCaseModel(*path)
	if err != nil {
		return fail(stderr, "solve", err)
	}
	rt, at := tolerances(c, *rtol, *atol)
	s, err := neuralode.NewSolver(neuralode.Options{Method: tb, RTol: rt, ATol: at, Step: *step, Overshoot: over})
	if err != nil {
		return fail(stderr, "solve", err)
	}
	ev := m.NewEvaluator()
	z0 := c.Z0Flat()
	out := make([]float64, len(c.T)*len(z0))
	st, err := s.Solve(func(t float64, z, dz []float64) { ev.Eval(t, z, dz) }, z0, c.T, out)
	if err != nil {
		return fail(stderr, "solve", err)
	}
	var targets []float64
	for _, tr := range c.TargetsFlat() {
		targets = append(targets, tr...)
	}
	loss := neuralode.MSELoss(targets)(out, make([]float64, len(out)))
	n := len(z0)
	err = writeJSON(stdout, map[string]any{
		"loss":           loss,
		"z_T":            rows(out[len(out)-n:], c.D),
		"nfe":            st.NFE,
		"steps_accepted": st.Accepted,
		"steps_rejected": st.Rejected,
	})
	if err != nil {
		return fail(stderr, "solve", err)
	}
	return 0
}

func runGrad(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("grad", "Computes a case file's loss and its gradient with the chosen method and prints one JSON\n"+
		"object: loss, grad (same layout as the case's layers), grad_z0, nfe_forward, nfe_backward,\n"+
		"quadrature_nodes, seconds.", stdout)
	path := fs.String("case", "", "case file (JSON; the format is documented with neuralode.Case)")
	method := fs.String("method", "direct", "gradient method: "+strings.Join(allMethods, ", "))
	rtol := fs.Float64("rtol", 0, "relative tolerance of both passes (default: the case's)")
	atol := fs.Float64("atol", 0, "absolute tolerance of both passes (default: the case's)")
	gqC := fs.Float64("gq-c", 0.1, "GQ node-count factor C: n_i = ceil(C·NFE_fwd·Δ_i/(t_M−t_0))")
	gqCap := fs.Int("gq-cap", 64, "largest number of GQ nodes per interval")
	compat := fs.String("compat", "none", "torchdiffeq: reproduce torchdiffeq's step sequences")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	gm, err := neuralode.ParseGradMethod(*method)
	if err != nil {
		return usageErr(stderr, "grad", "--method %q: want one of %s", *method, strings.Join(allMethods, ", "))
	}
	over, err := parseCompat(*compat)
	if err != nil {
		return usageErr(stderr, "grad", "%v", err)
	}
	if !(*gqC > 0) || math.IsInf(*gqC, 0) {
		return usageErr(stderr, "grad", "--gq-c %v: must be positive", *gqC)
	}
	if *gqCap < 1 {
		return usageErr(stderr, "grad", "--gq-cap %d: must be at least 1", *gqCap)
	}
	if *rtol < 0 || *atol < 0 || math.IsNaN(*rtol+*atol) {
		return usageErr(stderr, "grad", "tolerances must be positive")
	}
	c, m, err := loadCaseModel(*path)
	if err != nil {
		return fail(stderr, "grad", err)
	}
	rt, at := tolerances(c, *rtol, *atol)
	g, err := neuralode.NewGradientSolver(m, neuralode.GradOptions{
		Method:            gm,
		Forward:           neuralode.Options{RTol: rt, ATol: at},
		GQ:                neuralode.GQOptions{C: *gqC, Cap: *gqCap},
		CompatTorchdiffeq: over,
	})
	if err != nil {
		return fail(stderr, "grad", err)
	}
	var targets []float64
	for _, tr := range c.TargetsFlat() {
		targets = append(targets, tr...)
	}
	start := time.Now()
	r, err := g.Gradient(c.Z0Flat(), c.T, neuralode.MSELoss(targets))
	if err != nil {
		return fail(stderr, "grad", err)
	}
	secs := time.Since(start).Seconds()
	layers, err := neuralode.UnflattenLayers(m, r.Params)
	if err != nil {
		return fail(stderr, "grad", err)
	}
	err = writeJSON(stdout, map[string]any{
		"method":           gm.String(),
		"loss":             r.Loss,
		"grad":             layers,
		"grad_z0":          rows(r.Z0, c.D),
		"nfe_forward":      r.Stats.Forward.NFE,
		"nfe_backward":     r.Stats.Backward.NFE,
		"quadrature_nodes": r.Stats.QuadratureNodes,
		"seconds":          secs,
	})
	if err != nil {
		return fail(stderr, "grad", err)
	}
	return 0
}
