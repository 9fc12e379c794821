package neuralode

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var allActivations = []Activation{Tanh, Softplus, ReLU, Sigmoid, Identity}

// mlpArchs are the architectures the correctness tests sweep: no hidden
// layer, one, two of different widths (odd sizes reach the kernels'
// remainder paths).
var mlpArchs = []struct {
	D      int
	Hidden []int
	B      int
}{
	{2, nil, 3},
	{2, []int{7}, 5},
	{3, []int{5, 4}, 3},
	{4, []int{9, 6, 5}, 7},
}

// runMLPSweep runs test as a subtest for every architecture of mlpArchs,
// activation and time input, on a new MLP of that configuration (weights
// drawn from seed) and a batch of n state components.
func runMLPSweep(t *testing.T, seed uint64, test func(t *testing.T, m *MLP, n int, timeIn bool)) {
	for _, arch := range mlpArchs {
		for _, act := range allActivations {
			for _, timeIn := range []bool{false, true} {
				name := fmt.Sprintf("D%d_H%v_%v_time%v", arch.D, arch.Hidden, act, timeIn)
				t.Run(name, func(t *testing.T) {
					test(t, newTestMLP(t, arch.D, arch.Hidden, act, timeIn, seed), arch.B*arch.D, timeIn)
				})
			}
		}
	}
}

func newTestMLP(t testing.TB, D int, hidden []int, act Activation, timeIn bool, seed uint64) *MLP {
	t.Helper()
	m, err := NewMLP(MLPConfig{Dim: D, Hidden: hidden, Activation: act, TimeInput: timeIn}, rand.New(rand.NewPCG(seed, 99)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// naiveAct is an independent scalar implementation of each activation.
func naiveAct(a Activation, u float64) float64 {
	switch a {
	case Tanh:
		return (math.Exp(u) - math.Exp(-u)) / (math.Exp(u) + math.Exp(-u))
	case Softplus:
		return math.Log(1 + math.Exp(u))
	case ReLU:
		return math.Max(u, 0)
	case Sigmoid:
		return 1 / (1 + math.Exp(-u))
	}
	return u
}

// naiveForward evaluates the network one sample at a time with plain loops
// over the (out, in) weight layout.
func naiveForward(m *MLP, t float64, z []float64) []float64 {
	D := m.Dim()
	B := len(z) / D
	out := make([]float64, len(z))
	p := m.Params()
	for b := 0; b < B; b++ {
		h := append([]float64(nil), z[b*D:b*D+D]...)
		if m.TimeDependent() {
			h = append(h, t)
		}
		off := 0
		nl := m.NumLayers()
		for l := 0; l < nl; l++ {
			in := len(h)
			var outN int
			if l == nl-1 {
				outN = D
			} else {
				outN = m.Config().Hidden[l]
			}
			next := make([]float64, outN)
			for o := 0; o < outN; o++ {
				s := 0.0
				for i := 0; i < in; i++ {
					s += p[off+o*in+i] * h[i]
				}
				s += p[off+outN*in+o]
				if l < nl-1 {
					s = naiveAct(m.Activation(), s)
				}
				next[o] = s
			}
			off += outN*in + outN
			h = next
		}
		copy(out[b*D:], h)
	}
	return out
}

func TestMLPForwardAgainstNaive(t *testing.T) {
	runMLPSweep(t, 1, func(t *testing.T, m *MLP, n int, timeIn bool) {
		rng := rand.New(rand.NewPCG(5, 6))
		z := randSlice(rng, n)
		ev := m.NewEvaluator()
		got := make([]float64, len(z))
		ev.Eval(0.7, z, got)
		want := naiveForward(m, 0.7, z)
		if d := maxRelDiff(got, want); d > 1e-13 {
			t.Errorf("forward rel diff %g\n got %v\nwant %v", d, got, want)
		}
	})
}

// scalarS returns S = Σ a·f(t, z) for the current parameters.
func scalarS(m *MLP, t float64, z, a []float64) float64 {
	f := naiveForward(m, t, z)
	s := 0.0
	for i := range f {
		s += a[i] * f[i]
	}
	return s
}

// TestMLPVJPFiniteDifferences checks aᵀ∂f/∂z, aᵀ∂f/∂θ and aᵀ∂f/∂t against
// central differences of S = Σ a·f for every activation, with and without
// time input.
func TestMLPVJPFiniteDifferences(t *testing.T) {
	const h = 1e-5
	runMLPSweep(t, 2, func(t *testing.T, m *MLP, n int, timeIn bool) {
		rng := rand.New(rand.NewPCG(7, 8))
		z := randSlice(rng, n)
		a := randSlice(rng, n)
		tt := 0.3
		ev := m.NewEvaluator()
		gz := make([]float64, len(z))
		gp := make([]float64, m.NumParams())
		var gt float64
		ev.VJP(tt, z, a, nil, gz, gp, &gt)

		fdz := make([]float64, len(z))
		for i := range z {
			zp := append([]float64(nil), z...)
			zm := append([]float64(nil), z...)
			zp[i] += h
			zm[i] -= h
			fdz[i] = (scalarS(m, tt, zp, a) - scalarS(m, tt, zm, a)) / (2 * h)
		}
		if d := maxRelDiff(gz, fdz); d > 1e-7 {
			t.Errorf("∂/∂z rel err %g\n got %v\n  fd %v", d, gz, fdz)
		}

		p := m.Params()
		fdp := make([]float64, len(p))
		for i := range p {
			old := p[i]
			p[i] = old + h
			sp := scalarS(m, tt, z, a)
			p[i] = old - h
			sm := scalarS(m, tt, z, a)
			p[i] = old
			fdp[i] = (sp - sm) / (2 * h)
		}
		if d := maxRelDiff(gp, fdp); d > 1e-7 {
			t.Errorf("∂/∂θ rel err %g", d)
		}

		fdt := (scalarS(m, tt+h, z, a) - scalarS(m, tt-h, z, a)) / (2 * h)
		if !timeIn {
			if gt != 0 || fdt != 0 {
				t.Errorf("autonomous: gt = %v, fd %v, want 0", gt, fdt)
			}
		} else if d := math.Abs(gt-fdt) / math.Max(math.Abs(fdt), 1e-3); d > 1e-7 {
			t.Errorf("∂/∂t = %v, fd %v (rel err %g)", gt, fdt, d)
		}
	})
}

// TestMLPVJPSemantics checks the output contract: f and gz are
// overwritten, gp is added to, gt is overwritten, and every subset of
// outputs gives bit-identical values to the full call.
func TestMLPVJPSemantics(t *testing.T) {
	for _, timeIn := range []bool{false, true} {
		m := newTestMLP(t, 3, []int{8, 6}, Tanh, timeIn, 3)
		rng := rand.New(rand.NewPCG(9, 10))
		B := 5
		z := randSlice(rng, B*3)
		a := randSlice(rng, B*3)
		ev := m.NewEvaluator()
		P := m.NumParams()

		wantF := make([]float64, len(z))
		ev.Eval(0.4, z, wantF)
		f := randSlice(rng, len(z))
		gz := randSlice(rng, len(z))
		gp := make([]float64, P)
		gt := 123.0
		ev.VJP(0.4, z, a, f, gz, gp, &gt)
		for i := range f {
			if f[i] != wantF[i] {
				t.Fatalf("time %v: VJP f differs from Eval at %d", timeIn, i)
			}
		}

		// gp accumulates: a second call on a non-zero buffer adds.
		base := randSlice(rng, P)
		gp2 := append([]float64(nil), base...)
		ev.VJP(0.4, z, a, nil, nil, gp2, nil)
		for i := range gp2 {
			if d := math.Abs(gp2[i] - (base[i] + gp[i])); d > 1e-14*(1+math.Abs(gp[i])) {
				t.Fatalf("time %v: gp not accumulated at %d: %v vs %v+%v", timeIn, i, gp2[i], base[i], gp[i])
			}
		}

		// Subsets give identical values.
		gzOnly := randSlice(rng, len(z))
		ev.VJP(0.4, z, a, nil, gzOnly, nil, nil)
		gpOnly := make([]float64, P)
		ev.VJP(0.4, z, a, nil, nil, gpOnly, nil)
		gtOnly := -1.0
		ev.VJP(0.4, z, a, nil, nil, nil, &gtOnly)
		for i := range gz {
			if gzOnly[i] != gz[i] {
				t.Fatalf("time %v: gz-only differs at %d", timeIn, i)
			}
		}
		for i := range gp {
			if gpOnly[i] != gp[i] {
				t.Fatalf("time %v: gp-only differs at %d", timeIn, i)
			}
		}
		if math.Abs(gtOnly-gt) > 1e-14*(1+math.Abs(gt)) {
			t.Fatalf("time %v: gt-only %v, full %v", timeIn, gtOnly, gt)
		}
		// f-only VJP is a plain evaluation; all-nil does nothing.
		fOnly := make([]float64, len(z))
		ev.VJP(0.4, z, a, fOnly, nil, nil, nil)
		for i := range fOnly {
			if fOnly[i] != wantF[i] {
				t.Fatalf("time %v: f-only differs at %d", timeIn, i)
			}
		}
		ev.VJP(0.4, z, a, nil, nil, nil, nil)
	}
}

// TestMLPBatchRowsIndependent checks that each batch row is evaluated as
// its own sample: a batch of B rows equals B single-row evaluations, with
// batch sizes shrinking and growing on one evaluator.
func TestMLPBatchRowsIndependent(t *testing.T) {
	m := newTestMLP(t, 3, []int{10, 7}, Softplus, true, 4)
	rng := rand.New(rand.NewPCG(11, 12))
	ev := m.NewEvaluator()
	for _, B := range []int{1, 9, 4, 13, 2} {
		z := randSlice(rng, B*3)
		a := randSlice(rng, B*3)
		f := make([]float64, len(z))
		gz := make([]float64, len(z))
		gp := make([]float64, m.NumParams())
		var gt float64
		ev.VJP(1.5, z, a, f, gz, gp, &gt)
		sumGp := make([]float64, m.NumParams())
		sumGt := 0.0
		for b := 0; b < B; b++ {
			f1 := make([]float64, 3)
			gz1 := make([]float64, 3)
			var gt1 float64
			ev.VJP(1.5, z[b*3:b*3+3], a[b*3:b*3+3], f1, gz1, sumGp, &gt1)
			sumGt += gt1
			if d := maxRelDiff(f1, f[b*3:b*3+3]); d > 1e-15 {
				t.Fatalf("B=%d row %d: f differs by %g", B, b, d)
			}
			if d := maxRelDiff(gz1, gz[b*3:b*3+3]); d > 1e-14 {
				t.Fatalf("B=%d row %d: gz differs by %g", B, b, d)
			}
		}
		if d := maxRelDiff(sumGp, gp); d > 1e-13 {
			t.Fatalf("B=%d: summed gp differs by %g", B, d)
		}
		if math.Abs(sumGt-gt) > 1e-13*(1+math.Abs(gt)) {
			t.Fatalf("B=%d: gt %v vs summed %v", B, gt, sumGt)
		}
	}
}

func TestSoftplusSigmoidExtremes(t *testing.T) {
	for _, act := range []Activation{Softplus, Sigmoid, Tanh} {
		m := newTestMLP(t, 1, []int{1}, act, false, 1)
		W0, b0, _, _ := m.Layer(0)
		W1, b1, _, _ := m.Layer(1)
		W1[0], b1[0], b0[0] = 1, 0, 0
		ev := m.NewEvaluator()
		for _, u := range []float64{-1000, -40, -1, 0, 1, 40, 1000} {
			W0[0] = u
			f := []float64{0}
			gz := []float64{0}
			ev.VJP(0, []float64{1}, []float64{1}, f, gz, nil, nil)
			var want, wantD float64
			switch act {
			case Softplus:
				want = math.Max(u, 0) + math.Log1p(math.Exp(-math.Abs(u)))
				wantD = u / (1 + math.Exp(-u)) // ∂/∂z of softplus(u·z) at z=1
			case Sigmoid:
				s := 1 / (1 + math.Exp(-u))
				want, wantD = s, u*s*(1-s)
			case Tanh:
				want = math.Tanh(u)
				wantD = u * (1 - want*want)
			}
			if math.IsNaN(f[0]) || math.IsInf(f[0], 0) || math.IsNaN(gz[0]) {
				t.Fatalf("%v(%v): f=%v gz=%v", act, u, f[0], gz[0])
			}
			if math.Abs(f[0]-want) > 1e-15*math.Max(1, math.Abs(want)) {
				t.Errorf("%v(%v) = %v, want %v", act, u, f[0], want)
			}
			if math.Abs(gz[0]-wantD) > 1e-15*math.Max(1, math.Abs(wantD)) {
				t.Errorf("%v'(%v)·u = %v, want %v", act, u, gz[0], wantD)
			}
		}
	}
}

// TestMLPConcurrent runs many goroutines, each with its own evaluator, on
// the same parameters and compares with serial results bit for bit.
func TestMLPConcurrent(t *testing.T) {
	m := newTestMLP(t, 4, []int{16, 16}, Tanh, true, 5)
	rng := rand.New(rand.NewPCG(13, 14))
	const jobs = 32
	type job struct {
		z, a, f, gz, gp []float64
		gt              float64
	}
	js := make([]job, jobs)
	for i := range js {
		B := 1 + i%6
		js[i] = job{z: randSlice(rng, B*4), a: randSlice(rng, B*4)}
	}
	run := func(ev Evaluator, j *job, tt float64) {
		j.f = make([]float64, len(j.z))
		j.gz = make([]float64, len(j.z))
		j.gp = make([]float64, m.NumParams())
		ev.VJP(tt, j.z, j.a, j.f, j.gz, j.gp, &j.gt)
	}
	serial := make([]job, jobs)
	ev := m.NewEvaluator()
	for i := range js {
		serial[i] = js[i]
		run(ev, &serial[i], float64(i))
	}
	var wg sync.WaitGroup
	const workers = 8
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ev := m.NewEvaluator()
			for rep := 0; rep < 3; rep++ {
				for i := w; i < jobs; i += workers {
					run(ev, &js[i], float64(i))
				}
			}
		}(w)
	}
	wg.Wait()
	for i := range js {
		same := js[i].gt == serial[i].gt
		for _, pair := range [][2][]float64{{js[i].f, serial[i].f}, {js[i].gz, serial[i].gz}, {js[i].gp, serial[i].gp}} {
			for k := range pair[0] {
				same = same && pair[0][k] == pair[1][k]
			}
		}
		if !same {
			t.Fatalf("job %d: concurrent result differs from serial", i)
		}
	}
}

func TestMLPZeroAllocs(t *testing.T) {
	for _, timeIn := range []bool{false, true} {
		m := newTestMLP(t, 8, []int{32, 32}, Softplus, timeIn, 6)
		rng := rand.New(rand.NewPCG(15, 16))
		B := 16
		z := randSlice(rng, B*8)
		a := randSlice(rng, B*8)
		f := make([]float64, len(z))
		gz := make([]float64, len(z))
		gp := make([]float64, m.NumParams())
		var gt float64
		ev := m.NewEvaluator()
		ev.VJP(0, z, a, f, gz, gp, &gt) // first call sizes the scratch
		cases := map[string]func(){
			"Eval":       func() { ev.Eval(0.1, z, f) },
			"VJP-all":    func() { ev.VJP(0.1, z, a, f, gz, gp, &gt) },
			"VJP-gz":     func() { ev.VJP(0.1, z, a, nil, gz, nil, nil) },
			"VJP-gp":     func() { ev.VJP(0.1, z, a, nil, nil, gp, nil) },
			"VJP-gt":     func() { ev.VJP(0.1, z, a, nil, nil, nil, &gt) },
			"Eval-small": func() { ev.Eval(0.1, z[:3*8], f[:3*8]) },
		}
		for name, fn := range cases {
			if n := testing.AllocsPerRun(20, fn); n != 0 {
				t.Errorf("time %v: %s allocates %v per call", timeIn, name, n)
			}
		}
	}
}

func TestMLPInit(t *testing.T) {
	cfg := MLPConfig{Dim: 3, Hidden: []int{4, 5}, TimeInput: true}
	m1, err := NewMLP(cfg, rand.New(rand.NewPCG(42, 1)))
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := NewMLP(cfg, rand.New(rand.NewPCG(42, 1)))
	if want := 4*4 + 4 + 5*4 + 5 + 3*5 + 3; m1.NumParams() != want {
		t.Fatalf("NumParams %d, want %d", m1.NumParams(), want)
	}
	// Same seed, same parameters; draws follow parameter order.
	ref := rand.New(rand.NewPCG(42, 1))
	for l := 0; l < m1.NumLayers(); l++ {
		W, b, out, in := m1.Layer(l)
		if len(W) != out*in || len(b) != out {
			t.Fatalf("layer %d: len(W)=%d len(b)=%d, out=%d in=%d", l, len(W), len(b), out, in)
		}
		bound := 1 / math.Sqrt(float64(in))
		for _, v := range append(append([]float64(nil), W...), b...) {
			if want := bound * (2*ref.Float64() - 1); v != want {
				t.Fatalf("layer %d: parameter %v, want %v", l, v, want)
			}
		}
	}
	for i, v := range m1.Params() {
		if m2.Params()[i] != v {
			t.Fatal("same seed gave different parameters")
		}
	}
	m0, _ := NewMLP(cfg, nil)
	for _, v := range m0.Params() {
		if v != 0 {
			t.Fatal("nil rng: parameters not zero")
		}
	}
}

func TestMLPBindParams(t *testing.T) {
	m := newTestMLP(t, 2, []int{6}, Tanh, false, 7)
	P := m.NumParams()
	joint := make([]float64, 2*P+1)
	copy(joint[P:], m.Params())
	ev := m.NewEvaluator()
	z := []float64{0.3, -0.2}
	before := make([]float64, 2)
	ev.Eval(0, z, before)
	if err := m.BindParams(joint[P : 2*P]); err != nil {
		t.Fatal(err)
	}
	after := make([]float64, 2)
	ev.Eval(0, z, after)
	if after[0] != before[0] || after[1] != before[1] {
		t.Fatal("rebinding to a copy changed the output")
	}
	joint[2*P-1] += 1 // last bias entry of the output layer
	ev.Eval(0, z, after)
	if math.Abs(after[1]-before[1]-1) > 1e-15 {
		t.Fatalf("write through joint vector not seen: %v → %v", before[1], after[1])
	}
	if &m.Params()[0] != &joint[P] {
		t.Fatal("Params does not alias the bound slice")
	}
	err := m.BindParams(joint)
	if !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("wrong length: err %v", err)
	}
	if &m.Params()[0] != &joint[P] {
		t.Fatal("failed BindParams changed the binding")
	}
}

func TestMLPBadInput(t *testing.T) {
	for _, cfg := range []MLPConfig{
		{Dim: 0},
		{Dim: 2, Hidden: []int{3, 0}},
		{Dim: 2, Activation: Activation(17)},
	} {
		if _, err := NewMLP(cfg, nil); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("NewMLP(%+v): err %v, want ErrInvalidInput", cfg, err)
		}
	}
	m := newTestMLP(t, 2, []int{3}, Tanh, false, 1)
	ev := m.NewEvaluator()
	mustPanic := func(name string, fn func()) {
		t.Helper()
		defer func() {
			r := recover()
			err, ok := r.(error)
			if !ok || !errors.Is(err, ErrInvalidInput) {
				t.Errorf("%s: recovered %v, want an error wrapping ErrInvalidInput", name, r)
			}
		}()
		fn()
	}
	mustPanic("odd z", func() { ev.Eval(0, make([]float64, 3), make([]float64, 3)) })
	mustPanic("short dz", func() { ev.Eval(0, make([]float64, 4), make([]float64, 2)) })
	mustPanic("short a", func() { ev.VJP(0, make([]float64, 4), make([]float64, 2), nil, make([]float64, 4), nil, nil) })
	mustPanic("short gp", func() { ev.VJP(0, make([]float64, 4), make([]float64, 4), nil, nil, make([]float64, 2), nil) })
}

func TestActivationNames(t *testing.T) {
	for _, a := range allActivations {
		got, err := ParseActivation(a.String())
		if err != nil || got != a {
			t.Errorf("ParseActivation(%q) = %v, %v", a.String(), got, err)
		}
	}
	if a, err := ParseActivation("ReLU"); err != nil || a != ReLU {
		t.Errorf("case-insensitive parse: %v %v", a, err)
	}
	if _, err := ParseActivation("gelu"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("unknown name: err %v", err)
	}
	if s := Activation(9).String(); s != "Activation(9)" {
		t.Errorf("String of invalid: %q", s)
	}
}

// TestAdamHandComputed follows two parameters through three steps computed

// TestAdamCannotOverflow: the scan that lets Adam.Step update in one pass
// says no whenever any input is NaN or ±Inf, a second moment is negative,
// or g² could overflow, wherever the bad element sits (vector lanes or
// the scalar remainder), on both paths; and yes for ordinary values.
func TestAdamCannotOverflow(t *testing.T) {
	defer func() { useFMA = haveFMA }()
	const n = 11
	for _, fma := range []bool{haveFMA, false} {
		useFMA = fma
		fresh := func() [4][]float64 {
			var a [4][]float64
			for k := range a {
				a[k] = make([]float64, n)
				for i := range a[k] {
					a[k][i] = 0.5 + float64(i)/n
				}
			}
			return a
		}
		a := fresh()
		if !adamCannotOverflow(a[0], a[1], a[2], a[3], 0.01, 1e-3, 1e-8) {
			t.Fatalf("fma %v: ordinary values rejected", fma)
		}
		for k := range a {
			for _, i := range []int{0, 3, 5, n - 1} {
				for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1, 1e200} {
					if bad == -1 && k != 3 || bad == 1e200 && k != 1 {
						continue // −1 is bad only in v; 1e200 only in g (g² overflows)
					}
					a := fresh()
					a[k][i] = bad
					if adamCannotOverflow(a[0], a[1], a[2], a[3], 0.01, 1e-3, 1e-8) {
						t.Errorf("fma %v: array %d element %d = %v accepted", fma, k, i, bad)
					}
				}
			}
		}
	}
}

// TestAdamKernelMatchesGo: the vector update pass gives what the scalar
// adamUpdate gives (the same operations in the same order; 2 ulp allowed
// for a build that fuses multiply–adds), with and without weight decay, on
// lengths that leave a scalar remainder.
func TestAdamKernelMatchesGo(t *testing.T) {
	if !haveFMA {
		t.Skip("no assembly kernels (purego build or no AVX2/FMA)")
	}
	defer func() { useFMA = haveFMA }()
	rng := rand.New(rand.NewPCG(41, 42))
	for _, n := range []int{1, 7, 64, 1003} {
		for _, wd := range []float64{0, 0.01} {
			p0, g := randSlice(rng, n), randSlice(rng, n)
			var outs [2][3][]float64
			for k, fma := range []bool{true, false} {
				useFMA = fma
				o := NewAdam(n)
				o.WeightDecay = wd
				p := slices.Clone(p0)
				for step := 0; step < 3; step++ {
					if err := o.Step(p, g); err != nil {
						t.Fatal(err)
					}
				}
				outs[k] = [3][]float64{p, o.M, o.V}
			}
			for q, name := range []string{"params", "M", "V"} {
				for i := range outs[0][q] {
					if d := ulpDiff(outs[0][q][i], outs[1][q][i]); d > 2 {
						t.Fatalf("n %d wd %v: %s[%d] = %v (kernel) vs %v (Go), %v ulp", n, wd, name, i, outs[0][q][i], outs[1][q][i], d)
					}
				}
			}
		}
	}
}

// by hand from the update rule θ ← θ − lr/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε).
func TestAdamHandComputed(t *testing.T) {
	opt := NewAdam(2)
	opt.LR = 0.1
	params := []float64{1, -2}
	grads := [][]float64{{0.5, -1}, {0.25, 2}, {-1, 0}}
	// Hand computation with β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
	// Step 1: m = 0.1g, v = 0.001g²; m̂ = g, v̂ = g² → Δ = −0.1·sign(g)·|g|/(|g|+1e-8).
	// Step 2 (param 0): m = 0.9·0.05 + 0.1·0.25 = 0.07, v = 0.999·0.00025 + 0.001·0.0625 = 0.00031225;
	//   m̂ = 0.07/0.19, v̂ = 0.00031225/0.001999.
	// Step 3 (param 0): m = 0.063 − 0.1 = −0.037, v = 0.999·0.00031225 + 0.001 = 0.00131193775;
	//   m̂ = −0.037/0.271, v̂ = 0.00131193775/0.002997001.
	// Param 1: step 2: m = −0.09 + 0.2 = 0.11, v = 0.000999 + 0.004 = 0.004999;
	//   step 3: m = 0.099, v = 0.004994001.
	p0 := 1 - 0.1*0.5/(0.5+1e-8)
	p0 -= 0.1 * (0.07 / 0.19) / (math.Sqrt(0.00031225/0.001999) + 1e-8)
	p0 -= 0.1 * (-0.037 / 0.271) / (math.Sqrt(0.00131193775/0.002997001) + 1e-8)
	p1 := -2 + 0.1*1/(1+1e-8)
	p1 -= 0.1 * (0.11 / 0.19) / (math.Sqrt(0.004999/0.001999) + 1e-8)
	p1 -= 0.1 * (0.099 / 0.271) / (math.Sqrt(0.004994001/0.002997001) + 1e-8)
	for _, g := range grads {
		if err := opt.Step(params, g); err != nil {
			t.Fatal(err)
		}
	}
	if opt.T != 3 {
		t.Fatalf("T = %d", opt.T)
	}
	want := []float64{p0, p1}
	if d := maxRelDiff(params, want); d > 1e-13 {
		t.Fatalf("params %v, want %v (rel %g)", params, want, d)
	}
	if d := maxRelDiff(opt.M, []float64{-0.037, 0.099}); d > 1e-14 {
		t.Fatalf("M = %v", opt.M)
	}
	if d := maxRelDiff(opt.V, []float64{0.00131193775, 0.004994001}); d > 1e-14 {
		t.Fatalf("V = %v", opt.V)
	}
}

func TestAdamWeightDecayAndResume(t *testing.T) {
	// Weight decay adds wd·θ to the gradient before the moments.
	a := NewAdam(1)
	a.WeightDecay = 0.5
	b := NewAdam(1)
	pa, pb := []float64{2}, []float64{2}
	if err := a.Step(pa, []float64{0.3}); err != nil {
		t.Fatal(err)
	}
	if err := b.Step(pb, []float64{0.3 + 0.5*2}); err != nil {
		t.Fatal(err)
	}
	if pa[0] != pb[0] {
		t.Fatalf("weight decay: %v vs %v", pa[0], pb[0])
	}

	// Resuming from copied state reproduces the run exactly.
	rng := rand.New(rand.NewPCG(1, 1))
	full := NewAdam(4)
	pf := randSlice(rng, 4)
	grads := make([][]float64, 6)
	for i := range grads {
		grads[i] = randSlice(rng, 4)
	}
	pr := append([]float64(nil), pf...)
	for _, g := range grads {
		_ = full.Step(pf, g)
	}
	first := NewAdam(4)
	for _, g := range grads[:3] {
		_ = first.Step(pr, g)
	}
	resumed := &Adam{LR: first.LR, Beta1: first.Beta1, Beta2: first.Beta2, Eps: first.Eps,
		T: first.T, M: append([]float64(nil), first.M...), V: append([]float64(nil), first.V...)}
	for _, g := range grads[3:] {
		_ = resumed.Step(pr, g)
	}
	for i := range pf {
		if pf[i] != pr[i] {
			t.Fatalf("resumed run differs at %d", i)
		}
	}
}

func TestAdamBadInput(t *testing.T) {
	p := []float64{1, 2}
	tests := []struct {
		name string
		opt  *Adam
		grad []float64
		want error
	}{
		{"length", NewAdam(2), []float64{1}, ErrInvalidInput},
		{"moments", NewAdam(3), []float64{1, 1}, ErrInvalidInput},
		{"lr", &Adam{LR: -1, Beta1: 0.9, Beta2: 0.999}, []float64{1, 1}, ErrInvalidInput},
		{"beta1", &Adam{LR: 1, Beta1: 1, Beta2: 0.999}, []float64{1, 1}, ErrInvalidInput},
		{"beta2", &Adam{LR: 1, Beta1: 0.9, Beta2: math.NaN()}, []float64{1, 1}, ErrInvalidInput},
		{"nan grad", NewAdam(2), []float64{1, math.NaN()}, ErrNonFinite},
	}
	for _, tc := range tests {
		err := tc.opt.Step(p, tc.grad)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if p[0] != 1 || p[1] != 2 || tc.opt.T != 0 {
			t.Errorf("%s: state modified on error", tc.name)
		}
	}
}

// mlpFlops counts 2·B·in·out per matrix product of a forward pass.
func mlpFlops(m *MLP, B int) float64 {
	fl := 0.0
	for l := 0; l < m.NumLayers(); l++ {
		_, _, out, in := m.Layer(l)
		fl += 2 * float64(B*in*out)
	}
	return fl
}

var benchSizes = []struct{ D, H, B int }{{2, 32, 64}, {2, 128, 256}, {16, 256, 128}, {64, 512, 64}}

func BenchmarkMLPForward(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(fmt.Sprintf("D%d_H%d_B%d", s.D, s.H, s.B), func(b *testing.B) {
			m := newTestMLP(b, s.D, []int{s.H, s.H}, Tanh, false, 1)
			rng := rand.New(rand.NewPCG(1, 2))
			z := randSlice(rng, s.B*s.D)
			f := make([]float64, len(z))
			ev := m.NewEvaluator()
			ev.Eval(0, z, f)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPUTime()
			for i := 0; i < b.N; i++ {
				ev.Eval(0, z, f)
			}
			reportCPUGFLOPS(b, mlpFlops(m, s.B), cpu0)
		})
	}
}

// BenchmarkMLPReverse times one VJP with every output (f, gz, gp): a
// forward pass plus the two products per layer of the reverse pass.
func BenchmarkMLPReverse(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(fmt.Sprintf("D%d_H%d_B%d", s.D, s.H, s.B), func(b *testing.B) {
			m := newTestMLP(b, s.D, []int{s.H, s.H}, Tanh, false, 1)
			rng := rand.New(rand.NewPCG(1, 2))
			z := randSlice(rng, s.B*s.D)
			a := randSlice(rng, s.B*s.D)
			f := make([]float64, len(z))
			gz := make([]float64, len(z))
			gp := make([]float64, m.NumParams())
			ev := m.NewEvaluator()
			ev.VJP(0, z, a, f, gz, gp, nil)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPUTime()
			for i := 0; i < b.N; i++ {
				ev.VJP(0, z, a, f, gz, gp, nil)
			}
			reportCPUGFLOPS(b, 3*mlpFlops(m, s.B), cpu0)
		})
	}
}

func ExampleNewMLP() {
	// f(z) = W_1 tanh(W_0 z + b_0) + b_1 with D = 1 and two hidden units.
	m, err := NewMLP(MLPConfig{Dim: 1, Hidden: []int{2}, Activation: Tanh}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	copy(m.Params(), []float64{
		1, -1, // W_0 (2×1)
		0, 0, // b_0
		2, 3, // W_1 (1×2)
		0.5, // b_1
	})
	ev := m.NewEvaluator()
	z := []float64{0, 1} // a batch of two samples
	f := make([]float64, 2)
	ev.Eval(0, z, f)
	fmt.Printf("f = %.4f %.4f\n", f[0], f[1])
	// Output: f = 0.5000 -0.2616
}

func ExampleEvaluator_VJP() {
	m, _ := NewMLP(MLPConfig{Dim: 1, Hidden: []int{1}, Activation: Identity}, nil)
	copy(m.Params(), []float64{2, 0, 3, 0}) // f(z) = 3·(2z) = 6z
	ev := m.NewEvaluator()
	gz := make([]float64, 1)
	gp := make([]float64, m.NumParams())
	ev.VJP(0, []float64{1}, []float64{1}, nil, gz, gp, nil)
	fmt.Println("df/dz:", gz[0])
	fmt.Println("df/dθ:", gp) // W_0: 3z, b_0: 3, W_1: 2z, b_1: 1
	// Output:
	// df/dz: 6
	// df/dθ: [3 3 2 1]
}

func ExampleAdam() {
	// Minimise (θ − 3)².
	theta := []float64{0}
	opt := NewAdam(1)
	opt.LR = 0.1
	for i := 0; i < 500; i++ {
		grad := []float64{2 * (theta[0] - 3)}
		if err := opt.Step(theta, grad); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Printf("θ = %.3f after %d steps\n", theta[0], opt.T)
	// Output: θ = 3.000 after 500 steps
}

// withBlockWork runs fn with the MLP's split threshold set to w, so that
// small networks exercise the parallel paths.
func withBlockWork(w int, fn func()) {
	old := mlpBlockWork
	mlpBlockWork = w
	defer func() { mlpBlockWork = old }()
	fn()
}

type vjpOut struct {
	f, gz, gp []float64
	gt        float64
}

func vjpAll(m *MLP, ev Evaluator, z, a []float64) vjpOut {
	o := vjpOut{f: make([]float64, len(z)), gz: make([]float64, len(z)), gp: make([]float64, m.NumParams())}
	ev.VJP(0.3, z, a, o.f, o.gz, o.gp, &o.gt)
	return o
}

func sameBits(x, y []float64) bool {
	for i := range x {
		if math.Float64bits(x[i]) != math.Float64bits(y[i]) {
			return false
		}
	}
	return len(x) == len(y)
}

// TestSplitRows: the row ranges are contiguous, cover [0, n), start on
// multiples of the grain (tile height, or two rows with the AVX-512
// kernels), and differ by at most one grain, the longer ones first.
func TestSplitRows(t *testing.T) {
	defer func(old bool) { useAVX512 = old }(useAVX512)
	for _, wide := range []bool{false, haveAVX512} {
		useAVX512 = wide
		testSplitRows(t, rowGrain())
	}
}

func testSplitRows(t *testing.T, grain int) {
	for n := 0; n <= 200; n++ {
		for parts := 1; parts <= 9; parts++ {
			prev, prevTiles := 0, math.MaxInt
			for i := 0; i < parts; i++ {
				lo, hi := splitRows(n, parts, i)
				tiles := (hi - lo + grain - 1) / grain
				if lo != prev || hi < lo || lo%grain != 0 && lo != n || tiles > prevTiles {
					t.Fatalf("n %d parts %d: range %d is [%d, %d) after %d (%d tiles after %d)", n, parts, i, lo, hi, prev, tiles, prevTiles)
				}
				if i > 0 && hi < n && prevTiles-tiles > 1 {
					t.Fatalf("n %d parts %d: range %d has %d tiles, the one before %d", n, parts, i, tiles, prevTiles)
				}
				prev, prevTiles = hi, tiles
			}
			if prev != n {
				t.Fatalf("n %d parts %d: ranges end at %d", n, parts, prev)
			}
		}
	}
}

// TestMLPSetParamGrad: with setParamGrad(true) the VJP overwrites gp (a
// buffer full of garbage comes back equal, bit for bit, to the accumulation
// into zeros), on the assembly and the Go path, split or not, with and
// without time input; with setParamGrad(false) it adds again.
func TestMLPSetParamGrad(t *testing.T) {
	defer func() { useFMA = haveFMA }()
	for _, fma := range []bool{haveFMA, false} {
		useFMA = fma
		for _, timeIn := range []bool{false, true} {
			for _, B := range []int{3, 96} {
				m := newTestMLP(t, 3, []int{40, 24}, Tanh, timeIn, 9)
				rng := rand.New(rand.NewPCG(3, uint64(B)))
				z, a := randSlice(rng, B*3), randSlice(rng, B*3)
				var ev Evaluator
				withBlockWork(64, func() {
					ev = m.NewEvaluator()
					want := vjpAll(m, ev, z, a).gp
					if !setParamGrad(ev, true) {
						t.Fatal("the MLP evaluator cannot set gp")
					}
					gp := randSlice(rng, m.NumParams())
					ev.VJP(0.3, z, a, nil, nil, gp, nil)
					if !sameBits(gp, want) {
						t.Errorf("fma %v time %v B %d: set gp differs from the accumulated one", fma, timeIn, B)
					}
					setParamGrad(ev, false)
					ev.VJP(0.3, z, a, nil, nil, gp, nil)
					// Adding the batch's terms to gp rounds differently
					// from doubling their sum, more so where the terms
					// cancel (and where Go fuses the multiply–adds, as on
					// arm64): a relative bound with a floor at the
					// gradient's scale.
					floor := slices.Max(absAll(want))
					for i := range gp {
						if d := gp[i] - 2*want[i]; math.Abs(d) > 1e-12*math.Max(math.Abs(want[i]), floor) {
							t.Fatalf("fma %v time %v B %d: after setParamGrad(false) gp[%d] = %v, want %v", fma, timeIn, B, i, gp[i], 2*want[i])
						}
					}
				})
			}
		}
	}
}

// TestMLPSplitDeterministic: with the work split into row blocks and
// output-row chunks, every output is bit-identical for GOMAXPROCS 1, 2 and
// 8, and agrees with the unsplit evaluation (f, gz and gp exactly, gt to
// rounding: it is summed per block).
func TestMLPSplitDeterministic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, timeIn := range []bool{false, true} {
		m := newTestMLP(t, 5, []int{24, 17}, Tanh, timeIn, 11)
		rng := rand.New(rand.NewPCG(21, 22))
		B := 61
		z, a := randSlice(rng, B*5), randSlice(rng, B*5)
		runtime.GOMAXPROCS(1)
		ref := vjpAll(m, m.NewEvaluator(), z, a)
		withBlockWork(64, func() {
			ev := m.NewEvaluator()
			if !ev.(*mlpEvaluator).splits(B) {
				t.Fatal("threshold too high: no split")
			}
			var first vjpOut
			for i, procs := range []int{1, 2, 8, 2} {
				runtime.GOMAXPROCS(procs)
				got := vjpAll(m, ev, z, a)
				if i == 0 {
					first = got
					if !sameBits(got.f, ref.f) || !sameBits(got.gz, ref.gz) || !sameBits(got.gp, ref.gp) {
						t.Errorf("time %v: split result differs from unsplit", timeIn)
					}
					if math.Abs(got.gt-ref.gt) > 1e-13*math.Max(1, math.Abs(ref.gt)) {
						t.Errorf("time %v: gt %v, unsplit %v", timeIn, got.gt, ref.gt)
					}
					continue
				}
				if !sameBits(got.f, first.f) || !sameBits(got.gz, first.gz) || !sameBits(got.gp, first.gp) ||
					math.Float64bits(got.gt) != math.Float64bits(first.gt) {
					t.Errorf("time %v: GOMAXPROCS=%d changes the result", timeIn, procs)
				}
				f := make([]float64, len(z))
				ev.Eval(0.3, z, f)
				if !sameBits(f, first.f) {
					t.Errorf("time %v: Eval at GOMAXPROCS=%d differs from VJP's f", timeIn, procs)
				}
			}
		})
	}
}

// TestMLPSplitZeroAllocs: the parallel paths allocate nothing once the
// helpers run.
func TestMLPSplitZeroAllocs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	withBlockWork(64, func() {
		m := newTestMLP(t, 4, []int{32, 32}, Tanh, true, 6)
		rng := rand.New(rand.NewPCG(15, 16))
		B := 48
		z, a := randSlice(rng, B*4), randSlice(rng, B*4)
		f, gz, gp := make([]float64, len(z)), make([]float64, len(z)), make([]float64, m.NumParams())
		var gt float64
		ev := m.NewEvaluator()
		ev.VJP(0, z, a, f, gz, gp, &gt)
		for name, fn := range map[string]func(){
			"Eval":    func() { ev.Eval(0.1, z, f) },
			"VJP-all": func() { ev.VJP(0.1, z, a, f, gz, gp, &gt) },
			"VJP-gp":  func() { ev.VJP(0.1, z, a, nil, nil, gp, nil) },
		} {
			if n := testing.AllocsPerRun(50, fn); n != 0 {
				t.Errorf("%s allocates %v per call", name, n)
			}
		}
	})
}

// TestMLPHelpersStop: an evaluator's helper goroutines end once it is
// unreachable.
func TestMLPHelpersStop(t *testing.T) {
	if runtime.GOARCH == "wasm" {
		t.Skip("WebAssembly runs one thread: the pool never starts helpers")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	base := settledGoroutines()
	// The evaluators stay reachable until the helpers are counted: a
	// collection in the loop could otherwise stop them before the count.
	var live []Evaluator
	withBlockWork(64, func() {
		m := newTestMLP(t, 4, []int{32, 32}, Tanh, false, 6)
		rng := rand.New(rand.NewPCG(15, 16))
		z := randSlice(rng, 48*4)
		for i := 0; i < 3; i++ {
			ev := m.NewEvaluator()
			vjpAll(m, ev, z, z)
			live = append(live, ev)
		}
	})
	expectHelpersStop(t, base, live)
}

// settledGoroutines returns the number of goroutines once the helpers of
// earlier tests' evaluators and solvers have stopped (collections run their
// finalizers), so that they are neither counted as a test's own helpers nor
// mistaken for helpers that failed to stop.
func settledGoroutines() int {
	base := runtime.NumGoroutine()
	for settle := time.Now().Add(2 * time.Second); time.Now().Before(settle); {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == base {
			break
		}
		base = n
	}
	return base
}

// expectHelpersStop fails t unless more goroutines than base are running
// and they all end within 5 s (a collection at each poll runs the
// finalizers that stop unreachable evaluators' helpers). live is kept
// reachable until the helpers have been counted.
func expectHelpersStop(t *testing.T, base int, live any) {
	t.Helper()
	if runtime.NumGoroutine() <= base {
		t.Fatal("no helpers were started")
	}
	runtime.KeepAlive(live)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines left, %d before", n, base)
	}
}

// TestTaskPoolPanic: a panic in a task, on any goroutine, reaches the
// caller after every task has stopped, and the pool stays usable.
func TestTaskPoolPanic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	p := new(taskPool)
	defer p.close()
	for _, bad := range []int{0, 5, 15} {
		func() {
			defer func() {
				if v := recover(); v != fmt.Sprint("task ", bad) {
					t.Errorf("recovered %v, want task %d", v, bad)
				}
			}()
			p.run(16, func(i int) {
				if i == bad {
					panic(fmt.Sprint("task ", i))
				}
			})
		}()
	}
	var hits [64]int
	p.run(64, func(i int) { hits[i]++ })
	for i, h := range hits {
		if h != 1 {
			t.Fatalf("task %d ran %d times", i, h)
		}
	}
}

// TestTaskPoolHandOff: many short jobs in a row, with task counts that
// change from job to job and pauses longer than the spin window now and
// then (so that helpers and the caller go through both the spinning and
// the blocking hand-off), run every task of every job exactly once and
// never run a job's task after run has returned. A lost or stale wake-up
// shows as a hang (the test binary's timeout), a count off by one, or a
// race report under -race.
func TestTaskPoolHandOff(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	p := new(taskPool)
	defer p.close()
	var counts [5]int
	jobs := 20000
	if testing.Short() {
		jobs = 4000
	}
	for it := 0; it < jobs; it++ {
		n := 1 + it%len(counts)
		var ran [5]atomic.Int32
		p.run(n, func(i int) {
			ran[i].Add(1)
			if it%500 == 0 {
				time.Sleep(2 * poolSpin)
			}
		})
		for i := range ran {
			want := int32(0)
			if i < n {
				want = 1
			}
			if got := ran[i].Load(); got != want {
				t.Fatalf("job %d (%d tasks): task %d ran %d times", it, n, i, got)
			}
			counts[i] += int(ran[i].Load())
		}
		if it%1500 == 0 {
			time.Sleep(3 * poolSpin)
		}
	}
	t.Log("tasks run per index:", counts)
}

var calibrate = flag.Bool("calibrate", false, "run the calibration of the parallel thresholds (TestCalibrate*)")

// TestCalibrateMLPSplit chooses mlpBlockWork, in the style of
// math/big/calibrate_test.go: run with
//
//	go test -run TestCalibrateMLPSplit -calibrate -v
//
// on an otherwise idle machine with GOMAXPROCS ≥ 2. For networks D → H → H → D
// of growing forward work W = B·Σ in·out it times one full VJP serially
// (threshold above W) and split into two row blocks (threshold W/2), and
// reports the smallest work at which the split is faster. Half of that is
// the work one task must carry to pay for its fork–join, which is what
// mlpBlockWork measures.
func TestCalibrateMLPSplit(t *testing.T) {
	if !*calibrate {
		t.Skip("pass -calibrate to run")
	}
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs GOMAXPROCS ≥ 2")
	}
	const D, B = 4, 48
	best := func(fn func()) time.Duration {
		fn()
		b := time.Duration(math.MaxInt64)
		for rep := 0; rep < 7; rep++ {
			n := 0
			start := time.Now()
			for time.Since(start) < 20*time.Millisecond {
				fn()
				n++
			}
			b = min(b, time.Since(start)/time.Duration(n))
		}
		return b
	}
	crossover := 0
	for _, H := range []int{8, 12, 16, 24, 32, 48, 64, 96, 128} {
		m := newTestMLP(t, D, []int{H, H}, Tanh, false, 1)
		rng := rand.New(rand.NewPCG(1, 2))
		z, a := randSlice(rng, B*D), randSlice(rng, B*D)
		f, gz, gp := make([]float64, len(z)), make([]float64, len(z)), make([]float64, m.NumParams())
		work := B * (D*H + H*H + H*D)
		var serial, split time.Duration
		withBlockWork(4*work, func() {
			ev := m.NewEvaluator()
			serial = best(func() { ev.VJP(0, z, a, f, gz, gp, nil) })
		})
		withBlockWork(work/2, func() {
			ev := m.NewEvaluator()
			split = best(func() { ev.VJP(0, z, a, f, gz, gp, nil) })
		})
		t.Logf("H=%4d work=%8d  serial %9v  split %9v  speed-up %.2f", H, work, serial, split, float64(serial)/float64(split))
		if split >= serial {
			crossover = 0 // the split must pay at every larger size too
		} else if crossover == 0 {
			crossover = work
		}
	}
	t.Logf("split pays from forward work ≈ %d: mlpBlockWork ≈ %d (now %d)", crossover, crossover/2, mlpBlockWork)
}

// TestCalibrateQuadrature chooses quadSerialWork the same way: a GQ
// gradient on a small autonomous network, with the quadrature chunks run
// serially or fanned out, for growing widths.
func TestCalibrateQuadrature(t *testing.T) {
	if !*calibrate {
		t.Skip("pass -calibrate to run")
	}
	for _, H := range []int{4, 8, 16, 32, 64} {
		m, z0, ts, targets := gradBenchProblem(t, 2, H, 8)
		loss := testMSE(z0, ts, targets)
		g, err := NewGradientSolver(m, GradOptions{Method: GQAdjoint, Forward: Options{RTol: 1e-6, ATol: 1e-6}, GQ: GQOptions{C: 1}})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := g.Gradient(z0, ts, loss)
		work := r.Stats.QuadratureNodes * len(z0) * m.NumParams()
		timeIt := func(thr int) time.Duration {
			old := quadSerialWork
			quadSerialWork = thr
			defer func() { quadSerialWork = old }()
			b := time.Duration(math.MaxInt64)
			for rep := 0; rep < 5; rep++ {
				start := time.Now()
				n := 0
				for time.Since(start) < 20*time.Millisecond {
					g.Gradient(z0, ts, loss)
					n++
				}
				b = min(b, time.Since(start)/time.Duration(n))
			}
			return b
		}
		serial, fan := timeIt(math.MaxInt), timeIt(0)
		t.Logf("H=%3d nodes·n·P=%9d  serial %9v  fan-out %9v  speed-up %.2f", H, work, serial, fan, float64(serial)/float64(fan))
	}
}

// softplusRef and sigmoidRef are the math-library evaluations the fast
// activations replace (the same formulas: max(u, 0) + log1p(e^−|u|), and
// σ from e = e^−|u|).
func softplusRef(u float64) (sp, sig float64) {
	e := math.Exp(-math.Abs(u))
	sp = math.Max(u, 0) + math.Log1p(e)
	if u < 0 {
		return sp, e / (1 + e)
	}
	return sp, 1 / (1 + e)
}

func sigmoidRef(u float64) float64 {
	if u >= 0 {
		return 1 / (1 + math.Exp(-u))
	}
	e := math.Exp(u)
	return e / (1 + e)
}

// activationSweep calls f on a dense grid of u over [−lim, lim] (step
// lim/n, so every binade of e^−|u| down to the subnormals is visited) and
// on the grid's neighbours one ulp away.
func activationSweep(lim float64, n int, f func(u float64)) {
	for i := -n; i <= n; i++ {
		u := float64(i) * (lim / float64(n))
		f(u)
		f(math.Nextafter(u, math.Inf(1)))
	}
}

// TestSoftplusFastAccuracy bounds the fast softplus, σ and e^−|u| against
// the math library over a dense sweep of |u| ≤ 760 (e^−|u| subnormal from
// |u| ≈ 708, zero beyond 745). The bounds are the measured maxima (3 ulp
// for softplus, 2 for σ and e^−|u|); against values computed to 60 digits with mpmath, 30 000 random
// points gave at most 2.44 ulp for softplus and 1.97 ulp for σ, where the
// math-library formulas themselves reach 1.61 and 2.24 ulp.
func TestSoftplusFastAccuracy(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	var maxSp, maxSig, maxE, maxSigm float64
	var atSp, atSig, atE float64
	activationSweep(760, n, func(u float64) {
		sp, sig := softplusFast(u)
		rsp, rsig := softplusRef(u)
		if d := ulpDiff(sp, rsp); d > maxSp {
			maxSp, atSp = d, u
		}
		if d := ulpDiff(sig, rsig); d > maxSig {
			maxSig, atSig = d, u
		}
		if d := ulpDiff(expNegAbs(u), math.Exp(-math.Abs(u))); d > maxE {
			maxE, atE = d, u
		}
		if d := ulpDiff(sigmoidFast(u), sigmoidRef(u)); d > maxSigm {
			maxSigm = d
		}
	})
	t.Logf("max ulp vs math: softplus %v (u=%v), σ %v (u=%v), e^-|u| %v (u=%v), sigmoid %v",
		maxSp, atSp, maxSig, atSig, maxE, atE, maxSigm)
	if maxSp > 3 || maxSig > 2 || maxE > 2 || maxSigm > 2 {
		t.Errorf("accuracy bound exceeded: softplus %v > 3, σ %v > 2, e %v > 2 or sigmoid %v > 2 ulp", maxSp, maxSig, maxE, maxSigm)
	}
	// Special values: exact results.
	nan := math.NaN()
	for _, c := range []struct{ u, sp, sig float64 }{
		{math.Inf(1), math.Inf(1), 1},
		{math.Inf(-1), 0, 0},
		{0, math.Ln2, 0.5},
		{math.Copysign(0, -1), math.Ln2, 0.5},
		{1e300, 1e300, 1},
		{-1e300, 0, 0},
		{-800, 0, 0},
		{-745, 5e-324, 5e-324}, // e^−745 rounds to the smallest subnormal
		{nan, nan, nan},
	} {
		sp, sig := softplusFast(c.u)
		if ulpDiff(sp, c.sp) != 0 || ulpDiff(sig, c.sig) != 0 {
			t.Errorf("softplusFast(%v) = %v, %v; want %v, %v", c.u, sp, sig, c.sp, c.sig)
		}
		if s := sigmoidFast(c.u); ulpDiff(s, c.sig) != 0 {
			t.Errorf("sigmoidFast(%v) = %v, want %v", c.u, s, c.sig)
		}
	}
}

// TestSoftplusRow checks the two-pass Go row evaluation against softplusFast
// element by element (bit for bit), with and without the derivative row,
// for lengths around the chunk size.
func TestSoftplusRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 5, 63, 64, 65, 200} {
		u, bias := randSlice(rng, n), randSlice(rng, n)
		for i := range u {
			u[i] *= 20
		}
		row, row2, drow := slices.Clone(u), slices.Clone(u), make([]float64, n)
		softplusRowGo(row, drow, bias)
		softplusRowGo(row2, nil, bias)
		for j := range u {
			sp, sig := softplusFast(u[j] + bias[j])
			if row[j] != sp || drow[j] != sig || row2[j] != sp {
				t.Fatalf("n=%d, j=%d: got %v, %v (no deriv %v), want %v, %v", n, j, row[j], drow[j], row2[j], sp, sig)
			}
		}
	}
}

// TestActivationRows bounds the row activations MLP layers use (the AVX2
// kernels with their Go tails, or the pure-Go rows under -tags purego)
// against the math library over the sweeps of TestTanhFastAccuracy and
// TestSoftplusFastAccuracy, by the same bounds: tanh 3 ulp, softplus 3 and
// its derivative σ 2, sigmoid 2. The derivatives 1 − h² and s(1 − s) are
// formulas of the computed value (ill-conditioned as relative errors near
// saturation), so they are checked absolutely against the same formula on
// the row's own output, to 2⁻⁵² (fused or not, one rounding apart). Row
// lengths 4k+3 exercise the Go tails; special values are included.
func TestActivationRows(t *testing.T) {
	n := 400_000
	if testing.Short() {
		n = 40_000
	}
	for _, c := range []struct {
		act  Activation
		lim  float64
		ref  func(u float64) float64
		maxY float64
		dRef func(u, y float64) (d float64, ulps bool)
	}{
		{Tanh, 25, math.Tanh, 3, func(u, h float64) (float64, bool) { return 1 - h*h, false }},
		{Softplus, 760, func(u float64) float64 { sp, _ := softplusRef(u); return sp }, 3,
			func(u, _ float64) (float64, bool) { _, s := softplusRef(u); return s, true }},
		{Sigmoid, 760, sigmoidRef, 2, func(u, s float64) (float64, bool) { return s * (1 - s), false }},
	} {
		var us []float64
		activationSweep(c.lim, n, func(u float64) { us = append(us, u) })
		us = append(us, 0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), 1e-300, -5e-324, 1e300, -1e300, 30, -30)
		us = us[:len(us)/4*4+3]
		row, drow, bias := slices.Clone(us), make([]float64, len(us)), make([]float64, len(us))
		biasActivate(c.act, row, drow, bias, 1)
		var maxY, maxD float64
		for j, u := range us {
			dy := ulpDiff(row[j], c.ref(u))
			d, ulps := c.dRef(u, row[j])
			var dd float64
			switch {
			case ulps:
				dd = ulpDiff(drow[j], d)
				if dd > 2 {
					t.Errorf("%v′(%v) = %v, reference %v (%v ulp)", c.act, u, drow[j], d, dd)
				}
			case math.IsNaN(d):
				if !math.IsNaN(drow[j]) {
					t.Errorf("%v′(%v) = %v, want NaN", c.act, u, drow[j])
				}
			default:
				dd = math.Abs(drow[j]-d) / 0x1p-52
				if dd > 1 {
					t.Errorf("%v′(%v) = %v, want %v", c.act, u, drow[j], d)
				}
			}
			maxY, maxD = max(maxY, dy), max(maxD, dd)
			if dy > c.maxY {
				t.Errorf("%v(%v) = %v, reference %v (%v ulp)", c.act, u, row[j], c.ref(u), dy)
			}
		}
		t.Logf("%v (assembly %v): max %v ulp, derivative %v", c.act, useFMA, maxY, maxD)
		// Without the derivative row the values are the same.
		row2 := slices.Clone(us)
		biasActivate(c.act, row2, nil, bias, 1)
		if !sameBits(row, row2) {
			t.Errorf("%v: values differ without the derivative row", c.act)
		}
	}
}

// TestActivationAVX512MatchesAVX2: the eight-lane activation kernel
// computes every element with the operations of the four-lane one, so rows
// (values and derivatives, for tanh, softplus and sigmoid, lengths that
// leave remainders for the narrower kernel and for Go) are bit-identical
// with and without it, special values included.
func TestActivationAVX512MatchesAVX2(t *testing.T) {
	if !haveAVX512 {
		t.Skip("no AVX-512 on this machine (or a purego build)")
	}
	defer func(old bool) { useAVX512 = old }(useAVX512)
	var us []float64
	activationSweep(760, 40_000, func(u float64) { us = append(us, u) })
	us = append(us, 0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), -math.NaN(), 1e-300, -5e-324, 1e300, -1e300, 22, -22, 30, -30, 750, -750)
	for _, n := range []int{len(us), len(us) - 1, len(us) - 4, len(us) - 5, 12, 8, 4} {
		u := us[len(us)-n:]
		bias := make([]float64, n)
		for j := range bias {
			bias[j] = 0.25 * float64(j%3-1)
		}
		for _, act := range []Activation{Tanh, Softplus, Sigmoid} {
			var rows, drows [2][]float64
			for i, wide := range []bool{true, false} {
				useAVX512 = wide
				rows[i], drows[i] = slices.Clone(u), make([]float64, n)
				biasActivate(act, rows[i], drows[i], bias, 1)
			}
			if !sameBits(rows[0], rows[1]) || !sameBits(drows[0], drows[1]) {
				t.Errorf("%v, %d elements: AVX-512 and AVX2 rows differ", act, n)
			}
		}
	}
}

// TestTanhFastAccuracy bounds tanhFast against math.Tanh over a dense sweep
// of |x| ≤ 25 (beyond the saturation point) and checks special values.
func TestTanhFastAccuracy(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	var maxD, at float64
	activationSweep(25, n, func(x float64) {
		if d := ulpDiff(tanhFast(x), math.Tanh(x)); d > maxD {
			maxD, at = d, x
		}
	})
	for _, x := range []float64{1e-300, 5e-324, 1e-10, 1e-5} {
		for _, s := range []float64{1, -1} {
			if d := ulpDiff(tanhFast(s*x), math.Tanh(s*x)); d > maxD {
				maxD, at = d, s*x
			}
		}
	}
	t.Logf("max ulp vs math.Tanh: %v at x=%v", maxD, at)
	if maxD > 3 {
		t.Errorf("tanhFast: %v ulp from math.Tanh at x=%v, want ≤ 3", maxD, at)
	}
	nan := math.NaN()
	for _, c := range [][2]float64{{0, 0}, {math.Copysign(0, -1), math.Copysign(0, -1)}, {math.Inf(1), 1}, {math.Inf(-1), -1}, {nan, nan}, {30, 1}, {-30, -1}} {
		if got := tanhFast(c[0]); ulpDiff(got, c[1]) != 0 || math.Signbit(got) != math.Signbit(c[1]) {
			t.Errorf("tanhFast(%v) = %v, want %v", c[0], got, c[1])
		}
	}
}

// BenchmarkActivation times the hidden-layer activations per element, with
// the derivative row, on N(0, 3²) pre-activations (mixed signs), against
// the math-library evaluations they replace.
func BenchmarkActivation(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 4096
	u := make([]float64, n)
	for i := range u {
		u[i] = 3 * rng.NormFloat64()
	}
	bias := make([]float64, n)
	y, d := make([]float64, n), make([]float64, n)
	perElt := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/elt")
	}
	b.Run("softplus/math", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for j, v := range u {
				y[j], d[j] = softplusRef(v)
			}
		}
		perElt(b)
	})
	b.Run("softplus/fast", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for j, v := range u {
				y[j], d[j] = softplusFast(v)
			}
		}
		perElt(b)
	})
	b.Run("tanh/math", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for j, v := range u {
				y[j] = math.Tanh(v)
			}
		}
		perElt(b)
	})
	// Whole rows as the MLP evaluates them: the dispatching rows (AVX2 with
	// the assembly kernels) and the Go rows.
	for _, r := range []struct {
		name string
		row  func(row, drow, bias []float64)
	}{
		{"softplus/row", softplusRow}, {"softplus/rowGo", softplusRowGo},
		{"tanh/row", tanhRow}, {"tanh/rowGo", tanhRowGo}, {"sigmoid/row", sigmoidRow},
	} {
		b.Run(r.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				copy(y, u)
				r.row(y, d, bias)
			}
			perElt(b)
		})
	}
}

// TestMLPKeepActivations: with keepActivations on, VJPs at the points of
// earlier Evals reuse their activations (and skip the forward pass) and
// give bit-identical results to a fresh evaluator; a VJP at a new point,
// one that wants f, and every VJP once the memory cap is reached fall back
// to the full computation.
func TestMLPKeepActivations(t *testing.T) {
	for _, c := range []struct {
		act    Activation
		timeIn bool
	}{{Tanh, false}, {Softplus, true}, {Sigmoid, false}} {
		m := newTestMLP(t, 3, []int{20, 13}, c.act, c.timeIn, 17)
		rng := rand.New(rand.NewPCG(41, 42))
		B := 11
		zs := [][]float64{randSlice(rng, B*3), randSlice(rng, B*3), randSlice(rng, B*3), randSlice(rng, B*3)}
		ts := []float64{0, 0.25, 0.5, 0.75}
		a := randSlice(rng, B*3)
		for _, capBytes := range []int{mlpKeepMaxBytes, 1} {
			old := mlpKeepMaxBytes
			mlpKeepMaxBytes = capBytes
			ev := m.NewEvaluator()
			st := ev.(*mlpEvaluator).mlpState
			keepActivations(ev, true)
			dz := make([]float64, B*3)
			for i := range 3 { // zs[3] is never evaluated
				ev.Eval(ts[i], zs[i], dz)
			}
			for i := 3; i >= 0; i-- {
				got := vjpOut{gz: make([]float64, B*3), gp: make([]float64, m.NumParams())}
				ev.VJP(ts[i], zs[i], a, nil, got.gz, got.gp, &got.gt)
				want := vjpOut{gz: make([]float64, B*3), gp: make([]float64, m.NumParams())}
				m.NewEvaluator().VJP(ts[i], zs[i], a, nil, want.gz, want.gp, &want.gt)
				if !sameBits(got.gz, want.gz) || !sameBits(got.gp, want.gp) || math.Float64bits(got.gt) != math.Float64bits(want.gt) {
					t.Errorf("%v time %v cap %d point %d: kept-activation VJP differs", c.act, c.timeIn, capBytes, i)
				}
			}
			// With f requested the forward pass runs as usual.
			f := make([]float64, B*3)
			ev.VJP(ts[0], zs[0], a, f, make([]float64, B*3), nil, nil)
			wantReplays := 3
			if capBytes == 1 {
				wantReplays = 0
			}
			if st.replays != wantReplays {
				t.Errorf("%v cap %d: %d VJPs reused activations, want %d", c.act, capBytes, st.replays, wantReplays)
			}
			keepActivations(ev, false)
			mlpKeepMaxBytes = old
		}
	}
}

// TestDirectKeepsActivations: Direct's gradient is bit-identical whether
// the MLP keeps its activations or (over the cap) recomputes them, and
// keeping them saves the forward pass of most stage VJPs.
func TestDirectKeepsActivations(t *testing.T) {
	m := newTestMLP(t, 2, []int{16, 16}, Tanh, false, 23)
	rng := rand.New(rand.NewPCG(43, 44))
	B := 8
	z0, targets := randSlice(rng, B*2), randSlice(rng, B*2)
	ts := []float64{0, 0.5, 1}
	targets = append(targets, randSlice(rng, B*2)...)
	var res [2]*GradResult
	var replays [2]int
	for i, capBytes := range []int{mlpKeepMaxBytes, 1} {
		old := mlpKeepMaxBytes
		mlpKeepMaxBytes = capBytes
		g, err := NewGradientSolver(m, GradOptions{Method: Direct, Forward: Options{RTol: 1e-7, ATol: 1e-7}})
		if err != nil {
			t.Fatal(err)
		}
		r, err := g.Gradient(z0, ts, testMSE(z0, ts, targets))
		mlpKeepMaxBytes = old
		if err != nil {
			t.Fatal(err)
		}
		res[i] = r
		replays[i] = g.ev.(*mlpEvaluator).replays
	}
	if !sameBits(res[0].Params, res[1].Params) || !sameBits(res[0].Z0, res[1].Z0) {
		t.Error("gradient differs with and without kept activations")
	}
	vjps := res[0].Stats.VJPs
	t.Logf("%d VJPs, %d reused kept activations", vjps, replays[0])
	if replays[1] != 0 || replays[0] < vjps*3/4 {
		t.Errorf("reused activations in %d (kept) and %d (over the cap) of %d VJPs", replays[0], replays[1], vjps)
	}
}

// BenchmarkAdamStep: one Adam update of 100 000 parameters (two passes: the
// first checks that the update stays finite before anything is stored).
func BenchmarkAdamStep(b *testing.B) {
	const n = 100000
	rng := rand.New(rand.NewPCG(1, 1))
	p, g := make([]float64, n), make([]float64, n)
	for i := range p {
		p[i], g[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	o := NewAdam(n)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := o.Step(p, g); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/param")
}

// TestMLPTimeGradientPartitionFree: aᵀ∂f/∂t of a batch is the in-order sum
// of the rows' own values, bit for bit, however the rows are split into
// blocks (the split depends on the kernels in use: two-row grains with
// AVX-512, six-row tiles without), with and without gz.
func TestMLPTimeGradientPartitionFree(t *testing.T) {
	defer func(old bool) { useAVX512 = old }(useAVX512)
	rng := rand.New(rand.NewPCG(7, 8))
	m, err := NewMLP(MLPConfig{Dim: 8, Hidden: []int{128, 128}, Activation: Tanh, TimeInput: true}, rng)
	if err != nil {
		t.Fatal(err)
	}
	for _, wide := range []bool{false, haveAVX512} {
		useAVX512 = wide
		for _, B := range []int{64, 100, 130, 200} {
			z, a := make([]float64, B*8), make([]float64, B*8)
			for i := range z {
				z[i], a[i] = rng.NormFloat64(), rng.NormFloat64()
			}
			for _, withGz := range []bool{false, true} {
				ev := m.NewEvaluator()
				var gz, gz1 []float64
				if withGz {
					gz, gz1 = make([]float64, B*8), make([]float64, 8)
				}
				var gt float64
				ev.VJP(0.3, z, a, nil, gz, nil, &gt)
				if ev.(*mlpEvaluator).blocks < 2 {
					t.Fatalf("B %d: one row block, nothing to test", B)
				}
				var want float64
				for b := 0; b < B; b++ {
					var r float64
					ev.VJP(0.3, z[b*8:b*8+8], a[b*8:b*8+8], nil, gz1, nil, &r)
					want += r
				}
				if gt != want {
					t.Errorf("AVX-512 %v, B %d, gz %v: gt = %v, in-order sum of the rows %v", wide, B, withGz, gt, want)
				}
			}
		}
	}
}

// absAll returns |x_i| for every element of x.
func absAll(x []float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = math.Abs(v)
	}
	return out
}

// TestMulRowKernel: the reverse sweep's elementwise product gives the Go
// loop's bits on every length (vector body, four-lane steps, remainder).
func TestMulRowKernel(t *testing.T) {
	defer func() { useFMA = haveFMA }()
	rng := rand.New(rand.NewPCG(61, 62))
	for n := 0; n <= 41; n++ {
		x, y := randSlice(rng, n), randSlice(rng, n+3)
		var out [2][]float64
		for k, fma := range []bool{true, false} {
			useFMA = fma && haveFMA
			out[k] = slices.Clone(x)
			mulRow(out[k], y)
		}
		for i := range x {
			if want := x[i] * y[i]; out[1][i] != want {
				t.Fatalf("n %d: Go path element %d = %v, want %v", n, i, out[1][i], want)
			}
		}
		if !sameBits(out[0], out[1]) {
			t.Errorf("n %d: kernel and Go products differ", n)
		}
	}
}
