package neuralode_test

import (
	"errors"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"

	"github.com/neuralode/neuralode"
)

// Example_funcFieldLotkaVolterra fits the four rates of the Lotka–Volterra
// equations dx/dt = αx − βxy, dy/dt = δxy − γy to observations, through a
// FuncField with hand-written vector–Jacobian products. F and VJPFunc read
// the rates from their parameter argument p (never from a captured slice),
// and CheckVJP compares the products with finite differences before
// training.
func Example_funcFieldLotkaVolterra() {
	lv := &neuralode.FuncField{D: 2, P: []float64{1.2, 0.8, 0.8, 2.5}, Autonomous: true}
	lv.F = func(_ float64, z, p, dz []float64) {
		for i := 0; i+1 < len(z); i += 2 {
			x, y := z[i], z[i+1]
			dz[i] = p[0]*x - p[1]*x*y
			dz[i+1] = p[2]*x*y - p[3]*y
		}
	}
	// The Evaluator contract: f and gz are overwritten, gp is added to,
	// *gt is overwritten (zero: the field does not depend on t).
	lv.VJPFunc = func(_ float64, z, p, a, f, gz, gp []float64, gt *float64) {
		for i := 0; i+1 < len(z); i += 2 {
			x, y, ax, ay := z[i], z[i+1], a[i], a[i+1]
			if f != nil {
				f[i] = p[0]*x - p[1]*x*y
				f[i+1] = p[2]*x*y - p[3]*y
			}
			if gz != nil {
				gz[i] = ax*(p[0]-p[1]*y) + ay*p[2]*y
				gz[i+1] = -ax*p[1]*x + ay*(p[2]*x-p[3])
			}
			if gp != nil {
				gp[0] += ax * x
				gp[1] -= ax * x * y
				gp[2] += ay * x * y
				gp[3] -= ay * y
			}
		}
		if gt != nil {
			*gt = 0
		}
	}
	fmt.Println("VJP check:", neuralode.CheckVJP(lv, neuralode.VJPCheckOptions{Z: []float64{1, 0.5, 2, 1.5}}))

	// Observations from the true rates α = 1.5, β = 1, δ = 1, γ = 3.
	truth := &neuralode.FuncField{D: 2, P: []float64{1.5, 1, 1, 3}, F: lv.F}
	z0 := []float64{1, 1}
	ts := []float64{0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2}
	obs, _, err := neuralode.Predict(truth, neuralode.Options{RTol: 1e-10, ATol: 1e-10}, z0, ts)
	if err != nil {
		panic(err)
	}
	loss, err := neuralode.MSELoss(neuralode.LossShape{Batch: 1, Dim: 2, Times: len(ts)}, obs[2:])
	if err != nil {
		panic(err)
	}
	gs, err := neuralode.NewGradientSolver(lv, neuralode.GradOptions{
		Method: neuralode.SeminormAdjoint, Forward: neuralode.Options{RTol: 1e-8, ATol: 1e-8}})
	if err != nil {
		panic(err)
	}
	opt := neuralode.NewAdam(4)
	opt.LR = 0.02
	for step := 0; step < 1500; step++ {
		r, err := gs.Gradient(z0, ts, loss)
		if err != nil {
			panic(err)
		}
		if err := opt.Step(lv.Params(), r.Params); err != nil {
			panic(err)
		}
	}
	fmt.Printf("α=%.2f β=%.2f δ=%.2f γ=%.2f\n", lv.P[0], lv.P[1], lv.P[2], lv.P[3])
	// Output:
	// VJP check: <nil>
	// α=1.50 β=1.00 δ=1.00 γ=3.00
}

// Example_neuralSDE trains a neural SDE dZ = f(t, Z) dt + g(t, Z) ∘ dW on
// paths of an Ornstein–Uhlenbeck process through the Wong–Zakai ODE: each
// step resamples a smooth noise, solves the ODE for the whole batch and
// matches the Gaussian moments of the model's paths to the data's at every
// observation time. The trained SDE is then sampled with reversible Heun on
// a Brownian path.
func Example_neuralSDE() {
	rng := rand.New(rand.NewPCG(3, 4))
	ou := neuralode.OUProcess{Mu: 0.2, Theta: 0.5, Sigma: 0.4, Phi: 0, X0Low: -1, X0High: 1, T0: 0, T1: 2, Points: 5}
	const B = 32
	ts, xs, err := ou.Sample(rng, B)
	if err != nil {
		panic(err)
	}
	// Data moments at t_1 … t_M (paths are time-major: row i holds B values).
	mean, variance := make([]float64, len(ts)-1), make([]float64, len(ts)-1)
	for i := 1; i < len(ts); i++ {
		row := xs[i*B : (i+1)*B]
		for _, x := range row {
			mean[i-1] += x / B
		}
		for _, x := range row {
			variance[i-1] += (x - mean[i-1]) * (x - mean[i-1]) / (B - 1)
		}
	}
	cfg := neuralode.MLPConfig{Dim: 1, Hidden: []int{16}, Activation: neuralode.Softplus, TimeInput: true}
	drift, _ := neuralode.NewMLP(cfg, rng)
	diffusion, _ := neuralode.NewMLP(cfg, rng)
	noise, _ := neuralode.NewKLNoise(ts[0], ts[len(ts)-1], 8, B) // one channel per path
	// Wong–Zakai binds both networks to one joint parameter vector.
	wz, errWZ := neuralode.NewWongZakai(drift, diffusion, noise)
	loss, errLoss := neuralode.GaussianMomentLoss(neuralode.LossShape{Batch: B, Dim: 1, Times: len(ts)}, mean, variance)
	if err := errors.Join(errWZ, errLoss); err != nil {
		panic(err)
	}
	gs, err := neuralode.NewGradientSolver(wz, neuralode.GradOptions{
		Method: neuralode.GQAdjoint, Forward: neuralode.Options{RTol: 1e-4, ATol: 1e-4}})
	if err != nil {
		panic(err)
	}
	opt := neuralode.NewAdam(len(wz.Params()))
	opt.LR = 0.01
	var losses []float64
	for epoch := 0; epoch < 80; epoch++ {
		noise.Resample(rng) // a new noise sample per step
		r, err := gs.Gradient(xs[:B], ts, loss)
		if err == nil {
			losses = append(losses, r.Loss)
			err = opt.Step(wz.Params(), r.Params)
		}
		if err != nil {
			panic(err)
		}
	}
	fmt.Println("moment loss reduced more than 5-fold:", losses[len(losses)-1] < losses[0]/5)

	// Sampling: the same drift and diffusion as a Stratonovich SDE.
	bm, _ := neuralode.NewBrownianTree(ts[0], ts[len(ts)-1], B, 200, 7)
	paths := make([]float64, len(ts)*B)
	if err := neuralode.SolveSDE(wz.SDE(), neuralode.ReversibleHeun, xs[:B], ts, 0.01, bm, paths); err != nil {
		panic(err)
	}
	m := 0.0
	for _, x := range paths[(len(ts)-1)*B:] {
		m += x / B
	}
	fmt.Println("sampled mean at t = 2 within 0.25 of the data's:", math.Abs(m-mean[len(mean)-1]) < 0.25)
	// Output:
	// moment loss reduced more than 5-fold: true
	// sampled mean at t = 2 within 0.25 of the data's: true
}

// Example_saveLoadModel saves a trained network on its own (no initial
// states, times or targets needed), loads it back and evaluates it at
// times it was never trained on with Predict.
func Example_saveLoadModel() {
	rng := rand.New(rand.NewPCG(5, 6))
	field, _ := neuralode.NewMLP(neuralode.MLPConfig{Dim: 2, Hidden: []int{8}, Activation: neuralode.Tanh}, rng)
	dir, err := os.MkdirTemp("", "neuralode-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := dir + "/model.json"
	model := &neuralode.Model{Name: "spiral", MLPs: map[string]*neuralode.MLP{"field": field},
		Meta: map[string]string{"epochs": "0"}}
	if err := model.Save(path); err != nil {
		panic(err)
	}
	loaded, err := neuralode.LoadModel(path)
	if err != nil {
		panic(err)
	}
	net := loaded.MLPs["field"]
	fmt.Println("hidden widths:", net.Config().Hidden, "parameters:", net.NumParams())
	z0, ts := []float64{1, 0}, []float64{0, 0.1, 0.77, 3}
	opts := neuralode.Options{RTol: 1e-8, ATol: 1e-8}
	a, _, err := neuralode.Predict(field, opts, z0, ts)
	if err != nil {
		panic(err)
	}
	b, _, err := neuralode.Predict(net, opts, z0, ts)
	if err != nil {
		panic(err)
	}
	same := true
	for i := range a {
		same = same && a[i] == b[i]
	}
	fmt.Println("identical predictions:", same)
	// Output:
	// hidden widths: [8] parameters: 42
	// identical predictions: true
}

// ExampleSoftmaxCrossEntropyLoss: two classes read out of a 1-D final state
// with logits (−z, z); for label 1 the loss is log(1 + e^(−2z)) and
// ∂L/∂z = −2/(1 + e^(2z)).
func ExampleSoftmaxCrossEntropyLoss() {
	shape := neuralode.LossShape{Batch: 1, Dim: 1, Times: 2}
	w, bias := []float64{-1, 1}, []float64{0, 0}
	dw, dbias := make([]float64, 2), make([]float64, 2)
	loss, err := neuralode.SoftmaxCrossEntropyLoss(shape, []int{1}, w, bias, dw, dbias)
	if err != nil {
		panic(err)
	}
	states := []float64{0.3, 1} // z(t_0), z(t_1)
	grad := make([]float64, 2)
	fmt.Printf("loss %.6f, ∂L/∂z(t_1) %.6f, ∂L/∂W %.6f\n", loss(states, grad), grad[1], dw)
	// Output: loss 0.126928, ∂L/∂z(t_1) -0.238406, ∂L/∂W [0.119203 -0.119203]
}

// countingField hands out evaluators that count the calls they forward.
type countingField struct {
	*neuralode.MLP // everything else (parameters, tensor sizes) as the MLP's
	evals, vjps    *int
}

func (f countingField) NewEvaluator() neuralode.Evaluator {
	return &countingEval{f.MLP.NewEvaluator(), f.evals, f.vjps}
}

type countingEval struct {
	ev          neuralode.Evaluator
	evals, vjps *int
}

func (e *countingEval) Eval(t float64, z, dz []float64) { *e.evals++; e.ev.Eval(t, z, dz) }
func (e *countingEval) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	*e.vjps++
	e.ev.VJP(t, z, a, f, gz, gp, gt)
}

// Unwrap makes countingEval an EvaluatorWrapper: the solvers reach the
// MLP's evaluator through it (weights packed once per solve, activations
// kept for direct backpropagation).
func (e *countingEval) Unwrap() neuralode.Evaluator { return e.ev }

// ExampleEvaluatorWrapper counts the evaluations of a gradient through a
// wrapper that forwards every call to the MLP's own evaluator. With Unwrap
// the gradient is the unwrapped one, bit for bit, and as fast.
func ExampleEvaluatorWrapper() {
	m, err := neuralode.NewMLP(neuralode.MLPConfig{Dim: 2, Hidden: []int{16}, Activation: neuralode.Tanh}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		log.Fatal(err)
	}
	z0, ts := []float64{1, 0, 0, 1}, []float64{0, 1}
	shape := neuralode.LossShape{Batch: 2, Dim: 2, Times: 2}
	loss, err := neuralode.MSELoss(shape, []float64{0.5, 0.5, -0.5, 0.5})
	if err != nil {
		log.Fatal(err)
	}
	opts := neuralode.GradOptions{Method: neuralode.Direct, Forward: neuralode.Options{RTol: 1e-6, ATol: 1e-6}}
	var evals, vjps int
	grads := make([][]float64, 2)
	for i, field := range []neuralode.VectorField{m, countingField{m, &evals, &vjps}} {
		g, err := neuralode.NewGradientSolver(field, opts)
		if err != nil {
			log.Fatal(err)
		}
		r, err := g.Gradient(z0, ts, loss)
		if err != nil {
			log.Fatal(err)
		}
		grads[i] = r.Params
	}
	same := true
	for i := range grads[0] {
		same = same && grads[0][i] == grads[1][i]
	}
	fmt.Printf("forwarded %d evaluations and %d VJPs; same gradient: %v\n", evals, vjps, same)
	// Output:
	// forwarded 20 evaluations and 18 VJPs; same gradient: true
}
