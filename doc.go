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
//     dense output, a step-size Controller (IController, PIController),
//     break points at which it restarts (Options.Breaks) and a pluggable
//     error Norm (RMSNorm, MaxNorm, or a GroupedNorm whose zero-weight
//     groups make a seminorm);
//   - a VectorField with vector–Jacobian products, such as the batched MLP;
//   - a gradient method, chosen in GradOptions: Direct (backpropagation
//     through the solver, the exact reference), Adjoint, SeminormAdjoint
//     (Kidger, Chen & Lyons, ICML 2021), GQAdjoint (Gauss–Legendre
//     quadrature of the parameter gradient, Norcliffe & Deisenroth, TMLR
//     2023), GQInterpAdjoint (the same with the state interpolated from
//     the forward solve), and GQAdaptive / GQAdaptiveInterp, whose
//     quadrature error is controlled by the solve's tolerances;
//   - continuous normalizing flows (CNF) over the MLP, with exact or
//     Hutchinson traces and the RNODE regularisers, trained by every method;
//   - neural controlled differential equations (CDEField) driven by
//     natural or causal Hermite cubic Splines through irregular, partly
//     missing observations, with Linear maps for the initial state and
//     the readout;
//   - Gauss–Legendre rules by Golub–Welsch, accurate to round-off, and
//     their Gauss–Kronrod extensions (Laurie);
//   - stochastic differential equations trained through the Wong–Zakai
//     approximation and sampled with Stratonovich or Itô schemes;
//   - ready-made losses that know their shape (MSELoss, SelectedMSELoss,
//     SoftmaxCrossEntropyLoss, GaussianMomentLoss), CheckVJP for
//     hand-written fields, and Model files (Model.Save, LoadModel) with
//     Predict to evaluate a trained field at any times.
//
// States are flat []float64 slices in batch-major order: sample b,
// component d of a batch of dimension D is at index b·D+d. The whole batch
// is one ODE system with one shared step sequence.
//
// # Conventions
//
// These hold throughout the package unless a function's documentation says
// otherwise.
//
// Lengths. A state of a batch is B·D values (see VectorField); a list of
// states at m times is m such rows back to back, row i at [i·B·D, (i+1)·B·D).
// Parameters are one flat vector θ of length P, in the layout of the
// field's Params. Output slices have exactly the length the documentation
// states; the package never grows or reallocates a caller's slice.
//
// Argument order. Inputs come first and destinations last, as in
// Func(t, y, dydt), Evaluator.Eval(t, z, dz), Solver.Solve(f, y0, ts, out)
// and DenseSolution.At(t, dst); an argument that is both read and written
// is last too, as y in Axpy(alpha, x, y). LinComb(dst, …) is the one
// exception, kept for its resemblance to the BLAS-style kernels.
//
// Aliasing. Destinations must not overlap the inputs unless the function
// says they may (LinComb's dst may be its base). Slices passed to callbacks
// (Func, Loss, Options.OnStep) are views valid only during the call.
// Results returned by a solver's methods (GradResult, DenseSolution's
// scratch) belong to the solver and are overwritten by its next call.
//
// Time grids. Every list of times the package accepts (solve and
// observation times, break points, quadrature partitions, noise grids, SDE
// output times) is finite and strictly monotone; where either direction is
// allowed the documentation says "strictly increasing or strictly
// decreasing". One function checks them all, so the errors read alike.
//
// Errors and panics. Bad data — non-finite values, wrong lengths of
// user-supplied vectors, inconsistent options, a time grid out of order,
// a step size that underflows — is an error, never a panic: every error
// wraps one of the sentinel errors (ErrInvalidInput, ErrNonFinite,
// ErrStepSizeUnderflow, ErrTooManySteps, ErrNoConvergence, ErrPanic), so
// errors.Is classifies it, and *InputError and *SolveError carry the
// details. A failed call leaves its inputs unchanged. The low-level
// kernels (Dot, Axpy, LinComb, Evaluator methods, Norm methods) sit in hot
// loops and do not validate: they panic on mismatched lengths, which is a
// programming error, as an index out of range is. A panic inside user
// code called by a solver — a Func, a vector field, a Loss, a quadrature
// worker — is recovered at the public entry point (Solver.Solve and
// SolveDense, GradientSolver.Gradient, SDESolver.Solve, Predict, CheckVJP)
// and returned as an error wrapping ErrPanic. A ready-made loss (MSELoss
// and the like) called by Gradient with states of another shape returns an
// *InputError instead.
//
// Allocation. Solvers, GradientSolvers and Evaluators keep their workspace:
// after the first call of a given size, steady-state calls allocate nothing.
//
// # Concurrency and determinism
//
// Solvers and GradientSolvers own scratch space and serve one goroutine at a
// time. Vector fields hand out Evaluators, one per goroutine, that share the
// parameters. Parallel reductions use a fixed partition and a fixed order,
// so results are bit-identical for every GOMAXPROCS.
package neuralode
