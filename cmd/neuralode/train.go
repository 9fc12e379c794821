package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/neuralode/neuralode"
)

// allMethods lists the gradient methods in the order tables show them.
var allMethods = []string{"direct", "adjoint", "seminorm", "gq", "gq-interp", "gq-adaptive", "gq-adaptive-interp"}

// exitInterrupted is the exit status of a run stopped by SIGINT/SIGTERM
// (after saving its checkpoint), the shell convention 128 + SIGINT.
const exitInterrupted = 130

// checkpointKey is the case-file field that holds the training state.
const checkpointKey = "neuralode_train"

// epochRecord is one line of metrics.jsonl (type "epoch"), and with type
// "summary" one line per method at the end of a run.
type epochRecord struct {
	Type        string  `json:"type"`
	Task        string  `json:"task"`
	Method      string  `json:"method"`
	Epoch       int     `json:"epoch"`
	Loss        float64 `json:"loss"`
	ValMetric   string  `json:"val_metric"`
	Val         float64 `json:"val"`
	NFEForward  float64 `json:"nfe_forward"`
	NFEBackward float64 `json:"nfe_backward"`
	Seconds     float64 `json:"seconds"`
}

// epochAccum sums the work of the steps of an epoch so far.
type epochAccum struct {
	Loss    float64 `json:"loss"`
	Steps   int     `json:"steps"`
	NFEF    int     `json:"nfe_forward"`
	NFEB    int     `json:"nfe_backward"`
	Seconds float64 `json:"seconds"`
}

// checkpointState is stored in the case file's "neuralode_train" field: with
// the parameters, the optimiser's moments and the position in the run it is
// everything a resumed run needs to continue bit for bit (the per-epoch
// randomness is a function of the seed and the epoch).
type checkpointState struct {
	Version int         `json:"version"`
	Config  trainConfig `json:"config"`
	Epoch   int         `json:"epoch"` // epochs completed
	Step    int         `json:"step"`  // steps completed within epoch Epoch
	Partial epochAccum  `json:"partial"`
	// Params is the joint parameter vector: the ODE network (also in
	// "layers") followed by any parameters outside it (spheres: the
	// classifier W row-major then b; ou: the diffusion network).
	Params  []float64     `json:"params"`
	AdamT   int           `json:"adam_t"`
	AdamM   []float64     `json:"adam_m"`
	AdamV   []float64     `json:"adam_v"`
	History []epochRecord `json:"history"`
}

// trainOpts are the run's side settings (outputs, not the trajectory).
type trainOpts struct {
	out       string
	json      bool
	quiet     bool
	save      string
	saveEvery int
	stop      func() bool // polled after every optimiser step
}

// methodResult is the outcome of training one method.
type methodResult struct {
	cfg         trainConfig
	history     []epochRecord
	plots       []string
	interrupted bool
	savedTo     string // checkpoint written on interruption
}

func runTrain(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return trainCommand(args, stdout, stderr, func() bool { return ctx.Err() != nil })
}

// trainCommand is runTrain with the interrupt check injected (tests stop a
// run after a chosen number of steps this way).
func trainCommand(args []string, stdout, stderr io.Writer, stop func() bool) int {
	fs := newFlags("train", "Trains one of the GQ paper's non-image experiments (data generated in code) with\n"+
		"Softplus vector fields and Adam, and writes per-epoch metrics (DIR/metrics.jsonl) and\n"+
		"SVG plots into DIR. Tasks: g1d (crossing trajectories), spheres (nested spheres),\n"+
		"sines (second-order model of A sin t + B cos t), ou (Ornstein–Uhlenbeck SDE through\n"+
		"Wong–Zakai). Flags left at 0 take the task's default. Progress goes to stderr; the\n"+
		"final table (or, with --json, JSON lines) to stdout. SIGINT/SIGTERM stop after the\n"+
		"current step and save a checkpoint (exit status 130).", stdout)
	taskName := fs.String("task", "g1d", "task: g1d, spheres, sines or ou")
	method := fs.String("method", "gq", "gradient method(s), comma-separated: "+strings.Join(allMethods, ", ")+", or all")
	width := fs.Int("width", 0, "hidden width of the networks (two hidden layers); default per task (g1d 256, others 32)")
	epochs := fs.Int("epochs", 0, "number of epochs; default per task (g1d 60, spheres 30, sines 400, ou 40)")
	lr := fs.Float64("lr", 0, "Adam learning rate; default per task")
	batch := fs.Int("batch", 0, "minibatch size (spheres 200, sines 15 series); for ou the number of training paths (64)")
	rtol := fs.Float64("rtol", 0, "relative tolerance of both passes; default per task (1e-3, sines 1e-4)")
	atol := fs.Float64("atol", 0, "absolute tolerance of both passes; default per task (1e-3, sines 1e-5)")
	gqC := fs.Float64("gq-c", 0.1, "GQ node-count factor C")
	seed := fs.Uint64("seed", 1, "seed of the data, the initial weights and the per-epoch randomness")
	obs := fs.Int("obs", 0, "sines: observation times per series (10 or 50 in the paper; default 10)")
	irregular := fs.Bool("irregular", false, "sines: irregular observation times")
	out := fs.String("out", "neuralode-out", "output directory for metrics.jsonl and the plots")
	jsonOut := fs.Bool("json", false, "print JSON lines (per epoch and a summary per method) on stdout instead of the table")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	save := fs.String("save", "", "write the trained model and training state to FILE (case format) at the end")
	saveEvery := fs.Int("save-every", 0, "also save every K epochs (needs --save)")
	resume := fs.String("resume", "", "continue the run saved in FILE (its task, method and hyper-parameters are used)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := trainOpts{out: *out, json: *jsonOut, quiet: *quiet, save: *save, saveEvery: *saveEvery, stop: stop}
	if o.saveEvery < 0 {
		return usageErr(stderr, "train", "--save-every %d: must be ≥ 0", o.saveEvery)
	}
	if o.saveEvery > 0 && o.save == "" {
		return usageErr(stderr, "train", "--save-every needs --save FILE")
	}
	if o.out == "" {
		return usageErr(stderr, "train", "--out: empty directory name")
	}

	var ck *checkpointState
	var cfg trainConfig
	var methods []string
	if *resume != "" {
		var err error
		ck, err = loadCheckpoint(*resume)
		if err != nil {
			return fail(stderr, "train", fmt.Errorf("--resume: %w", err))
		}
		cfg = ck.Config
		// Flags that define the trajectory come from the checkpoint; an
		// explicit different value is a mistake, not an override.
		conflict := map[string]bool{
			"task": *taskName != cfg.Task, "method": *method != cfg.Method, "width": *width != cfg.Width,
			"lr": *lr != cfg.LR, "batch": *batch != cfg.Batch, "rtol": *rtol != cfg.RTol, "atol": *atol != cfg.ATol,
			"gq-c": *gqC != cfg.GQC, "seed": *seed != cfg.Seed, "obs": *obs != cfg.Obs, "irregular": *irregular != cfg.Irregular,
		}
		for _, name := range []string{"task", "method", "width", "lr", "batch", "rtol", "atol", "gq-c", "seed", "obs", "irregular"} {
			if set[name] && conflict[name] {
				return usageErr(stderr, "train", "--%s: differs from the checkpoint being resumed (%s)", name, *resume)
			}
		}
		if set["epochs"] {
			if *epochs < 1 {
				return usageErr(stderr, "train", "--epochs %d: must be ≥ 1", *epochs)
			}
			cfg.Epochs = *epochs
		}
		methods = []string{cfg.Method}
	} else {
		def, ok := taskDefaults[*taskName]
		if !ok {
			return usageErr(stderr, "train", "--task %q: want g1d, spheres, sines or ou", *taskName)
		}
		var err error
		if methods, err = parseMethods(*method); err != nil {
			return usageErr(stderr, "train", "--method %v", err)
		}
		cfg = def
		cfg.Task, cfg.Seed, cfg.GQC, cfg.Irregular = *taskName, *seed, *gqC, *irregular
		for _, c := range []struct {
			name string
			v    int
			dst  *int
		}{{"width", *width, &cfg.Width}, {"epochs", *epochs, &cfg.Epochs}, {"batch", *batch, &cfg.Batch}, {"obs", *obs, &cfg.Obs}} {
			if set[c.name] && c.v < 1 {
				return usageErr(stderr, "train", "--%s %d: must be ≥ 1", c.name, c.v)
			}
			if c.v > 0 {
				*c.dst = c.v
			}
		}
		for _, c := range []struct {
			name string
			v    float64
			dst  *float64
		}{{"lr", *lr, &cfg.LR}, {"rtol", *rtol, &cfg.RTol}, {"atol", *atol, &cfg.ATol}, {"gq-c", *gqC, &cfg.GQC}} {
			if set[c.name] && !(c.v > 0 && !math.IsInf(c.v, 0)) {
				return usageErr(stderr, "train", "--%s %v: must be positive and finite", c.name, c.v)
			}
			if c.v > 0 {
				*c.dst = c.v
			}
		}
		if cfg.Task == "ou" && cfg.Batch < 2 {
			return usageErr(stderr, "train", "--batch %d: ou needs at least 2 paths", cfg.Batch)
		}
		if cfg.Task == "sines" && cfg.Obs < 2 {
			return usageErr(stderr, "train", "--obs %d: need at least 2 observation times", cfg.Obs)
		}
		if cfg.Task != "sines" && (set["obs"] || set["irregular"]) {
			return usageErr(stderr, "train", "--obs and --irregular apply to --task sines only")
		}
		if len(methods) > 1 && o.save != "" {
			return usageErr(stderr, "train", "--save needs a single --method")
		}
	}
	return trainRun(cfg, methods, ck, o, stdout, stderr, "train")
}

// parseMethods splits a comma-separated method list ("all" for every method).
func parseMethods(s string) ([]string, error) {
	if s == "all" {
		return append([]string(nil), allMethods...), nil
	}
	var ms []string
	seen := map[string]bool{}
	for _, m := range strings.Split(s, ",") {
		m = strings.TrimSpace(m)
		if _, err := neuralode.ParseGradMethod(m); err != nil {
			return nil, fmt.Errorf("%q: want %s or all", m, strings.Join(allMethods, ", "))
		}
		if !seen[m] {
			seen[m] = true
			ms = append(ms, m)
		}
	}
	return ms, nil
}

// trainRun trains every method from the same initial weights and data, then
// writes the loss chart, the table (or JSON) and the plots.
func trainRun(cfg trainConfig, methods []string, ck *checkpointState, o trainOpts, stdout, stderr io.Writer, cmd string) int {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fail(stderr, cmd, err)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if ck != nil {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	mf, err := os.OpenFile(filepath.Join(o.out, "metrics.jsonl"), flags, 0o644)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer mf.Close()
	prog := &progress{w: stderr, quiet: o.quiet, start: time.Now()}
	prog.totalEpochs = cfg.Epochs * len(methods)
	if ck != nil {
		prog.doneEpochs = ck.Epoch
	}
	var results []methodResult
	for _, m := range methods {
		c := cfg
		c.Method = m
		label := ""
		if len(methods) > 1 {
			label = "_" + m
		}
		res, err := trainMethod(c, ck, o, prog, mf, stdout, label)
		if err != nil {
			return fail(stderr, cmd, fmt.Errorf("%s/%s: %w", c.Task, m, err))
		}
		results = append(results, res)
		if res.interrupted {
			fmt.Fprintf(stderr, "neuralode %s: interrupted; state saved in %s (continue with --resume)\n", cmd, res.savedTo)
			return exitInterrupted
		}
	}
	lossPath, err := lossChart(o.out, results)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	for _, r := range results {
		sum := summarize(r)
		if err := writeJSON(mf, sum); err != nil {
			return fail(stderr, cmd, err)
		}
		if o.json {
			if err := writeJSON(stdout, sum); err != nil {
				return fail(stderr, cmd, err)
			}
		}
	}
	if !o.json {
		printTrainTable(stdout, results)
		fmt.Fprintf(stdout, "\nplots and metrics in %s:\n", absPath(o.out))
		fmt.Fprintf(stdout, "  %s\n", filepath.Base(lossPath))
		for _, r := range results {
			for _, p := range r.plots {
				fmt.Fprintf(stdout, "  %s\n", filepath.Base(p))
			}
		}
		fmt.Fprintf(stdout, "  metrics.jsonl\n")
	} else if !o.quiet {
		fmt.Fprintf(stderr, "plots and metrics in %s\n", absPath(o.out))
	}
	return 0
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// trainMethod trains one method, from scratch or from the checkpoint ck.
func trainMethod(cfg trainConfig, ck *checkpointState, o trainOpts, prog *progress, metrics io.Writer, stdout io.Writer, label string) (methodResult, error) {
	res := methodResult{cfg: cfg}
	t, err := newTask(cfg)
	if err != nil {
		return res, err
	}
	params := t.params()
	adam := neuralode.NewAdam(len(params))
	adam.LR = cfg.LR
	epoch0, step0 := 0, 0
	var acc epochAccum
	if ck != nil {
		if len(ck.Params) != len(params) || len(ck.AdamM) != len(params) && ck.AdamT > 0 {
			return res, fmt.Errorf("checkpoint has %d parameters, the model %d", len(ck.Params), len(params))
		}
		copy(params, ck.Params)
		adam.T = ck.AdamT
		if ck.AdamT > 0 {
			adam.M = append([]float64(nil), ck.AdamM...)
			adam.V = append([]float64(nil), ck.AdamV...)
		}
		epoch0, step0, acc = ck.Epoch, ck.Step, ck.Partial
		res.history = append(res.history, ck.History...)
	}
	grad := make([]float64, len(params))
	nsteps := t.steps()
	save := func(epoch, step int, acc epochAccum, path string) error {
		return saveCheckpoint(path, t, cfg, adam, epoch, step, acc, res.history)
	}
	for epoch := epoch0; epoch < cfg.Epochs; epoch++ {
		k0 := 0
		if epoch == epoch0 {
			k0 = step0
		} else {
			acc = epochAccum{}
		}
		for k := k0; k < nsteps; k++ {
			start := time.Now()
			loss, st, err := t.gradient(epoch, k, grad)
			if err != nil {
				return res, fmt.Errorf("epoch %d step %d: %w", epoch+1, k+1, err)
			}
			if err := adam.Step(params, grad); err != nil {
				return res, fmt.Errorf("epoch %d step %d: %w", epoch+1, k+1, err)
			}
			acc.Seconds += time.Since(start).Seconds()
			acc.Loss += loss
			acc.Steps++
			acc.NFEF += st.Forward.NFE
			acc.NFEB += st.Backward.NFE
			if o.stop != nil && o.stop() {
				path := o.save
				if path == "" {
					path = filepath.Join(o.out, "checkpoint.json")
				}
				if err := save(epoch, k+1, acc, path); err != nil {
					return res, err
				}
				res.interrupted = true
				res.savedTo = path
				return res, nil
			}
		}
		val, err := t.validate()
		if err != nil {
			return res, fmt.Errorf("validation after epoch %d: %w", epoch+1, err)
		}
		rec := epochRecord{Type: "epoch", Task: cfg.Task, Method: cfg.Method, Epoch: epoch + 1,
			Loss: acc.Loss / float64(max(acc.Steps, 1)), ValMetric: t.valName(), Val: val,
			NFEForward: float64(acc.NFEF), NFEBackward: float64(acc.NFEB), Seconds: acc.Seconds}
		res.history = append(res.history, rec)
		if err := writeJSON(metrics, rec); err != nil {
			return res, err
		}
		if o.json {
			if err := writeJSON(stdout, rec); err != nil {
				return res, err
			}
		}
		prog.epoch(rec, cfg.Epochs)
		if o.saveEvery > 0 && (epoch+1)%o.saveEvery == 0 && epoch+1 < cfg.Epochs {
			if err := save(epoch+1, 0, epochAccum{}, o.save); err != nil {
				return res, err
			}
		}
	}
	if o.save != "" {
		if err := save(cfg.Epochs, 0, epochAccum{}, o.save); err != nil {
			return res, err
		}
	}
	res.plots, err = t.plot(o.out, label, cfg.Method)
	return res, err
}

// summarize averages a method's epochs into its summary record.
func summarize(r methodResult) epochRecord {
	s := epochRecord{Type: "summary", Task: r.cfg.Task, Method: r.cfg.Method}
	n := len(r.history)
	if n == 0 {
		return s
	}
	for _, h := range r.history {
		s.Seconds += h.Seconds
		s.NFEForward += h.NFEForward
		s.NFEBackward += h.NFEBackward
	}
	s.Seconds /= float64(n)
	s.NFEForward /= float64(n)
	s.NFEBackward /= float64(n)
	last := r.history[n-1]
	s.Epoch, s.Loss, s.ValMetric, s.Val = last.Epoch, last.Loss, last.ValMetric, last.Val
	return s
}

// printTrainTable prints one row per method; the speed-up column compares
// seconds per epoch with the seminorm adjoint's when it was trained.
func printTrainTable(w io.Writer, results []methodResult) {
	var ref float64
	for _, r := range results {
		if r.cfg.Method == "seminorm" {
			ref = summarize(r).Seconds
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	valName := ""
	if len(results) > 0 {
		valName = summarize(results[0]).ValMetric
	}
	fmt.Fprintf(tw, "method\ts/epoch\tfwd NFE/epoch\tbwd NFE/epoch\tfinal loss\t%s\tspeed-up vs seminorm\t\n", valName)
	for _, r := range results {
		s := summarize(r)
		speed := "—"
		if ref > 0 && s.Seconds > 0 {
			speed = fmt.Sprintf("%.2f×", ref/s.Seconds)
		}
		fmt.Fprintf(tw, "%s\t%.4f\t%.0f\t%.0f\t%.4g\t%.4g\t%s\t\n", s.Method, s.Seconds, s.NFEForward, s.NFEBackward, s.Loss, s.Val, speed)
	}
	tw.Flush()
}

// lossChart draws every method's training loss on one log-scale chart.
func lossChart(dir string, results []methodResult) (string, error) {
	if len(results) == 0 {
		return "", errors.New("no results")
	}
	task := results[0].cfg.Task
	p := &Plot{Title: "Training loss per epoch (" + task + ")", XLabel: "epoch", YLabel: "training loss", LogY: true}
	for _, r := range results {
		s := Series{Name: r.cfg.Method, X: make([]float64, len(r.history)), Y: make([]float64, len(r.history))}
		for i, h := range r.history {
			s.X[i], s.Y[i] = float64(h.Epoch), h.Loss
		}
		if len(s.X) == 1 {
			s.Markers = true
		}
		p.Series = append(p.Series, s)
	}
	// The OU loss (a sum of KL divergences) is positive, like the others;
	// a log axis shows the orders of magnitude training covers.
	return saveSVG(dir, "loss.svg", func(f *os.File) error { return p.WriteSVG(f, 800, 480) })
}

// ---------------------------------------------------------------------------
// checkpoints

// saveCheckpoint writes the model and training state as a case file,
// atomically: a temporary file in the same directory, fsync, rename.
func saveCheckpoint(path string, t task, cfg trainConfig, adam *neuralode.Adam, epoch, step int, acc epochAccum, history []epochRecord) error {
	c, err := t.model()
	if err != nil {
		return err
	}
	st := checkpointState{Version: 1, Config: cfg, Epoch: epoch, Step: step, Partial: acc,
		Params: t.params(), AdamT: adam.T, AdamM: adam.M, AdamV: adam.V, History: history}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if c.Extra == nil {
		c.Extra = map[string]json.RawMessage{}
	}
	c.Extra[checkpointKey] = raw
	if ou, ok := t.(*ouTask); ok {
		layers, err := neuralode.UnflattenLayers(ou.diff, ou.diff.Params())
		if err != nil {
			return err
		}
		if c.Extra["neuralode_diffusion"], err = json.Marshal(layers); err != nil {
			return err
		}
	}
	if sp, ok := t.(*spheresTask); ok {
		w, b := sp.classifier()
		cl := neuralode.CaseLayer{W: rows(w, sp.train.Dim), B: b}
		if c.Extra["neuralode_classifier"], err = json.Marshal(cl); err != nil {
			return err
		}
	}
	return writeAtomic(path, c.Write)
}

// writeAtomic writes a file so that a crash leaves either the old or the new
// content: temporary file in the target's directory, fsync, rename, fsync of
// the directory.
func writeAtomic(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: not every file system supports it
		d.Close()
	}
	return nil
}

func loadCheckpoint(path string) (*checkpointState, error) {
	c, err := neuralode.LoadCase(path)
	if err != nil {
		return nil, err
	}
	raw, ok := c.Extra[checkpointKey]
	if !ok {
		return nil, fmt.Errorf("%s has no %q field: not written by neuralode train --save", path, checkpointKey)
	}
	var st checkpointState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("%s: %q: %w", path, checkpointKey, err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("%s: checkpoint version %d, want 1", path, st.Version)
	}
	if _, ok := taskDefaults[st.Config.Task]; !ok {
		return nil, fmt.Errorf("%s: unknown task %q", path, st.Config.Task)
	}
	if _, err := neuralode.ParseGradMethod(st.Config.Method); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// ---------------------------------------------------------------------------
// progress

// progress prints one line per epoch on stderr (at most a few per second),
// with an estimate of the time left over the whole run.
type progress struct {
	w           io.Writer
	quiet       bool
	start       time.Time
	last        time.Time
	totalEpochs int
	doneEpochs  int
	runEpochs   int // epochs done in this process (for the rate)
}

func (p *progress) epoch(rec epochRecord, epochs int) {
	p.doneEpochs++
	p.runEpochs++
	if p.quiet {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 250*time.Millisecond && rec.Epoch != epochs && rec.Epoch != 1 {
		return
	}
	p.last = now
	rate := now.Sub(p.start).Seconds() / float64(p.runEpochs)
	eta := rate * float64(p.totalEpochs-p.doneEpochs)
	fmt.Fprintf(p.w, "%s %-9s epoch %d/%d  loss %.4g  %s %.4g  (%.3f s/epoch, ETA %s)\n",
		rec.Task, rec.Method, rec.Epoch, epochs, rec.Loss, rec.ValMetric, rec.Val, rec.Seconds, fmtDuration(eta))
}

func fmtDuration(s float64) string {
	if s < 60 {
		return fmt.Sprintf("%.0fs", math.Ceil(s))
	}
	return fmt.Sprintf("%dm%02ds", int(s)/60, int(s)%60)
}
