package main

// cnf: density estimation with a continuous normalizing flow on FFJORD's
// two-dimensional toy densities (Grathwohl et al. 2019, §5.1), the seminorm
// paper's largest savings (Kidger, Chen & Lyons 2021, §4.2). Every step
// draws a fresh batch from the density, integrates [z, Δlogp] from t = 0 to
// t = 1 with the exact trace, and minimises the negative log-likelihood
// under N(0, I); validation reports the NLL in nats per sample on a fixed
// set of samples never used in training.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/neuralode/neuralode"
)

// cnfDataSets are the toy densities --data accepts.
var cnfDataSets = []string{"8gaussians", "moons", "circles", "pinwheel", "checkerboard"}

const (
	cnfSteps  = 25   // optimiser steps per epoch
	cnfValN   = 2000 // validation samples
	cnfLayers = 3    // hidden layers of the flow's network (FFJORD's toy 64-64-64)
	cnfT1     = 1.0  // the flow runs from t = 0 (data) to t = 1 (base)
	// cnfPlotLim bounds the plotted square [−lim, lim]²: every toy density
	// lives inside ±4 (FFJORD's plots show the same square).
	cnfPlotLim  = 4.0
	cnfPlotGrid = 80
)

// toyData draws n samples (n·2 values, point-major) of one of FFJORD's toy
// densities from rng:
//
//   - 8gaussians: 0.5·N(0, I) around 4·(±1, 0), 4·(0, ±1), 4·(±1/√2, ±1/√2)
//     (uniform mixture), all divided by 1.414;
//   - moons: two interleaved half circles (scikit-learn's make_moons with
//     noise 0.1, angles uniform), scaled by 2 and shifted by (−1, −0.2);
//   - circles: radii 1 and 0.5 (make_circles, factor 0.5, noise 0.08),
//     scaled by 3;
//   - pinwheel: 5 spiral arms, radial sd 0.3, tangential sd 0.1, rate 0.25,
//     scaled by 2;
//   - checkerboard: uniform on the 8 dark squares of a 4×4 board of side 8.
func toyData(name string, rng *rand.Rand, n int) ([]float64, error) {
	x := make([]float64, 2*n)
	switch name {
	case "8gaussians":
		const s = 1 / math.Sqrt2
		centres := [8][2]float64{{1, 0}, {-1, 0}, {0, 1}, {0, -1}, {s, s}, {s, -s}, {-s, s}, {-s, -s}}
		for i := 0; i < n; i++ {
			c := centres[rng.IntN(8)]
			x[2*i] = (4*c[0] + 0.5*rng.NormFloat64()) / 1.414
			x[2*i+1] = (4*c[1] + 0.5*rng.NormFloat64()) / 1.414
		}
	case "moons":
		for i := 0; i < n; i++ {
			a := math.Pi * rng.Float64()
			px, py := math.Cos(a), math.Sin(a)
			if rng.IntN(2) == 1 {
				px, py = 1-px, 1-py-0.5
			}
			x[2*i] = 2*(px+0.1*rng.NormFloat64()) - 1
			x[2*i+1] = 2*(py+0.1*rng.NormFloat64()) - 0.2
		}
	case "circles":
		for i := 0; i < n; i++ {
			a := 2 * math.Pi * rng.Float64()
			r := 1.0
			if rng.IntN(2) == 1 {
				r = 0.5
			}
			x[2*i] = 3 * (r*math.Cos(a) + 0.08*rng.NormFloat64())
			x[2*i+1] = 3 * (r*math.Sin(a) + 0.08*rng.NormFloat64())
		}
	case "pinwheel":
		const classes, radial, tangential, rate = 5, 0.3, 0.1, 0.25
		for i := 0; i < n; i++ {
			f0 := radial*rng.NormFloat64() + 1
			f1 := tangential * rng.NormFloat64()
			a := 2*math.Pi*float64(rng.IntN(classes))/classes + rate*math.Exp(f0)
			sn, cs := math.Sincos(a)
			x[2*i] = 2 * (f0*cs + f1*sn)
			x[2*i+1] = 2 * (-f0*sn + f1*cs)
		}
	case "checkerboard":
		for i := 0; i < n; i++ {
			x1 := 4*rng.Float64() - 2
			x2 := rng.Float64() - 2*float64(rng.IntN(2)) + math.Mod(math.Floor(x1)+4, 2)
			x[2*i], x[2*i+1] = 2*x1, 2*x2
		}
	default:
		return nil, fmt.Errorf("unknown data set %q (want %s)", name, strings.Join(cnfDataSets, ", "))
	}
	return x, nil
}

// cnfSpec registers the task with the train command.
var cnfSpec = taskSpec{
	defaults: trainConfig{Width: 64, Epochs: 60, LR: 0.005, Batch: 256, RTol: 1e-3, ATol: 1e-3, Data: "8gaussians"},
	build:    func(cfg trainConfig) (task, error) { return newCNFTask(cfg) },
	memory: func(cfg trainConfig) float64 {
		// Three hidden layers; the plot samples 20000 points at once, and
		// the exact trace carries two tangents per sample.
		w := float64(cfg.Width)
		p := 4*w + 2*(w*w+w) + 2*w + 2
		return runBytes(p, 3*max(cfg.Batch, 20000), 3, cnfLayers*cfg.Width, 2)
	},
	check: func(cfg trainConfig) error {
		if !slices.Contains(cnfDataSets, cfg.Data) {
			return usagef("--data %q: want %s", cfg.Data, strings.Join(cnfDataSets, ", "))
		}
		return nil
	},
}

type cnfTask struct {
	cfg  trainConfig
	mlp  *neuralode.MLP
	cnf  *neuralode.CNF
	gs   *neuralode.GradientSolver
	lc   lossCapture
	loss neuralode.Loss
	z0   []float64
	val  []float64 // validation samples (cnfValN × 2)
	ts   []float64
}

func newCNFTask(cfg trainConfig) (*cnfTask, error) {
	if cfg.Data == "" {
		cfg.Data = "8gaussians"
	}
	val, err := toyData(cfg.Data, seedRNG(cfg.Seed, streamVal), cnfValN)
	if err != nil {
		return nil, err
	}
	hidden := make([]int, cnfLayers)
	for i := range hidden {
		hidden[i] = cfg.Width
	}
	mlp, err := neuralode.NewMLP(neuralode.MLPConfig{Dim: 2, Hidden: hidden, Activation: neuralode.Tanh,
		TimeInput: true}, seedRNG(cfg.Seed, streamInit))
	if err != nil {
		return nil, err
	}
	c, err := neuralode.NewCNF(mlp, neuralode.CNFOptions{Trace: neuralode.ExactTrace})
	if err != nil {
		return nil, err
	}
	t := &cnfTask{cfg: cfg, mlp: mlp, cnf: c, val: val, ts: []float64{0, cnfT1}}
	if t.gs, err = newGradSolver(c, cfg); err != nil {
		return nil, err
	}
	nll := c.NLLLoss(cfg.Batch, 0, 0)
	t.loss = func(states, grad []float64) float64 {
		l := nll(states, grad)
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return t.lc.check(l, fmt.Errorf("non-finite NLL"))
		}
		return l
	}
	return t, nil
}

func (t *cnfTask) params() []float64 { return t.mlp.Params() }
func (t *cnfTask) steps() int        { return cnfSteps }
func (t *cnfTask) valName() string   { return "nll" }

func (t *cnfTask) gradient(epoch, k int, grad []float64) (float64, neuralode.GradStats, error) {
	x, err := toyData(t.cfg.Data, epochRNG(t.cfg.Seed, epoch, k), t.cfg.Batch)
	if err != nil {
		return 0, neuralode.GradStats{}, err
	}
	if t.z0, err = t.cnf.InitialState(x, t.z0); err != nil {
		return 0, neuralode.GradStats{}, err
	}
	return t.lc.gradient(t.gs, t.z0, t.ts, t.loss, grad)
}

// solverOptions are the forward solver's options of the run.
func (t *cnfTask) solverOptions() neuralode.Options {
	return neuralode.Options{RTol: t.cfg.RTol, ATol: t.cfg.ATol}
}

// validate returns the validation NLL in nats per sample, with the density
// integrated at the training tolerances.
func (t *cnfTask) validate() (float64, error) {
	lp := make([]float64, cnfValN)
	if err := t.cnf.LogDensity(t.val, 0, cnfT1, t.solverOptions(), lp); err != nil {
		return 0, err
	}
	s := 0.0
	for _, v := range lp {
		s += v
	}
	return -s / cnfValN, nil
}

// histogram bins points (n × 2) on the plot grid, normalised to a density.
func histogram(x []float64) []float64 {
	const g, lim = cnfPlotGrid, cnfPlotLim
	h := make([]float64, g*g)
	cell := 2 * lim / g
	n := len(x) / 2
	for i := 0; i < n; i++ {
		ix := int(math.Floor((x[2*i] + lim) / cell))
		iy := int(math.Floor((x[2*i+1] + lim) / cell))
		if ix >= 0 && ix < g && iy >= 0 && iy < g {
			h[iy*g+ix] += 1 / (float64(n) * cell * cell)
		}
	}
	return h
}

// plotGrid returns the centres of the plot grid's cells (row-major from the
// bottom left).
func plotGrid() []float64 {
	const g, lim = cnfPlotGrid, cnfPlotLim
	x := make([]float64, 0, 2*g*g)
	for j := 0; j < g; j++ {
		for i := 0; i < g; i++ {
			x = append(x, -lim+2*lim*(float64(i)+0.5)/g, -lim+2*lim*(float64(j)+0.5)/g)
		}
	}
	return x
}

func (t *cnfTask) plot(dir, label, method string) ([]string, error) {
	const nSamples = 20000
	const g, lim = cnfPlotGrid, cnfPlotLim
	opts := t.solverOptions()
	data, err := toyData(t.cfg.Data, seedRNG(t.cfg.Seed, streamData), nSamples)
	if err != nil {
		return nil, err
	}
	lp := make([]float64, g*g)
	if err := t.cnf.LogDensity(plotGrid(), 0, cnfT1, opts, lp); err != nil {
		return nil, err
	}
	dens := make([]float64, g*g)
	for i, v := range lp {
		dens[i] = math.Exp(v)
	}
	base := make([]float64, 2*nSamples)
	brng := seedRNG(t.cfg.Seed, streamVal^1)
	for i := range base {
		base[i] = brng.NormFloat64()
	}
	samples := make([]float64, len(base))
	if err := t.cnf.Sample(base, 0, cnfT1, opts, samples); err != nil {
		return nil, err
	}
	panel := func(title string, v []float64) heatPanel {
		return heatPanel{Title: title, NX: g, NY: g, XMin: -lim, XMax: lim, YMin: -lim, YMax: lim, Values: v}
	}
	hm := &heatMaps{Title: fmt.Sprintf("CNF on %s (%s): data, learned density, samples", t.cfg.Data, method),
		Panels: []heatPanel{
			panel("data (histogram)", histogram(data)),
			panel("learned density p(x)", dens),
			panel("samples (backward solve)", histogram(samples)),
		}}
	return savePlot(dir, "cnf_"+t.cfg.Data+label+".svg", func(f *os.File) error { return hm.WriteSVG(f, 1200, 460) })
}

func (t *cnfTask) model() (*neuralode.Case, error) {
	// The case holds validation points; the ODE's target is the flowed state
	// itself (loss 0), so the file describes the model, not a fit.
	const n = 16
	x := t.val[:2*n]
	out, err := forward(t.mlp, t.cfg, x, t.ts)
	if err != nil {
		return nil, err
	}
	c := &neuralode.Case{Name: "neuralode train cnf " + t.cfg.Data + " (the flow's network; data at t=0, base N(0, I) at t=1)",
		T: t.ts, RTol: t.cfg.RTol, ATol: t.cfg.ATol, Z0: rows(x, 2), Target: [][][]float64{rows(out[len(x):], 2)}}
	return c, c.SetModel(t.mlp)
}
