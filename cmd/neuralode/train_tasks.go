package main

// The four non-image experiments of Norcliffe & Deisenroth (TMLR 2023) as
// trainable tasks: crossing trajectories (g1d), nested spheres, sines and the
// Ornstein–Uhlenbeck SDE. Every task owns one joint parameter vector (the ODE
// network's parameters first, then any parameters outside the ODE), computes
// the loss and its gradient for one optimiser step, a validation metric, its
// plots, and a case-format description of the model for saving.
//
// Determinism: the data and the initial parameters come from the seed alone;
// every per-epoch random choice (minibatch shuffles, noise samples) comes from
// a generator seeded by (seed, epoch, step), never from a running generator,
// so a run resumed from a checkpoint continues exactly as an uninterrupted one.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/neuralode/neuralode"
)

// trainConfig is everything that defines a training run's trajectory. It is
// stored in checkpoints, so a resumed run uses the same values.
type trainConfig struct {
	Task      string  `json:"task"`
	Method    string  `json:"method"`
	Width     int     `json:"width"`
	Epochs    int     `json:"epochs"`
	LR        float64 `json:"lr"`
	Batch     int     `json:"batch"`
	RTol      float64 `json:"rtol"`
	ATol      float64 `json:"atol"`
	GQC       float64 `json:"gq_c"`
	Seed      uint64  `json:"seed"`
	Obs       int     `json:"obs,omitempty"`       // sines: observation times per series
	Irregular bool    `json:"irregular,omitempty"` // sines: irregular observation times
	Data      string  `json:"data,omitempty"`      // cnf: toy density

	// abort, when set, is polled inside every evaluation of the vector
	// field during training (see newGradSolver): a long step stops within
	// one evaluation of an interrupt instead of at its end. It is not part
	// of the trajectory and not saved.
	abort func() bool
}

// taskSpec registers a task: its defaults, its constructor and what its
// sizes cost. Adding a task is adding one entry to taskRegistry (and its
// name to taskOrder).
type taskSpec struct {
	// defaults are the values of the flags left out. They are chosen so
	// that each task's default run learns visibly and finishes in about a
	// minute on two cores.
	defaults trainConfig
	// build constructs the task from a validated configuration.
	build func(cfg trainConfig) (task, error)
	// memory estimates the bytes a run needs (a lower bound: parameters,
	// optimiser state, states at the observation times, network scratch).
	memory func(cfg trainConfig) float64
	// check validates what only this task constrains (nil: nothing).
	check func(cfg trainConfig) error
	// usesObs reports that --obs and --irregular apply.
	usesObs bool
}

// taskOrder lists the registered tasks in the order help texts show them.
var taskOrder = []string{"g1d", "spheres", "sines", "ou", "cnf", "cde", "cde-hermite"}

// taskRegistry holds every task the train command knows.
var taskRegistry = map[string]taskSpec{
	"g1d": {
		defaults: trainConfig{Width: 256, Epochs: 60, LR: 0.02, Batch: 2, RTol: 1e-3, ATol: 1e-3},
		build:    func(cfg trainConfig) (task, error) { return newG1DTask(cfg) },
		memory: func(cfg trainConfig) float64 {
			return runBytes(mlpParams(1+g1dAugment, cfg.Width, false), 2, 1+g1dAugment, cfg.Width, 2)
		},
	},
	"spheres": {
		defaults: trainConfig{Width: 32, Epochs: 30, LR: 0.01, Batch: 200, RTol: 1e-3, ATol: 1e-3},
		build:    func(cfg trainConfig) (task, error) { return newSpheresTask(cfg) },
		memory: func(cfg trainConfig) float64 {
			// The decision-region plot integrates a 70 × 70 grid at once.
			b := max(min(cfg.Batch, 2*spheresTrainPerClass), 70*70)
			return runBytes(mlpParams(2+spheresAugment, cfg.Width, true), b, 2+spheresAugment, cfg.Width, 2)
		},
	},
	"sines": {
		defaults: trainConfig{Width: 32, Epochs: 400, LR: 0.01, Batch: 15, RTol: 1e-4, ATol: 1e-5, Obs: 10},
		build:    func(cfg trainConfig) (task, error) { return newSinesTask(cfg) },
		memory: func(cfg trainConfig) float64 {
			return runBytes(mlpParams(2, cfg.Width, false), sinesTrain+sinesVal, 2, cfg.Width, cfg.Obs)
		},
		check: func(cfg trainConfig) error {
			if cfg.Obs < 2 {
				return usagef("--obs %d: need at least 2 observation times", cfg.Obs)
			}
			return nil
		},
		usesObs: true,
	},
	"ou": {
		defaults: trainConfig{Width: 32, Epochs: 40, LR: 0.01, Batch: 64, RTol: 1e-3, ATol: 1e-3},
		build:    func(cfg trainConfig) (task, error) { return newOUTask(cfg) },
		memory: func(cfg trainConfig) float64 {
			// Drift and diffusion networks; 101 observation times.
			return runBytes(2*mlpParams(1, cfg.Width, true), cfg.Batch, 1, 2*cfg.Width, 101)
		},
		check: func(cfg trainConfig) error {
			if cfg.Batch < 2 {
				return usagef("--batch %d: ou needs at least 2 paths", cfg.Batch)
			}
			return nil
		},
	},
	"cnf":         cnfSpec,
	"cde":         cdeSpec(neuralode.NaturalSpline, 20),
	"cde-hermite": cdeSpec(neuralode.HermiteSpline, 10),
}

// taskList is "g1d, spheres, sines or ou" for messages.
func taskList() string {
	return strings.Join(taskOrder[:len(taskOrder)-1], ", ") + " or " + taskOrder[len(taskOrder)-1]
}

// mlpParams counts the parameters of a Dim → width → width → Dim MLP.
func mlpParams(dim, width int, timeInput bool) float64 {
	in, w, d := float64(dim), float64(width), float64(dim)
	if timeInput {
		in++
	}
	return in*w + w + w*w + w + w*d + d
}

// runBytes estimates the memory of a training run: the parameters with
// their gradient, Adam moments and solver copies (~10 vectors of P), the
// network's activations for a batch (~16 of B × width), and the states at
// the observation times with their adjoints and Runge–Kutta stages (~12 of
// B × D × M). It is a lower bound: direct backpropagation also stores
// every stage of every step.
func runBytes(params float64, batch, dim, width, times int) float64 {
	b, d, w, m := float64(batch), float64(dim), float64(width), float64(times)
	return 8 * (10*params + 16*b*w + 12*b*d*m)
}

// task is one experiment ready to train.
type task interface {
	// params is the live joint parameter vector the optimiser updates.
	params() []float64
	// steps is the number of optimiser steps per epoch.
	steps() int
	// gradient computes the loss of step k of the given epoch and writes the
	// gradient with respect to params into grad.
	gradient(epoch, k int, grad []float64) (float64, neuralode.GradStats, error)
	// valName names the validation metric; validate computes it.
	valName() string
	validate() (float64, error)
	// plot writes the task's figure(s) into dir; label distinguishes methods.
	plot(dir, label, method string) ([]string, error)
	// model describes the trained model (with the task's data) as a case.
	model() (*neuralode.Case, error)
}

// Stream identifiers keep the generators of different purposes independent.
const (
	streamData  = 0x64617461 // "data"
	streamInit  = 0x696e6974 // "init"
	streamEpoch = 0x65706f63 // "epoc"
	streamVal   = 0x76616c69 // "vali"
)

func seedRNG(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// epochRNG is the generator of step k of an epoch: a pure function of
// (seed, epoch, k), which is what makes resuming exact.
func epochRNG(seed uint64, epoch, k int) *rand.Rand {
	return rand.New(rand.NewPCG(seed^streamEpoch, uint64(epoch)<<24|uint64(k)))
}

func gradMethod(cfg trainConfig) (neuralode.GradMethod, error) {
	return neuralode.ParseGradMethod(cfg.Method)
}

// newGradSolver returns the run's gradient solver for field; with cfg.abort
// set, the field is wrapped so that an interrupt stops a step from inside.
func newGradSolver(field neuralode.VectorField, cfg trainConfig) (*neuralode.GradientSolver, error) {
	m, err := gradMethod(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.abort != nil {
		field = &abortableField{VectorField: field, abort: cfg.abort}
	}
	return neuralode.NewGradientSolver(field, neuralode.GradOptions{
		Method:  m,
		Forward: neuralode.Options{RTol: cfg.RTol, ATol: cfg.ATol},
		GQ:      neuralode.GQOptions{C: cfg.GQC},
	})
}

// forward integrates field from z0 through ts with the run's tolerances,
// restarting at the field's break points as training does (Predict).
func forward(field neuralode.VectorField, cfg trainConfig, z0, ts []float64) ([]float64, error) {
	out, _, err := neuralode.Predict(field, neuralode.Options{RTol: cfg.RTol, ATol: cfg.ATol}, z0, ts)
	return out, err
}

func linspace(a, b float64, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = a + (b-a)*float64(i)/float64(n-1)
	}
	x[n-1] = b
	return x
}

func newTask(cfg trainConfig) (task, error) {
	spec, ok := taskRegistry[cfg.Task]
	if !ok {
		return nil, fmt.Errorf("unknown task %q", cfg.Task)
	}
	return spec.build(cfg)
}

// lossCapture lets a neuralode.Loss report an error from the task's loss
// function (which the Loss signature cannot return).
type lossCapture struct{ err error }

func (c *lossCapture) check(l float64, err error) float64 {
	if err != nil && c.err == nil {
		c.err = err
	}
	return l
}

// gradient runs one gradient computation whose loss reports through c, and
// copies dL/dθ into grad.
func (c *lossCapture) gradient(gs *neuralode.GradientSolver, z0, ts []float64, loss neuralode.Loss, grad []float64) (float64, neuralode.GradStats, error) {
	c.err = nil
	r, err := gs.Gradient(z0, ts, loss)
	if err != nil {
		return 0, neuralode.GradStats{}, err
	}
	if c.err != nil {
		return 0, r.Stats, c.err
	}
	copy(grad, r.Params)
	return r.Loss, r.Stats, nil
}

// drawTrainVal draws a task's training set of size nTrain and then its
// validation set of size nVal from the data stream rng with gen, in that
// order.
func drawTrainVal[D any](rng *rand.Rand, nTrain, nVal int, gen func(rng *rand.Rand, n int) (D, error)) (train, val D, err error) {
	if train, err = gen(rng, nTrain); err != nil {
		return train, val, err
	}
	val, err = gen(rng, nVal)
	return train, val, err
}

// savePlot is saveSVG for a task's plots method, which returns the paths
// written: here the one file.
func savePlot(dir, name string, render func(f *os.File) error) ([]string, error) {
	path, err := saveSVG(dir, name, render)
	if err != nil {
		return nil, err
	}
	return []string{path}, nil
}

// saveSVG renders a chart into dir/name atomically enough for plots (a
// plain create-and-write).
func saveSVG(dir, name string, render func(f *os.File) error) (string, error) {
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := render(f); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// ---------------------------------------------------------------------------
// g1d: crossing trajectories

type g1dTask struct {
	cfg  trainConfig
	data g1dData
	mlp  *neuralode.MLP
	gs   *neuralode.GradientSolver
	lc   lossCapture
	loss neuralode.Loss
}

func newG1DTask(cfg trainConfig) (*g1dTask, error) {
	data, err := makeG1D(g1dAugment)
	if err != nil {
		return nil, err
	}
	mlp, err := neuralode.NewMLP(neuralode.MLPConfig{Dim: data.Dim, Hidden: []int{cfg.Width, cfg.Width},
		Activation: neuralode.Softplus}, seedRNG(cfg.Seed, streamInit))
	if err != nil {
		return nil, err
	}
	t := &g1dTask{cfg: cfg, data: data, mlp: mlp}
	if t.gs, err = newGradSolver(mlp, cfg); err != nil {
		return nil, err
	}
	// Component 0 of the final state against the targets.
	t.loss, err = neuralode.SelectedMSELoss(neuralode.LossShape{Batch: data.Batch, Dim: data.Dim, Times: len(data.Times)},
		[]int{len(data.Times) - 1}, []int{0}, data.Targets)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (t *g1dTask) params() []float64 { return t.mlp.Params() }
func (t *g1dTask) steps() int        { return 1 }

// valName: g1d has no held-out data (its two training points are the whole
// task), so its metric is the training MSE after the epoch's update, named
// for what it is; it equals the next epoch's loss.
func (t *g1dTask) valName() string { return "mse_after_step" }

func (t *g1dTask) gradient(epoch, k int, grad []float64) (float64, neuralode.GradStats, error) {
	return t.lc.gradient(t.gs, t.data.Z0, t.data.Times, t.loss, grad)
}

func (t *g1dTask) validate() (float64, error) {
	out, err := forward(t.mlp, t.cfg, t.data.Z0, t.data.Times)
	if err != nil {
		return 0, err
	}
	n := t.data.Batch * t.data.Dim
	return readoutMSE(out[n:], t.data.Batch, t.data.Dim, 0, t.data.Targets, nil)
}

func (t *g1dTask) plot(dir, label, method string) ([]string, error) {
	ts := linspace(0, 1, 101)
	out, err := forward(t.mlp, t.cfg, t.data.Z0, ts)
	if err != nil {
		return nil, err
	}
	D, n := t.data.Dim, t.data.Batch*t.data.Dim
	p := &lineChart{Title: "Crossing trajectories (" + method + "): x(0) = −1 → 1 and 1 → −1",
		XLabel: "time t", YLabel: "state component"}
	for b := 0; b < t.data.Batch; b++ {
		x := lineSeries{Name: fmt.Sprintf("x(t) from x(0) = %+g", t.data.Z0[b*D]), X: ts, Y: make([]float64, len(ts)), Color: palette[b]}
		aug := lineSeries{Name: fmt.Sprintf("augmented z₂(t) from x(0) = %+g", t.data.Z0[b*D]), X: ts, Y: make([]float64, len(ts)),
			Color: palette[b], Dashed: true, Width: 1.5, Opacity: 0.7}
		for i := range ts {
			x.Y[i] = out[i*n+b*D]
			aug.Y[i] = out[i*n+b*D+1]
		}
		p.Series = append(p.Series, x, aug)
	}
	p.Series = append(p.Series, lineSeries{Name: "targets x(1)", X: []float64{1, 1}, Y: t.data.Targets, Color: palette[6], NoLine: true})
	return savePlot(dir, "g1d_trajectories"+label+".svg", func(f *os.File) error { return p.writeSVG(f, 800, 480) })
}

func (t *g1dTask) model() (*neuralode.Case, error) {
	D := t.data.Dim
	c := &neuralode.Case{Name: "neuralode train g1d", T: t.data.Times, RTol: t.cfg.RTol, ATol: t.cfg.ATol,
		Z0: rows(t.data.Z0, D)}
	tg := make([]float64, len(t.data.Z0))
	for b, v := range t.data.Targets {
		tg[b*D] = v
	}
	c.Target = [][][]float64{rows(tg, D)}
	return c, c.SetModel(t.mlp)
}

// ---------------------------------------------------------------------------
// minibatches shared by spheres and sines

// minibatch returns the sample indices of step k of an epoch: a permutation
// drawn from (seed, epoch) cut into batches of size bs (the last may be short).
func minibatch(seed uint64, epoch, k, n, bs int) []int {
	if bs >= n {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	perm := epochRNG(seed, epoch, 0).Perm(n)
	hi := min((k+1)*bs, n)
	return perm[k*bs : hi]
}

func numBatches(n, bs int) int {
	if bs >= n {
		return 1
	}
	return (n + bs - 1) / bs
}

// ---------------------------------------------------------------------------
// spheres: nested spheres with a linear classifier on the final state

const spheresClasses = 2

type spheresTask struct {
	cfg        trainConfig
	train, val spheresData
	mlp        *neuralode.MLP
	joint      []float64 // [θ_ode, W (classes×D), b (classes)]
	np         int
	gs         *neuralode.GradientSolver
	lc         lossCapture

	z0     []float64
	labels []int
	dw, db []float64
}

func newSpheresTask(cfg trainConfig) (*spheresTask, error) {
	train, val, err := drawTrainVal(seedRNG(cfg.Seed, streamData), spheresTrainPerClass, spheresValPerClass,
		func(rng *rand.Rand, n int) (spheresData, error) { return nestedSpheres(rng, n, spheresAugment) })
	if err != nil {
		return nil, err
	}
	irng := seedRNG(cfg.Seed, streamInit)
	D := train.Dim
	mlp, err := neuralode.NewMLP(neuralode.MLPConfig{Dim: D, Hidden: []int{cfg.Width, cfg.Width},
		Activation: neuralode.Softplus, TimeInput: true}, irng)
	if err != nil {
		return nil, err
	}
	np := mlp.NumParams()
	joint := make([]float64, np+spheresClasses*D+spheresClasses)
	copy(joint, mlp.Params())
	if err := mlp.BindParams(joint[:np]); err != nil {
		return nil, err
	}
	// The classifier starts as PyTorch's nn.Linear(D, 2) would.
	bound := 1 / math.Sqrt(float64(D))
	for i := np; i < len(joint); i++ {
		joint[i] = bound * (2*irng.Float64() - 1)
	}
	t := &spheresTask{cfg: cfg, train: train, val: val, mlp: mlp, joint: joint, np: np,
		dw: make([]float64, spheresClasses*D), db: make([]float64, spheresClasses)}
	if t.gs, err = newGradSolver(mlp, cfg); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *spheresTask) classifier() (w, b []float64) {
	D := t.train.Dim
	return t.joint[t.np : t.np+spheresClasses*D], t.joint[t.np+spheresClasses*D:]
}

func (t *spheresTask) params() []float64 { return t.joint }
func (t *spheresTask) steps() int        { return numBatches(t.train.Batch, t.cfg.Batch) }
func (t *spheresTask) valName() string   { return "val_accuracy" }

func (t *spheresTask) gradient(epoch, k int, grad []float64) (float64, neuralode.GradStats, error) {
	D := t.train.Dim
	idx := minibatch(t.cfg.Seed, epoch, k, t.train.Batch, t.cfg.Batch)
	t.z0 = t.z0[:0]
	t.labels = t.labels[:0]
	for _, i := range idx {
		t.z0 = append(t.z0, t.train.X[i*D:(i+1)*D]...)
		t.labels = append(t.labels, t.train.Labels[i])
	}
	w, b := t.classifier()
	loss, err := neuralode.SoftmaxCrossEntropyLoss(neuralode.LossShape{Batch: len(idx), Dim: D, Times: len(t.train.Times)},
		t.labels, w, b, t.dw, t.db)
	if err != nil {
		return 0, neuralode.GradStats{}, err
	}
	l, st, err := t.lc.gradient(t.gs, t.z0, t.train.Times, loss, grad[:t.np])
	if err != nil {
		return 0, st, err
	}
	copy(grad[t.np:], t.dw)
	copy(grad[t.np+len(t.dw):], t.db)
	return l, st, nil
}

// finalStates integrates a batch of points to t = 1.
func (t *spheresTask) finalStates(x []float64) ([]float64, error) {
	out, err := forward(t.mlp, t.cfg, x, t.train.Times)
	if err != nil {
		return nil, err
	}
	return out[len(x):], nil
}

func (t *spheresTask) validate() (float64, error) {
	z, err := t.finalStates(t.val.X)
	if err != nil {
		return 0, err
	}
	w, b := t.classifier()
	return accuracy(z, t.val.Batch, t.val.Dim, t.val.Labels, w, b)
}

func (t *spheresTask) plot(dir, label, method string) ([]string, error) {
	const g = 70
	const lo, hi = -1.0, 1.0
	D := t.train.Dim
	grid := make([]float64, g*g*D)
	for j := 0; j < g; j++ {
		for i := 0; i < g; i++ {
			c := (j*g + i) * D
			grid[c] = lo + (hi-lo)*(float64(i)+0.5)/g
			grid[c+1] = lo + (hi-lo)*(float64(j)+0.5)/g
		}
	}
	z, err := t.finalStates(grid)
	if err != nil {
		return nil, err
	}
	w, b := t.classifier()
	s := &regionScatter{
		Title:  "Nested spheres (" + method + "): decision regions and validation points",
		XLabel: "x₁", YLabel: "x₂",
		ClassNames: []string{"inner (r < 0.4)", "outer (0.7 < r < 0.9)"},
		GridNX:     g, GridNY: g, GridXMin: lo, GridXMax: hi, GridYMin: lo, GridYMax: hi,
		GridClass: make([]int, g*g), GridConf: make([]float64, g*g), EqualAspect: true,
	}
	var logit [spheresClasses]float64
	for c := 0; c < g*g; c++ {
		logitsRow(logit[:], z[c*D:(c+1)*D], w, b)
		k := 0
		if logit[1] > logit[0] {
			k = 1
		}
		s.GridClass[c] = k
		s.GridConf[c] = 1 / (1 + math.Exp(-math.Abs(logit[1]-logit[0])))
	}
	// Validation points and a sample of the training points.
	add := func(d spheresData, n int) {
		for i := 0; i < min(n, d.Batch); i++ {
			s.X = append(s.X, d.X[i*D])
			s.Y = append(s.Y, d.X[i*D+1])
			s.Class = append(s.Class, d.Labels[i])
		}
	}
	add(t.val, t.val.Batch)
	add(t.train, 200)
	return savePlot(dir, "spheres_regions"+label+".svg", func(f *os.File) error { return s.writeSVG(f, 760, 640) })
}

func (t *spheresTask) model() (*neuralode.Case, error) {
	D := t.val.Dim
	// The case holds the validation points; the ODE alone has no targets,
	// so the target is the final state itself (loss 0): the class labels
	// and the classifier are in the checkpoint fields.
	z, err := t.finalStates(t.val.X)
	if err != nil {
		return nil, err
	}
	c := &neuralode.Case{Name: "neuralode train spheres", T: t.train.Times, RTol: t.cfg.RTol, ATol: t.cfg.ATol,
		Z0: rows(t.val.X, D), Target: [][][]float64{rows(z, D)}}
	return c, c.SetModel(t.mlp)
}

// ---------------------------------------------------------------------------
// sines: second-order model ẍ = MLP(x, v)₀

type sinesTask struct {
	cfg        trainConfig
	times      []float64
	train, val sinesData
	mlp        *neuralode.MLP
	field      *secondOrder
	gs         *neuralode.GradientSolver
	lc         lossCapture
	z0, obs    []float64
}

func newSinesTask(cfg trainConfig) (*sinesTask, error) {
	drng := seedRNG(cfg.Seed, streamData)
	times, err := sineTimes(drng, cfg.Obs, cfg.Irregular)
	if err != nil {
		return nil, err
	}
	train, val, err := drawTrainVal(drng, sinesTrain, sinesVal,
		func(rng *rand.Rand, n int) (sinesData, error) { return makeSines(rng, n, times) })
	if err != nil {
		return nil, err
	}
	mlp, err := neuralode.NewMLP(neuralode.MLPConfig{Dim: 2, Hidden: []int{cfg.Width, cfg.Width},
		Activation: neuralode.Softplus}, seedRNG(cfg.Seed, streamInit))
	if err != nil {
		return nil, err
	}
	t := &sinesTask{cfg: cfg, times: times, train: train, val: val, mlp: mlp, field: &secondOrder{mlp: mlp}}
	if t.gs, err = newGradSolver(t.field, cfg); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *sinesTask) params() []float64 { return t.mlp.Params() }
func (t *sinesTask) steps() int        { return numBatches(t.train.Batch, t.cfg.Batch) }
func (t *sinesTask) valName() string   { return "val_mse" }

func (t *sinesTask) gradient(epoch, k int, grad []float64) (float64, neuralode.GradStats, error) {
	idx := minibatch(t.cfg.Seed, epoch, k, t.train.Batch, t.cfg.Batch)
	bs, m := len(idx), len(t.times)
	t.z0 = t.z0[:0]
	for _, i := range idx {
		t.z0 = append(t.z0, t.train.Z0[2*i], t.train.Z0[2*i+1])
	}
	t.obs = t.obs[:0]
	for r := 0; r < m; r++ {
		for _, i := range idx {
			t.obs = append(t.obs, t.train.Obs[r*t.train.Batch+i])
		}
	}
	// Position (component 0) at every observation time.
	rowsIdx := make([]int, m)
	for i := range rowsIdx {
		rowsIdx[i] = i
	}
	loss, err := neuralode.SelectedMSELoss(neuralode.LossShape{Batch: bs, Dim: 2, Times: m}, rowsIdx, []int{0}, t.obs)
	if err != nil {
		return 0, neuralode.GradStats{}, err
	}
	return t.lc.gradient(t.gs, t.z0, t.times, loss, grad)
}

func (t *sinesTask) validate() (float64, error) {
	out, err := forward(t.field, t.cfg, t.val.Z0, t.times)
	if err != nil {
		return 0, err
	}
	return trajectoryMSE(out, len(t.times), t.val.Batch, 2, 0, t.val.Obs, nil)
}

func (t *sinesTask) plot(dir, label, method string) ([]string, error) {
	ts := linspace(0, t.times[len(t.times)-1], 200)
	out, err := forward(t.field, t.cfg, t.val.Z0, ts)
	if err != nil {
		return nil, err
	}
	B := t.val.Batch
	p := &lineChart{Title: "Sines (" + method + "): validation series, model vs truth", XLabel: "time t", YLabel: "x(t)"}
	for b := 0; b < min(B, 3); b++ {
		col := palette[b]
		truth := lineSeries{X: ts, Y: make([]float64, len(ts)), Color: col, Dashed: true, Width: 1.5}
		pred := lineSeries{Name: fmt.Sprintf("series %d model", b+1), X: ts, Y: make([]float64, len(ts)), Color: col}
		for i, tt := range ts {
			truth.Y[i] = t.val.A[b]*math.Sin(tt) + t.val.B[b]*math.Cos(tt)
			pred.Y[i] = out[(i*B+b)*2]
		}
		obs := lineSeries{Name: fmt.Sprintf("series %d obs.", b+1), X: t.times, Y: make([]float64, len(t.times)), Color: col, NoLine: true}
		for i := range t.times {
			obs.Y[i] = t.val.Obs[i*B+b]
		}
		p.Series = append(p.Series, truth, obs, pred)
	}
	p.Series = append(p.Series, lineSeries{Name: "truth (dashed)", X: []float64{math.NaN()}, Y: []float64{math.NaN()}, Color: "#777777", Dashed: true})
	return savePlot(dir, "sines_trajectories"+label+".svg", func(f *os.File) error { return p.writeSVG(f, 800, 480) })
}

func (t *sinesTask) model() (*neuralode.Case, error) {
	B := t.val.Batch
	c := &neuralode.Case{Name: "neuralode train sines (second order: [ẋ, v̇] = [v, MLP(x, v)₀])",
		T: t.times, RTol: t.cfg.RTol, ATol: t.cfg.ATol, Z0: rows(t.val.Z0, 2)}
	// Targets are the exact states [y, y'] of the validation series.
	for _, tt := range t.times[1:] {
		s, co := math.Sincos(tt)
		row := make([][]float64, B)
		for b := range row {
			row[b] = []float64{t.val.A[b]*s + t.val.B[b]*co, t.val.A[b]*co - t.val.B[b]*s}
		}
		c.Target = append(c.Target, row)
	}
	return c, c.SetModel(t.mlp)
}

// ---------------------------------------------------------------------------
// ou: Ornstein–Uhlenbeck SDE trained through the Wong–Zakai ODE

const (
	ouKLTerms = 10   // cosine terms of the noise (the paper's N)
	ouValN    = 128  // validation data paths (and model samples)
	ouSDEDt   = 0.01 // reversible Heun step of the validation sampler
)

type ouTask struct {
	cfg         trainConfig
	ts          []float64
	xs          []float64 // training data, time-major (len(ts) × B)
	vxs         []float64 // validation data, time-major (len(ts) × ouValN)
	md, vd      []float64 // per-time mean and variance of the training data
	drift, diff *neuralode.MLP
	noise       *neuralode.KLNoise
	wz          *neuralode.WongZakai
	gs          *neuralode.GradientSolver
	loss        neuralode.Loss
}

func newOUTask(cfg trainConfig) (*ouTask, error) {
	drng := seedRNG(cfg.Seed, streamData)
	ts, xs, err := neuralode.OUData(drng, cfg.Batch)
	if err != nil {
		return nil, err
	}
	_, vxs, err := neuralode.OUData(seedRNG(cfg.Seed, streamVal), ouValN)
	if err != nil {
		return nil, err
	}
	irng := seedRNG(cfg.Seed, streamInit)
	mk := func() (*neuralode.MLP, error) {
		return neuralode.NewMLP(neuralode.MLPConfig{Dim: 1, Hidden: []int{cfg.Width, cfg.Width},
			Activation: neuralode.Softplus, TimeInput: true}, irng)
	}
	drift, err := mk()
	if err != nil {
		return nil, err
	}
	diff, err := mk()
	if err != nil {
		return nil, err
	}
	noise, err := neuralode.NewKLNoise(ts[0], ts[len(ts)-1], ouKLTerms, cfg.Batch)
	if err != nil {
		return nil, err
	}
	wz, err := neuralode.NewWongZakai(drift, diff, noise)
	if err != nil {
		return nil, err
	}
	t := &ouTask{cfg: cfg, ts: ts, xs: xs, vxs: vxs, drift: drift, diff: diff, noise: noise, wz: wz}
	t.md, t.vd = pathMoments(xs, len(ts), cfg.Batch)
	if t.gs, err = newGradSolver(wz, cfg); err != nil {
		return nil, err
	}
	// Gaussians fitted per observation time after t_0, against the data's.
	if t.loss, err = neuralode.GaussianMomentLoss(neuralode.LossShape{Batch: cfg.Batch, Dim: 1, Times: len(ts)}, t.md[1:], t.vd[1:]); err != nil {
		return nil, err
	}
	return t, nil
}

// pathMoments returns the per-time sample mean and unbiased variance of
// time-major paths (m × n).
func pathMoments(x []float64, m, n int) (mean, vr []float64) {
	mean, vr = make([]float64, m), make([]float64, m)
	for i := 0; i < m; i++ {
		mean[i], vr[i] = moments(x[i*n : (i+1)*n])
	}
	return mean, vr
}

func moments(row []float64) (mean, vr float64) {
	for _, v := range row {
		mean += v
	}
	mean /= float64(len(row))
	for _, v := range row {
		vr += (v - mean) * (v - mean)
	}
	return mean, vr / float64(len(row)-1)
}

func (t *ouTask) params() []float64 { return t.wz.Params() }
func (t *ouTask) steps() int        { return 1 }
func (t *ouTask) valName() string   { return "val_loglik" }

func (t *ouTask) gradient(epoch, k int, grad []float64) (float64, neuralode.GradStats, error) {
	t.noise.Resample(epochRNG(t.cfg.Seed, epoch, k))
	r, err := t.gs.Gradient(t.xs[:t.cfg.Batch], t.ts, t.loss)
	if err != nil {
		return 0, neuralode.GradStats{}, err
	}
	if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) {
		return 0, r.Stats, fmt.Errorf("non-finite KL loss")
	}
	copy(grad, r.Params)
	return r.Loss, r.Stats, nil
}

// sample draws ouValN model paths from the validation data's initial values
// with reversible Heun at dt = 0.01 on a fixed Brownian path.
func (t *ouTask) sample() ([]float64, error) {
	s, err := neuralode.NewSDESolver(t.wz.SDE(), neuralode.ReversibleHeun)
	if err != nil {
		return nil, err
	}
	// One base cell per step: every query of the sampler is then a stored
	// grid point (no bridge refinement), which keeps validation cheap.
	t0, t1 := t.ts[0], t.ts[len(t.ts)-1]
	cells := int(math.Round((t1 - t0) / ouSDEDt))
	bm, err := neuralode.NewBrownianTree(t0, t1, ouValN, cells, t.cfg.Seed^streamVal)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(t.ts)*ouValN)
	if err := s.Solve(t.vxs[:ouValN], t.ts, ouSDEDt, bm, out); err != nil {
		return nil, err
	}
	return out, nil
}

// validate returns the mean log-likelihood of the validation paths under the
// Gaussians fitted at every time (after t_0) to the model's samples.
func (t *ouTask) validate() (float64, error) {
	out, err := t.sample()
	if err != nil {
		return 0, err
	}
	m := len(t.ts)
	mean, vr := pathMoments(out, m, ouValN)
	ll := 0.0
	for i := 1; i < m; i++ {
		v := math.Max(vr[i], 1e-12)
		for _, x := range t.vxs[i*ouValN : (i+1)*ouValN] {
			d := x - mean[i]
			ll += -0.5*math.Log(2*math.Pi*v) - d*d/(2*v)
		}
	}
	return ll / float64((m-1)*ouValN), nil
}

func (t *ouTask) plot(dir, label, method string) ([]string, error) {
	out, err := t.sample()
	if err != nil {
		return nil, err
	}
	m := len(t.ts)
	mean, vr := pathMoments(out, m, ouValN)
	dmean, dvr := pathMoments(t.vxs, m, ouValN)
	sd := func(v []float64) []float64 {
		s := make([]float64, len(v))
		for i, x := range v {
			s[i] = math.Sqrt(x)
		}
		return s
	}
	p := &lineChart{Title: "Ornstein–Uhlenbeck SDE (" + method + "): model samples vs data", XLabel: "time t", YLabel: "X(t)",
		Bands: []bandSeries{
			{Name: "data", X: t.ts, Mean: dmean, Std: sd(dvr), Color: palette[6], Dashed: true, Opacity: 0.12},
			{Name: "model (rev. Heun)", X: t.ts, Mean: mean, Std: sd(vr), Color: palette[1], Opacity: 0.2},
		}}
	return savePlot(dir, "ou_bands"+label+".svg", func(f *os.File) error { return p.writeSVG(f, 800, 480) })
}

// model holds the validation paths (ouValN of them, whatever --batch is),
// so that a checkpoint of a run with many training paths stays small and
// quick to write; the training data are regenerated from the seed.
func (t *ouTask) model() (*neuralode.Case, error) {
	n := ouValN
	c := &neuralode.Case{Name: "neuralode train ou (drift network; diffusion in neuralode_diffusion; validation paths)",
		T: t.ts, RTol: t.cfg.RTol, ATol: t.cfg.ATol, Z0: rows(t.vxs[:n], 1)}
	for i := 1; i < len(t.ts); i++ {
		c.Target = append(c.Target, rows(t.vxs[i*n:(i+1)*n], 1))
	}
	return c, c.SetModel(t.drift)
}
