package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/neuralode/neuralode"
)

// benchProblem is one gradient problem every method is timed on.
type benchProblem struct {
	name    string // size label ("DxHxB") or case name
	mlp     *neuralode.MLP
	z0, ts  []float64
	targets []float64
	rtol    float64
	atol    float64
	ref     []float64 // reference gradient
}

// benchRow is one (method, problem) result; the JSON form of bench --json.
type benchRow struct {
	Method        string  `json:"method"`
	Size          string  `json:"size"`
	Params        int     `json:"params"`
	SecondsMedian float64 `json:"seconds_median"`
	NFEForward    int     `json:"nfe_forward"`
	NFEBackward   int     `json:"nfe_backward"`
	GradRelErr    float64 `json:"grad_rel_err"`
	SpeedupVsSemi float64 `json:"speedup_vs_seminorm,omitempty"`
	times         []float64
}

// benchFlags are the bench command's flags.
type benchFlags struct {
	sizes, methods, casePath, out string
	sweep                         bool   // --sweep: accuracy against time over tolerances
	sweepTols                     string // its tolerances
	repeats                       int
	gqC                           float64
	seed                          uint64
	tol                           tolFlags
	output                        outputFlags
	set                           map[string]bool
	checkOut                      func() error
}

func (f *benchFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.sizes, "sizes", "2x32x64,2x128x256,16x256x128,64x512x64", "problem sizes `DxHxB`: state dimension, hidden width, batch")
	fs.StringVar(&f.methods, "methods", "all", "methods to time, comma-separated: "+strings.Join(allMethods, ", ")+", or all")
	fs.BoolVar(&f.sweep, "sweep", false, "sweep rtol = atol over --sweep-tols and chart gradient error against time (sweep-NAME.svg)")
	fs.StringVar(&f.sweepTols, "sweep-tols", defaultSweepTols, "tolerances of --sweep, comma-separated")
	fs.IntVar(&f.repeats, "repeats", 3, "timed repeats per method and problem (the median is reported)")
	f.tol.register(fs, "of the timed solves", 1e-6, 1e-6, "1e-6; a --case's own")
	fs.Float64Var(&f.gqC, "gq-c", 0.1, "GQ node-count factor C")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the generated problems")
	fs.StringVar(&f.casePath, "case", "", "benchmark this PyTorch case file instead of generated problems")
	f.checkOut = outDirFlag(fs, &f.out, "the bar chart bench.svg")
	f.output.register(fs, "print one JSON object per (method, size) on stdout instead of the table")
}

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", "Times every gradient method on the same problems in one interleaved run (each\n"+
		"repeat runs every method once, in turn), and prints the median time, the forward and\n"+
		"backward evaluations and the gradient error against a tight-tolerance reference\n"+
		"(direct backpropagation at rtol = atol = 1e-10, or the case's reference gradient).\n"+
		"Generated problems, as PyTorch was timed: a tanh MLP D → H → H → D with PyTorch's\n"+
		"initialisation, a batch of B standard-normal states, t ∈ [0, 1] with one observation\n"+
		"at t = 1, MSE to standard-normal targets, Dormand–Prince at rtol = atol = 1e-6.", stdout)
	var f benchFlags
	f.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	f.set = flagsSet(fs)
	ms, probs, err := f.problems(stderr)
	if err != nil {
		return fail(stderr, "bench", err)
	}
	if f.sweep {
		tols, err := parseTols(f.sweepTols)
		if err != nil {
			return usageErr(stderr, "bench", "--sweep-tols %v", err)
		}
		logf := func(format string, args ...any) { f.output.logf(stderr, format, args...) }
		return runSweep(probs, sweepConfig{ms, tols, f.repeats, f.gqC, f.out, f.output.json, logf}, stdout, stderr)
	}
	var rows []*benchRow
	for _, p := range probs {
		prow, err := timeProblem(p, ms, f.repeats, f.gqC, func(format string, args ...any) { f.output.logf(stderr, format, args...) })
		if err != nil {
			return fail(stderr, "bench", err)
		}
		rows = append(rows, prow...)
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fail(stderr, "bench", fmt.Errorf("--out: %w", err))
	}
	chart, err := benchChart(f.out, probs, ms, rows)
	if err != nil {
		return fail(stderr, "bench", err)
	}
	if f.output.json {
		for _, r := range rows {
			if err := writeJSON(stdout, r); err != nil {
				return fail(stderr, "bench", err)
			}
		}
		f.output.logf(stderr, "bar chart: %s\n", absPath(chart))
		return 0
	}
	printBenchTable(stdout, rows)
	fmt.Fprintf(stdout, "\nbar chart: %s\n", absPath(chart))
	return 0
}

// problems validates the flags and builds the problems with their
// reference gradients.
func (f *benchFlags) problems(stderr io.Writer) ([]string, []*benchProblem, error) {
	ms, err := parseMethods(f.methods)
	if err != nil {
		return nil, nil, usagef("--methods %v", err)
	}
	if f.repeats < 1 {
		return nil, nil, usagef("--repeats %d: must be ≥ 1", f.repeats)
	}
	if err := f.tol.check(f.set); err != nil {
		return nil, nil, err
	}
	if err := positiveFlag("gq-c", f.gqC); err != nil {
		return nil, nil, err
	}
	if err := f.checkOut(); err != nil {
		return nil, nil, err
	}
	var probs []*benchProblem
	if f.casePath != "" {
		p, err := f.caseProblem()
		if err != nil {
			return nil, nil, err
		}
		probs = append(probs, p)
	} else {
		dims, err := parseSizes(f.sizes)
		if err != nil {
			return nil, nil, usagef("--sizes %v", err)
		}
		rt, at := f.tol.resolve(f.set, 1e-6, 1e-6)
		for _, d := range dims {
			p, err := genProblem(d, f.seed, rt, at)
			if err != nil {
				return nil, nil, err
			}
			probs = append(probs, p)
		}
	}
	for _, p := range probs {
		if p.ref == nil {
			f.output.logf(stderr, "bench %s: reference gradient (direct, rtol = atol = 1e-10)…\n", p.name)
			if p.ref, err = referenceGrad(p); err != nil {
				return nil, nil, fmt.Errorf("%s: reference: %w", p.name, err)
			}
		}
	}
	return ms, probs, nil
}

// caseProblem builds the problem of --case, with its tolerances unless
// --rtol/--atol are given.
func (f *benchFlags) caseProblem() (*benchProblem, error) {
	c, m, err := loadCaseModel(f.casePath)
	if err != nil {
		return nil, err
	}
	p := &benchProblem{name: c.Name, mlp: m, z0: c.Z0Flat(), ts: c.T, targets: caseTargets(c), ref: c.RefGradFlat()}
	if p.name == "" {
		p.name = f.casePath
	}
	p.rtol, p.atol = f.tol.resolve(f.set, c.RTol, c.ATol)
	return p, nil
}

// timeProblem times every method on one problem: one untimed warm-up per
// method sizes the workspaces and measures the evaluations and the error;
// then the repeats interleave the methods so drifts in machine speed hit all.
func timeProblem(p *benchProblem, ms []string, repeats int, gqC float64, logf func(string, ...any)) ([]*benchRow, error) {
	solvers := make([]*neuralode.GradientSolver, len(ms))
	prow := make([]*benchRow, len(ms))
	for i, m := range ms {
		gm, _ := neuralode.ParseGradMethod(m)
		g, err := neuralode.NewGradientSolver(p.mlp, neuralode.GradOptions{Method: gm,
			Forward: neuralode.Options{RTol: p.rtol, ATol: p.atol}, GQ: neuralode.GQOptions{C: gqC}})
		if err != nil {
			return nil, err
		}
		solvers[i] = g
		prow[i] = &benchRow{Method: m, Size: p.name, Params: p.mlp.NumParams()}
	}
	loss, err := p.loss()
	if err != nil {
		return nil, err
	}
	for rep := -1; rep < repeats; rep++ {
		if rep == 0 {
			// The warm-up sized every workspace: collect its garbage (and
			// the case file's) now, so that no collection cycle, which
			// takes a whole processor while it marks, runs during the
			// timed gradients.
			runtime.GC()
		}
		for i, g := range solvers {
			if rep >= 0 {
				logf("bench %s: repeat %d/%d %s\n", p.name, rep+1, repeats, ms[i])
			}
			start := time.Now()
			r, err := g.Gradient(p.z0, p.ts, loss)
			secs := time.Since(start).Seconds()
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", p.name, ms[i], err)
			}
			if rep < 0 {
				row := prow[i]
				row.NFEForward, row.NFEBackward = r.Stats.Forward.NFE, r.Stats.Backward.NFE
				row.GradRelErr = relErr(r.Params, p.ref)
				continue
			}
			prow[i].times = append(prow[i].times, secs)
		}
	}
	var semi float64
	for _, r := range prow {
		r.SecondsMedian = median(r.times)
		if r.Method == "seminorm" {
			semi = r.SecondsMedian
		}
	}
	for _, r := range prow {
		if semi > 0 && r.SecondsMedian > 0 {
			r.SpeedupVsSemi = semi / r.SecondsMedian
		}
	}
	return prow, nil
}

func printBenchTable(w io.Writer, rows []*benchRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "size\tparams\tmethod\tmedian s\tfwd NFE\tbwd NFE\tgrad rel err\tspeed-up vs seminorm\t\n")
	for _, r := range rows {
		speed := "—"
		if r.SpeedupVsSemi > 0 {
			speed = fmt.Sprintf("%.2f×", r.SpeedupVsSemi)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.4g\t%d\t%d\t%.2e\t%s\t\n", r.Size, r.Params, r.Method, r.SecondsMedian,
			r.NFEForward, r.NFEBackward, r.GradRelErr, speed)
	}
	tw.Flush()
}

// parseSizes reads "DxHxB,…".
func parseSizes(s string) ([][3]int, error) {
	var out [][3]int
	for _, f := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(f), "x")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%q: want DxHxB, e.g. 2x32x64", f)
		}
		var d [3]int
		for i, p := range parts {
			v, err := strconv.Atoi(p)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("%q: want three positive integers DxHxB", f)
			}
			d[i] = v
		}
		if err := checkMemory(runBytes(mlpParams(d[0], d[1], false), d[2], d[0], d[1], 2), "the sizes"); err != nil {
			return nil, fmt.Errorf("%q: %v", f, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// genProblem builds the D×H×B problem from the seed.
func genProblem(d [3]int, seed uint64, rtol, atol float64) (*benchProblem, error) {
	D, H, B := d[0], d[1], d[2]
	rng := seedRNG(seed, uint64(D)<<40|uint64(H)<<20|uint64(B))
	m, err := neuralode.NewMLP(neuralode.MLPConfig{Dim: D, Hidden: []int{H, H}, Activation: neuralode.Tanh}, rng)
	if err != nil {
		return nil, err
	}
	p := &benchProblem{name: fmt.Sprintf("%dx%dx%d", D, H, B), mlp: m, ts: []float64{0, 1}, rtol: rtol, atol: atol,
		z0: make([]float64, B*D), targets: make([]float64, B*D)}
	for i := range p.z0 {
		p.z0[i] = rng.NormFloat64()
	}
	for i := range p.targets {
		p.targets[i] = rng.NormFloat64()
	}
	return p, nil
}

// loss returns the problem's case-format MSE loss.
func (p *benchProblem) loss() (neuralode.Loss, error) {
	d := p.mlp.Dim()
	return neuralode.MSELoss(neuralode.LossShape{Batch: len(p.z0) / d, Dim: d, Times: len(p.ts)}, p.targets)
}

func referenceGrad(p *benchProblem) ([]float64, error) {
	g, err := neuralode.NewGradientSolver(p.mlp, neuralode.GradOptions{Method: neuralode.Direct,
		Forward: neuralode.Options{RTol: 1e-10, ATol: 1e-10, MaxSteps: 1000000}})
	if err != nil {
		return nil, err
	}
	loss, err := p.loss()
	if err != nil {
		return nil, err
	}
	r, err := g.Gradient(p.z0, p.ts, loss)
	if err != nil {
		return nil, err
	}
	return append([]float64(nil), r.Params...), nil
}

// relErr is ‖g − ref‖₂ / ‖ref‖₂.
func relErr(g, ref []float64) float64 {
	var num, den float64
	for i := range ref {
		d := g[i] - ref[i]
		num += d * d
		den += ref[i] * ref[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// benchChart draws the median time of every method, grouped by problem, on
// a log axis (the sizes span orders of magnitude).
func benchChart(dir string, probs []*benchProblem, methods []string, rows []*benchRow) (string, error) {
	ch := &barChart{Title: "Gradient time per method (median)", XLabel: "problem (D×H×B)", YLabel: "seconds per gradient",
		LogY: len(probs) > 1}
	for _, p := range probs {
		ch.Categories = append(ch.Categories, p.name)
	}
	for _, m := range methods {
		s := barSeries{Name: m}
		for _, p := range probs {
			for _, r := range rows {
				if r.Method == m && r.Size == p.name {
					s.Values = append(s.Values, r.SecondsMedian)
				}
			}
		}
		ch.Series = append(ch.Series, s)
	}
	return saveSVG(dir, "bench.svg", func(f *os.File) error { return ch.writeSVG(f, 900, 500) })
}
