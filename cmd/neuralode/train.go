package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
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
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	h := newInterruptHandler(stderr, os.Exit)
	go h.watch(sigs)
	defer func() {
		signal.Stop(sigs)
		close(sigs)
	}()
	return trainCommandWith(args, stdout, stderr, interrupts{betweenSteps: h.requested, withinStep: h.requested})
}

// trainCommand is runTrain with the interrupt check injected (tests stop a
// run after a chosen number of steps this way); stop is polled after every
// optimiser step.
func trainCommand(args []string, stdout, stderr io.Writer, stop func() bool) int {
	return trainCommandWith(args, stdout, stderr, interrupts{betweenSteps: stop})
}

// trainFlags are the train command's flags.
type trainFlags struct {
	cfg       trainConfig // values as given (0: the task's default)
	method    string
	out       string
	output    outputFlags
	save      string
	saveEvery int
	resume    string
	set       map[string]bool
	checkOut  func() error
}

func (f *trainFlags) register(fs *flag.FlagSet) {
	c := &f.cfg
	fs.StringVar(&c.Task, "task", "g1d", "task: "+taskList())
	fs.StringVar(&f.method, "method", "gq", "gradient method(s), comma-separated: "+strings.Join(allMethods, ", ")+", or all")
	fs.IntVar(&c.Width, "width", 0, "hidden width of the networks (two hidden layers); default per task (g1d 256, cde 128, others 32)")
	fs.IntVar(&c.Epochs, "epochs", 0, "number of epochs; default per task (g1d 60, spheres 30, sines 400, ou 40, cde 20, cde-hermite 10)")
	fs.Float64Var(&c.LR, "lr", 0, "Adam learning rate; default per task")
	fs.IntVar(&c.Batch, "batch", 0, "minibatch size (spheres 200, sines 15 series); for ou the number of training paths (64)")
	fs.Float64Var(&c.RTol, "rtol", 0, "relative tolerance of both passes; default per task (1e-3, sines 1e-4)")
	fs.Float64Var(&c.ATol, "atol", 0, "absolute tolerance of both passes; default per task (1e-3, sines 1e-5)")
	fs.Float64Var(&c.GQC, "gq-c", 0.1, "GQ node-count factor C")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the data, the initial weights and the per-epoch randomness")
	fs.IntVar(&c.Obs, "obs", 0, "sines: observation times per series (10 or 50 in the paper; default 10)")
	fs.BoolVar(&c.Irregular, "irregular", false, "sines: irregular observation times")
	fs.StringVar(&c.Data, "data", "", "cnf: toy density, one of "+strings.Join(cnfDataSets, ", ")+" (default 8gaussians); the flow has three hidden layers of --width (64), 60 epochs of 25 steps")
	f.checkOut = outDirFlag(fs, &f.out, "metrics.jsonl and the plots")
	f.output.register(fs, "print JSON lines (per epoch and a summary per method) on stdout instead of the table")
	fs.StringVar(&f.save, "save", "", "write the trained model and training state to FILE (case format) at the end")
	fs.IntVar(&f.saveEvery, "save-every", 0, "also save every K epochs (needs --save, or --resume which saves back)")
	fs.StringVar(&f.resume, "resume", "", "continue the run saved in FILE (its task, method and hyper-parameters are used);\n"+
		"the model is saved back to FILE unless --save names another")
}

// trajectoryFlags are the flags a checkpoint fixes, with their values in a
// configuration.
func trajectoryFlags(c trainConfig, method string) map[string]any {
	return map[string]any{"task": c.Task, "method": method, "width": c.Width, "lr": c.LR, "batch": c.Batch,
		"rtol": c.RTol, "atol": c.ATol, "gq-c": c.GQC, "seed": c.Seed, "obs": c.Obs, "irregular": c.Irregular, "data": c.Data}
}

// trainCommandWith is the train command with its interrupt checks.
func trainCommandWith(args []string, stdout, stderr io.Writer, in interrupts) int {
	fs := newFlags("train", "Trains one of the GQ paper's non-image experiments (data generated in code) with\n"+
		"Softplus vector fields and Adam, and writes per-epoch metrics (DIR/metrics.jsonl) and\n"+
		"SVG plots into DIR. Tasks: g1d (crossing trajectories), spheres (nested spheres),\n"+
		"sines (second-order model of A sin t + B cos t), ou (Ornstein–Uhlenbeck SDE through\n"+
		"Wong–Zakai), cnf (continuous normalizing flow on a 2-D toy density, see --data), cde and\n"+
		"cde-hermite (spiral classification by a neural CDE on natural or Hermite cubic control\n"+
		"paths). Flags left out take the task's default; values given must be positive.\n"+
		"Progress goes to stderr; the final table (or, with --json, JSON lines) to stdout.\n"+
		"SIGINT/SIGTERM stop within the current step and save a checkpoint (exit status 130);\n"+
		"a second one exits at once.", stdout)
	var f trainFlags
	f.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	f.set = flagsSet(fs)
	cfg, methods, ck, o, err := f.plan()
	if err != nil {
		return fail(stderr, "train", err)
	}
	o.stop = in.betweenSteps
	cfg.abort = in.withinStep
	return trainRun(cfg, methods, ck, o, stdout, stderr, "train")
}

// plan turns the flags into the run: its configuration, methods, the
// checkpoint to resume and the output settings. Errors are usage errors
// except those of reading the checkpoint or checking --save.
func (f *trainFlags) plan() (trainConfig, []string, *checkpointState, trainOpts, error) {
	o := trainOpts{out: f.out, json: f.output.json, quiet: f.output.quiet, save: f.save, saveEvery: f.saveEvery}
	if o.saveEvery < 0 {
		return trainConfig{}, nil, nil, o, usagef("--save-every %d: must be ≥ 0", o.saveEvery)
	}
	if o.saveEvery > 0 && o.save == "" && f.resume == "" {
		return trainConfig{}, nil, nil, o, usagef("--save-every needs --save FILE")
	}
	if err := f.checkOut(); err != nil {
		return trainConfig{}, nil, nil, o, err
	}
	var cfg trainConfig
	var methods []string
	var ck *checkpointState
	var err error
	if f.resume != "" {
		cfg, ck, err = f.resumed()
		methods = []string{cfg.Method}
		if o.save == "" {
			o.save = f.resume // never throw the resumed work away
		}
	} else {
		cfg, methods, err = f.fresh()
		if err == nil && len(methods) > 1 && o.save != "" {
			err = usagef("--save needs a single --method")
		}
	}
	if err != nil {
		return cfg, nil, nil, o, err
	}
	if o.save != "" {
		// Saving into the output directory is common: create it first.
		if filepath.Clean(filepath.Dir(o.save)) == filepath.Clean(o.out) {
			if err := os.MkdirAll(o.out, 0o755); err != nil {
				return cfg, nil, nil, o, fmt.Errorf("--out: %w", err)
			}
		}
		if err := checkWritable(o.save); err != nil {
			return cfg, nil, nil, o, fmt.Errorf("--save %s: %w", o.save, err)
		}
	}
	return cfg, methods, ck, o, nil
}

// resumed reads the checkpoint; flags that define the trajectory come from
// it, and an explicit different value is a mistake, not an override.
func (f *trainFlags) resumed() (trainConfig, *checkpointState, error) {
	ck, err := loadCheckpoint(f.resume)
	if err != nil {
		return trainConfig{}, nil, fmt.Errorf("--resume: %w", err)
	}
	cfg := ck.Config
	given, saved := trajectoryFlags(f.cfg, f.method), trajectoryFlags(cfg, cfg.Method)
	for _, name := range []string{"task", "method", "width", "lr", "batch", "rtol", "atol", "gq-c", "seed", "obs", "irregular", "data"} {
		if f.set[name] && given[name] != saved[name] {
			return cfg, nil, usagef("--%s: differs from the checkpoint being resumed (%s)", name, f.resume)
		}
	}
	if f.set["epochs"] {
		if f.cfg.Epochs < 1 {
			return cfg, nil, usagef("--epochs %d: must be ≥ 1", f.cfg.Epochs)
		}
		if f.cfg.Epochs < ck.Epoch {
			return cfg, nil, usagef("--epochs %d: the checkpoint has already trained %d", f.cfg.Epochs, ck.Epoch)
		}
		cfg.Epochs = f.cfg.Epochs
	}
	return cfg, ck, nil
}

// fresh builds a new run's configuration from the task's defaults and the
// flags given.
func (f *trainFlags) fresh() (trainConfig, []string, error) {
	spec, ok := taskRegistry[f.cfg.Task]
	if !ok {
		return trainConfig{}, nil, usagef("--task %q: want %s", f.cfg.Task, taskList())
	}
	methods, err := parseMethods(f.method)
	if err != nil {
		return trainConfig{}, nil, usagef("--method %v", err)
	}
	cfg := spec.defaults
	cfg.Task, cfg.Seed, cfg.GQC, cfg.Irregular = f.cfg.Task, f.cfg.Seed, f.cfg.GQC, f.cfg.Irregular
	for _, c := range []struct {
		name     string
		src, dst *int
	}{{"width", &f.cfg.Width, &cfg.Width}, {"epochs", &f.cfg.Epochs, &cfg.Epochs},
		{"batch", &f.cfg.Batch, &cfg.Batch}, {"obs", &f.cfg.Obs, &cfg.Obs}} {
		if f.set[c.name] {
			if *c.src < 1 {
				return cfg, nil, usagef("--%s %d: must be ≥ 1", c.name, *c.src)
			}
			*c.dst = *c.src
		}
	}
	for _, c := range []struct {
		name     string
		src, dst *float64
	}{{"lr", &f.cfg.LR, &cfg.LR}, {"rtol", &f.cfg.RTol, &cfg.RTol}, {"atol", &f.cfg.ATol, &cfg.ATol}, {"gq-c", &f.cfg.GQC, &cfg.GQC}} {
		if f.set[c.name] {
			if err := positiveFlag(c.name, *c.src); err != nil {
				return cfg, nil, err
			}
			*c.dst = *c.src
		}
	}
	if !spec.usesObs && (f.set["obs"] || f.set["irregular"]) {
		return cfg, nil, usagef("--obs and --irregular apply to --task sines only")
	}
	if f.set["data"] {
		if cfg.Task != "cnf" {
			return cfg, nil, usagef("--data applies to --task cnf only")
		}
		cfg.Data = f.cfg.Data
	}
	return cfg, methods, validateConfig(cfg)
}

// validateConfig checks a run's configuration, whether it comes from flags
// or from a checkpoint, including that its sizes fit in memory.
func validateConfig(cfg trainConfig) error {
	spec, ok := taskRegistry[cfg.Task]
	if !ok {
		return usagef("--task %q: want %s", cfg.Task, taskList())
	}
	if _, err := neuralode.ParseGradMethod(cfg.Method); cfg.Method != "" && err != nil {
		return usagef("--method %q: want one of %s", cfg.Method, strings.Join(allMethods, ", "))
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"width", cfg.Width}, {"epochs", cfg.Epochs}, {"batch", cfg.Batch}} {
		if c.v < 1 {
			return usagef("--%s %d: must be ≥ 1", c.name, c.v)
		}
	}
	for _, c := range []struct {
		name string
		v    float64
	}{{"lr", cfg.LR}, {"rtol", cfg.RTol}, {"atol", cfg.ATol}, {"gq-c", cfg.GQC}} {
		if err := positiveFlag(c.name, c.v); err != nil {
			return err
		}
	}
	if cfg.RTol < minRTol {
		return usagef("--rtol %g: below %.1e (100 × machine epsilon), which float64 cannot meet", cfg.RTol, minRTol)
	}
	if spec.check != nil {
		if err := spec.check(cfg); err != nil {
			return err
		}
	}
	return checkMemory(spec.memory(cfg), "--width, --batch or --obs")
}

// checkMemory refuses a run whose estimated memory exceeds the machine's.
func checkMemory(bytes float64, flags string) error {
	if limit := memoryLimit(); bytes > limit {
		return usagef("these sizes need at least %.3g GB of memory, more than the %.3g GB available; reduce %s",
			bytes/1e9, limit/1e9, flags)
	}
	return nil
}

// memoryLimit is the machine's physical memory (Linux: /proc/meminfo), or
// 16 GB where it cannot be read.
func memoryLimit() float64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			var kb float64
			if _, err := fmt.Sscanf(line, "MemTotal: %g kB", &kb); err == nil && kb > 0 {
				return kb * 1024
			}
		}
	}
	return 16e9
}

// checkWritable checks, before any training, that a file can be written
// at path: its directory exists and takes new files, and path is not a
// directory.
func checkWritable(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return errors.New("is a directory, want a file name")
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s does not exist", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".check*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", dir, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
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

// openMetrics creates DIR/metrics.jsonl; a resumed run rewrites it from the
// checkpoint's history, so epochs written after the checkpoint by a killed
// run are not repeated.
func openMetrics(dir string, ck *checkpointState) (*os.File, error) {
	mf, err := os.OpenFile(filepath.Join(dir, "metrics.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if ck != nil {
		for _, rec := range ck.History {
			if err := writeJSON(mf, rec); err != nil {
				mf.Close()
				return nil, err
			}
		}
	}
	return mf, nil
}

// trainRun trains every method from the same initial weights and data, then
// writes the loss chart, the table (or JSON) and the plots.
func trainRun(cfg trainConfig, methods []string, ck *checkpointState, o trainOpts, stdout, stderr io.Writer, cmd string) int {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fail(stderr, cmd, fmt.Errorf("--out: %w", err))
	}
	mf, err := openMetrics(o.out, ck)
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
	if err := reportRun(results, o, mf, stdout, stderr); err != nil {
		return fail(stderr, cmd, err)
	}
	return 0
}

// reportRun writes the loss chart, the summaries (metrics.jsonl, and stdout
// with --json) and the table with the list of files.
func reportRun(results []methodResult, o trainOpts, mf io.Writer, stdout, stderr io.Writer) error {
	lossPath, err := lossChart(o.out, results)
	if err != nil {
		return err
	}
	for _, r := range results {
		sum := summarize(r)
		if err := writeJSON(mf, sum); err != nil {
			return err
		}
		if o.json {
			if err := writeJSON(stdout, sum); err != nil {
				return err
			}
		}
	}
	if o.save != "" && !o.quiet {
		fmt.Fprintf(stderr, "model and training state saved in %s\n", o.save)
	}
	if o.json {
		if !o.quiet {
			fmt.Fprintf(stderr, "plots and metrics in %s\n", absPath(o.out))
		}
		return nil
	}
	printTrainTable(stdout, results)
	fmt.Fprintf(stdout, "\nplots and metrics in %s:\n", absPath(o.out))
	fmt.Fprintf(stdout, "  %s\n", filepath.Base(lossPath))
	for _, r := range results {
		for _, p := range r.plots {
			fmt.Fprintf(stdout, "  %s\n", filepath.Base(p))
		}
	}
	fmt.Fprintf(stdout, "  metrics.jsonl\n")
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// errInterrupted marks a step abandoned because a stop was requested.
var errInterrupted = errors.New("interrupted")

// trainer is one method's training loop state.
type trainer struct {
	cfg    trainConfig
	o      trainOpts
	t      task
	params []float64
	grad   []float64
	adam   *neuralode.Adam
	res    methodResult
}

// newTrainer builds the task and the optimiser, from scratch or from the
// checkpoint ck; it returns the epoch and step to start from.
func newTrainer(cfg trainConfig, ck *checkpointState, o trainOpts) (*trainer, int, int, epochAccum, error) {
	tr := &trainer{cfg: cfg, o: o, res: methodResult{cfg: cfg}}
	var err error
	if tr.t, err = newTask(cfg); err != nil {
		return nil, 0, 0, epochAccum{}, err
	}
	tr.params = tr.t.params()
	tr.grad = make([]float64, len(tr.params))
	tr.adam = neuralode.NewAdam(len(tr.params))
	tr.adam.LR = cfg.LR
	if ck == nil {
		return tr, 0, 0, epochAccum{}, nil
	}
	if err := ck.checkAgainst(len(tr.params), tr.t.steps()); err != nil {
		return nil, 0, 0, epochAccum{}, err
	}
	copy(tr.params, ck.Params)
	tr.adam.T = ck.AdamT
	if ck.AdamT > 0 {
		tr.adam.M = append([]float64(nil), ck.AdamM...)
		tr.adam.V = append([]float64(nil), ck.AdamV...)
	}
	tr.res.history = append(tr.res.history, ck.History...)
	return tr, ck.Epoch, ck.Step, ck.Partial, nil
}

func (tr *trainer) save(epoch, step int, acc epochAccum, path string) error {
	return saveCheckpoint(path, tr.t, tr.cfg, tr.adam, epoch, step, acc, tr.res.history)
}

// aborted reports whether a stop was requested inside a step.
func (tr *trainer) aborted() bool { return tr.cfg.abort != nil && tr.cfg.abort() }

// step runs optimiser step k of an epoch. It returns errInterrupted, with
// the parameters untouched, when a stop was requested during the step.
func (tr *trainer) step(epoch, k int, acc *epochAccum) error {
	start := time.Now()
	loss, st, err := tr.t.gradient(epoch, k, tr.grad)
	if tr.aborted() {
		return errInterrupted // the gradient may be poisoned: discard it
	}
	if err != nil {
		return fmt.Errorf("epoch %d step %d: %w", epoch+1, k+1, err)
	}
	if err := tr.adam.Step(tr.params, tr.grad); err != nil {
		return fmt.Errorf("epoch %d step %d: %w", epoch+1, k+1, err)
	}
	acc.Seconds += time.Since(start).Seconds()
	acc.Loss += loss
	acc.Steps++
	acc.NFEF += st.Forward.NFE
	acc.NFEB += st.Backward.NFE
	return nil
}

// interrupt saves the state after step steps of epoch and marks the result
// interrupted.
func (tr *trainer) interrupt(epoch, step int, acc epochAccum) (methodResult, error) {
	path := tr.o.save
	if path == "" {
		path = filepath.Join(tr.o.out, "checkpoint.json")
	}
	if err := tr.save(epoch, step, acc, path); err != nil {
		return tr.res, err
	}
	tr.res.interrupted = true
	tr.res.savedTo = path
	return tr.res, nil
}

// endEpoch validates, records and reports a finished epoch.
func (tr *trainer) endEpoch(epoch int, acc epochAccum, prog *progress, metrics, stdout io.Writer) error {
	val, err := tr.t.validate()
	if err != nil {
		return fmt.Errorf("validation after epoch %d: %w", epoch+1, err)
	}
	rec := epochRecord{Type: "epoch", Task: tr.cfg.Task, Method: tr.cfg.Method, Epoch: epoch + 1,
		Loss: acc.Loss / float64(max(acc.Steps, 1)), ValMetric: tr.t.valName(), Val: val,
		NFEForward: float64(acc.NFEF), NFEBackward: float64(acc.NFEB), Seconds: acc.Seconds}
	tr.res.history = append(tr.res.history, rec)
	if err := writeJSON(metrics, rec); err != nil {
		return err
	}
	if tr.o.json {
		if err := writeJSON(stdout, rec); err != nil {
			return err
		}
	}
	prog.epoch(rec, tr.cfg.Epochs)
	if e := tr.o.saveEvery; e > 0 && (epoch+1)%e == 0 && epoch+1 < tr.cfg.Epochs {
		return tr.save(epoch+1, 0, epochAccum{}, tr.o.save)
	}
	return nil
}

// trainMethod trains one method, from scratch or from the checkpoint ck.
func trainMethod(cfg trainConfig, ck *checkpointState, o trainOpts, prog *progress, metrics io.Writer, stdout io.Writer, label string) (methodResult, error) {
	tr, epoch0, step0, acc, err := newTrainer(cfg, ck, o)
	if err != nil {
		return methodResult{cfg: cfg}, err
	}
	nsteps := tr.t.steps()
	for epoch := epoch0; epoch < cfg.Epochs; epoch++ {
		k0 := 0
		if epoch == epoch0 {
			k0 = step0
		} else {
			acc = epochAccum{}
		}
		for k := k0; k < nsteps; k++ {
			if err := tr.step(epoch, k, &acc); err == errInterrupted {
				return tr.interrupt(epoch, k, acc)
			} else if err != nil {
				return tr.res, err
			}
			if o.stop != nil && o.stop() {
				return tr.interrupt(epoch, k+1, acc)
			}
		}
		if err := tr.endEpoch(epoch, acc, prog, metrics, stdout); err != nil {
			return tr.res, err
		}
	}
	if o.save != "" {
		if err := tr.save(cfg.Epochs, 0, epochAccum{}, o.save); err != nil {
			return tr.res, err
		}
	}
	tr.res.plots, err = tr.t.plot(o.out, label, cfg.Method)
	return tr.res, err
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
	p := &lineChart{Title: "Training loss per epoch (" + task + ")", XLabel: "epoch", YLabel: "training loss", LogY: true}
	for _, r := range results {
		s := lineSeries{Name: r.cfg.Method, X: make([]float64, len(r.history)), Y: make([]float64, len(r.history))}
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
	return saveSVG(dir, "loss.svg", func(f *os.File) error { return p.writeSVG(f, 800, 480) })
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
// the directory. The file gets the permissions of the other outputs (0644
// less the umask). A failed write removes its temporary file; temporary files
// left by an earlier save that was killed are removed too.
func writeAtomic(path string, write func(io.Writer) error) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	if stale, err := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+".tmp*")); err == nil {
		for _, s := range stale {
			os.Remove(s)
		}
	}
	f, tmp, err := createTemp(dir, "."+base+".tmp")
	if err != nil {
		return err
	}
	tempFiles.Store(tmp, struct{}{})
	defer tempFiles.Delete(tmp)
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

// createTemp creates a new file prefix+random in dir with mode 0644 (less
// the umask), unlike os.CreateTemp's 0600.
func createTemp(dir, prefix string) (*os.File, string, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, fmt.Sprintf("%s%d", prefix, rand.Uint32()))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil || !errors.Is(err, fs.ErrExist) || try == 100 {
			return f, name, err
		}
	}
}

// globEscape quotes the pattern characters of a file name.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\\`, r) {
			b.WriteRune('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
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
	// A hand-edited configuration gets the flags' checks; the messages
	// name the setting but are runtime errors (the file is at fault).
	if err := validateConfig(st.Config); err != nil {
		return nil, fmt.Errorf("%s: checkpoint config: %s", path, strings.TrimPrefix(err.Error(), "--"))
	}
	if st.Config.Method == "" {
		return nil, fmt.Errorf("%s: checkpoint config: no method", path)
	}
	if err := st.checkPosition(); err != nil {
		return nil, fmt.Errorf("%s: checkpoint %w", path, err)
	}
	return &st, nil
}

// checkPosition checks the checkpoint's position in the run against its
// own configuration and history.
func (st *checkpointState) checkPosition() error {
	if st.Epoch < 0 || st.Epoch > st.Config.Epochs {
		return fmt.Errorf("epoch %d: outside 0…%d (the configured epochs)", st.Epoch, st.Config.Epochs)
	}
	if st.Step < 0 {
		return fmt.Errorf("step %d: negative", st.Step)
	}
	if len(st.History) != st.Epoch {
		return fmt.Errorf("history has %d epochs, but the checkpoint is after epoch %d", len(st.History), st.Epoch)
	}
	if st.AdamT < 0 {
		return fmt.Errorf("adam_t %d: negative", st.AdamT)
	}
	return nil
}

// checkAgainst checks the checkpoint's vectors against the model built
// from its configuration (nparams parameters, steps optimiser steps per epoch).
func (st *checkpointState) checkAgainst(nparams, steps int) error {
	if len(st.Params) != nparams {
		return fmt.Errorf("checkpoint params has %d values, the model has %d parameters", len(st.Params), nparams)
	}
	if st.AdamT > 0 && (len(st.AdamM) != nparams || len(st.AdamV) != nparams) {
		return fmt.Errorf("checkpoint adam_m has %d values and adam_v %d, the model has %d parameters",
			len(st.AdamM), len(st.AdamV), nparams)
	}
	// Step = steps is an epoch whose steps are done and whose end (the
	// validation and the metrics line) is not: a stop after its last step.
	if st.Step > steps {
		return fmt.Errorf("checkpoint step %d: an epoch has %d steps", st.Step, steps)
	}
	return nil
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
