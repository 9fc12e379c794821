// Package neuralode trains neural ordinary and stochastic differential
// equations in pure Go, with the standard library only.
//
// A neural ODE is dz/dt = f(t, z; θ), z(t_0) = z_0, observed at times
// t_0 < t_1 < … < t_M, with a scalar loss L(z(t_1), …, z(t_M)). Training
// needs dL/dθ, the derivative of the loss through the ODE solve. The package
// is built from pieces that compose, in the manner of diffrax and
// torchdiffeq:
//
//   - a Runge–Kutta Tableau (DormandPrince5 by default, Tsitouras5,
//     BogackiShampine3, RK4, Midpoint, Euler), integrated by a Solver with
//     dense output, a step-size Controller and a pluggable error Norm
//     (RMSNorm, MaxNorm, or a GroupedNorm whose zero-weight groups make a
//     seminorm);
//   - a VectorField with vector–Jacobian products, such as the batched MLP;
//   - a gradient method, chosen in GradOptions: Direct (backpropagation
//     through the solver, the exact reference), Adjoint, SeminormAdjoint
//     (Kidger, Chen & Lyons, ICML 2021), GQAdjoint (Gauss–Legendre
//     quadrature of the parameter gradient, Norcliffe & Deisenroth, TMLR
//     2023) and GQInterpAdjoint (the same with the state interpolated from
//     the forward solve);
//   - Gauss–Legendre rules by Golub–Welsch, accurate to round-off;
//   - stochastic differential equations trained through the Wong–Zakai
//     approximation and sampled with Stratonovich or Itô schemes;
//   - ready-made losses that know their shape (MSELoss, SelectedMSELoss,
//     SoftmaxCrossEntropyLoss, GaussianMomentLoss), CheckVJP for
//     hand-written fields, and Model files (SaveModel, LoadModel) with
//     Predict to evaluate a trained field at any times.
//
// States are flat []float64 slices in batch-major order: sample b,
// component d of a batch of dimension D is at index b·D+d. The whole batch
// is one ODE system with one shared step sequence.
//
// # Errors
//
// Every error wraps one of the sentinel errors (ErrInvalidInput,
// ErrNonFinite, ErrStepSizeUnderflow, ErrTooManySteps, ErrNoConvergence,
// ErrPanic), so errors.Is classifies it; *InputError and *SolveError carry
// the details. A failed call leaves its inputs unchanged.
//
// # Concurrency and determinism
//
// Solvers and GradientSolvers own scratch space and serve one goroutine at a
// time. Vector fields hand out Evaluators, one per goroutine, that share the
// parameters. Parallel reductions use a fixed partition and a fixed order,
// so results are bit-identical for every GOMAXPROCS.
package neuralode
