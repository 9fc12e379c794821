package main

// cde: a neural controlled differential equation classifies irregularly
// sampled 2-D spirals as anticlockwise or clockwise, in the style of
// torchcde's introductory example (Kidger et al., NeurIPS 2020). Each series
// is observed on one shared grid of cdeSamples times on [0, 4π] with time as
// its first channel; 30% of each series' samples (both position channels)
// are dropped at random and filled by interpolation before the control path
// is built. The model is
//
//	z(0) = ζ(x_0),  dz = f_θ(z) dX(t),  logits = W z(4π) + b,
//
// trained with cross-entropy; --task cde drives it with natural cubic
// splines, --task cde-hermite with Hermite cubic splines with backward
// differences (whose knots are break points of the solve).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"

	"github.com/neuralode/neuralode"
)

// Sizes of the spirals task.
const (
	cdeSamples   = 100 // observation times per series
	cdeTrain     = 256 // training series
	cdeVal       = 256 // validation series
	cdeHidden    = 8   // hidden state dimension H
	cdeChannels  = 3   // (t, x, y)
	cdeDropFrac  = 0.3 // fraction of each series' samples dropped
	cdeClasses   = 2
	cdePlotPaths = 3 // per true class
)

// spiralData is a batch of spirals: Obs holds cdeSamples rows of Batch·3
// values (t, x, y), with NaN for the dropped positions; Labels[b] is 0 for
// anticlockwise and 1 for clockwise.
type spiralData struct {
	Times  []float64
	Obs    []float64
	Batch  int
	Labels []int
}

// makeSpirals draws n spirals from rng: x + iy = r(t)·e^{±i(t + φ)} with phase
// φ ~ U[0, 2π), radius r(t) = ρ/(1 + t/2) with ρ = 1 + 0.1·N(0, 1) per series,
// plus N(0, 0.01²) noise on every position (torchcde's example uses the same
// curve and noise); half of them (at random) turn clockwise. Then
// round(dropFrac·cdeSamples) of each series' samples lose their positions.
func makeSpirals(rng *rand.Rand, n int, dropFrac float64) (spiralData, error) {
	if n < 1 || !(dropFrac >= 0 && dropFrac < 1) {
		return spiralData{}, taskErrorf("spirals: need n ≥ 1 and a drop fraction in [0, 1), got %d and %v", n, dropFrac)
	}
	K, C := cdeSamples, cdeChannels
	d := spiralData{Times: linspace(0, 4*math.Pi, K), Obs: make([]float64, K*n*C), Batch: n, Labels: make([]int, n)}
	drop := int(math.Round(dropFrac * float64(K)))
	for b := 0; b < n; b++ {
		d.Labels[b] = rng.IntN(2)
		sign := 1.0
		if d.Labels[b] == 1 {
			sign = -1
		}
		phase := 2 * math.Pi * rng.Float64()
		rho := 1 + 0.1*rng.NormFloat64()
		for k, t := range d.Times {
			r := rho / (1 + 0.5*t)
			s, c := math.Sincos(t + phase)
			o := (k*n + b) * C
			d.Obs[o] = t
			d.Obs[o+1] = r*c + 0.01*rng.NormFloat64()
			d.Obs[o+2] = sign*r*s + 0.01*rng.NormFloat64()
		}
		for _, k := range rng.Perm(K)[:drop] {
			o := (k*n + b) * C
			d.Obs[o+1], d.Obs[o+2] = math.NaN(), math.NaN()
		}
	}
	return d, nil
}

// rowsOf returns the observations of the series idx, time-major.
func (d spiralData) rowsOf(idx []int, dst []float64) []float64 {
	C := cdeChannels
	dst = dst[:0]
	for k := range d.Times {
		for _, b := range idx {
			o := (k*d.Batch + b) * C
			dst = append(dst, d.Obs[o:o+C]...)
		}
	}
	return dst
}

type cdeTask struct {
	cfg        trainConfig
	kind       neuralode.SplineKind
	train, val spiralData
	field      *neuralode.CDEField
	init       *neuralode.Linear
	joint      []float64 // [θ (field), ζ (W: H×C, b: H), readout (W: 2×H, b: 2)]
	nf, ni     int
	gs         *neuralode.GradientSolver
	lc         lossCapture
	span       []float64 // [t_0, t_{K−1}]

	obs, z0 []float64
	labels  []int
	dw, db  []float64
}

func newCDETask(cfg trainConfig, kind neuralode.SplineKind) (*cdeTask, error) {
	// Training then validation series from one data stream.
	train, val, err := drawTrainVal(seedRNG(cfg.Seed, streamData), cdeTrain, cdeVal,
		func(rng *rand.Rand, n int) (spiralData, error) { return makeSpirals(rng, n, cdeDropFrac) })
	if err != nil {
		return nil, err
	}
	irng := seedRNG(cfg.Seed, streamInit)
	field, err := neuralode.NewCDEField(neuralode.CDEConfig{Hidden: cdeHidden, Channels: cdeChannels,
		Widths: []int{cfg.Width}, Activation: neuralode.Tanh}, irng)
	if err != nil {
		return nil, err
	}
	init, err := neuralode.NewLinear(cdeChannels, cdeHidden, irng)
	if err != nil {
		return nil, err
	}
	readout, err := neuralode.NewLinear(cdeHidden, cdeClasses, irng)
	if err != nil {
		return nil, err
	}
	nf, ni := len(field.Params()), len(init.Params())
	joint := append(append(append([]float64(nil), field.Params()...), init.Params()...), readout.Params()...)
	if err := field.BindParams(joint[:nf:nf]); err != nil {
		return nil, err
	}
	if err := init.BindParams(joint[nf : nf+ni : nf+ni]); err != nil {
		return nil, err
	}
	t := &cdeTask{cfg: cfg, kind: kind, train: train, val: val, field: field, init: init, joint: joint, nf: nf, ni: ni,
		span: []float64{train.Times[0], train.Times[len(train.Times)-1]},
		dw:   make([]float64, cdeClasses*cdeHidden), db: make([]float64, cdeClasses)}
	if t.gs, err = newGradSolver(field, cfg); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *cdeTask) readout() (w, b []float64) {
	o := t.nf + t.ni
	return t.joint[o : o+cdeClasses*cdeHidden], t.joint[o+cdeClasses*cdeHidden:]
}

func (t *cdeTask) params() []float64 { return t.joint }
func (t *cdeTask) steps() int        { return numBatches(t.train.Batch, t.cfg.Batch) }
func (t *cdeTask) valName() string   { return "accuracy" }

// setBatch builds the control path of the series idx of d, sets it on the
// field, writes z(t_0) = ζ(x_0) into t.z0 and their labels into t.labels.
func (t *cdeTask) setBatch(d spiralData, idx []int) error {
	t.obs = d.rowsOf(idx, t.obs)
	t.labels = t.labels[:0]
	for _, i := range idx {
		t.labels = append(t.labels, d.Labels[i])
	}
	path, err := neuralode.NewSpline(t.kind, d.Times, t.obs, len(idx), cdeChannels)
	if err != nil {
		return err
	}
	if err := t.field.SetPath(path); err != nil {
		return err
	}
	t.z0 = append(t.z0[:0], make([]float64, len(idx)*cdeHidden)...)
	return t.init.Apply(path.Observations()[:len(idx)*cdeChannels], t.z0)
}

func (t *cdeTask) gradient(epoch, k int, grad []float64) (float64, neuralode.GradStats, error) {
	idx := minibatch(t.cfg.Seed, epoch, k, t.train.Batch, t.cfg.Batch)
	if err := t.setBatch(t.train, idx); err != nil {
		return 0, neuralode.GradStats{}, err
	}
	w, b := t.readout()
	bs := len(idx)
	loss, err := neuralode.SoftmaxCrossEntropyLoss(neuralode.LossShape{Batch: bs, Dim: cdeHidden, Times: len(t.span)},
		t.labels, w, b, t.dw, t.db)
	if err != nil {
		return 0, neuralode.GradStats{}, err
	}
	t.lc.err = nil
	r, err := t.gs.Gradient(t.z0, t.span, loss)
	switch {
	case err != nil:
		return 0, neuralode.GradStats{}, err
	case t.lc.err != nil:
		return 0, r.Stats, t.lc.err
	}
	copy(grad[:t.nf], r.Params)
	// dL/dζ from dL/dz(t_0), then the readout's gradient.
	gi := grad[t.nf : t.nf+t.ni]
	clear(gi)
	if err := t.init.VJP(t.field.Path().Observations()[:bs*cdeChannels], r.Z0, nil, gi); err != nil {
		return 0, r.Stats, err
	}
	copy(grad[t.nf+t.ni:], t.dw)
	copy(grad[t.nf+t.ni+len(t.dw):], t.db)
	return r.Loss, r.Stats, nil
}

// finalStates solves the CDE for every validation series.
func (t *cdeTask) finalStates() ([]float64, error) {
	idx := make([]int, t.val.Batch)
	for i := range idx {
		idx[i] = i
	}
	if err := t.setBatch(t.val, idx); err != nil {
		return nil, err
	}
	out, err := forward(t.field, t.cfg, t.z0, t.span)
	if err != nil {
		return nil, err
	}
	return out[len(t.z0):], nil
}

func (t *cdeTask) validate() (float64, error) {
	z, err := t.finalStates()
	if err != nil {
		return 0, err
	}
	w, b := t.readout()
	return accuracy(z, t.val.Batch, cdeHidden, t.val.Labels, w, b)
}

// plot draws the control paths of the first validation spirals of each
// true class (the interpolated x–y curves, with the observed samples as
// dots), coloured by the predicted class; misclassified series are dashed.
func (t *cdeTask) plot(dir, label, method string) ([]string, error) {
	z, err := t.finalStates()
	if err != nil {
		return nil, err
	}
	w, b := t.readout()
	path := t.field.Path()
	ts := linspace(t.span[0], t.span[1], 400)
	x := make([]float64, t.val.Batch*cdeChannels)
	names := []string{"anticlockwise", "clockwise"}
	p := &lineChart{Title: "Spirals (" + t.kind.String() + " spline, " + method + "): input paths coloured by predicted class",
		XLabel: "x", YLabel: "y"}
	var logit [cdeClasses]float64
	var shown [cdeClasses]int
	for s := 0; s < t.val.Batch; s++ {
		if shown[t.val.Labels[s]] == cdePlotPaths {
			continue
		}
		shown[t.val.Labels[s]]++
		logitsRow(logit[:], z[s*cdeHidden:(s+1)*cdeHidden], w, b)
		pred := 0
		if logit[1] > logit[0] {
			pred = 1
		}
		col := palette[pred]
		curve := lineSeries{X: make([]float64, len(ts)), Y: make([]float64, len(ts)), Color: col, Width: 1.5,
			Dashed: pred != t.val.Labels[s]}
		for i, tt := range ts {
			path.At(tt, x)
			curve.X[i], curve.Y[i] = x[s*cdeChannels+1], x[s*cdeChannels+2]
		}
		obs := lineSeries{Color: col, NoLine: true, Width: 0.1}
		for k := range t.val.Times {
			o := (k*t.val.Batch + s) * cdeChannels
			if !math.IsNaN(t.val.Obs[o+1]) {
				obs.X = append(obs.X, t.val.Obs[o+1])
				obs.Y = append(obs.Y, t.val.Obs[o+2])
			}
		}
		p.Series = append(p.Series, curve, obs)
	}
	for c, name := range names {
		p.Series = append(p.Series, lineSeries{Name: "predicted " + name, X: []float64{math.NaN()}, Y: []float64{math.NaN()}, Color: palette[c]})
	}
	p.Series = append(p.Series, lineSeries{Name: "misclassified (dashed)", X: []float64{math.NaN()}, Y: []float64{math.NaN()}, Color: "#777777", Dashed: true})
	return savePlot(dir, t.cfg.Task+"_paths"+label+".svg", func(f *os.File) error { return p.writeSVG(f, 640, 560) })
}

// model describes f_θ as the padded network R^{H·C} → R^{H·C} (zero input
// columns for the padding) with the validation series' padded initial
// states. The case is a container, not an ODE to solve: the CDE needs the
// control paths, and the initial map and readout are in the checkpoint's
// joint parameter vector (after θ).
func (t *cdeTask) model() (*neuralode.Case, error) {
	idx := make([]int, t.val.Batch)
	for i := range idx {
		idx[i] = i
	}
	if err := t.setBatch(t.val, idx); err != nil {
		return nil, err
	}
	D := cdeHidden * cdeChannels
	pad := make([]float64, t.val.Batch*D)
	for b := 0; b < t.val.Batch; b++ {
		copy(pad[b*D:], t.z0[b*cdeHidden:(b+1)*cdeHidden])
	}
	c := &neuralode.Case{Name: fmt.Sprintf("neuralode train %s: f_θ of a neural CDE (H=%d, C=%d), input padded to H·C; not an ODE to solve",
		t.cfg.Task, cdeHidden, cdeChannels), T: t.span, RTol: t.cfg.RTol, ATol: t.cfg.ATol,
		Z0: rows(pad, D), Target: [][][]float64{rows(pad, D)}}
	return c, c.SetModel(t.field.MLP())
}

// cdeSpec registers the spirals task driven by control paths of the given kind.
func cdeSpec(kind neuralode.SplineKind, epochs int) taskSpec {
	return taskSpec{
		defaults: trainConfig{Width: 128, Epochs: epochs, LR: 0.01, Batch: 32, RTol: 1e-3, ATol: 1e-5},
		build:    func(cfg trainConfig) (task, error) { return newCDETask(cfg, kind) },
		memory: func(cfg trainConfig) float64 {
			// The field's network is H·C wide at its input and output; the
			// control paths hold every series' observations.
			hc := cdeHidden * cdeChannels
			params := float64(hc*cfg.Width + cfg.Width + cfg.Width*hc + hc)
			return runBytes(params, cdeTrain+cdeVal, hc, cfg.Width, cdeSamples)
		},
	}
}
