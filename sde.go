package neuralode

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
)

// This file holds the stochastic half of the library:
//
//   - smooth approximations of white noise (KLNoise, PiecewiseLinearNoise) and
//     the Wong–Zakai ODE dz/dt = f(t, z) + g(t, z) ⊙ Ẇ(t) built from them
//     (WongZakai), a VectorField that every gradient method can train;
//   - a seeded Brownian path that can be queried at any time (BrownianTree);
//   - fixed-step solvers for the diagonal-noise Stratonovich SDE
//     dZ = f(t, Z) dt + g(t, Z) ∘ dW (SDESolver);
//   - the Ornstein–Uhlenbeck data generator of the GQ paper (OUProcess).
//
// Wong–Zakai: if W_N → W, the solutions of the ODEs driven by the smooth W_N
// converge to the solution of the Stratonovich SDE (Wong & Zakai 1965), so
// the same drift and diffusion networks trained as an ODE can be sampled with
// a Stratonovich SDE solver afterwards (Norcliffe & Deisenroth, TMLR 2023).

// NormalSource supplies standard normal variates. Both *math/rand.Rand and
// *math/rand/v2.Rand implement it, so callers keep their own seeded generator.
type NormalSource interface {
	NormFloat64() float64
}

// RandSource supplies uniform [0, 1) and standard normal variates; both
// *math/rand.Rand and *math/rand/v2.Rand implement it.
type RandSource interface {
	Float64() float64
	NormFloat64() float64
}

// ParamBinder is implemented by vector fields that can adopt caller-owned
// storage as their parameter vector: after BindParams(p) succeeds, Params()
// returns p and the field reads its parameters from p. It must copy nothing
// out of p (p already holds the current values) and fail if len(p) differs
// from the field's parameter count. WongZakai uses it to present the drift
// and diffusion parameters as one joint vector.
type ParamBinder interface {
	BindParams(p []float64) error
}

// ---------------------------------------------------------------------------
// Smooth noise

// Noise is a smooth (or piecewise smooth) approximation Ẇ(t) of white noise
// for every scalar of a batch: Size() = B·D channels, each with its own
// independent coefficients, so every sample and every component sees its own
// noise. A Noise is sampled once per solve with Resample; afterwards Rate and
// RateDeriv are deterministic functions of t, safe for concurrent use.
type Noise interface {
	// Size returns the number of noise channels, B·D.
	Size() int
	// Resample draws fresh coefficients from rng.
	Resample(rng NormalSource)
	// Rate writes Ẇ(t) into dst (length Size()).
	Rate(t float64, dst []float64)
	// RateDeriv writes dẆ/dt at t into dst (length Size()); between break
	// points for piecewise noise.
	RateDeriv(t float64, dst []float64)
}

// PiecewiseNoise is a Noise whose rate is smooth only between break points.
// Its rate may jump at a break point, so an ODE solver must not step across
// one and a quadrature interval must not straddle one; an integration over
// [Breakpoints()[i], Breakpoints()[i+1]] sees the rate PieceRate(i) at both of
// its ends (see PieceSelector).
type PiecewiseNoise interface {
	Noise
	// Breakpoints returns the increasing break points (not a copy; do not modify).
	Breakpoints() []float64
	// PieceRate returns the (constant) rate on piece i, a read-only view of
	// length Size().
	PieceRate(i int) []float64
}

// PieceSelector is implemented by evaluators of fields that are discontinuous
// in t at break points (WongZakai with a PiecewiseNoise). A solver that
// integrates over [a, b] (either order) lying between two consecutive break
// points calls SelectPiece(a, b) first; afterwards Eval and VJP at any t in
// the closed interval spanned by that piece use the piece's one-sided values,
// so a stage at the end of a step does not pick up the next piece's rate.
// Without a selection, a time exactly on a break point belongs to the piece
// to its right (the last break point to the last piece).
type PieceSelector interface {
	SelectPiece(a, b float64)
}

// KLNoise is the truncated Karhunen–Loève expansion of white noise on
// [t0, t1] used by the SDE experiment of Norcliffe & Deisenroth (TMLR 2023): with
// c = t1 − t0,
//
//	Ẇ(t) = sqrt(2/c) · Σ_{n=1..N} ε_n cos((n − ½)π(t − t0)/c),  ε_n ~ N(0, 1),
//
// independently for every channel. Its integral W_N(t) = sqrt(2c) Σ ε_n
// sin((n−½)π s)/((n−½)π), s = (t−t0)/c, is the Karhunen–Loève series of
// Brownian motion on [t0, t1] truncated after N terms; Var W_N(t1) =
// c·Σ_{n≤N} 2/((n−½)π)² → c.
type KLNoise struct {
	t0, t1 float64
	n      int
	size   int
	eps    []float64 // n × size, term-major: eps[k*size+i] is ε_{k+1} of channel i
}

// checkNoiseInterval rejects a noise interval [t0, t1] that is not finite
// or not increasing, the check every noise constructor starts with.
func checkNoiseInterval(t0, t1 float64) error {
	if math.IsNaN(t0) || math.IsNaN(t1) || math.IsInf(t0, 0) || math.IsInf(t1, 0) {
		return &InputError{Field: "t0/t1", Reason: "must be finite", Err: ErrNonFinite}
	}
	if !(t1 > t0) {
		return invalidf("t0/t1", "need t0 < t1, got [%g, %g]", t0, t1)
	}
	return nil
}

// NewKLNoise returns a KL noise on [t0, t1] with n terms for size = B·D
// channels, with all coefficients zero until the first Resample.
func NewKLNoise(t0, t1 float64, n, size int) (*KLNoise, error) {
	if err := checkNoiseInterval(t0, t1); err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, invalidf("n", "need at least one term, got %d", n)
	}
	if size < 1 {
		return nil, invalidf("size", "need at least one channel, got %d", size)
	}
	return &KLNoise{t0: t0, t1: t1, n: n, size: size, eps: make([]float64, n*size)}, nil
}

// Size returns the number of channels.
func (k *KLNoise) Size() int { return k.size }

// Terms returns N, the number of cosine terms.
func (k *KLNoise) Terms() int { return k.n }

// Coefficients returns the live coefficient array ε, term-major
// (ε_{n+1} of channel i at index n·Size()+i), for callers that want to set
// or record a noise sample.
func (k *KLNoise) Coefficients() []float64 { return k.eps }

// Resample draws every ε_n from rng, term by term, channel by channel.
func (k *KLNoise) Resample(rng NormalSource) {
	for i := range k.eps {
		k.eps[i] = rng.NormFloat64()
	}
}

// omega returns the angular frequency of term j (0-based): (j+½)π/c.
func (k *KLNoise) omega(j int) float64 {
	return (float64(j) + 0.5) * math.Pi / (k.t1 - k.t0)
}

// Rate writes Ẇ(t) into dst. It is defined by the series for every t; the
// series is the white-noise approximation only on [t0, t1].
func (k *KLNoise) Rate(t float64, dst []float64) {
	k.series(t, dst, 0)
}

// RateDeriv writes dẆ/dt = −sqrt(2/c) Σ ε_n ω_n sin(ω_n (t−t0)) into dst.
func (k *KLNoise) RateDeriv(t float64, dst []float64) {
	k.series(t, dst, 1)
}

// Value writes W_N(t) − W_N(t0), the integral of the rate, into dst.
func (k *KLNoise) Value(t float64, dst []float64) {
	k.series(t, dst, -1)
}

// series evaluates the rate (kind 0), its derivative (1) or its integral (−1).
func (k *KLNoise) series(t float64, dst []float64, kind int) {
	n := k.size
	dst = dst[:n]
	for i := range dst {
		dst[i] = 0
	}
	c := k.t1 - k.t0
	s := t - k.t0
	scale := math.Sqrt(2 / c)
	for j := 0; j < k.n; j++ {
		w := k.omega(j)
		var coef float64
		switch kind {
		case 0:
			coef = scale * math.Cos(w*s)
		case 1:
			coef = -scale * w * math.Sin(w*s)
		default:
			coef = scale * math.Sin(w*s) / w
		}
		Axpy(coef, k.eps[j*n:j*n+len(dst)], dst)
	}
}

// PiecewiseLinearNoise is the derivative of the piecewise-linear interpolant
// of a Brownian path on a grid (the classic Wong–Zakai approximation): on
// piece i, [grid[i], grid[i+1]], Ẇ is the constant ΔW_i/Δt_i. Its kinks are
// break points: see PiecewiseNoise.
type PiecewiseLinearNoise struct {
	grid []float64
	size int
	rate []float64 // pieces × size
}

// NewPiecewiseLinearNoise returns a piecewise-linear noise on the strictly
// increasing grid (at least two points, copied) for size = B·D channels,
// with zero rate until the first Resample or SetFromPath.
func NewPiecewiseLinearNoise(grid []float64, size int) (*PiecewiseLinearNoise, error) {
	if _, err := validateTimes("grid", grid, 2, true); err != nil {
		return nil, err
	}
	if size < 1 {
		return nil, invalidf("size", "need at least one channel, got %d", size)
	}
	g := append([]float64(nil), grid...)
	return &PiecewiseLinearNoise{grid: g, size: size, rate: make([]float64, (len(g)-1)*size)}, nil
}

// Size returns the number of channels.
func (p *PiecewiseLinearNoise) Size() int { return p.size }

// Breakpoints returns the grid (not a copy).
func (p *PiecewiseLinearNoise) Breakpoints() []float64 { return p.grid }

// PieceRate returns the rate on piece i as a read-only view.
func (p *PiecewiseLinearNoise) PieceRate(i int) []float64 {
	return p.rate[i*p.size : (i+1)*p.size]
}

// Resample draws independent Brownian increments ΔW_i ~ N(0, Δt_i) for every
// piece and channel, piece by piece.
func (p *PiecewiseLinearNoise) Resample(rng NormalSource) {
	for i := 0; i+1 < len(p.grid); i++ {
		s := 1 / math.Sqrt(p.grid[i+1]-p.grid[i])
		r := p.rate[i*p.size : (i+1)*p.size]
		for j := range r {
			r[j] = s * rng.NormFloat64()
		}
	}
}

// SetFromPath sets the noise to interpolate the Brownian path bm on the
// grid, so the Wong–Zakai ODE and an SDE solver can be compared on one
// sample. bm must cover the grid and have Size() channels. On error the
// noise is unchanged.
func (p *PiecewiseLinearNoise) SetFromPath(bm BrownianMotion) error {
	if bm == nil {
		return invalidf("bm", "is nil")
	}
	if bm.Size() != p.size {
		return invalidf("bm", "has %d channels, noise has %d", bm.Size(), p.size)
	}
	a, b := bm.Span()
	if p.grid[0] < a || p.grid[len(p.grid)-1] > b {
		return invalidf("bm", "span [%g, %g] does not cover the grid [%g, %g]", a, b, p.grid[0], p.grid[len(p.grid)-1])
	}
	tmp := make([]float64, len(p.rate))
	for i := 0; i+1 < len(p.grid); i++ {
		r := tmp[i*p.size : (i+1)*p.size]
		if err := bm.Increment(p.grid[i], p.grid[i+1], r); err != nil {
			return err
		}
		s := 1 / (p.grid[i+1] - p.grid[i])
		for j := range r {
			r[j] *= s
		}
	}
	copy(p.rate, tmp)
	return nil
}

// piece returns the index of the piece holding t: right-continuous, clamped
// to the first and last pieces.
func (p *PiecewiseLinearNoise) piece(t float64) int {
	i := sort.SearchFloat64s(p.grid, t) // first index with grid[i] >= t
	if i < len(p.grid) && p.grid[i] == t {
		// t on a break point: the piece to its right.
	} else {
		i--
	}
	if i < 0 {
		i = 0
	}
	if i > len(p.grid)-2 {
		i = len(p.grid) - 2
	}
	return i
}

// Rate writes the rate of the piece holding t into dst (right-continuous at
// break points; the final grid point belongs to the last piece).
func (p *PiecewiseLinearNoise) Rate(t float64, dst []float64) {
	copy(dst[:p.size], p.PieceRate(p.piece(t)))
}

// RateDeriv writes zero: the rate is constant between break points (its
// jumps are why solvers must stop at them).
func (p *PiecewiseLinearNoise) RateDeriv(t float64, dst []float64) {
	dst = dst[:p.size]
	for i := range dst {
		dst[i] = 0
	}
}

// Value writes the interpolated path W(t) − W(grid[0]) into dst.
func (p *PiecewiseLinearNoise) Value(t float64, dst []float64) {
	dst = dst[:p.size]
	for i := range dst {
		dst[i] = 0
	}
	last := p.piece(t)
	for i := 0; i < last; i++ {
		Axpy(p.grid[i+1]-p.grid[i], p.PieceRate(i)[:len(dst)], dst)
	}
	Axpy(t-p.grid[last], p.PieceRate(last)[:len(dst)], dst)
}

// ---------------------------------------------------------------------------
// Wong–Zakai ODE

// WongZakai is the vector field dz/dt = f(t, z) + g(t, z) ⊙ Ẇ(t) of a
// diagonal-noise Stratonovich SDE driven by a smooth noise sample (the
// Wong–Zakai approximation; see the top of this file). It is an ordinary VectorField with vector–Jacobian products over the
// joint parameter vector [θ_f, θ_g], so any gradient method trains it.
//
// The noise fixes the batch: len(z) must equal Noise().Size() = B·D in every
// Eval and VJP. GradientSolver.Gradient and Predict check it before solving
// (an *InputError on z0); an Evaluator called directly with another length
// panics with a descriptive message, which the solvers recover as ErrPanic. Resample the noise between
// solves, never during one. With a PiecewiseNoise, the field has break
// points (Breakpoints): solvers must not step across them and quadrature
// intervals must not straddle them; its evaluators implement PieceSelector.
type WongZakai struct {
	f, g   VectorField
	noise  Noise
	params []float64
	nf     int
}

// NewWongZakai builds the Wong–Zakai field of drift f and diagonal diffusion
// g driven by noise. f and g must have the same positive dimension D, and
// noise.Size() must be a positive multiple of D.
//
// Joint parameters: the constructor allocates one vector [θ_f, θ_g], copies
// both fields' current parameters into it and binds each field to its part
// with ParamBinder, so Params() is a live view that optimisers update in
// place. A field with a non-empty parameter vector that does not implement
// ParamBinder is an error (ErrInvalidInput); so is a field whose BindParams
// fails. f and g must be distinct objects when they have parameters, and a
// field of this package (MLP, FuncField) that is already bound into another
// WongZakai is rejected rather than silently rebound (call its BindParams
// to release it first); for fields of other packages this cannot be
// checked and remains the caller's duty.
func NewWongZakai(f, g VectorField, noise Noise) (*WongZakai, error) {
	if f == nil || g == nil {
		return nil, invalidf("f/g", "drift and diffusion must be non-nil")
	}
	if noise == nil {
		return nil, invalidf("noise", "is nil")
	}
	d := f.Dim()
	if d < 1 || g.Dim() != d {
		return nil, invalidf("g", "dimension %d does not match drift dimension %d", g.Dim(), d)
	}
	if noise.Size() < 1 || noise.Size()%d != 0 {
		return nil, invalidf("noise", "size %d is not a positive multiple of the dimension %d", noise.Size(), d)
	}
	for _, v := range []VectorField{f, g} {
		if fv, ok := v.(fieldValidator); ok {
			if err := fv.validateField(false); err != nil {
				return nil, err
			}
		}
	}
	pf, pg := f.Params(), g.Params()
	if len(pf)+len(pg) > 0 && sameObject(f, g) {
		return nil, invalidf("g", "is the drift itself; drift and diffusion with parameters must be distinct objects")
	}
	for _, fv := range []struct {
		name string
		v    VectorField
	}{{"f", f}, {"g", g}} {
		if b, ok := fv.v.(wzBindable); ok && *b.wzBinding() && len(fv.v.Params()) > 0 {
			return nil, invalidf(fv.name, "is already bound into another WongZakai field; use a separate network (or call its BindParams to release it)")
		}
	}
	joint := make([]float64, len(pf)+len(pg))
	copy(joint, pf)
	copy(joint[len(pf):], pg)
	bind := func(name string, v VectorField, p []float64) error {
		if len(p) == 0 {
			return nil
		}
		b, ok := v.(ParamBinder)
		if !ok {
			return invalidf(name, "has %d parameters but does not implement ParamBinder", len(p))
		}
		if err := b.BindParams(p); err != nil {
			return &InputError{Field: name, Reason: "BindParams: " + err.Error(), Err: ErrInvalidInput}
		}
		return nil
	}
	nf := len(pf)
	if err := bind("f", f, joint[:nf:nf]); err != nil {
		return nil, err
	}
	if err := bind("g", g, joint[nf:]); err != nil {
		return nil, err
	}
	for _, v := range []VectorField{f, g} {
		if b, ok := v.(wzBindable); ok && len(v.Params()) > 0 {
			*b.wzBinding() = true
		}
	}
	return &WongZakai{f: f, g: g, noise: noise, params: joint, nf: nf}, nil
}

// sameObject reports whether a and b are the same pointer (comparing the
// interfaces directly could panic on uncomparable dynamic types).
func sameObject(a, b VectorField) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Kind() == reflect.Pointer && vb.Kind() == reflect.Pointer &&
		va.Type() == vb.Type() && va.Pointer() == vb.Pointer()
}

// validateField checks the drift and diffusion (see fieldValidator).
func (w *WongZakai) validateField(needVJP bool) error {
	for _, v := range []VectorField{w.f, w.g} {
		if fv, ok := v.(fieldValidator); ok {
			if err := fv.validateField(needVJP); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkStateLen reports a batch whose length is not the noise size.
func (w *WongZakai) checkStateLen(n int) error {
	if n != w.noise.Size() {
		return invalidf("z0", "has length %d, but the Wong–Zakai noise has size %d (= B·D): build the noise for this batch", n, w.noise.Size())
	}
	return nil
}

// Dim returns D.
func (w *WongZakai) Dim() int { return w.f.Dim() }

// Params returns the joint parameter vector [θ_f, θ_g] (a live view).
func (w *WongZakai) Params() []float64 { return w.params }

// NumDriftParams returns len(θ_f): Params()[:NumDriftParams()] are the
// drift's parameters, the rest the diffusion's.
func (w *WongZakai) NumDriftParams() int { return w.nf }

// Noise returns the driving noise.
func (w *WongZakai) Noise() Noise { return w.noise }

// SDE returns the Stratonovich SDE with the same drift and diffusion, for
// sampling with an SDESolver after training.
func (w *WongZakai) SDE() SDE { return SDE{Drift: w.f, Diffusion: w.g} }

// TimeDependent reports true: Ẇ depends on t.
func (w *WongZakai) TimeDependent() bool { return true }

// Breakpoints returns the noise's break points, or nil for smooth noise.
func (w *WongZakai) Breakpoints() []float64 {
	if p, ok := w.noise.(PiecewiseNoise); ok {
		return p.Breakpoints()
	}
	return nil
}

// NewEvaluator returns an evaluator with its own scratch space.
func (w *WongZakai) NewEvaluator() Evaluator {
	e := &wzEvaluator{w: w, fe: w.f.NewEvaluator(), ge: w.g.NewEvaluator(), piece: -1}
	e.pw, _ = w.noise.(PiecewiseNoise)
	return e
}

type wzEvaluator struct {
	w      *WongZakai
	fe, ge Evaluator
	pw     PiecewiseNoise
	piece  int // selected piece, or −1

	rate, g, ag, gzg, drate []float64
	gtF, gtG                float64
}

func (e *wzEvaluator) ensure(n int) {
	if n != e.w.noise.Size() {
		panic(fmt.Sprintf("neuralode: WongZakai: state length %d differs from noise size %d", n, e.w.noise.Size()))
	}
	if len(e.rate) != n {
		e.rate = make([]float64, n)
		e.g = make([]float64, n)
		e.ag = make([]float64, n)
		e.gzg = make([]float64, n)
		e.drate = make([]float64, n)
	}
}

// SelectPiece implements PieceSelector.
func (e *wzEvaluator) SelectPiece(a, b float64) {
	e.piece = -1
	if e.pw == nil || math.IsNaN(a) || math.IsNaN(b) {
		return
	}
	bp := e.pw.Breakpoints()
	m := 0.5 * (a + b)
	i := sort.SearchFloat64s(bp, m) - 1 // bp[i] < m <= bp[i+1]
	if i < 0 {
		i = 0
	}
	if i > len(bp)-2 {
		i = len(bp) - 2
	}
	e.piece = i
}

// rateAt returns Ẇ(t), honouring the selected piece.
func (e *wzEvaluator) rateAt(t float64) []float64 {
	if e.piece >= 0 {
		bp := e.pw.Breakpoints()
		if bp[e.piece] <= t && t <= bp[e.piece+1] {
			return e.pw.PieceRate(e.piece)
		}
	}
	e.w.noise.Rate(t, e.rate)
	return e.rate
}

// Eval writes f(t, z) + g(t, z) ⊙ Ẇ(t) into dz.
func (e *wzEvaluator) Eval(t float64, z, dz []float64) {
	n := len(z)
	e.ensure(n)
	e.fe.Eval(t, z, dz)
	e.ge.Eval(t, z, e.g)
	mulAdd(e.g[:n], e.rateAt(t)[:n], dz[:n])
}

// mulAdd computes y += a ⊙ b (the package's vector kernels have no
// elementwise product).
func mulAdd(a, b, y []float64) {
	a = a[:len(y)]
	b = b[:len(y)]
	for i := range y {
		y[i] += a[i] * b[i]
	}
}

// VJP implements Evaluator.VJP for the joint parameters [θ_f, θ_g]:
//
//	aᵀ∂/∂z = aᵀ∂f/∂z + (a⊙Ẇ)ᵀ∂g/∂z,
//	aᵀ∂/∂θ = [aᵀ∂f/∂θ_f, (a⊙Ẇ)ᵀ∂g/∂θ_g],
//	aᵀ∂/∂t = aᵀ∂f/∂t + (a⊙Ẇ)ᵀ∂g/∂t + Σ a ⊙ g ⊙ dẆ/dt.
func (e *wzEvaluator) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	n := len(z)
	e.ensure(n)
	rate := e.rateAt(t)[:n]
	ag := e.ag[:n]
	a = a[:n]
	for i := range ag {
		ag[i] = a[i] * rate[i]
	}
	var gpF, gpG []float64
	if gp != nil {
		gpF, gpG = gp[:e.w.nf:e.w.nf], gp[e.w.nf:]
	}
	var ptF, ptG *float64
	if gt != nil {
		ptF, ptG = &e.gtF, &e.gtG
	}
	e.fe.VJP(t, z, a, f, gz, gpF, ptF)
	var gval, gzg []float64
	if f != nil || gt != nil {
		gval = e.g[:n]
	}
	if gz != nil {
		gzg = e.gzg[:n]
	}
	e.ge.VJP(t, z, ag, gval, gzg, gpG, ptG)
	if f != nil {
		mulAdd(gval, rate, f[:n])
	}
	if gz != nil {
		gz = gz[:n]
		gzg = gzg[:len(gz)]
		for i := range gz {
			gz[i] += gzg[i]
		}
	}
	if gt != nil {
		dr := e.drate[:n]
		e.w.noise.RateDeriv(t, dr)
		gv := gval[:len(dr)]
		aa := a[:len(dr)]
		var s float64
		for i := range dr {
			s += aa[i] * gv[i] * dr[i]
		}
		*gt = e.gtF + e.gtG + s
	}
}

// ---------------------------------------------------------------------------
// Brownian motion

// BrownianMotion is a Brownian path with Size() independent channels on
// Span(), fixed once created, that can be queried at any times in any order.
type BrownianMotion interface {
	// Size returns the number of channels.
	Size() int
	// Span returns the interval [t0, t1] on which the path is defined.
	Span() (t0, t1 float64)
	// Increment writes W(t) − W(s) into dst (length Size()); s > t is allowed.
	Increment(s, t float64, dst []float64) error
}

// BrownianTreeDepth is the number of dyadic bisection levels a BrownianTree
// uses inside one cell of its base grid. Times that are dyadic points of a
// cell up to this depth (t0 + (k + j/2^d)·w, d ≤ 30) are nodes of the tree,
// and the path restricted to any set of nodes is exactly Brownian. Any other
// time falls inside a leaf of width w·2^−30 and is sampled from the Brownian
// bridge between the leaf's end nodes: exact in distribution on its own and
// jointly with any set of nodes; only two such non-node times inside the
// same leaf are (wrongly) conditionally independent. That is the resolution
// limit.
const BrownianTreeDepth = 30

// BrownianTree is a seeded, reproducible Brownian path on [t0, t1]: a stored
// base grid of `cells` equal cells (W at the cell boundaries, a random walk)
// refined inside each cell by a virtual Brownian tree (Gaines & Lyons 1997;
// Li et al. 2020): the value at a cell's dyadic midpoint is drawn from the
// Brownian bridge between its parents with a generator seeded by
// (seed, cell, node), so no refinement is stored and any query — at any time,
// in any order, with any step — sees the same path. A solve with step h and
// one with step h/2 (both dividing the cell width by a power of two) query
// exactly the same path, as strong-order tests need.
//
// Queries at base-grid points cost a copy; each further dyadic level costs
// Size() normal draws. Choose cells so the cell width is a small multiple of
// the coarsest step. Values are reproducible for a fixed seed and Go release
// (they come from math/rand/v2's PCG and NormFloat64).
//
// A BrownianTree is not safe for concurrent use (it has scratch space);
// create one per goroutine — equal seeds give equal paths.
type BrownianTree struct {
	t0, t1 float64
	size   int
	cells  int
	w      float64 // cell width
	tolT   float64 // times within tolT of a node are that node
	seed   uint64
	grid   []float64 // (cells+1) × size

	pcg *rand.PCG
	rng *rand.Rand

	bufs [3][]float64
	tmp  []float64
}

// NewBrownianTree returns the Brownian path with size channels on [t0, t1]
// over a base grid of cells cells, determined by seed.
func NewBrownianTree(t0, t1 float64, size, cells int, seed uint64) (*BrownianTree, error) {
	if err := checkNoiseInterval(t0, t1); err != nil {
		return nil, err
	}
	if size < 1 {
		return nil, invalidf("size", "need at least one channel, got %d", size)
	}
	if cells < 1 || cells > 1<<22 {
		return nil, invalidf("cells", "need 1 ≤ cells ≤ 2^22, got %d", cells)
	}
	b := &BrownianTree{
		t0: t0, t1: t1, size: size, cells: cells,
		w:    (t1 - t0) / float64(cells),
		grid: make([]float64, (cells+1)*size),
		pcg:  rand.NewPCG(0, 0),
		tmp:  make([]float64, size),
	}
	b.tolT = 64 * 0x1p-52 * math.Max(math.Abs(t0), math.Abs(t1))
	if lim := b.w * 0x1p-40; b.tolT > lim {
		b.tolT = lim
	}
	b.rng = rand.New(b.pcg)
	for i := range b.bufs {
		b.bufs[i] = make([]float64, size)
	}
	b.Reseed(seed)
	return b, nil
}

// Size returns the number of channels.
func (b *BrownianTree) Size() int { return b.size }

// Span returns [t0, t1].
func (b *BrownianTree) Span() (float64, float64) { return b.t0, b.t1 }

// Seed returns the seed of the current path.
func (b *BrownianTree) Seed() uint64 { return b.seed }

// Reseed replaces the path by the one determined by seed, reusing storage
// (no allocation), e.g. to draw a fresh path for every solve.
func (b *BrownianTree) Reseed(seed uint64) {
	b.seed = seed
	n := b.size
	g := b.grid
	for i := 0; i < n; i++ {
		g[i] = 0
	}
	s := math.Sqrt(b.w)
	for k := 0; k < b.cells; k++ {
		b.seedNode(0, uint64(k), 0)
		prev := g[k*n : (k+1)*n]
		next := g[(k+1)*n : (k+2)*n]
		for i := range next {
			next[i] = prev[i] + s*b.rng.NormFloat64()
		}
	}
}

// sdeSplitmix64 is Steele, Lea and Flood's 64-bit finaliser, used to derive
// independent generator seeds from (seed, cell, node).
func sdeSplitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// seedNode reseeds the generator for one node: kind 0 is a base-grid
// increment, 1 a dyadic midpoint, 2 a leaf bridge point (extra = time bits).
func (b *BrownianTree) seedNode(kind, cell, node uint64) {
	h := sdeSplitmix64(b.seed)
	h = sdeSplitmix64(h ^ kind)
	h = sdeSplitmix64(h ^ cell)
	h = sdeSplitmix64(h ^ node)
	b.pcg.Seed(h, sdeSplitmix64(h^0x5851f42d4c957f2d))
}

// Value writes W(t) − W(t0) into dst.
func (b *BrownianTree) Value(t float64, dst []float64) error {
	if err := b.checkTime("t", t); err != nil {
		return err
	}
	if len(dst) != b.size {
		return invalidf("dst", "length %d, want %d", len(dst), b.size)
	}
	b.value(t, dst)
	return nil
}

func (b *BrownianTree) checkTime(name string, t float64) error {
	if math.IsNaN(t) || math.IsInf(t, 0) {
		return &InputError{Field: name, Reason: fmt.Sprintf("%v is not finite", t), Err: ErrNonFinite}
	}
	if t < b.t0-b.tolT || t > b.t1+b.tolT {
		return invalidf(name, "%g outside the path's span [%g, %g]", t, b.t0, b.t1)
	}
	return nil
}

// Increment writes W(t) − W(s) into dst.
func (b *BrownianTree) Increment(s, t float64, dst []float64) error {
	if err := b.checkTime("s", s); err != nil {
		return err
	}
	if err := b.checkTime("t", t); err != nil {
		return err
	}
	if len(dst) != b.size {
		return invalidf("dst", "length %d, want %d", len(dst), b.size)
	}
	b.value(s, b.tmp)
	b.value(t, dst)
	tmp := b.tmp[:len(dst)]
	for i := range dst {
		dst[i] -= tmp[i]
	}
	return nil
}

// value computes W(t) for a validated t.
func (b *BrownianTree) value(t float64, dst []float64) {
	n := b.size
	u := (t - b.t0) / b.w
	k := int(math.Floor(u))
	if k < 0 {
		k = 0
	}
	if k > b.cells-1 {
		k = b.cells - 1
	}
	ta := b.t0 + float64(k)*b.w
	tb := b.t0 + float64(k+1)*b.w
	if k == b.cells-1 {
		tb = b.t1
	}
	lo := b.grid[k*n : (k+1)*n]
	hi := b.grid[(k+1)*n : (k+2)*n]
	if math.Abs(t-ta) <= b.tolT {
		copy(dst, lo)
		return
	}
	if math.Abs(t-tb) <= b.tolT {
		copy(dst, hi)
		return
	}
	// Dyadic descent in cell coordinates [l, r] ⊂ [0, 1] (exact binary fractions).
	l, r := 0.0, 1.0
	node := uint64(1)
	free := 0
	for d := 1; d <= BrownianTreeDepth; d++ {
		m := 0.5 * (l + r)
		tm := b.t0 + (float64(k)+m)*b.w
		mid := b.bufs[free]
		// W(m) | W(l), W(r) ~ N((W(l)+W(r))/2, (r−l)w/4)  (Brownian bridge).
		sd := math.Sqrt((r - l) * b.w / 4)
		b.seedNode(1, uint64(k), node)
		lo, hi = lo[:len(mid)], hi[:len(mid)]
		for i := range mid {
			mid[i] = 0.5*(lo[i]+hi[i]) + sd*b.rng.NormFloat64()
		}
		if math.Abs(t-tm) <= b.tolT {
			copy(dst, mid)
			return
		}
		// Pick the next free buffer: one not aliased by lo or hi after the update.
		if t < tm {
			hi, r, node = mid, m, 2*node
		} else {
			lo, l, node = mid, m, 2*node+1
		}
		free = b.freeBuf(lo, hi)
	}
	// Leaf: Brownian bridge at t between the leaf's end nodes.
	tl := b.t0 + (float64(k)+l)*b.w
	tr := b.t0 + (float64(k)+r)*b.w
	x := (t - tl) / (tr - tl)
	if x < 0 {
		x = 0
	}
	if x > 1 {
		x = 1
	}
	sd := math.Sqrt(x * (1 - x) * (tr - tl))
	b.seedNode(2, uint64(k), sdeSplitmix64(node)^math.Float64bits(t))
	lo, hi = lo[:len(dst)], hi[:len(dst)]
	for i := range dst {
		dst[i] = lo[i] + x*(hi[i]-lo[i]) + sd*b.rng.NormFloat64()
	}
}

// freeBuf returns the index of a scratch buffer aliased by neither lo nor hi.
func (b *BrownianTree) freeBuf(lo, hi []float64) int {
	for i := range b.bufs {
		p := &b.bufs[i][0]
		if p != &lo[0] && p != &hi[0] {
			return i
		}
	}
	return 0 // unreachable: three buffers, two references
}

// ---------------------------------------------------------------------------
// SDE solvers

// SDE is the diagonal-noise SDE dZ = f(t, Z) dt + g(t, Z) ∘ dW: Drift f and
// Diffusion g are vector fields of the same dimension D, and component i of
// every sample has its own Brownian motion (g ⊙ dW). By default the SDE is
// read in the Stratonovich sense (the Wong–Zakai limit); set Ito to read it
// in the Itô sense. Schemes of the other calculus convert the drift with
// f_Itô = f_Strat + ½ g ⊙ ∂g/∂z (see itoCorrection).
type SDE struct {
	Drift, Diffusion VectorField
	// Ito reports that Drift is the Itô drift.
	Ito bool
}

// SDEScheme names a fixed-step SDE scheme for diagonal noise.
type SDEScheme int

const (
	// EulerMaruyama is the Itô Euler–Maruyama scheme
	// z' = z + f_I h + g ΔW: strong order ½, weak order 1.
	EulerMaruyama SDEScheme = iota
	// Milstein is the Itô Milstein scheme
	// z' = z + f_I h + g ΔW + ½ g ∂g/∂z (ΔW² − h): strong order 1 (diagonal noise).
	Milstein
	// MilsteinStratonovich is the Stratonovich Milstein scheme
	// z' = z + f_S h + g ΔW + ½ g ∂g/∂z ΔW²; for diagonal noise it equals
	// Milstein after the drift conversion.
	MilsteinStratonovich
	// EulerHeun is the Stratonovich Euler–Heun scheme: z̄ = z + g(t, z) ΔW,
	// z' = z + f_S(t, z) h + ½ (g(t, z) + g(t, z̄)) ΔW.
	EulerHeun
	// Heun is the Stratonovich Heun scheme (trapezoidal predictor–corrector on
	// both drift and diffusion, second evaluation at t + h).
	Heun
	// ReversibleHeun is the algebraically reversible Heun scheme of Kidger,
	// Foster, Li and Lyons (ICML 2021), Stratonovich, one drift and one
	// diffusion evaluation per step; the GQ paper samples with it.
	ReversibleHeun
)

var sdeSchemeNames = [...]string{EulerMaruyama: "EulerMaruyama", Milstein: "Milstein",
	MilsteinStratonovich: "MilsteinStratonovich", EulerHeun: "EulerHeun", Heun: "Heun", ReversibleHeun: "ReversibleHeun"}

// String returns the scheme's name.
func (s SDEScheme) String() string { return enumString(sdeSchemeNames[:], int(s), "SDEScheme") }

// itoCorrection writes ½ (∂g/∂z)ᵀ g into dst, given g = g(t, z) computed
// by the diffusion evaluator ge. For diagonal noise where g_i depends on z_i
// only (component-wise diffusion, as torchsde assumes for "diagonal" noise),
// (∂g/∂z)ᵀ g = g ⊙ ∂g_i/∂z_i exactly, and dst is the
// Itô–Stratonovich drift correction: f_Itô = f_Strat + dst. If g_i depends on
// other components, this is the VJP, not the diagonal term. It costs one VJP
// of the diffusion.
func itoCorrection(ge Evaluator, t float64, z, g, dst []float64) {
	ge.VJP(t, z, g, nil, dst, nil, nil)
	dst = dst[:len(g)]
	for i := range dst {
		dst[i] *= 0.5
	}
}

// SDESolver integrates an SDE with a fixed-step scheme. It owns evaluators
// and a workspace sized on the first Solve; later solves with the same batch
// size and number of output times allocate nothing. Not safe for concurrent
// use.
type SDESolver struct {
	sde    SDE
	scheme SDEScheme
	fe, ge Evaluator

	n, nt                                       int
	z, zh, zbar, f, g, f2, g2, gdg, dw, wt, res []float64
}

// NewSDESolver returns a solver of sde with scheme.
func NewSDESolver(sde SDE, scheme SDEScheme) (*SDESolver, error) {
	if sde.Drift == nil || sde.Diffusion == nil {
		return nil, invalidf("sde", "drift and diffusion must be non-nil")
	}
	d := sde.Drift.Dim()
	if d < 1 || sde.Diffusion.Dim() != d {
		return nil, invalidf("sde.Diffusion", "dimension %d does not match drift dimension %d", sde.Diffusion.Dim(), d)
	}
	if scheme < EulerMaruyama || scheme > ReversibleHeun {
		return nil, invalidf("scheme", "unknown scheme %d", int(scheme))
	}
	// Schemes that convert between the calculi, and Milstein's correction,
	// need ∂g/∂z through the diffusion's VJP.
	needGVJP := scheme == Milstein || scheme == MilsteinStratonovich ||
		(scheme == EulerMaruyama) != sde.Ito
	for i, v := range []VectorField{sde.Drift, sde.Diffusion} {
		if fv, ok := v.(fieldValidator); ok {
			if err := fv.validateField(i == 1 && needGVJP); err != nil {
				return nil, err
			}
		}
	}
	return &SDESolver{sde: sde, scheme: scheme, fe: sde.Drift.NewEvaluator(), ge: sde.Diffusion.NewEvaluator()}, nil
}

// SolveSDE solves sde with scheme; see SDESolver.Solve. It allocates a
// solver each call; reuse an SDESolver in loops.
func SolveSDE(sde SDE, scheme SDEScheme, z0, ts []float64, dt float64, bm BrownianMotion, out []float64) error {
	s, err := NewSDESolver(sde, scheme)
	if err != nil {
		return err
	}
	return s.Solve(z0, ts, dt, bm, out)
}

func (s *SDESolver) ensure(n, nt int) {
	if s.n != n {
		s.n = n
		s.z = make([]float64, n)
		s.zh = make([]float64, n)
		s.zbar = make([]float64, n)
		s.f = make([]float64, n)
		s.g = make([]float64, n)
		s.f2 = make([]float64, n)
		s.g2 = make([]float64, n)
		s.gdg = make([]float64, n)
		s.dw = make([]float64, n)
		s.wt = make([]float64, n)
		s.res = nil
	}
	if len(s.res) != n*nt {
		s.nt = nt
		s.res = make([]float64, n*nt)
	}
}

// Solve integrates from z0 (a batch, len(z0) = B·D) at ts[0] through the
// strictly increasing times ts, driven by bm (Size() = len(z0), span covering
// ts), and writes the state at ts[i] into out[i·len(z0):(i+1)·len(z0)]
// (out[0:len(z0)] = z0), so len(out) = len(ts)·len(z0).
//
// Steps lie on the grid ts[0] + k·dt, with the output times inserted as
// extra step boundaries (an output time within 10⁻⁹·dt of a grid point
// replaces it). Each step of size h queries the increment of bm over it, so
// solves with dt and dt/2 use the same Brownian path.
//
// Input errors wrap ErrInvalidInput or ErrNonFinite; a non-finite state
// gives a *SolveError wrapping ErrNonFinite, and a dt too small to advance
// t wraps ErrStepSizeUnderflow; a panic in the drift or diffusion is
// recovered as an error wrapping ErrPanic. On error out is unchanged.
func (s *SDESolver) Solve(z0, ts []float64, dt float64, bm BrownianMotion, out []float64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError("SDE drift or diffusion", p)
		}
	}()
	d := s.sde.Drift.Dim()
	n := len(z0)
	if n == 0 || n%d != 0 {
		return invalidf("z0", "length %d is not a positive multiple of the dimension %d", n, d)
	}
	if err := checkFinite("z0", z0); err != nil {
		return err
	}
	if _, err := validateTimes("ts", ts, 1, true); err != nil {
		return err
	}
	if math.IsNaN(dt) || math.IsInf(dt, 0) {
		return &InputError{Field: "dt", Reason: fmt.Sprintf("%v is not finite", dt), Err: ErrNonFinite}
	}
	if !(dt > 0) {
		return invalidf("dt", "must be positive, got %g", dt)
	}
	if bm == nil {
		return invalidf("bm", "is nil")
	}
	if bm.Size() != n {
		return invalidf("bm", "has %d channels, the state has %d", bm.Size(), n)
	}
	if a, b := bm.Span(); ts[0] < a || ts[len(ts)-1] > b {
		return invalidf("bm", "span [%g, %g] does not cover ts [%g, %g]", a, b, ts[0], ts[len(ts)-1])
	}
	if len(out) != n*len(ts) {
		return invalidf("out", "length %d, want len(ts)·len(z0) = %d", len(out), n*len(ts))
	}
	s.ensure(n, len(ts))
	res := s.res
	copy(res[:n], z0)
	copy(s.z, z0)
	s.start(ts[0])

	t0 := ts[0]
	tol := 1e-9 * dt
	k := 0 // index of the last grid point at or before t
	t := t0
	for i := 1; i < len(ts); i++ {
		target := ts[i]
		for t < target {
			next := t0 + float64(k+1)*dt
			if next < target-tol {
				k++
			} else {
				if next <= target+tol {
					k++
				}
				next = target
			}
			if !(next > t) {
				return &SolveError{T: t, Step: dt, Reason: "step does not advance t", Err: ErrStepSizeUnderflow}
			}
			if err := bm.Increment(t, next, s.dw); err != nil {
				return err
			}
			s.step(t, next-t)
			t = next
		}
		if ok, j := allFinite(s.z); !ok {
			return &SolveError{T: t, Step: dt, Reason: fmt.Sprintf("state element %d is %v", j, s.z[j]), Err: ErrNonFinite}
		}
		copy(res[i*n:(i+1)*n], s.z)
	}
	copy(out, res)
	return nil
}

// stratDrift writes g(t, z) into g and the Stratonovich drift into f.
func (s *SDESolver) stratDrift(t float64, z, f, g []float64) {
	s.fe.Eval(t, z, f)
	s.ge.Eval(t, z, g)
	if s.sde.Ito {
		itoCorrection(s.ge, t, z, g, s.gdg)
		Axpy(-1, s.gdg[:len(f)], f)
	}
}

// start initialises multi-step state (reversible Heun's ẑ, μ, σ).
func (s *SDESolver) start(t float64) {
	if s.scheme == ReversibleHeun {
		copy(s.zh, s.z)
		s.stratDrift(t, s.zh, s.f, s.g)
	}
}

// step advances s.z from t by h with Brownian increment s.dw.
func (s *SDESolver) step(t, h float64) {
	n := s.n
	z, f, g, dw := s.z[:n], s.f[:n], s.g[:n], s.dw[:n]
	switch s.scheme {
	case EulerMaruyama, Milstein:
		s.fe.Eval(t, z, f)
		s.ge.Eval(t, z, g)
		gdg := s.gdg[:n]
		if !s.sde.Ito || s.scheme == Milstein {
			itoCorrection(s.ge, t, z, g, gdg) // gdg = ½ g ∂g/∂z
			if !s.sde.Ito {
				for i := range f {
					f[i] += gdg[i] // Itô drift
				}
			}
		}
		if s.scheme == EulerMaruyama {
			for i := range z {
				z[i] += f[i]*h + g[i]*dw[i]
			}
			return
		}
		for i := range z {
			z[i] += f[i]*h + g[i]*dw[i] + gdg[i]*(dw[i]*dw[i]-h)
		}
	case MilsteinStratonovich:
		s.fe.Eval(t, z, f)
		s.ge.Eval(t, z, g)
		gdg := s.gdg[:n]
		itoCorrection(s.ge, t, z, g, gdg)
		if s.sde.Ito {
			Axpy(-1, gdg[:len(f)], f)
		}
		for i := range z {
			z[i] += f[i]*h + g[i]*dw[i] + gdg[i]*dw[i]*dw[i]
		}
	case EulerHeun:
		s.stratDrift(t, z, f, g)
		zb, g2 := s.zbar[:n], s.g2[:n]
		for i := range zb {
			zb[i] = z[i] + g[i]*dw[i]
		}
		s.ge.Eval(t, zb, g2)
		for i := range z {
			z[i] += f[i]*h + 0.5*(g[i]+g2[i])*dw[i]
		}
	case Heun:
		s.stratDrift(t, z, f, g)
		zb, f2, g2 := s.zbar[:n], s.f2[:n], s.g2[:n]
		for i := range zb {
			zb[i] = z[i] + f[i]*h + g[i]*dw[i]
		}
		s.stratDrift(t+h, zb, f2, g2)
		for i := range z {
			z[i] += 0.5*(f[i]+f2[i])*h + 0.5*(g[i]+g2[i])*dw[i]
		}
	case ReversibleHeun:
		// Kidger et al. 2021, eq. (5): with μ_n = f(t_n, ẑ_n), σ_n = g(t_n, ẑ_n),
		//   ẑ_{n+1} = 2 z_n − ẑ_n + μ_n h + σ_n ΔW_n,
		//   z_{n+1} = z_n + ½(μ_n + μ_{n+1}) h + ½(σ_n + σ_{n+1}) ΔW_n.
		zh, f2, g2 := s.zh[:n], s.f2[:n], s.g2[:n]
		for i := range zh {
			zh[i] = 2*z[i] - zh[i] + f[i]*h + g[i]*dw[i]
		}
		s.stratDrift(t+h, zh, f2, g2)
		for i := range z {
			z[i] += 0.5*(f[i]+f2[i])*h + 0.5*(g[i]+g2[i])*dw[i]
		}
		s.f, s.f2 = s.f2, s.f
		s.g, s.g2 = s.g2, s.g
	}
}

// ---------------------------------------------------------------------------
// Ornstein–Uhlenbeck data

// OUProcess is the time-inhomogeneous Ornstein–Uhlenbeck SDE of the GQ
// paper's SDE experiment,
//
//	dX = (μ t − θ X) dt + (σ + φ t) ∘ dW,   X(T0) ~ U(X0Low, X0High),
//
// observed at Points equally spaced times on [T0, T1]. The diffusion does
// not depend on X, so the Itô and Stratonovich readings coincide.
type OUProcess struct {
	Mu, Theta, Sigma, Phi float64
	X0Low, X0High         float64
	T0, T1                float64
	Points                int
}

// PaperOU returns the paper's parameters: μ = 0.2, θ = 0.1, σ = 0.6,
// φ = 0.15, t ∈ [0, 10] at 101 points, X0 ~ U(−3, 3).
func PaperOU() OUProcess {
	return OUProcess{Mu: 0.2, Theta: 0.1, Sigma: 0.6, Phi: 0.15, X0Low: -3, X0High: 3, T0: 0, T1: 10, Points: 101}
}

func (p OUProcess) validate() error {
	for _, v := range []float64{p.Mu, p.Theta, p.Sigma, p.Phi, p.X0Low, p.X0High, p.T0, p.T1} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return &InputError{Field: "OUProcess", Reason: "parameters must be finite", Err: ErrNonFinite}
		}
	}
	if !(p.Theta > 0) {
		return invalidf("OUProcess.Theta", "must be positive, got %g", p.Theta)
	}
	if !(p.T1 > p.T0) || p.Points < 2 {
		return invalidf("OUProcess", "need T0 < T1 and at least 2 points")
	}
	if p.X0High < p.X0Low {
		return invalidf("OUProcess", "X0High < X0Low")
	}
	return nil
}

// Times returns the observation times T0 + i(T1−T0)/(Points−1).
func (p OUProcess) Times() []float64 {
	ts := make([]float64, p.Points)
	for i := range ts {
		ts[i] = p.T0 + float64(i)*(p.T1-p.T0)/float64(p.Points-1)
	}
	ts[len(ts)-1] = p.T1
	return ts
}

// transition returns the exact Gaussian transition from t to t+Δ:
// X(t+Δ) = e^{−θΔ} X(t) + m + sqrt(v)·ξ, with (u = t + Δ − s)
//
//	m = μ ∫₀^Δ e^{−θu} (t+Δ−u) du,
//	v = ∫₀^Δ e^{−2θu} (a − φu)² du,  a = σ + φ(t+Δ).
func (p OUProcess) transition(t, dlt float64) (decay, m, v float64) {
	th := p.Theta
	e1 := math.Exp(-th * dlt)
	decay = e1
	j0 := -math.Expm1(-th*dlt) / th // ∫ e^{−θu}
	j1 := (j0 - dlt*e1) / th        // ∫ u e^{−θu}
	m = p.Mu * ((t+dlt)*j0 - j1)
	k := 2 * th
	e2 := math.Exp(-k * dlt)
	i0 := -math.Expm1(-k*dlt) / k // ∫ e^{−ku}
	i1 := (i0 - dlt*e2) / k       // ∫ u e^{−ku}
	i2 := (2*i1 - dlt*dlt*e2) / k // ∫ u² e^{−ku}
	a := p.Sigma + p.Phi*(t+dlt)
	v = a*a*i0 - 2*a*p.Phi*i1 + p.Phi*p.Phi*i2
	return decay, m, math.Max(v, 0)
}

// Sample draws nPaths independent paths at Times() with rng and returns the
// times and the values, time-major: xs[i·nPaths + j] is path j at ts[i]
// (the batch-major state layout with D = 1). The paths are simulated with
// the exact Gaussian transition of the linear SDE between observation times
// (no discretisation error): X0 for all paths first, then one normal per
// path per interval, in path order.
func (p OUProcess) Sample(rng RandSource, nPaths int) (ts, xs []float64, err error) {
	if err := p.validate(); err != nil {
		return nil, nil, err
	}
	if rng == nil {
		return nil, nil, invalidf("rng", "is nil")
	}
	if nPaths < 1 {
		return nil, nil, invalidf("nPaths", "need at least one path, got %d", nPaths)
	}
	ts = p.Times()
	xs = make([]float64, len(ts)*nPaths)
	for j := 0; j < nPaths; j++ {
		xs[j] = p.X0Low + (p.X0High-p.X0Low)*rng.Float64()
	}
	for i := 1; i < len(ts); i++ {
		decay, m, v := p.transition(ts[i-1], ts[i]-ts[i-1])
		sd := math.Sqrt(v)
		prev := xs[(i-1)*nPaths : i*nPaths]
		cur := xs[i*nPaths : (i+1)*nPaths]
		for j := range cur {
			cur[j] = decay*prev[j] + m + sd*rng.NormFloat64()
		}
	}
	return ts, xs, nil
}

// OUData draws nPaths paths of the paper's OU process (PaperOU) with rng:
// 101 times on [0, 10] and the values, time-major (see OUProcess.Sample).
func OUData(rng RandSource, nPaths int) (ts, xs []float64, err error) {
	return PaperOU().Sample(rng, nPaths)
}

// Drift returns the drift μt − θx as a FuncField (D = 1, no parameters).
func (p OUProcess) Drift() *FuncField {
	return &FuncField{D: 1, F: func(t float64, z, _, dz []float64) {
		z = z[:len(dz)]
		for i := range dz {
			dz[i] = p.Mu*t - p.Theta*z[i]
		}
	}, VJPFunc: func(t float64, z, _, a, f, gz, gp []float64, gt *float64) {
		var st float64
		for i := range a {
			if f != nil {
				f[i] = p.Mu*t - p.Theta*z[i]
			}
			if gz != nil {
				gz[i] = -p.Theta * a[i]
			}
			st += a[i] * p.Mu
		}
		if gt != nil {
			*gt = st
		}
	}}
}

// Diffusion returns the diffusion σ + φt as a FuncField (D = 1).
func (p OUProcess) Diffusion() *FuncField {
	return &FuncField{D: 1, F: func(t float64, z, _, dz []float64) {
		for i := range dz {
			dz[i] = p.Sigma + p.Phi*t
		}
	}, VJPFunc: func(t float64, z, _, a, f, gz, gp []float64, gt *float64) {
		var st float64
		for i := range a {
			if f != nil {
				f[i] = p.Sigma + p.Phi*t
			}
			if gz != nil {
				gz[i] = 0
			}
			st += a[i] * p.Phi
		}
		if gt != nil {
			*gt = st
		}
	}}
}

// Moments returns the exact mean and variance of X(t) (t ≥ T0) for
// X(T0) ~ U(X0Low, X0High), from the same Gaussian transition.
func (p OUProcess) Moments(t float64) (mean, variance float64) {
	decay, m, v := p.transition(p.T0, t-p.T0)
	m0 := 0.5 * (p.X0Low + p.X0High)
	w := p.X0High - p.X0Low
	return decay*m0 + m, decay*decay*w*w/12 + v
}
