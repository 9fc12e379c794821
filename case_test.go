package neuralode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var publicCases = []struct {
	file                 string
	D, H, B, nobs        int
	activation, timeMode string
}{
	{"case1_d2_h16_b4.json", 2, 16, 4, 1, "tanh", "none"},
	{"case2_d3_h32_b8_nobs4.json", 3, 32, 8, 4, "tanh", "none"},
	{"case3_d8_h64_b16.json", 8, 64, 16, 1, "tanh", "none"},
	{"case4_softplus_concat_d2_h32_b8_nobs3.json", 2, 32, 8, 3, "softplus", "concat"},
}

func loadTestCase(t testing.TB, file string) *Case {
	t.Helper()
	c, err := LoadCase(filepath.Join("testdata", "cases", file))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rk4Step advances z by one classical Runge–Kutta step of size h from t,
// writing the result to out; k is 5 scratch vectors of len(z).
func rk4Step(ev Evaluator, t, h float64, z, out []float64, k [5][]float64) {
	k1, k2, k3, k4, y := k[0], k[1], k[2], k[3], k[4]
	ev.Eval(t, z, k1)
	for i := range z {
		y[i] = z[i] + h/2*k1[i]
	}
	ev.Eval(t+h/2, y, k2)
	for i := range z {
		y[i] = z[i] + h/2*k2[i]
	}
	ev.Eval(t+h/2, y, k3)
	for i := range z {
		y[i] = z[i] + h*k3[i]
	}
	ev.Eval(t+h, y, k4)
	for i := range z {
		out[i] = z[i] + h/6*(k1[i]+2*k2[i]+2*k3[i]+k4[i])
	}
}

// rk4Case integrates the case with fixed-step RK4 (stepsPerUnit steps per
// unit time, at least one per interval). It returns the loss
// L = Σ_i mean (z(t_i) − target_i)², z(t_M), and every step's start state
// and time for the reverse sweep.
func rk4Case(c *Case, m *MLP, stepsPerUnit float64) (loss float64, zT []float64, states [][]float64, times, hs []float64, obsAfter []int) {
	ev := m.NewEvaluator()
	z := c.Z0Flat()
	n := len(z)
	var k [5][]float64
	for i := range k {
		k[i] = make([]float64, n)
	}
	targets := c.TargetsFlat()
	for i := 1; i < len(c.T); i++ {
		t0, t1 := c.T[i-1], c.T[i]
		steps := int(math.Ceil(stepsPerUnit * (t1 - t0)))
		h := (t1 - t0) / float64(steps)
		for s := 0; s < steps; s++ {
			tt := t0 + float64(s)*h
			states = append(states, append([]float64(nil), z...))
			times = append(times, tt)
			hs = append(hs, h)
			next := make([]float64, n)
			rk4Step(ev, tt, h, z, next, k)
			z = next
		}
		obsAfter = append(obsAfter, len(states))
		for j, v := range z {
			d := v - targets[i-1][j]
			loss += d * d / float64(n)
		}
	}
	return loss, z, states, times, hs, obsAfter
}

// rk4CaseGrad returns dL/dθ of the RK4 solution by reverse-mode
// differentiation of each RK4 step (the discrete adjoint), using the MLP's
// vector–Jacobian products. It exercises ∂f/∂z and ∂f/∂θ together on the
// PyTorch reference problems.
func rk4CaseGrad(c *Case, m *MLP, stepsPerUnit float64) []float64 {
	_, _, states, times, hs, obsAfter := rk4Case(c, m, stepsPerUnit)
	ev := m.NewEvaluator()
	n := len(c.Z0Flat())
	targets := c.TargetsFlat()
	gp := make([]float64, m.NumParams())
	abar := make([]float64, n)
	var y [4][]float64
	var ab [4][]float64
	for i := range y {
		y[i] = make([]float64, n)
		ab[i] = make([]float64, n)
	}
	k := make([]float64, n)
	gz := make([]float64, n)
	ob := len(obsAfter) - 1
	for s := len(states) - 1; s >= 0; s-- {
		// Add ∂L/∂z(t_i) when stepping back across observation i.
		for ob >= 0 && obsAfter[ob] == s+1 {
			var zi []float64
			if s+1 < len(states) {
				zi = states[s+1]
			} else {
				zi = make([]float64, n)
				var kk [5][]float64
				for i := range kk {
					kk[i] = make([]float64, n)
				}
				rk4Step(ev, times[s], hs[s], states[s], zi, kk)
			}
			for j := range zi {
				abar[j] += 2 * (zi[j] - targets[ob][j]) / float64(n)
			}
			ob--
		}
		z, t, h := states[s], times[s], hs[s]
		// Recompute the stage inputs y1…y4.
		copy(y[0], z)
		ev.Eval(t, y[0], k)
		for j := range z {
			y[1][j] = z[j] + h/2*k[j]
		}
		ev.Eval(t+h/2, y[1], k)
		for j := range z {
			y[2][j] = z[j] + h/2*k[j]
		}
		ev.Eval(t+h/2, y[2], k)
		for j := range z {
			y[3][j] = z[j] + h*k[j]
		}
		// Cotangents of the stage derivatives k1…k4.
		for j, v := range abar {
			ab[0][j], ab[1][j], ab[2][j], ab[3][j] = h/6*v, h/3*v, h/3*v, h/6*v
		}
		stageT := [4]float64{t, t + h/2, t + h/2, t + h}
		coef := [4]float64{0, h / 2, h / 2, h} // y_s = z + coef[s]·k_{s−1}
		for st := 3; st >= 0; st-- {
			ev.VJP(stageT[st], y[st], ab[st], nil, gz, gp, nil)
			for j, v := range gz {
				abar[j] += v
				if st > 0 {
					ab[st-1][j] += coef[st] * v
				}
			}
		}
	}
	return gp
}

func TestPublicCasesLoad(t *testing.T) {
	for _, pc := range publicCases {
		t.Run(pc.file, func(t *testing.T) {
			c := loadTestCase(t, pc.file)
			if c.D != pc.D || c.H != pc.H || c.B != pc.B || len(c.Target) != pc.nobs || c.HiddenLayers != 2 {
				t.Fatalf("shape D=%d H=%d B=%d nobs=%d hidden=%d", c.D, c.H, c.B, len(c.Target), c.HiddenLayers)
			}
			if c.Activation != pc.activation || c.TimeInput != pc.timeMode {
				t.Fatalf("activation %q time_input %q", c.Activation, c.TimeInput)
			}
			m, err := c.MLP()
			if err != nil {
				t.Fatal(err)
			}
			in := pc.D
			if pc.timeMode == "concat" {
				in++
			}
			if want := pc.H*in + pc.H + pc.H*pc.H + pc.H + pc.D*pc.H + pc.D; m.NumParams() != want {
				t.Fatalf("NumParams %d, want %d", m.NumParams(), want)
			}
			if m.TimeDependent() != (pc.timeMode == "concat") {
				t.Fatal("TimeDependent mismatch")
			}
			// The flat layout is PyTorch's parameters() order.
			W1, b1, _, _ := m.Layer(1)
			if W1[3*pc.H+5] != c.Layers[1].W[3][5] || b1[7] != c.Layers[1].B[7] {
				t.Fatal("layer 1 not in (out, in) row-major order")
			}
			if g := c.RefGradFlat(); len(g) != m.NumParams() {
				t.Fatalf("reference grad length %d", len(g))
			}
			if c.Ref == nil || c.Ref.RTol != 1e-12 || len(c.Ref.ZT) != pc.B {
				t.Fatalf("reference not read: %+v", c.Ref)
			}
			peers, err := c.peers()
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"direct", "adjoint", "seminorm", "gq"} {
				p, ok := peers[name]
				if !ok || p.FwdNFE <= 0 || !(p.Loss > 0) {
					t.Errorf("peer %s: %+v", name, p)
				}
			}
			if peers["adjoint"].BwdNFE <= 0 || len(peers["direct"].Grad) != 3 {
				t.Errorf("peer fields not parsed: %+v", peers["adjoint"])
			}
		})
	}
	c := loadTestCase(t, "case1_d2_h16_b4.json")
	if p, _ := c.peers(); p["direct"].FwdNFE != 20 || p["adjoint"].BwdStepsAcc != 3 {
		t.Errorf("case1 peers: %+v", p)
	}
}

// TestPublicCasesLossRK4 checks the loaded networks against PyTorch: the
// loss and z(t_M) of a fine fixed-step RK4 solve match the 1e−12 reference,
// and so does the gradient obtained by reverse-differentiating that solve
// with the MLP's VJPs.
func TestPublicCasesLossRK4(t *testing.T) {
	for _, pc := range publicCases {
		t.Run(pc.file, func(t *testing.T) {
			c := loadTestCase(t, pc.file)
			m, err := c.MLP()
			if err != nil {
				t.Fatal(err)
			}
			loss, zT, _, _, _, _ := rk4Case(c, m, 2000)
			d := math.Abs(loss-c.Ref.Loss) / math.Abs(c.Ref.Loss)
			t.Logf("loss %.16g, reference %.16g, rel diff %.2g", loss, c.Ref.Loss, d)
			if d > 1e-9 {
				t.Errorf("loss %.16g, reference %.16g (rel %g)", loss, c.Ref.Loss, d)
			}
			if d := maxRelDiff(zT, flattenRows(c.Ref.ZT)); d > 1e-9 {
				t.Errorf("z_T rel diff %g", d)
			}
			if testing.Short() && pc.H > 32 {
				return
			}
			g := rk4CaseGrad(c, m, 500)
			d = maxRelDiff(g, c.RefGradFlat())
			t.Logf("gradient rel diff %.2g", d)
			if d > 1e-7 {
				t.Errorf("gradient rel diff %g", d)
			}
		})
	}
}

func TestCaseRoundTrip(t *testing.T) {
	for _, pc := range publicCases {
		c := loadTestCase(t, pc.file)
		var buf bytes.Buffer
		if err := c.Write(&buf); err != nil {
			t.Fatal(err)
		}
		c2, err := ReadCase(&buf)
		if err != nil {
			t.Fatalf("%s: re-read: %v", pc.file, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Errorf("%s: round trip changed the case", pc.file)
			for _, f := range []string{"Name", "Layers", "Z0", "T", "Target", "Ref", "PeersAtCaseTol", "Extra"} {
				if !reflect.DeepEqual(reflect.ValueOf(*c).FieldByName(f).Interface(), reflect.ValueOf(*c2).FieldByName(f).Interface()) {
					t.Errorf("field %s differs", f)
				}
			}
		}
		for _, key := range []string{"mlp_convention", "cross_check", "versions", "generation"} {
			if _, ok := c2.Extra[key]; !ok {
				t.Errorf("%s: unknown field %s lost", pc.file, key)
			}
		}
	}
}

func TestCaseFromModel(t *testing.T) {
	m := newTestMLP(t, 2, []int{5, 4}, ReLU, true, 3)
	c := &Case{Name: "fresh", Z0: [][]float64{{1, 2}, {3, 4}, {5, 6}}, T: []float64{0, 1},
		Target: [][][]float64{{{0, 0}, {0, 0}, {0, 0}}}, RTol: 1e-6, ATol: 1e-8}
	if err := c.SetModel(m); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.Write(&buf); err != nil {
		t.Fatal(err)
	}
	c2, err := ReadCase(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if c2.H != 0 || c2.D != 2 || c2.HiddenLayers != 2 || c2.TimeInput != "concat" || c2.Activation != "relu" {
		t.Fatalf("read back %+v", c2)
	}
	m2, err := c2.MLP()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Params(), m2.Params()) || !reflect.DeepEqual(m.Config(), m2.Config()) {
		t.Fatal("model changed through the case format")
	}
	layers, err := UnflattenLayers(m, m.Params())
	if err != nil {
		t.Fatal(err)
	}
	flat := make([]float64, m.NumParams())
	if err := FlattenLayers(layers, flat); err != nil || !reflect.DeepEqual(flat, m.Params()) {
		t.Fatal("Flatten(Unflatten(p)) ≠ p")
	}
	if _, err := UnflattenLayers(m, flat[1:]); !errors.Is(err, ErrInvalidInput) {
		t.Fatal("short flat vector accepted")
	}
}

// smallCaseJSON is a valid case with D = 2, hidden widths 3, B = 2, M = 1,
// as a map so tests can break one field at a time.
func smallCaseJSON() map[string]any {
	return map[string]any{
		"name": "small", "activation": "tanh", "hidden_layers": 1, "D": 2, "H": 3, "B": 2,
		"layers": []any{
			map[string]any{"W": [][]float64{{1, 2}, {3, 4}, {5, 6}}, "b": []float64{1, 2, 3}},
			map[string]any{"W": [][]float64{{1, 2, 3}, {4, 5, 6}}, "b": []float64{1, 2}},
		},
		"z0":     [][]float64{{1, 2}, {3, 4}},
		"t":      []float64{0, 1},
		"target": [][][]float64{{{1, 2}, {3, 4}}},
		"rtol":   1e-6, "atol": 1e-6,
		"some_future_field": map[string]any{"x": 1},
		"reference": map[string]any{"loss": 1.5, "z_T": [][]float64{{1, 2}, {3, 4}},
			"grad": []any{
				map[string]any{"W": [][]float64{{1, 2}, {3, 4}, {5, 6}}, "b": []float64{1, 2, 3}},
				map[string]any{"W": [][]float64{{1, 2, 3}, {4, 5, 6}}, "b": []float64{1, 2}},
			}},
	}
}

func readMap(t *testing.T, m map[string]any) (*Case, error) {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return ReadCase(bytes.NewReader(data))
}

func TestReadCaseErrors(t *testing.T) {
	if c, err := readMap(t, smallCaseJSON()); err != nil {
		t.Fatalf("valid case rejected: %v", err)
	} else if c.H != 3 || c.Extra["some_future_field"] == nil {
		t.Fatalf("valid case misread: %+v", c)
	}
	layer := func(m map[string]any, l int) map[string]any { return m["layers"].([]any)[l].(map[string]any) }
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   string // substring of the error
	}{
		{"missing layers", func(m map[string]any) { delete(m, "layers") }, "layers: missing"},
		{"missing z0", func(m map[string]any) { delete(m, "z0") }, "z0: missing"},
		{"missing t", func(m map[string]any) { delete(m, "t") }, "t: missing"},
		{"missing target", func(m map[string]any) { delete(m, "target") }, "target: missing"},
		{"missing rtol", func(m map[string]any) { delete(m, "rtol") }, "rtol: missing"},
		{"layers not a list", func(m map[string]any) { m["layers"] = 3 }, "layers:"},
		{"ragged W", func(m map[string]any) { layer(m, 1)["W"] = [][]float64{{1, 2, 3}, {4, 5}} },
			"layers[1].W: row 1 has 2 columns, want 3"},
		{"W chain", func(m map[string]any) { layer(m, 1)["W"] = [][]float64{{1, 2}, {4, 5}} },
			"layers[1].W: row 0 has 2 columns, want 3"},
		{"bias length", func(m map[string]any) { layer(m, 0)["b"] = []float64{1} }, "layers[0].b: length 1, want 3"},
		{"z0 columns", func(m map[string]any) { m["z0"] = [][]float64{{1, 2}, {3}} }, "z0: row 1 has 1 columns, want 2"},
		{"target count", func(m map[string]any) { m["t"] = []float64{0, 1, 2} }, "target: 1 observations"},
		{"target shape", func(m map[string]any) { m["target"] = [][][]float64{{{1, 2}}} }, "target[0]: 1 rows, want 2"},
		{"t order", func(m map[string]any) { m["t"] = []float64{1, 1} }, "t: not strictly increasing"},
		{"rtol", func(m map[string]any) { m["rtol"] = 0 }, "rtol: 0"},
		{"atol type", func(m map[string]any) { m["atol"] = "small" }, "atol:"},
		{"D", func(m map[string]any) { m["D"] = 3 }, "D: 3, but the data give 2"},
		{"H", func(m map[string]any) { m["H"] = 4 }, "H: 4, but the layers give 3"},
		{"B", func(m map[string]any) { m["B"] = 5 }, "B: 5"},
		{"hidden_layers", func(m map[string]any) { m["hidden_layers"] = 2 }, "hidden_layers: 2"},
		{"activation", func(m map[string]any) { m["activation"] = "gelu" }, "activation"},
		{"time_input", func(m map[string]any) { m["time_input"] = "sum" }, "time_input"},
		{"time_input shape", func(m map[string]any) { m["time_input"] = "concat" }, "layers[0].W: row 0 has 2 columns, want 3"},
		{"reference z_T", func(m map[string]any) { m["reference"].(map[string]any)["z_T"] = [][]float64{{1}} },
			"reference.z_T"},
		{"reference grad", func(m map[string]any) {
			m["reference"].(map[string]any)["grad"] = []any{map[string]any{"W": [][]float64{{1, 2}}, "b": []float64{1}}}
		}, "reference.grad: 1 layers, want 2"},
		{"format_version", func(m map[string]any) { m["format_version"] = 2 }, "format_version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := smallCaseJSON()
			tc.mutate(m)
			_, err := readMap(t, m)
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("err %v, want ErrInvalidInput", err)
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err %T is not an *InputError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %q does not contain %q", err, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "{", "[1,2]", `{"layers": [}`, "null"} {
		if _, err := ReadCase(strings.NewReader(bad)); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("ReadCase(%q): err %v, want ErrInvalidInput", bad, err)
		}
	}
	if _, err := LoadCase(filepath.Join("testdata", "cases", "no_such_case.json")); err == nil {
		t.Error("missing file: no error")
	}
}

func ExampleReadCase() {
	c, err := LoadCase("testdata/cases/case1_d2_h16_b4.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := c.MLP()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Name, c.Activation, c.D, c.H, c.B, m.NumParams())
	// Output: case1_d2_h16_b4 tanh 2 16 4 354
}

// FuzzReadCase: any input either fails with a typed error or gives a case
// that validates, builds its network, and survives a write/read round trip.
func FuzzReadCase(f *testing.F) {
	small, _ := json.Marshal(smallCaseJSON())
	f.Add(small)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"layers": [{"W": [[1]], "b": [0]}], "z0": [[1]], "t": [0, 1], "target": [[[0]]], "rtol": 1e-6, "atol": 1e-6}`))
	f.Add([]byte(`{"layers": [{"W": [[1e308, 1]], "b": [NaN]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ReadCase(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrNonFinite) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ReadCase accepted a case that does not validate: %v", err)
		}
		m, err := c.MLP()
		if err != nil {
			t.Fatalf("accepted case does not build its network: %v", err)
		}
		if len(c.Z0Flat()) != c.B*c.D || m.Dim() != c.D {
			t.Fatalf("shapes disagree: z0 %d values, B=%d D=%d, network dim %d", len(c.Z0Flat()), c.B, c.D, m.Dim())
		}
		var buf bytes.Buffer
		if err := c.Write(&buf); err != nil {
			t.Fatalf("write: %v", err)
		}
		c2, err := ReadCase(&buf)
		if err != nil {
			t.Fatalf("re-read of a written case: %v", err)
		}
		if !reflect.DeepEqual(c.Layers, c2.Layers) || !reflect.DeepEqual(c.T, c2.T) || !reflect.DeepEqual(c.Z0, c2.Z0) {
			t.Fatal("round trip changed the case")
		}
	})
}

// ExampleUnflattenLayers splits a network's flat parameter vector into
// nn.Linear-shaped layers and flattens them back.
func ExampleUnflattenLayers() {
	m, _ := NewMLP(MLPConfig{Dim: 2, Hidden: []int{3}}, rand.New(rand.NewPCG(1, 2)))
	layers, _ := UnflattenLayers(m, m.Params())
	for i, ly := range layers {
		fmt.Printf("layer %d: W %d×%d, b %d\n", i, len(ly.W), len(ly.W[0]), len(ly.B))
	}
	flat := make([]float64, m.NumParams())
	err := FlattenLayers(layers, flat)
	fmt.Println(slices.Equal(flat, m.Params()), err)
	// Output:
	// layer 0: W 3×2, b 3
	// layer 1: W 2×3, b 2
	// true <nil>
}
