package neuralode

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Activation selects the nonlinearity of an MLP's hidden layers.
type Activation int

// Hidden-layer activations. The last layer of an MLP is always linear.
const (
	// Tanh is tanh(u), derivative 1 − tanh²(u).
	Tanh Activation = iota
	// Softplus is log(1 + eᵘ), evaluated as max(u, 0) + log1p(e^−|u|) so it
	// neither overflows for large u nor loses digits for very negative u (the
	// convention of the reference cases); its derivative is the sigmoid.
	Softplus
	// ReLU is max(u, 0), with derivative 0 at u = 0 (as PyTorch).
	ReLU
	// Sigmoid is 1/(1 + e^−u).
	Sigmoid
	// Identity is u: the hidden layers are then linear.
	Identity
)

var activationNames = [...]string{Tanh: "tanh", Softplus: "softplus", ReLU: "relu", Sigmoid: "sigmoid", Identity: "identity"}

// String returns the activation's name as used in the case format
// ("tanh", "softplus", "relu", "sigmoid", "identity").
func (a Activation) String() string {
	if a < 0 || int(a) >= len(activationNames) {
		return fmt.Sprintf("Activation(%d)", int(a))
	}
	return activationNames[a]
}

func (a Activation) valid() bool { return a >= 0 && int(a) < len(activationNames) }

// ParseActivation returns the activation named s (case-insensitive; the
// names String returns). An unknown name gives an error wrapping
// ErrInvalidInput.
func ParseActivation(s string) (Activation, error) {
	for i, name := range activationNames {
		if strings.EqualFold(s, name) {
			return Activation(i), nil
		}
	}
	return 0, invalidf("activation", "unknown activation %q (want tanh, softplus, relu, sigmoid or identity)", s)
}

// MLPConfig describes the architecture of an MLP vector field.
type MLPConfig struct {
	// Dim is D, the state dimension: the network maps R^D (or R^(D+1) with
	// TimeInput) to R^D.
	Dim int
	// Hidden lists the widths of the hidden layers, first to last; it may be
	// empty (f is then affine in z).
	Hidden []int
	// Activation is the nonlinearity of every hidden layer.
	Activation Activation
	// TimeInput appends t as the last input feature: f(t, z) = MLP([z, t]).
	TimeInput bool
}

// MLP is a batched multilayer perceptron vector field f(t, z) (DESIGN.md §5,
// spec/case-format.md):
//
//	h_0 = z (or [z, t]),  h_{l+1} = act(W_l h_l + b_l),  f = W_L h_L + b_L.
//
// W_l is stored as PyTorch's nn.Linear does, (out, in) row-major, and the
// parameter vector is W_0, b_0, W_1, b_1, …, so weights exported from PyTorch
// load without reshuffling. MLP implements VectorField and TimeDependent.
//
// An MLP holds no scratch space: evaluation happens in Evaluators from
// NewEvaluator, one per goroutine, which may run concurrently as long as
// nobody writes the parameters meanwhile.
type MLP struct {
	cfg    MLPConfig
	sizes  []int // layer widths n_0 … n_{L+1}; n_0 = D (+1 with time), n_{L+1} = D
	wOff   []int // offset of W_l in params
	bOff   []int // offset of b_l in params
	np     int
	params []float64
}

// NewMLP builds an MLP with the given architecture. Its parameters are drawn
// as PyTorch's default nn.Linear initialisation does, W and b uniform on
// (−1/√in, 1/√in), layer by layer in parameter order, from rng, so a seeded
// generator gives reproducible networks. A nil rng leaves all parameters
// zero, for callers that load weights afterwards (as Case.MLP does).
//
// An invalid configuration gives an *InputError wrapping ErrInvalidInput.
func NewMLP(cfg MLPConfig, rng *rand.Rand) (*MLP, error) {
	if cfg.Dim < 1 {
		return nil, invalidf("MLPConfig.Dim", "state dimension %d, want ≥ 1", cfg.Dim)
	}
	for i, h := range cfg.Hidden {
		if h < 1 {
			return nil, invalidf("MLPConfig.Hidden", "width of hidden layer %d is %d, want ≥ 1", i, h)
		}
	}
	if !cfg.Activation.valid() {
		return nil, invalidf("MLPConfig.Activation", "unknown activation %d", int(cfg.Activation))
	}
	cfg.Hidden = append([]int(nil), cfg.Hidden...)
	m := &MLP{cfg: cfg}
	n0 := cfg.Dim
	if cfg.TimeInput {
		n0++
	}
	m.sizes = append(append([]int{n0}, cfg.Hidden...), cfg.Dim)
	nl := len(m.sizes) - 1
	m.wOff = make([]int, nl)
	m.bOff = make([]int, nl)
	off := 0
	for l := 0; l < nl; l++ {
		in, out := m.sizes[l], m.sizes[l+1]
		if out > (math.MaxInt32-off)/(in+1) {
			return nil, invalidf("MLPConfig.Hidden", "network too large")
		}
		m.wOff[l] = off
		off += out * in
		m.bOff[l] = off
		off += out
	}
	m.np = off
	m.params = make([]float64, off)
	if rng != nil {
		m.InitParams(rng)
	}
	return m, nil
}

// InitParams redraws the parameters in place as NewMLP does: each layer's
// W then b uniform on (−1/√in, 1/√in), matching PyTorch's nn.Linear default.
func (m *MLP) InitParams(rng *rand.Rand) {
	for l := range m.wOff {
		in, out := m.sizes[l], m.sizes[l+1]
		bound := 1 / math.Sqrt(float64(in))
		p := m.params[m.wOff[l] : m.bOff[l]+out]
		for i := range p {
			p[i] = bound * (2*rng.Float64() - 1)
		}
	}
}

// Config returns the MLP's architecture (a copy).
func (m *MLP) Config() MLPConfig {
	c := m.cfg
	c.Hidden = append([]int(nil), m.cfg.Hidden...)
	return c
}

// Dim returns D, the state dimension.
func (m *MLP) Dim() int { return m.cfg.Dim }

// NumParams returns the length of the parameter vector.
func (m *MLP) NumParams() int { return m.np }

// NumLayers returns the number of linear layers, hidden layers plus the
// output layer.
func (m *MLP) NumLayers() int { return len(m.wOff) }

// Params returns the parameter vector W_0, b_0, W_1, b_1, … (a live view,
// not a copy: writes change the network).
func (m *MLP) Params() []float64 { return m.params }

// TimeDependent reports whether t is an input of the network.
func (m *MLP) TimeDependent() bool { return m.cfg.TimeInput }

// Activation returns the hidden-layer activation.
func (m *MLP) Activation() Activation { return m.cfg.Activation }

// Layer returns views of layer l's weights W (out×in, row-major) and bias b
// inside the parameter vector, with the layer's sizes. Layer 0 reads the
// input (in = D, or D+1 with time input, the t column last); layer
// NumLayers()−1 is the linear output layer. It panics if l is out of range,
// as indexing does.
func (m *MLP) Layer(l int) (W, b []float64, out, in int) {
	in, out = m.sizes[l], m.sizes[l+1]
	return m.params[m.wOff[l]:m.bOff[l]:m.bOff[l]], m.params[m.bOff[l] : m.bOff[l]+out : m.bOff[l]+out], out, in
}

// ParamSizes returns the lengths of the parameter tensors in order
// (W_0, b_0, W_1, b_1, …), so the full adjoint norm can measure each
// tensor separately, as torchdiffeq does.
func (m *MLP) ParamSizes() []int {
	sizes := make([]int, 0, 2*len(m.wOff))
	for l := range m.wOff {
		in, out := m.sizes[l], m.sizes[l+1]
		sizes = append(sizes, in*out, out)
	}
	return sizes
}

// BindParams makes the MLP use p as its parameter vector, without copying:
// later writes to p change the network and Params returns p. It lets several
// fields share one joint parameter vector (e.g. an SDE's drift and diffusion
// networks bound to two halves of one slice). Existing Evaluators see the
// new binding. len(p) must equal NumParams, otherwise the binding is left
// unchanged and an error wrapping ErrInvalidInput is returned.
func (m *MLP) BindParams(p []float64) error {
	if len(p) != m.np {
		return invalidf("params", "length %d, want %d", len(p), m.np)
	}
	m.params = p[:len(p):len(p)]
	return nil
}

// NewEvaluator returns an evaluator with its own scratch space. Its scratch
// grows to the largest batch seen; after that it allocates nothing.
func (m *MLP) NewEvaluator() Evaluator { return &mlpEvaluator{m: m} }

// mlpEvaluator holds the per-goroutine scratch of an MLP evaluation.
type mlpEvaluator struct {
	m    *MLP
	maxB int
	in   []float64   // B×(D+1) input with the time column (TimeInput only)
	h    [][]float64 // h[l], l = 1…L: hidden activations, B×n_l
	d    [][]float64 // d[l]: act′ at layer l's pre-activation, B×n_l
	dx   []float64   // cotangent ping-pong buffers, B×max n_l
	dy   []float64
	dh0  []float64 // B×(D+1) input cotangent (TimeInput only)
}

// ensure grows the scratch to batch size B.
func (e *mlpEvaluator) ensure(B int) {
	if B <= e.maxB {
		return
	}
	m := e.m
	L := len(m.sizes) - 2
	e.h = make([][]float64, L+1)
	e.d = make([][]float64, L+1)
	w := 0
	for l := 1; l <= L; l++ {
		e.h[l] = make([]float64, B*m.sizes[l])
		e.d[l] = make([]float64, B*m.sizes[l])
		w = max(w, m.sizes[l])
	}
	e.dx = make([]float64, B*w)
	e.dy = make([]float64, B*w)
	if m.cfg.TimeInput {
		e.in = make([]float64, B*m.sizes[0])
		e.dh0 = make([]float64, B*m.sizes[0])
	}
	e.maxB = B
}

// batch returns the batch size of a state of length n, panicking with an
// *InputError (the interface has no error result; solvers check lengths
// before calling) when n is not a multiple of D.
func (e *mlpEvaluator) batch(n int) int {
	D := e.m.cfg.Dim
	if n%D != 0 {
		panic(invalidf("z", "length %d is not a multiple of the state dimension %d", n, D))
	}
	return n / D
}

func checkLen(field string, x []float64, n int) {
	if x != nil && len(x) != n {
		panic(invalidf(field, "length %d, want %d", len(x), n))
	}
}

// Eval writes f(t, z) into dz. It panics with an *InputError if len(z) is
// not a multiple of D or len(dz) ≠ len(z).
func (e *mlpEvaluator) Eval(t float64, z, dz []float64) {
	B := e.batch(len(z))
	if len(dz) != len(z) {
		panic(invalidf("dz", "length %d, want %d", len(dz), len(z)))
	}
	e.ensure(B)
	e.forward(t, z, dz, B, false)
}

// input returns h_0 for the batch: z itself, or z with t appended to each
// row when the network takes time as input.
func (e *mlpEvaluator) input(t float64, z []float64, B int) []float64 {
	if !e.m.cfg.TimeInput {
		return z[:B*e.m.cfg.Dim]
	}
	D := e.m.cfg.Dim
	n0 := D + 1
	in := e.in[:B*n0]
	for b := 0; b < B; b++ {
		row := in[b*n0 : b*n0+n0]
		copy(row[:D], z[b*D:b*D+D])
		row[D] = t
	}
	return in
}

// forward runs the network on a batch of B states. The output layer is
// written to out unless out is nil (the reverse pass does not need it). With
// deriv, act′ of every hidden layer is kept for the reverse pass.
func (e *mlpEvaluator) forward(t float64, z, out []float64, B int, deriv bool) {
	m := e.m
	L := len(m.sizes) - 2
	x := e.input(t, z, B)
	for l := 0; l <= L; l++ {
		W, bias, nout, nin := m.Layer(l)
		if l == L {
			if out == nil {
				return
			}
			y := out[:B*nout]
			matMulABt(y, x, W, B, nout, nin)
			addBias(y, bias, B)
			return
		}
		y := e.h[l+1][:B*nout]
		matMulABt(y, x, W, B, nout, nin)
		var d []float64
		if deriv {
			d = e.d[l+1][:B*nout]
		}
		biasActivate(m.cfg.Activation, y, d, bias, B)
		x = y
	}
}

// addBias adds bias to each of the B rows of y.
func addBias(y, bias []float64, B int) {
	n := len(bias)
	for b := 0; b < B; b++ {
		row := y[b*n : b*n+n]
		row = row[:len(bias)]
		for j, v := range bias {
			row[j] += v
		}
	}
}

// biasActivate replaces each of the B rows u of y by act(u + bias) and, if
// d is non-nil, writes act′(u + bias) to the matching row of d.
func biasActivate(act Activation, y, d, bias []float64, B int) {
	n := len(bias)
	for b := 0; b < B; b++ {
		row := y[b*n : b*n+n]
		row = row[:len(bias)]
		var drow []float64
		if d != nil {
			drow = d[b*n : b*n+n]
			drow = drow[:len(row)]
		}
		switch act {
		case Tanh:
			for j, v := range bias {
				row[j] = math.Tanh(row[j] + v)
			}
			if drow != nil {
				drow = drow[:len(row)]
				for j, h := range row {
					drow[j] = 1 - h*h
				}
			}
		case Softplus:
			if drow != nil {
				drow = drow[:len(row)]
				for j, u := range row {
					row[j], drow[j] = softplus(u + bias[j])
				}
			} else {
				for j, v := range bias {
					row[j], _ = softplus(row[j] + v)
				}
			}
		case ReLU:
			for j, v := range bias {
				u := row[j] + v
				if u < 0 {
					u = 0 // NaN passes through unchanged
				}
				row[j] = u
			}
			if drow != nil {
				drow = drow[:len(row)]
				for j, h := range row {
					if h > 0 {
						drow[j] = 1
					} else {
						drow[j] = 0
					}
				}
			}
		case Sigmoid:
			for j, v := range bias {
				row[j] = sigmoid(row[j] + v)
			}
			if drow != nil {
				drow = drow[:len(row)]
				for j, s := range row {
					drow[j] = s * (1 - s)
				}
			}
		default: // Identity
			for j, v := range bias {
				row[j] += v
			}
			if drow != nil {
				for j := range drow {
					drow[j] = 1
				}
			}
		}
	}
}

// softplus returns log(1+eᵘ), evaluated as max(u, 0) + log1p(e^−|u|), and
// its derivative σ(u), both without overflow for either sign of u.
func softplus(u float64) (sp, sig float64) {
	e := math.Exp(-math.Abs(u))
	sp = math.Max(u, 0) + math.Log1p(e)
	if u < 0 {
		return sp, e / (1 + e)
	}
	return sp, 1 / (1 + e)
}

// sigmoid is 1/(1+e^−u), computed without overflow for either sign of u.
func sigmoid(u float64) float64 {
	if u >= 0 {
		return 1 / (1 + math.Exp(-u))
	}
	e := math.Exp(u)
	return e / (1 + e)
}

// VJP implements Evaluator.VJP by one forward pass that keeps the hidden
// activations and act′, then the reverse (backpropagation) sweep
//
//	δ_L = a,  dW_l += δ_lᵀ h_l,  db_l += Σ_b δ_l,  δ_{l−1} = (δ_l W_l) ⊙ act′(u_{l−1}),
//
// ending with aᵀ∂f/∂h_0 = δ_0 W_0, whose first D columns are aᵀ∂f/∂z and
// whose t column (with time input), summed over the batch, is aᵀ∂f/∂t.
// Work is skipped for outputs that are nil: the output layer's forward
// product when f is nil, the weight-gradient products when gp is nil, and
// the first layer's δ_0 W_0 when gz and gt are nil. For an autonomous
// network gt is set to 0.
//
// Outputs must not overlap z or a. It panics with an *InputError on
// inconsistent lengths (len(z) a multiple of D; a, f, gz of length len(z);
// gp of length NumParams).
func (e *mlpEvaluator) VJP(t float64, z, a, f, gz, gp []float64, gt *float64) {
	m := e.m
	B := e.batch(len(z))
	checkLen("a", a, len(z))
	if a == nil && len(z) > 0 {
		panic(invalidf("a", "nil cotangent"))
	}
	checkLen("f", f, len(z))
	checkLen("gz", gz, len(z))
	checkLen("gp", gp, m.np)
	e.ensure(B)
	if gz == nil && gp == nil && gt == nil {
		if f != nil {
			e.forward(t, z, f, B, false)
		}
		return
	}
	e.forward(t, z, f, B, true)

	D := m.cfg.Dim
	L := len(m.sizes) - 2
	delta := a[:B*D]
	buf, spare := e.dx, e.dy
	for l := L; l >= 0; l-- {
		W, _, nout, nin := m.Layer(l)
		var x []float64 // layer input h_l
		if l > 0 {
			x = e.h[l][:B*nin]
		} else {
			x = e.input(t, z, B)
		}
		if gp != nil {
			gW := gp[m.wOff[l]:m.bOff[l]]
			gb := gp[m.bOff[l] : m.bOff[l]+nout]
			matMulAtBAdd(gW, delta, x, B, nout, nin)
			for b := 0; b < B; b++ {
				row := delta[b*nout : b*nout+nout]
				row = row[:len(gb)]
				for j, v := range row {
					gb[j] += v
				}
			}
		}
		if l > 0 {
			next := buf[:B*nin]
			matMulAB(next, delta, W, B, nout, nin)
			d := e.d[l][:B*nin]
			d = d[:len(next)]
			for j, v := range d {
				next[j] *= v
			}
			delta = next
			buf, spare = spare, buf
			continue
		}
		// Layer 0: the cotangent of the network input.
		if m.cfg.TimeInput {
			if gz != nil {
				dh := e.dh0[:B*nin]
				matMulAB(dh, delta, W, B, nout, nin)
				var st float64
				for b := 0; b < B; b++ {
					copy(gz[b*D:b*D+D], dh[b*nin:b*nin+D])
					st += dh[b*nin+D]
				}
				if gt != nil {
					*gt = st
				}
			} else if gt != nil {
				// Only the t column of δ_0 W_0 is needed.
				var st float64
				for b := 0; b < B; b++ {
					row := delta[b*nout : b*nout+nout]
					for o, v := range row {
						st += v * W[o*nin+D]
					}
				}
				*gt = st
			}
		} else {
			if gz != nil {
				matMulAB(gz[:B*D], delta, W, B, nout, nin)
			}
			if gt != nil {
				*gt = 0
			}
		}
	}
}

// Adam is the Adam optimiser (Kingma & Ba 2015, Algorithm 1) on a flat
// parameter vector, with PyTorch's torch.optim.Adam semantics: optional L2
// weight decay added to the gradient, bias-corrected moments, and the update
//
//	θ ← θ − (LR / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + Eps).
//
// Its state (T, M, V) is exported so training can be checkpointed and
// resumed exactly.
type Adam struct {
	LR          float64 // step size, default 1e-3
	Beta1       float64 // first-moment decay, default 0.9
	Beta2       float64 // second-moment decay, default 0.999
	Eps         float64 // denominator offset, default 1e-8
	WeightDecay float64 // L2 penalty coefficient added as WeightDecay·θ to the gradient, default 0

	T int       // number of steps taken
	M []float64 // first-moment estimate
	V []float64 // second-moment estimate
}

// NewAdam returns an Adam optimiser for n parameters with PyTorch's defaults
// (LR 1e-3, betas 0.9 and 0.999, Eps 1e-8, no weight decay).
func NewAdam(n int) *Adam {
	return &Adam{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8,
		M: make([]float64, n), V: make([]float64, n)}
}

// Step applies one Adam update to params using grad. A zero-value M and V
// (with T = 0) are allocated on the first step. On any error (lengths that
// disagree, hyperparameters out of range, a non-finite gradient) nothing is
// modified and the error wraps ErrInvalidInput or ErrNonFinite.
func (o *Adam) Step(params, grad []float64) error {
	n := len(params)
	if len(grad) != n {
		return invalidf("grad", "length %d, want %d", len(grad), n)
	}
	if o.M == nil && o.V == nil && o.T == 0 {
		o.M, o.V = make([]float64, n), make([]float64, n)
	}
	if len(o.M) != n || len(o.V) != n {
		return invalidf("Adam.M", "moment lengths %d and %d, want %d", len(o.M), len(o.V), n)
	}
	switch {
	case !(o.LR >= 0) || math.IsInf(o.LR, 0):
		return invalidf("Adam.LR", "%v, want finite ≥ 0", o.LR)
	case !(o.Beta1 >= 0 && o.Beta1 < 1):
		return invalidf("Adam.Beta1", "%v, want in [0, 1)", o.Beta1)
	case !(o.Beta2 >= 0 && o.Beta2 < 1):
		return invalidf("Adam.Beta2", "%v, want in [0, 1)", o.Beta2)
	case !(o.Eps >= 0) || math.IsInf(o.Eps, 0):
		return invalidf("Adam.Eps", "%v, want finite ≥ 0", o.Eps)
	case !(o.WeightDecay >= 0) || math.IsInf(o.WeightDecay, 0):
		return invalidf("Adam.WeightDecay", "%v, want finite ≥ 0", o.WeightDecay)
	case o.T < 0:
		return invalidf("Adam.T", "%d, want ≥ 0", o.T)
	}
	if err := checkFinite("grad", grad); err != nil {
		return err
	}
	o.T++
	b1, b2 := o.Beta1, o.Beta2
	bc1 := 1 - math.Pow(b1, float64(o.T))
	bc2 := math.Sqrt(1 - math.Pow(b2, float64(o.T)))
	step := o.LR / bc1
	wd := o.WeightDecay
	mm, vv := o.M[:n], o.V[:n]
	grad = grad[:n]
	for i, p := range params {
		g := grad[i]
		if wd != 0 {
			g += wd * p
		}
		mi := b1*mm[i] + (1-b1)*g
		vi := b2*vv[i] + (1-b2)*g*g
		mm[i], vv[i] = mi, vi
		params[i] = p - step*mi/(math.Sqrt(vi)/bc2+o.Eps)
	}
	return nil
}
