package neuralode

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// This file holds neural controlled differential equations (Kidger, Morrill,
// Foster & Lyons, "Neural Controlled Differential Equations for Irregular
// Time Series", NeurIPS 2020): the hidden state follows
//
//	z(t_0) = ζ_φ(x_0),   dz(t) = f_θ(z(t)) dX(t),   ŷ = ℓ_ψ(z(t_K))      (eq. 4 of the paper)
//
// where X is a continuous path through the observations (t_k, x_k), with time
// as one of its channels, ζ_φ and ℓ_ψ are affine maps (Linear) and f_θ maps
// R^H to H×C matrices. Along the path the CDE is the ODE
//
//	dz/dt = f_θ(z) · dX/dt,                                               (eq. 5)
//
// a VectorField (CDEField) that every gradient method trains. The paths are
// cubic splines (Spline): natural cubic splines, as in the paper, and Hermite
// cubic splines with backward differences, which are causal (Morrill, Kidger,
// Yang & Lyons, "Neural CDEs for Online Prediction Tasks", 2021).

// SplineKind selects how a Spline interpolates between observations.
type SplineKind int

const (
	// HermiteSpline is the cubic Hermite spline with backward differences:
	// on [t_k, t_{k+1}] the path is the cubic with values x_k, x_{k+1} and
	// end slopes m_{k−1}, m_k, where m_k = (x_{k+1} − x_k)/(t_{k+1} − t_k)
	// (m_{−1} = m_0). It is C¹, and the path on [t_0, t_k] depends on
	// x_0 … x_k only, so a model can be evaluated online. Its second
	// derivative jumps at the knots, so dX/dt has kinks there: the interior
	// knots are break points (Breakpoints) at which solvers restart.
	HermiteSpline SplineKind = iota
	// NaturalSpline is the natural cubic spline: C², with zero second
	// derivative at both ends. Every piece depends on every observation.
	NaturalSpline
)

// String returns "hermite" or "natural".
func (k SplineKind) String() string {
	switch k {
	case HermiteSpline:
		return "hermite"
	case NaturalSpline:
		return "natural"
	}
	return fmt.Sprintf("SplineKind(%d)", int(k))
}

// ParseSplineKind returns the kind named s ("hermite" or "natural").
func ParseSplineKind(s string) (SplineKind, error) {
	for _, k := range []SplineKind{HermiteSpline, NaturalSpline} {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, invalidf("spline", "unknown spline kind %q (want hermite or natural)", s)
}

// Spline is a batch of B piecewise-cubic paths X: R → R^C through
// observations on one shared time grid t_0 < … < t_{K−1} (series sampled at
// different times share the union grid and mark what they miss as NaN).
// Values are laid out as everywhere in the package: row k of the
// observations holds B·C values, series b, channel c at index b·C+c.
//
// On [t_k, t_{k+1}] each scalar path is a + b·s + c·s² + d·s³ with
// s = t − t_k; outside [t_0, t_{K−1}] the first and last cubic extend. A
// Spline is immutable and safe for concurrent use.
type Spline struct {
	kind  SplineKind
	ts    []float64
	batch int
	ch    int
	obs   []float64 // K rows of B·C observations, missing values filled
	coef  []float64 // piece k, coefficient j (a, b, c, d) at [(4k+j)·n, (4k+j+1)·n)
	bps   []float64 // interior knots (Hermite), else nil
}

// NewSpline interpolates the observations xs (len(ts) rows of batch·channels
// values) at the strictly increasing times ts (at least two).
//
// Missing values are NaN. Each channel of each series is filled before the
// spline is built, by linear interpolation in t between its nearest observed
// neighbours; leading and trailing gaps take the first and last observed
// value. A channel with no observation at all, an infinite value, or
// inconsistent lengths give an *InputError. xs is not modified.
func NewSpline(kind SplineKind, ts, xs []float64, batch, channels int) (*Spline, error) {
	if kind != HermiteSpline && kind != NaturalSpline {
		return nil, invalidf("kind", "unknown spline kind %d", int(kind))
	}
	if batch < 1 || channels < 1 {
		return nil, invalidf("batch/channels", "need at least one series and one channel, got %d and %d", batch, channels)
	}
	if _, err := validateTimes("ts", ts, 2, true); err != nil {
		return nil, err
	}
	K := len(ts)
	if channels > math.MaxInt32/batch || batch*channels > math.MaxInt32/K {
		return nil, invalidf("xs", "too many values (%d knots × %d series × %d channels)", K, batch, channels)
	}
	n := batch * channels
	if len(xs) != K*n {
		return nil, invalidf("xs", "has %d values, want %d knots × %d series × %d channels = %d", len(xs), K, batch, channels, K*n)
	}
	s := &Spline{kind: kind, ts: append([]float64(nil), ts...), batch: batch, ch: channels,
		obs: append([]float64(nil), xs...)}
	if err := fillMissing(s.ts, s.obs, n, channels); err != nil {
		return nil, err
	}
	s.coef = make([]float64, 4*(K-1)*n)
	if kind == HermiteSpline {
		s.hermite()
		if K > 2 {
			s.bps = s.ts[1 : K-1 : K-1]
		}
	} else {
		s.natural()
	}
	if ok, i := allFinite(s.coef); !ok {
		return nil, &InputError{Field: "xs", Reason: fmt.Sprintf("spline coefficient %d overflows (%v)", i, s.coef[i]), Err: ErrNonFinite}
	}
	return s, nil
}

// fillMissing replaces the NaNs of every column of x (K rows of n values) by
// linear interpolation in t, and constant extrapolation at the ends.
func fillMissing(ts, x []float64, n, channels int) error {
	K := len(ts)
	for i := 0; i < n; i++ {
		prev := -1 // last observed row
		for k := 0; k < K; k++ {
			v := x[k*n+i]
			if math.IsInf(v, 0) {
				return &InputError{Field: "xs", Reason: fmt.Sprintf("value at knot %d, series %d, channel %d is %v", k, i/channels, i%channels, v), Err: ErrNonFinite}
			}
			if v != v {
				continue
			}
			switch {
			case prev < 0: // leading gap: constant
				for j := 0; j < k; j++ {
					x[j*n+i] = v
				}
			case prev < k-1: // interior gap: linear in t
				x0, t0 := x[prev*n+i], ts[prev]
				slope := (v - x0) / (ts[k] - t0)
				for j := prev + 1; j < k; j++ {
					x[j*n+i] = x0 + slope*(ts[j]-t0)
				}
			}
			prev = k
		}
		if prev < 0 {
			return invalidf("xs", "series %d, channel %d has no observation", i/channels, i%channels)
		}
		for j := prev + 1; j < K; j++ { // trailing gap: constant
			x[j*n+i] = x[prev*n+i]
		}
	}
	return nil
}

// hermite sets the coefficients of the Hermite spline with backward
// differences. With Δ = t_{k+1} − t_k, start slope d = m_{k−1} and end slope
// m_k, the Hermite cubic is a = x_k, b = d, c = 2(m_k − d)/Δ,
// d₃ = (d − m_k)/Δ² (the general end-slope formulas c = (3m − 2d₀ − d₁)/Δ,
// d₃ = (d₀ + d₁ − 2m)/Δ² with d₁ = m).
func (s *Spline) hermite() {
	n := s.batch * s.ch
	for k := 0; k+1 < len(s.ts); k++ {
		dt := s.ts[k+1] - s.ts[k]
		x0, x1 := s.obs[k*n:(k+1)*n], s.obs[(k+1)*n:(k+2)*n]
		a, b, c, d := s.piece(k)
		var xp []float64
		var dtp float64
		if k > 0 {
			xp, dtp = s.obs[(k-1)*n:k*n], s.ts[k]-s.ts[k-1]
		}
		for i := range a {
			m := (x1[i] - x0[i]) / dt
			d0 := m
			if k > 0 {
				d0 = (x0[i] - xp[i]) / dtp
			}
			a[i] = x0[i]
			b[i] = d0
			c[i] = 2 * (m - d0) / dt
			d[i] = (d0 - m) / (dt * dt)
		}
	}
}

// natural sets the coefficients of the natural cubic spline. The second
// derivatives M_k at the knots solve the tridiagonal system (M_0 = M_{K−1} = 0)
//
//	Δ_{k−1} M_{k−1} + 2(Δ_{k−1} + Δ_k) M_k + Δ_k M_{k+1} = 6(m_k − m_{k−1}),
//
// k = 1 … K−2, which is diagonally dominant, so Gaussian elimination without
// pivoting (the Thomas algorithm) is stable. The matrix depends on the grid
// only: it is factored once for all B·C right-hand sides. Then on piece k
// a = x_k, b = m_k − Δ_k(2M_k + M_{k+1})/6, c = M_k/2, d = (M_{k+1} − M_k)/(6Δ_k).
func (s *Spline) natural() {
	n := s.batch * s.ch
	K := len(s.ts)
	M := make([]float64, K*n) // second derivatives, row per knot
	sup := make([]float64, K) // eliminated superdiagonal
	slope := func(k, i int) float64 {
		return (s.obs[(k+1)*n+i] - s.obs[k*n+i]) / (s.ts[k+1] - s.ts[k])
	}
	for k := 1; k <= K-2; k++ {
		dl, dr := s.ts[k]-s.ts[k-1], s.ts[k+1]-s.ts[k]
		diag := 2 * (dl + dr)
		row, prev := M[k*n:(k+1)*n], M[(k-1)*n:k*n]
		if k > 1 {
			diag -= dl * sup[k-1] // eliminate the subdiagonal with row k−1
		}
		for i := range row {
			r := 6 * (slope(k, i) - slope(k-1, i))
			if k > 1 {
				r -= dl * prev[i]
			}
			row[i] = r / diag
		}
		sup[k] = dr / diag
	}
	for k := K - 3; k >= 1; k-- { // back substitution
		row, next := M[k*n:(k+1)*n], M[(k+1)*n:(k+2)*n]
		for i := range row {
			row[i] -= sup[k] * next[i]
		}
	}
	for k := 0; k+1 < K; k++ {
		dt := s.ts[k+1] - s.ts[k]
		m0, m1 := M[k*n:(k+1)*n], M[(k+1)*n:(k+2)*n]
		a, b, c, d := s.piece(k)
		for i := range a {
			a[i] = s.obs[k*n+i]
			b[i] = slope(k, i) - dt*(2*m0[i]+m1[i])/6
			c[i] = m0[i] / 2
			d[i] = (m1[i] - m0[i]) / (6 * dt)
		}
	}
}

// piece returns views of the four coefficient vectors of piece k.
func (s *Spline) piece(k int) (a, b, c, d []float64) {
	n := s.batch * s.ch
	o := 4 * k * n
	return s.coef[o : o+n : o+n], s.coef[o+n : o+2*n : o+2*n], s.coef[o+2*n : o+3*n : o+3*n], s.coef[o+3*n : o+4*n : o+4*n]
}

// Kind returns the spline's kind.
func (s *Spline) Kind() SplineKind { return s.kind }

// Batch returns B, the number of series.
func (s *Spline) Batch() int { return s.batch }

// Channels returns C, the number of channels of each series.
func (s *Spline) Channels() int { return s.ch }

// Knots returns the time grid t_0 … t_{K−1} (a read-only view).
func (s *Spline) Knots() []float64 { return s.ts[:len(s.ts):len(s.ts)] }

// Observations returns the K rows of B·C observations with the missing
// values filled in, which the spline interpolates (a read-only view).
func (s *Spline) Observations() []float64 { return s.obs[:len(s.obs):len(s.obs)] }

// Breakpoints returns the interior knots of a Hermite spline, where dX/dt
// has kinks, and nil for a natural spline (a read-only view).
func (s *Spline) Breakpoints() []float64 { return s.bps }

// pieceOf returns the piece k with t_k ≤ t < t_{k+1}: a knot belongs to the
// piece on its right, t_{K−1} and later times to the last piece, times
// before t_0 to the first.
func (s *Spline) pieceOf(t float64) int {
	lo, hi := 0, len(s.ts)-2 // answer in [lo, hi]
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if s.ts[mid] <= t {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// eval writes derivative number order (0, 1 or 2) of piece k at t into dst.
func (s *Spline) eval(k, order int, t float64, dst []float64) {
	a, b, c, d := s.piece(k)
	h := t - s.ts[k]
	dst = dst[:len(a)]
	switch order {
	case 0:
		for i := range dst {
			dst[i] = a[i] + h*(b[i]+h*(c[i]+h*d[i]))
		}
	case 1:
		for i := range dst {
			dst[i] = b[i] + h*(2*c[i]+3*h*d[i])
		}
	default:
		for i := range dst {
			dst[i] = 2*c[i] + 6*h*d[i]
		}
	}
}

// At writes X(t) (B·C values) into dst. It panics if dst is shorter, as
// indexing does.
func (s *Spline) At(t float64, dst []float64) { s.eval(s.pieceOf(t), 0, t, dst) }

// Deriv writes dX/dt at t into dst; at a knot, the right piece's value.
func (s *Spline) Deriv(t float64, dst []float64) { s.eval(s.pieceOf(t), 1, t, dst) }

// Deriv2 writes d²X/dt² at t into dst; at a knot, the right piece's value.
func (s *Spline) Deriv2(t float64, dst []float64) { s.eval(s.pieceOf(t), 2, t, dst) }

// ---------------------------------------------------------------------------
// The CDE vector field

// CDEConfig describes the network f_θ: R^H → R^{H×C} of a CDEField.
type CDEConfig struct {
	// Hidden is H, the dimension of the hidden state z.
	Hidden int
	// Channels is C, the number of channels of the control path.
	Channels int
	// Widths lists the widths of f_θ's hidden layers; it may be empty
	// (f_θ is then affine in z).
	Widths []int
	// Activation is the nonlinearity of the hidden layers; the output layer
	// is linear. A bounded activation (Tanh) keeps f_θ bounded, so the
	// hidden state grows at most linearly in the length of the path.
	Activation Activation
}

// CDEField is the vector field dz/dt = f_θ(z) · dX/dt of a neural CDE
// driven by a Spline (eq. 5 above): f_θ(z) is the output of an MLP
// reshaped into an H×C matrix, row h holding the outputs h·C … h·C+C−1.
// The state of one series is z ∈ R^H; a batch of B series matches a path of
// B series (SetPath), which must be set before solving.
//
// The network is the package's MLP with D = H·C, whose input is z padded
// with zeros to length H·C. The field's parameter vector omits the padded
// columns of the first weight matrix, so θ has exactly the parameters of a
// network with input width H (W_0 is width×H, then b_0, W_1, b_1, … as in
// MLP), ParamSizes lists those tensors, and the full adjoint norm sees
// what torchdiffeq would. Each evaluator keeps its own padded copy of the
// network and refreshes it from θ at every call.
//
// CDEField implements VectorField, ParamTensors, ParamBinder, TimeDependent
// and Breakpointer (a Hermite path's interior knots); its evaluators
// implement PieceSelector.
type CDEField struct {
	cfg    CDEConfig
	mcfg   MLPConfig // the padded network
	params []float64
	sizes  []int
	path   *Spline
}

// NewCDEField returns a CDE field with parameters drawn as PyTorch's
// nn.Linear initialises them (W and b uniform on (−1/√in, 1/√in), in = the
// layer's true input width, H for the first layer), from rng; a nil rng
// leaves them zero. An invalid configuration gives an *InputError.
func NewCDEField(cfg CDEConfig, rng *rand.Rand) (*CDEField, error) {
	if cfg.Hidden < 1 || cfg.Channels < 1 {
		return nil, invalidf("CDEConfig", "need Hidden ≥ 1 and Channels ≥ 1, got %d and %d", cfg.Hidden, cfg.Channels)
	}
	if cfg.Hidden > math.MaxInt32/cfg.Channels {
		return nil, invalidf("CDEConfig", "Hidden·Channels overflows")
	}
	cfg.Widths = append([]int(nil), cfg.Widths...)
	mcfg := MLPConfig{Dim: cfg.Hidden * cfg.Channels, Hidden: cfg.Widths, Activation: cfg.Activation}
	m, err := NewMLP(mcfg, nil) // validates the widths and the activation
	if err != nil {
		return nil, err
	}
	_, _, out0, in0 := m.Layer(0)
	sizes := m.ParamSizes()
	sizes[0] = out0 * cfg.Hidden
	np := m.NumParams() - out0*(in0-cfg.Hidden)
	f := &CDEField{cfg: cfg, mcfg: mcfg, params: make([]float64, np), sizes: sizes}
	if rng != nil {
		off := 0
		for l := 0; l < m.NumLayers(); l++ {
			_, _, out, in := m.Layer(l)
			if l == 0 {
				in = cfg.Hidden
			}
			bound := 1 / math.Sqrt(float64(in))
			for i := off; i < off+out*in+out; i++ {
				f.params[i] = bound * (2*rng.Float64() - 1)
			}
			off += out*in + out
		}
	}
	return f, nil
}

// Config returns the field's configuration (a copy).
func (f *CDEField) Config() CDEConfig {
	c := f.cfg
	c.Widths = append([]int(nil), f.cfg.Widths...)
	return c
}

// Dim returns H.
func (f *CDEField) Dim() int { return f.cfg.Hidden }

// Params returns θ (a live view): W_0 (width×H), b_0, W_1, b_1, ….
func (f *CDEField) Params() []float64 { return f.params }

// ParamSizes returns the lengths of the tensors of θ in order.
func (f *CDEField) ParamSizes() []int { return append([]int(nil), f.sizes...) }

// BindParams makes the field use p (of length len(Params())) as θ, without
// copying, so that θ can live inside a joint parameter vector with the
// initial map and the readout.
func (f *CDEField) BindParams(p []float64) error {
	if len(p) != len(f.params) {
		return invalidf("CDEField.BindParams", "got %d parameters, the field has %d", len(p), len(f.params))
	}
	f.params = p[:len(p):len(p)]
	return nil
}

// TimeDependent reports true: dX/dt depends on t.
func (f *CDEField) TimeDependent() bool { return true }

// SetPath sets the control path; its channel count must be C. The batch of
// every later solve must be path.Batch() series. Change the path between
// solves, never during one.
func (f *CDEField) SetPath(path *Spline) error {
	if path == nil {
		return invalidf("path", "is nil")
	}
	if path.Channels() != f.cfg.Channels {
		return invalidf("path", "has %d channels, the field %d", path.Channels(), f.cfg.Channels)
	}
	f.path = path
	return nil
}

// Path returns the control path (nil until SetPath).
func (f *CDEField) Path() *Spline { return f.path }

// Breakpoints returns the path's break points (the interior knots of a
// Hermite path; nil for a natural spline or before SetPath).
func (f *CDEField) Breakpoints() []float64 {
	if f.path == nil {
		return nil
	}
	return f.path.Breakpoints()
}

// MLP returns a copy of f_θ as the padded network R^{H·C} → R^{H·C} (its
// first weight matrix has zero columns for the padding), for saving.
func (f *CDEField) MLP() *MLP {
	m, _ := NewMLP(f.mcfg, nil) // the configuration was validated by NewCDEField
	f.copyInto(m.Params())
	return m
}

// copyInto writes θ into the parameter vector of the padded network; the
// padded columns of W_0 are left as they are (zero).
func (f *CDEField) copyInto(full []float64) {
	H, D := f.cfg.Hidden, f.cfg.Hidden*f.cfg.Channels
	rows := f.sizes[0] / H
	for r := 0; r < rows; r++ {
		copy(full[r*D:r*D+H], f.params[r*H:(r+1)*H])
	}
	copy(full[rows*D:], f.params[rows*H:])
}

// addCompact adds the gradient full of the padded network to gp in θ's
// layout, dropping the padded columns.
func (f *CDEField) addCompact(gp, full []float64) {
	H, D := f.cfg.Hidden, f.cfg.Hidden*f.cfg.Channels
	rows := f.sizes[0] / H
	for r := 0; r < rows; r++ {
		Axpy(1, full[r*D:r*D+H], gp[r*H:(r+1)*H])
	}
	Axpy(1, full[rows*D:], gp[rows*H:])
}

// NewEvaluator returns an evaluator with its own padded network and scratch.
func (f *CDEField) NewEvaluator() Evaluator {
	m, _ := NewMLP(f.mcfg, nil)
	return &cdeEvaluator{f: f, net: m, ev: m.NewEvaluator(), piece: -1}
}

type cdeEvaluator struct {
	f     *CDEField
	net   *MLP
	ev    Evaluator
	path  *Spline // path of the selected piece
	piece int     // selected piece, or −1

	// frozen: θ is constant (freezeParams) and, once bound, already in
	// the padded network.
	frozen, bound bool

	zpad, g, abar, gzpad, gfull, dx, ddx []float64
}

// SelectPiece implements PieceSelector: [a, b] lies in one spline piece.
func (e *cdeEvaluator) SelectPiece(a, b float64) {
	e.piece = -1
	p := e.f.path
	if p == nil || math.IsNaN(a) || math.IsNaN(b) {
		return
	}
	e.path, e.piece = p, p.pieceOf(0.5*(a+b))
}

// pieceAt returns the spline piece that serves t: the selected one if t is
// in its closed interval, else the one containing t.
func (e *cdeEvaluator) pieceAt(p *Spline, t float64) int {
	if e.piece >= 0 && e.path == p && p.ts[e.piece] <= t && t <= p.ts[e.piece+1] {
		return e.piece
	}
	return p.pieceOf(t)
}

// prepare checks the batch, sizes the scratch, refreshes the padded network
// from θ, pads z and evaluates dX/dt; it returns the batch size.
func (e *cdeEvaluator) prepare(t float64, z []float64) (*Spline, int, int) {
	f := e.f
	p := f.path
	if p == nil {
		panic(invalidf("CDEField", "no control path: call SetPath before solving"))
	}
	H, C := f.cfg.Hidden, f.cfg.Channels
	if len(z) != p.batch*H {
		panic(invalidf("z", "length %d, want %d series × %d hidden = %d (the path's batch)", len(z), p.batch, H, p.batch*H))
	}
	B, D := p.batch, H*C
	if len(e.zpad) != B*D {
		e.zpad = make([]float64, B*D)
		e.g = make([]float64, B*D)
		e.abar = make([]float64, B*D)
		e.gzpad = make([]float64, B*D)
		e.dx = make([]float64, B*C)
		e.ddx = make([]float64, B*C)
	}
	if e.gfull == nil {
		e.gfull = make([]float64, e.net.NumParams())
	}
	if !e.frozen || !e.bound {
		f.copyInto(e.net.Params())
		e.bound = true
	}
	for b := 0; b < B; b++ {
		copy(e.zpad[b*D:b*D+H], z[b*H:(b+1)*H])
	}
	k := e.pieceAt(p, t)
	p.eval(k, 1, t, e.dx)
	return p, k, B
}

// freezeParams passes the solver's promise that θ stays constant on to
// the network's evaluator (packed weights reused) and skips copying θ
// into the padded network after the first call.
func (e *cdeEvaluator) freezeParams(on bool) {
	e.frozen, e.bound = on, false
	freezeParams(e.ev, on)
}

// keepActivations lets Direct's VJPs reuse the network's forward pass of
// the stage evaluation at the same (t, z) (see mlpState.keepActivations).
func (e *cdeEvaluator) keepActivations(on bool) { keepActivations(e.ev, on) }

// splits reports whether the network splits a product of rows series over
// the cores itself (see gradState.runChunks).
func (e *cdeEvaluator) splits(rows int) bool {
	sp, ok := findEvaluator[interface{ splits(rows int) bool }](e.ev)
	return ok && sp.splits(rows)
}

// Eval writes f_θ(z)·dX/dt into dz.
func (e *cdeEvaluator) Eval(t float64, z, dz []float64) {
	_, _, B := e.prepare(t, z)
	e.ev.Eval(t, e.zpad, e.g)
	e.contract(dz, e.dx, B)
}

// contract writes dz_{b,h} = Σ_c g_{b,h,c} v_{b,c}.
func (e *cdeEvaluator) contract(dz, v []float64, B int) {
	H, C := e.f.cfg.Hidden, e.f.cfg.Channels
	dz = dz[:B*H]
	for b := 0; b < B; b++ {
		vb := v[b*C : (b+1)*C]
		for h := 0; h < H; h++ {
			gh := e.g[(b*H+h)*C : (b*H+h+1)*C]
			dz[b*H+h] = Dot(gh, vb)
		}
	}
}

// VJP implements Evaluator.VJP. With g = f_θ(z) (B×H×C) and v = dX/dt,
// the field is F_{b,h} = Σ_c g_{b,h,c} v_{b,c}, so the cotangent reaching
// the network is ā_{b,h,c} = a_{b,h} v_{b,c}; the network's VJP with ā gives
// aᵀ∂F/∂z (the first H columns of its input cotangent) and aᵀ∂F/∂θ, and
//
//	aᵀ∂F/∂t = Σ_{b,h,c} a_{b,h} g_{b,h,c} d²X_{b,c}/dt²
//
// (f_θ itself does not depend on t).
func (e *cdeEvaluator) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	p, k, B := e.prepare(t, z)
	H, C := e.f.cfg.Hidden, e.f.cfg.Channels
	D := H * C
	if len(a) != B*H || f != nil && len(f) != B*H || gz != nil && len(gz) != B*H || gp != nil && len(gp) != len(e.f.params) {
		panic(invalidf("VJP", "inconsistent lengths a %d, f %d, gz %d, gp %d for %d series × %d hidden and %d parameters",
			len(a), len(f), len(gz), len(gp), B, H, len(e.f.params)))
	}
	for b := 0; b < B; b++ {
		vb := e.dx[b*C : (b+1)*C]
		for h := 0; h < H; h++ {
			ah := a[b*H+h]
			ab := e.abar[(b*H+h)*C : (b*H+h+1)*C]
			for c, v := range vb {
				ab[c] = ah * v
			}
		}
	}
	var gval, gzp, gfull []float64
	if f != nil || gt != nil {
		gval = e.g
	}
	if gz != nil {
		gzp = e.gzpad
	}
	if gp != nil {
		gfull = e.gfull
		clear(gfull)
	}
	// The network is autonomous: its t-derivative is zero, so gt is not
	// requested from it.
	e.ev.VJP(t, e.zpad, e.abar, gval, gzp, gfull, nil)
	if f != nil {
		e.contract(f, e.dx, B)
	}
	if gz != nil {
		for b := 0; b < B; b++ {
			copy(gz[b*H:(b+1)*H], gzp[b*D:b*D+H])
		}
	}
	if gp != nil {
		e.f.addCompact(gp, gfull)
	}
	if gt != nil {
		p.eval(k, 2, t, e.ddx)
		s := 0.0
		for b := 0; b < B; b++ {
			vb := e.ddx[b*C : (b+1)*C]
			for h := 0; h < H; h++ {
				s += a[b*H+h] * Dot(e.g[(b*H+h)*C:(b*H+h+1)*C], vb)
			}
		}
		*gt = s
	}
}

// ---------------------------------------------------------------------------
// Affine maps: the initial state and the readout

// Linear is the affine map y = W x + b from R^In to R^Out applied to a batch
// of rows, the initial map ζ_φ and the readout ℓ_ψ of a neural CDE (W is
// stored Out×In row-major, as PyTorch's nn.Linear does). Its parameter vector
// is W then b.
type Linear struct {
	in, out int
	params  []float64
}

// NewLinear returns an affine map with parameters drawn as nn.Linear does
// (uniform on (−1/√in, 1/√in)) from rng, or zero for a nil rng.
func NewLinear(in, out int, rng *rand.Rand) (*Linear, error) {
	if in < 1 || out < 1 || in > math.MaxInt32/(out+1) {
		return nil, invalidf("Linear", "bad shape %d → %d", in, out)
	}
	l := &Linear{in: in, out: out, params: make([]float64, out*in+out)}
	if rng != nil {
		bound := 1 / math.Sqrt(float64(in))
		for i := range l.params {
			l.params[i] = bound * (2*rng.Float64() - 1)
		}
	}
	return l, nil
}

// In returns the input width.
func (l *Linear) In() int { return l.in }

// Out returns the output width.
func (l *Linear) Out() int { return l.out }

// Params returns [W, b] (a live view).
func (l *Linear) Params() []float64 { return l.params }

// BindParams makes the map use p as [W, b], without copying.
func (l *Linear) BindParams(p []float64) error {
	if len(p) != len(l.params) {
		return invalidf("Linear.BindParams", "got %d parameters, the map has %d", len(p), len(l.params))
	}
	l.params = p[:len(p):len(p)]
	return nil
}

func (l *Linear) batch(x []float64, name string, y []float64, yname string) (int, error) {
	if len(x) == 0 || len(x)%l.in != 0 {
		return 0, invalidf(name, "length %d is not a positive multiple of the input width %d", len(x), l.in)
	}
	B := len(x) / l.in
	if y != nil && len(y) != B*l.out {
		return 0, invalidf(yname, "length %d, want %d rows × %d", len(y), B, l.out)
	}
	return B, nil
}

// Apply writes y = W x + b for each of the rows of x (len(x)/In rows) into y.
func (l *Linear) Apply(x, y []float64) error {
	B, err := l.batch(x, "x", y, "y")
	if err != nil {
		return err
	}
	if y == nil {
		return invalidf("y", "is nil")
	}
	w, bias := l.params[:l.out*l.in], l.params[l.out*l.in:]
	matMulABt(y, x, w, B, l.out, l.in)
	addBias(y, bias, B)
	return nil
}

// VJP back-propagates the cotangent dy of Apply's output: dx (if non-nil)
// is overwritten with dyᵀ W row by row, and gp (if non-nil, length
// len(Params())) has [dW, db] = [Σ_rows dy xᵀ, Σ_rows dy] ADDED to it.
func (l *Linear) VJP(x, dy, dx, gp []float64) error {
	B, err := l.batch(x, "x", dy, "dy")
	if err != nil {
		return err
	}
	if dy == nil {
		return invalidf("dy", "is nil")
	}
	if dx != nil && len(dx) != len(x) {
		return invalidf("dx", "length %d, want %d", len(dx), len(x))
	}
	if gp != nil && len(gp) != len(l.params) {
		return invalidf("gp", "length %d, want %d", len(gp), len(l.params))
	}
	nw := l.out * l.in
	if dx != nil {
		matMulAB(nil, dx, dy, l.params[:nw], B, l.out, l.in)
	}
	if gp != nil {
		matMulAtBAdd(nil, gp[:nw], dy, x, B, l.out, l.in)
		gb := gp[nw:]
		for b := 0; b < B; b++ {
			Axpy(1, dy[b*l.out:(b+1)*l.out], gb)
		}
	}
	return nil
}
