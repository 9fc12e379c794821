package neuralode

import (
	"fmt"
	"math/rand/v2"
)

// ExampleCNF evaluates the log-density of a flow whose network is zero:
// the identity map, so the density is the standard normal base's,
// −log(2π) − ½‖x‖².
func ExampleCNF() {
	m, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{8}, TimeInput: true}, nil)
	cnf, _ := NewCNF(m, CNFOptions{Trace: ExactTrace})
	x := []float64{0, 0, 1, 1}
	lp := make([]float64, 2)
	if err := cnf.LogDensity(x, 0, 1, Options{}, lp); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.4f %.4f\n", lp[0], lp[1])
	// Output: -1.8379 -2.8379
}

// ExampleCNF_NLLLoss computes the negative log-likelihood of two points and
// its parameter gradient with the seminorm adjoint, for a flow with
// Hutchinson's trace (its noise drawn once per solve). The network starts
// at zero, so the flow is the identity and the loss is the standard normal
// base's: mean(½‖x‖² + log 2π).
func ExampleCNF_NLLLoss() {
	m, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{16, 16}, Activation: Tanh, TimeInput: true}, nil)
	cnf, _ := NewCNF(m, CNFOptions{Trace: HutchinsonRademacher})
	x := []float64{0, 0, 1, 1}
	z0, _ := cnf.InitialState(x, nil)
	gs, _ := NewGradientSolver(cnf, GradOptions{Method: SeminormAdjoint, Forward: Options{RTol: 1e-6, ATol: 1e-6}})
	if err := cnf.SampleNoise(rand.New(rand.NewPCG(1, 2)), 2); err != nil {
		fmt.Println(err)
		return
	}
	r, err := gs.Gradient(z0, []float64{0, 1}, cnf.NLLLoss(2, 0, 0))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("NLL %.4f nats, %d parameter gradients\n", r.Loss, len(r.Params))
	// Output: NLL 2.3379 nats, 370 parameter gradients
}
