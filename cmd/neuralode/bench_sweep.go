package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/neuralode/neuralode"
)

// defaultSweepTols are the tolerances bench --sweep runs at (rtol = atol).
const defaultSweepTols = "1e-3,1e-4,1e-5,1e-6,1e-7,1e-8"

// sweepRow is one (problem, method, tolerance) point of bench --sweep; the
// JSON form of bench --sweep --json.
type sweepRow struct {
	Method        string  `json:"method"`
	Size          string  `json:"size"`
	Params        int     `json:"params"`
	Tol           float64 `json:"tol"`
	SecondsMedian float64 `json:"seconds_median"`
	NFEForward    int     `json:"nfe_forward"`
	NFEBackward   int     `json:"nfe_backward"`
	Nodes         int     `json:"quadrature_nodes"`
	GradRelErr    float64 `json:"grad_rel_err"`
	times         []float64
}

// sweepConfig is what bench passes to the sweep besides the problems.
type sweepConfig struct {
	methods []string
	tols    []float64
	repeats int
	gqC     float64
	out     string
	json    bool
	logf    func(string, ...any)
}

// parseTols reads a comma-separated list of positive tolerances.
func parseTols(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%q: want positive numbers such as 1e-3,1e-6", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// runSweep times every method at every tolerance rtol = atol on every
// problem, the methods interleaved within each repeat, measures the
// gradient error against the problem's reference, prints a table (or JSON
// lines) and draws one log–log accuracy-versus-time chart per problem.
func runSweep(probs []*benchProblem, cfg sweepConfig, stdout, stderr io.Writer) int {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return fail(stderr, "bench", err)
	}
	var rows []*sweepRow
	var charts []string
	for _, p := range probs {
		var prow []*sweepRow
		for _, tol := range cfg.tols {
			r, err := sweepPoint(p, tol, cfg)
			if err != nil {
				return fail(stderr, "bench", err)
			}
			prow = append(prow, r...)
		}
		path, err := sweepChart(cfg.out, p, cfg.methods, prow)
		if err != nil {
			return fail(stderr, "bench", err)
		}
		charts = append(charts, path)
		rows = append(rows, prow...)
	}
	if cfg.json {
		for _, r := range rows {
			if err := writeJSON(stdout, r); err != nil {
				return fail(stderr, "bench", err)
			}
		}
		for _, c := range charts {
			cfg.logf("sweep chart: %s\n", absPath(c))
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "size\tparams\tmethod\trtol=atol\tmedian s\tfwd NFE\tbwd NFE\tnodes\tgrad rel err\t\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0e\t%.4g\t%d\t%d\t%d\t%.2e\t\n", r.Size, r.Params, r.Method, r.Tol,
			r.SecondsMedian, r.NFEForward, r.NFEBackward, r.Nodes, r.GradRelErr)
	}
	tw.Flush()
	for _, c := range charts {
		fmt.Fprintf(stdout, "\nsweep chart: %s\n", absPath(c))
	}
	return 0
}

// sweepPoint times every method on p at rtol = atol = tol.
func sweepPoint(p *benchProblem, tol float64, cfg sweepConfig) ([]*sweepRow, error) {
	solvers := make([]*neuralode.GradientSolver, len(cfg.methods))
	rows := make([]*sweepRow, len(cfg.methods))
	for i, m := range cfg.methods {
		gm, err := neuralode.ParseGradMethod(m)
		if err != nil {
			return nil, err
		}
		g, err := neuralode.NewGradientSolver(p.mlp, neuralode.GradOptions{Method: gm,
			Forward: neuralode.Options{RTol: tol, ATol: tol, MaxSteps: 1000000}, GQ: neuralode.GQOptions{C: cfg.gqC}})
		if err != nil {
			return nil, err
		}
		solvers[i] = g
		rows[i] = &sweepRow{Method: m, Size: p.name, Params: p.mlp.NumParams(), Tol: tol}
	}
	loss, err := p.loss()
	if err != nil {
		return nil, err
	}
	for rep := -1; rep < cfg.repeats; rep++ {
		for i, g := range solvers {
			if rep >= 0 {
				cfg.logf("sweep %s: tol %.0e repeat %d/%d %s\n", p.name, tol, rep+1, cfg.repeats, cfg.methods[i])
			}
			start := time.Now()
			r, err := g.Gradient(p.z0, p.ts, loss)
			secs := time.Since(start).Seconds()
			if err != nil {
				return nil, fmt.Errorf("%s %s at tol %g: %w", p.name, cfg.methods[i], tol, err)
			}
			if rep < 0 {
				row := rows[i]
				row.NFEForward, row.NFEBackward = r.Stats.Forward.NFE, r.Stats.Backward.NFE
				row.Nodes = r.Stats.QuadratureNodes
				row.GradRelErr = relErr(r.Params, p.ref)
				continue
			}
			rows[i].times = append(rows[i].times, secs)
		}
	}
	for _, r := range rows {
		r.SecondsMedian = median(r.times)
	}
	return rows, nil
}

// sweepChart draws gradient error against median time, one line per method
// through its tolerances, on log–log axes, so that the cheapest method for a
// required accuracy is the lowest-leftmost.
func sweepChart(dir string, p *benchProblem, methods []string, rows []*sweepRow) (string, error) {
	pl := &lineChart{Title: fmt.Sprintf("Gradient error vs time, %s (rtol = atol swept)", p.name),
		XLabel: "seconds per gradient (median, log scale)", YLabel: "relative gradient error", LogY: true, LogX: true}
	for _, m := range methods {
		s := lineSeries{Name: m, Markers: true}
		for _, r := range rows {
			if r.Method == m && r.SecondsMedian > 0 {
				s.X = append(s.X, r.SecondsMedian)
				s.Y = append(s.Y, math.Max(r.GradRelErr, 1e-16))
			}
		}
		pl.Series = append(pl.Series, s)
	}
	name := "sweep-" + sanitizeName(p.name) + ".svg"
	return saveSVG(dir, name, func(f *os.File) error { return pl.writeSVG(f, 900, 560) })
}

// sanitizeName keeps letters, digits, '-', '_' and '.' of a problem name
// for a file name.
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
