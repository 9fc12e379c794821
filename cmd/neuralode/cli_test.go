package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/neuralode/neuralode"
)

const case1 = "../../testdata/cases/case1_d2_h16_b4.json"

// runCLI runs a command line in-process and returns its exit status and outputs.
func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// checkSVGs parses every SVG in dir and returns their names.
func checkSVGs(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.svg"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		st := parseSVG(t, data)
		if len(st.texts) < 3 {
			t.Errorf("%s: only %d text elements (axes and labels missing?)", f, len(st.texts))
		}
		names = append(names, filepath.Base(f))
	}
	return names
}

// readMetrics parses metrics.jsonl.
func readMetrics(t *testing.T, dir string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("metrics.jsonl line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI("--epochs", "3", "--width", "8", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	for _, want := range []string{"method", "s/epoch", "fwd NFE/epoch", "bwd NFE/epoch", "final loss", "speed-up vs seminorm",
		"direct", "seminorm", "gq", dir} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "epoch 3/3") || !strings.Contains(errs, "ETA") {
		t.Errorf("no progress on stderr:\n%s", errs)
	}
	svgs := checkSVGs(t, dir)
	if len(svgs) != 4 { // loss + one trajectory plot per method
		t.Errorf("SVGs %v, want 4", svgs)
	}
	recs := readMetrics(t, dir)
	if len(recs) != 3*3+3 {
		t.Errorf("%d metric records, want 12", len(recs))
	}
}

func TestTrainTasks(t *testing.T) {
	cases := []struct {
		task  string
		args  []string
		epoch int
		plot  string
	}{
		{"g1d", []string{"--width", "8", "--epochs", "2"}, 2, "g1d_trajectories.svg"},
		{"spheres", []string{"--width", "4", "--epochs", "1", "--batch", "1000"}, 1, "spheres_regions.svg"},
		{"sines", []string{"--width", "4", "--epochs", "2", "--obs", "5", "--irregular"}, 2, "sines_trajectories.svg"},
		{"ou", []string{"--width", "4", "--epochs", "1", "--batch", "8"}, 1, "ou_bands.svg"},
	}
	for _, c := range cases {
		t.Run(c.task, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"train", "--task", c.task, "--method", "gq", "--out", dir, "--quiet"}, c.args...)
			code, out, errs := runCLI(args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if errs != "" {
				t.Errorf("--quiet printed on stderr: %q", errs)
			}
			if !strings.Contains(out, "gq") {
				t.Errorf("no table:\n%s", out)
			}
			svgs := checkSVGs(t, dir)
			if strings.Join(svgs, " ") != "loss.svg "+c.plot && strings.Join(svgs, " ") != c.plot+" loss.svg" {
				t.Errorf("SVGs %v, want loss.svg and %s", svgs, c.plot)
			}
			recs := readMetrics(t, dir)
			if len(recs) != c.epoch+1 {
				t.Fatalf("%d records, want %d", len(recs), c.epoch+1)
			}
			for _, r := range recs[:c.epoch] {
				for _, k := range []string{"epoch", "loss", "val_metric", "val", "nfe_forward", "nfe_backward", "seconds"} {
					if _, ok := r[k]; !ok {
						t.Errorf("record lacks %q: %v", k, r)
					}
				}
				if r["nfe_forward"].(float64) <= 0 || r["nfe_backward"].(float64) <= 0 {
					t.Errorf("no evaluations counted: %v", r)
				}
			}
		})
	}
}

func TestTrainJSONStdout(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI("train", "--task", "g1d", "--method", "direct,gq", "--width", "4", "--epochs", "2",
		"--out", dir, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d JSON lines, want 6:\n%s", len(lines), out)
	}
	types := map[string]int{}
	for _, l := range lines {
		var r epochRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", l, err)
		}
		types[r.Type]++
	}
	if types["epoch"] != 4 || types["summary"] != 2 {
		t.Errorf("record types %v", types)
	}
	if !strings.Contains(errs, "epoch 2/2") {
		t.Errorf("progress missing from stderr: %q", errs)
	}
}

// checkpointParams reads a saved run's parameters and optimiser state.
func checkpointParams(t *testing.T, path string) *checkpointState {
	t.Helper()
	st, err := loadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestResumeEqualsUninterrupted trains 4 epochs in one go, and 2 epochs, then
// 2 more resumed from the checkpoint: the parameters and Adam moments must
// agree bit for bit. The spheres variant also interrupts in the middle of an
// epoch (after 3 of its 4 minibatch steps), as Ctrl-C would.
func TestResumeEqualsUninterrupted(t *testing.T) {
	for _, task := range []struct {
		name string
		args []string
	}{
		{"g1d", []string{"--width", "6", "--method", "seminorm"}},
		{"sines", []string{"--width", "4", "--obs", "5", "--batch", "6", "--method", "gq"}},
		{"spheres", []string{"--width", "4", "--batch", "500", "--method", "gq"}},
		{"ou", []string{"--width", "3", "--batch", "6", "--method", "gq-interp"}},
		{"cnf", []string{"--width", "4", "--batch", "16", "--method", "seminorm", "--data", "moons"}},
	} {
		t.Run(task.name, func(t *testing.T) {
			if task.name == "ou" && testing.Short() {
				t.Skip("slow")
			}
			dir := t.TempDir()
			base := append([]string{"train", "--task", task.name, "--quiet", "--seed", "7"}, task.args...)
			full := filepath.Join(dir, "full.json")
			code, _, errs := runCLI(append(base, "--epochs", "4", "--save", full, "--out", filepath.Join(dir, "a"))...)
			if code != 0 {
				t.Fatalf("full run: exit %d: %s", code, errs)
			}
			half := filepath.Join(dir, "half.json")
			code, _, errs = runCLI(append(base, "--epochs", "2", "--save", half, "--out", filepath.Join(dir, "b"))...)
			if code != 0 {
				t.Fatalf("first half: exit %d: %s", code, errs)
			}
			code, _, errs = runCLI("train", "--resume", half, "--epochs", "4", "--save", half, "--quiet", "--out", filepath.Join(dir, "b"))
			if code != 0 {
				t.Fatalf("resume: exit %d: %s", code, errs)
			}
			a, b := checkpointParams(t, full), checkpointParams(t, half)
			if a.Epoch != 4 || b.Epoch != 4 {
				t.Fatalf("epochs %d and %d, want 4", a.Epoch, b.Epoch)
			}
			if !sameBits(a.Params, b.Params) || !sameBits(a.AdamM, b.AdamM) || !sameBits(a.AdamV, b.AdamV) || a.AdamT != b.AdamT {
				t.Errorf("resumed run differs from the uninterrupted one")
			}
			if len(b.History) != 4 {
				t.Errorf("resumed history has %d epochs, want 4", len(b.History))
			}
			for i := range a.History {
				if math.Float64bits(a.History[i].Loss) != math.Float64bits(b.History[i].Loss) {
					t.Errorf("epoch %d loss %v vs %v", i+1, a.History[i].Loss, b.History[i].Loss)
				}
			}
			if task.name == "g1d" {
				// Interrupt after the second step, the last (only) step of
				// epoch 2: the checkpoint holds a finished epoch whose
				// end-of-epoch work is still to do, and resumes.
				c := interruptAndResume(t, base, dir, "d", 2, 1, 1)
				if !sameBits(a.Params, c.Params) || !sameBits(a.AdamV, c.AdamV) || len(c.History) != 4 {
					t.Errorf("run interrupted after an epoch's last step and resumed differs from the uninterrupted one")
				}
			}
			if task.name != "spheres" {
				return
			}
			// Interrupt after 3 steps (inside epoch 1 of 4-step epochs), then resume.
			c := interruptAndResume(t, base, dir, "c", 3, 0, 3)
			if !sameBits(a.Params, c.Params) || !sameBits(a.AdamV, c.AdamV) {
				t.Errorf("run interrupted mid-epoch and resumed differs from the uninterrupted one")
			}
		})
	}
}

// interruptAndResume trains base for 4 epochs with a stop requested at the
// given optimiser step, checks that the interrupted run exits with
// exitInterrupted and checkpointed at (epoch, step), resumes it to the end
// and returns the final checkpoint.
func interruptAndResume(t *testing.T, base []string, dir, sub string, stopAt, epoch, step int) *checkpointState {
	t.Helper()
	var out, errb bytes.Buffer
	calls := 0
	stop := func() bool { calls++; return calls == stopAt }
	cut := filepath.Join(dir, "cut-"+sub+".json")
	code := trainCommand(append(base[1:], "--epochs", "4", "--save", cut, "--out", filepath.Join(dir, sub)), &out, &errb, stop)
	if code != exitInterrupted {
		t.Fatalf("interrupted run: exit %d, want %d: %s", code, exitInterrupted, errb.String())
	}
	if c := checkpointParams(t, cut); c.Epoch != epoch || c.Step != step {
		t.Fatalf("checkpoint at epoch %d step %d, want %d, %d", c.Epoch, c.Step, epoch, step)
	}
	code, _, errs := runCLI("train", "--resume", cut, "--save", cut, "--quiet", "--out", filepath.Join(dir, sub))
	if code != 0 {
		t.Fatalf("resume after interrupt: exit %d: %s", code, errs)
	}
	return checkpointParams(t, cut)
}

func TestSavedModelIsACase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.json")
	code, _, errs := runCLI("train", "--task", "g1d", "--width", "5", "--epochs", "1", "--save", path, "--quiet", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// The saved file is an ordinary case: solve reads it.
	code, out, errs := runCLI("solve", "--case", path, "--json")
	if code != 0 {
		t.Fatalf("solve on the saved model: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, `"loss"`) {
		t.Errorf("solve output %s", out)
	}
	// No temporary files are left behind.
	left, _ := filepath.Glob(filepath.Join(dir, ".m.json.tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestBenchJSON(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI("bench", "--sizes", "2x4x3,3x5x2", "--methods", "all", "--repeats", "2", "--json", "--quiet", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2*len(allMethods) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), 2*len(allMethods), out)
	}
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		for _, k := range []string{"method", "size", "params", "seconds_median", "nfe_forward", "nfe_backward", "grad_rel_err"} {
			if _, ok := r[k]; !ok {
				t.Errorf("line lacks %q: %s", k, l)
			}
		}
		// Every method must agree with the tight reference to roughly the tolerance.
		if e := r["grad_rel_err"].(float64); !(e < 1e-2) {
			t.Errorf("%s %s: gradient error %g", r["method"], r["size"], e)
		}
	}
	if svgs := checkSVGs(t, dir); len(svgs) != 1 || svgs[0] != "bench.svg" {
		t.Errorf("SVGs %v, want bench.svg", svgs)
	}
}

func TestBenchTableAndCase(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI("bench", "--case", case1, "--repeats", "1", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"median s", "grad rel err", "seminorm", "gq-interp", "1.00×"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "repeat 1/1") {
		t.Errorf("no progress: %q", errs)
	}
}

func TestSolveGradCase1(t *testing.T) {
	c, err := neuralode.LoadCase(case1)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI("solve", "--case", case1, "--json")
	if code != 0 {
		t.Fatalf("solve: exit %d: %s", code, errs)
	}
	var s struct{ Loss float64 }
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if !relClose(s.Loss, c.Ref.Loss, 1e-5) {
		t.Errorf("solve loss %.12g, reference %.12g", s.Loss, c.Ref.Loss)
	}
	for _, m := range allMethods {
		code, out, errs := runCLI("grad", "--case", case1, "--method", m, "--json")
		if code != 0 {
			t.Fatalf("grad %s: exit %d: %s", m, code, errs)
		}
		var g struct {
			Loss float64
			Grad []neuralode.CaseLayer
		}
		if err := json.Unmarshal([]byte(out), &g); err != nil {
			t.Fatal(err)
		}
		if !relClose(g.Loss, c.Ref.Loss, 1e-5) {
			t.Errorf("grad %s loss %.12g, reference %.12g", m, g.Loss, c.Ref.Loss)
		}
		m2, _ := c.MLP()
		flat := make([]float64, m2.NumParams())
		if err := neuralode.FlattenLayers(g.Grad, flat); err != nil {
			t.Fatal(err)
		}
		if e := relErr(flat, c.RefGradFlat()); e > 1e-3 {
			t.Errorf("grad %s: relative gradient error %g", m, e)
		}
	}
}

func TestBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		name string // what the message must mention
	}{
		{[]string{"--bogus"}, "bogus"},
		{[]string{"--epochs", "0"}, "--epochs"},
		{[]string{"nosuchcommand"}, "nosuchcommand"},
		{[]string{"train", "--task", "mnist"}, "--task"},
		{[]string{"train", "--method", "rk4"}, "--method"},
		{[]string{"train", "--width", "0"}, "--width"},
		{[]string{"train", "--epochs", "-1"}, "--epochs"},
		{[]string{"train", "--lr", "-0.1"}, "--lr"},
		{[]string{"train", "--rtol", "nan"}, "--rtol"},
		{[]string{"train", "--atol", "0"}, "--atol"},
		{[]string{"train", "--gq-c", "0"}, "--gq-c"},
		{[]string{"train", "--batch", "x"}, "-batch"},
		{[]string{"train", "--seed", "-3"}, "-seed"},
		{[]string{"train", "--task", "ou", "--batch", "1"}, "--batch"},
		{[]string{"train", "--task", "g1d", "--obs", "10"}, "--obs"},
		{[]string{"train", "--save-every", "2"}, "--save-every"},
		{[]string{"train", "--method", "gq,direct", "--save", "x.json"}, "--save"},
		{[]string{"train", "extra"}, "extra"},
		{[]string{"bench", "--sizes", "2x3"}, "--sizes"},
		{[]string{"bench", "--sizes", "2x0x3"}, "--sizes"},
		{[]string{"bench", "--methods", "euler"}, "--methods"},
		{[]string{"bench", "--repeats", "0"}, "--repeats"},
		{[]string{"bench", "--rtol", "-1"}, "--rtol"},
		{[]string{"solve", "--method", "nope", "--case", case1}, "--method"},
		{[]string{"grad", "--gq-c", "-1", "--case", case1}, "--gq-c"},
		{[]string{"gauss", "-n", "0"}, "-n"},
	}
	for _, c := range cases {
		code, out, errs := runCLI(c.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", c.args, code, errs)
			continue
		}
		if out != "" {
			t.Errorf("%v: wrote to stdout: %q", c.args, out)
		}
		if strings.Count(errs, "\n") != 1 || !strings.Contains(errs, c.name) {
			t.Errorf("%v: stderr %q: want one line naming %q", c.args, errs, c.name)
		}
	}
}

func TestRuntimeErrorsExit1(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"train", "--resume", filepath.Join(dir, "missing.json")},
		{"train", "--resume", case1}, // a case without training state
		{"bench", "--case", filepath.Join(dir, "missing.json")},
		{"solve", "--case", filepath.Join(dir, "missing.json")},
	} {
		code, _, errs := runCLI(args...)
		if code != 1 || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 1 and one line", args, code, errs)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, c := range []struct {
		cmd   []string
		flags []string
	}{
		{[]string{"train", "-h"}, []string{"-task", "-method", "-width", "-epochs", "-lr", "-batch", "-rtol", "-atol",
			"-gq-c", "-seed", "-out", "-json", "-quiet", "-save", "-save-every", "-resume", "-obs", "-irregular"}},
		{[]string{"bench", "-h"}, []string{"-sizes", "-methods", "-repeats", "-rtol", "-atol", "-gq-c", "-seed", "-case", "-out", "-json", "-quiet"}},
		{[]string{"demo", "-h"}, []string{"-width", "-epochs", "-out", "-json", "-quiet"}},
		{[]string{"solve", "-h"}, []string{"-case", "-method", "-rtol", "-atol", "-step", "-compat"}},
		{[]string{"grad", "-h"}, []string{"-case", "-method", "-rtol", "-atol", "-gq-c", "-gq-cap", "-compat"}},
		{[]string{"-h"}, []string{"solve", "grad", "gauss", "train", "bench"}},
	} {
		code, out, errs := runCLI(c.cmd...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", c.cmd, code, errs)
		}
		for _, f := range c.flags {
			if !strings.Contains(out, f) {
				t.Errorf("%v: help does not mention %s:\n%s", c.cmd, f, out)
			}
		}
	}
}

// TestSecondOrderVJP checks the sines field's products against finite
// differences, and the Evaluator contract (gp added to, the rest overwritten).
func TestSecondOrderVJP(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	mlp, err := neuralode.NewMLP(neuralode.MLPConfig{Dim: 2, Hidden: []int{5}, Activation: neuralode.Softplus}, rng)
	if err != nil {
		t.Fatal(err)
	}
	field := &secondOrder{mlp: mlp}
	ev := field.NewEvaluator()
	const B = 3
	z, a := make([]float64, 2*B), make([]float64, 2*B)
	for i := range z {
		z[i], a[i] = rng.NormFloat64(), rng.NormFloat64()
	}
	P := len(field.Params())
	f, gz, gp := make([]float64, 2*B), make([]float64, 2*B), make([]float64, P)
	for i := range gp {
		gp[i] = 1 // must be added to
	}
	for i := range gz {
		gz[i] = 99 // must be overwritten
	}
	ev.VJP(0.3, z, a, f, gz, gp, nil)
	phi := func() float64 { // aᵀ f(z)
		dz := make([]float64, 2*B)
		ev.Eval(0.3, z, dz)
		s := 0.0
		for i := range dz {
			s += a[i] * dz[i]
		}
		return s
	}
	dz := make([]float64, 2*B)
	ev.Eval(0.3, z, dz)
	for i := range dz {
		if dz[i] != f[i] {
			t.Fatalf("VJP's f differs from Eval at %d", i)
		}
	}
	for b := 0; b < B; b++ {
		if dz[2*b] != z[2*b+1] {
			t.Errorf("ẋ = %v, want v = %v", dz[2*b], z[2*b+1])
		}
	}
	const h = 1e-6
	fd := func(x []float64, i int) float64 {
		old := x[i]
		x[i] = old + h
		up := phi()
		x[i] = old - h
		dn := phi()
		x[i] = old
		return (up - dn) / (2 * h)
	}
	for i := range z {
		if g := fd(z, i); !absRelClose(gz[i], g, 1e-6) {
			t.Errorf("gz[%d] = %v, finite difference %v", i, gz[i], g)
		}
	}
	p := field.Params()
	for i := range p {
		if g := fd(p, i); !absRelClose(gp[i]-1, g, 1e-6) {
			t.Errorf("gp[%d] = %v, finite difference %v", i, gp[i]-1, g)
		}
	}
}

// TestBenchSweep: --sweep runs every method at every tolerance, reports
// one JSON object per point with its tolerance, nodes and error, and
// writes the accuracy-versus-time chart; a bad tolerance list is a usage
// error.
func TestBenchSweep(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI("bench", "--sizes", "2x4x3", "--methods", "seminorm,gq-adaptive", "--sweep",
		"--sweep-tols", "1e-3,1e-6", "--repeats", "1", "--json", "--quiet", "--out", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 {
		t.Fatalf("exit %d, %d lines, want 0 and 4: %s\n%s", code, len(lines), errs, out)
	}
	errAt := map[string]float64{}
	for _, l := range lines {
		var r struct {
			Method string  `json:"method"`
			Tol    float64 `json:"tol"`
			Nodes  int     `json:"quadrature_nodes"`
			Err    float64 `json:"grad_rel_err"`
			Secs   float64 `json:"seconds_median"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if !(r.Secs > 0) || !(r.Err >= 0) || (r.Method == "gq-adaptive") != (r.Nodes > 0) {
			t.Errorf("implausible row %q", l)
		}
		errAt[r.Method+strconv.FormatFloat(r.Tol, 'g', -1, 64)] = r.Err
	}
	if !(errAt["gq-adaptive1e-06"] < errAt["gq-adaptive0.001"]) {
		t.Errorf("tightening the tolerance did not reduce gq-adaptive's error: %v", errAt)
	}
	// A log–log chart: time ticks are labelled in seconds at powers of ten
	// (or their 2 and 5 multiples), not as log₁₀ values on a linear axis.
	svg, err := os.ReadFile(filepath.Join(dir, "sweep-2x4x3.svg"))
	if err != nil {
		t.Fatalf("chart: %v", err)
	}
	if s := string(svg); strings.Contains(s, "log₁₀") || !strings.Contains(s, "log scale") || !strings.Contains(s, "10⁻") {
		t.Errorf("sweep chart is not log–log:\n%s", s)
	}
	for _, m := range []string{"seminorm", "gq-adaptive"} {
		if !strings.Contains(string(svg), ">"+m+"</text>") {
			t.Errorf("legend lacks the full name %q", m)
		}
	}
	if code, _, errs := runCLI("bench", "--sweep", "--sweep-tols", "1e-3,x", "--out", dir); code != 2 {
		t.Errorf("bad --sweep-tols: exit %d (%s), want 2", code, errs)
	}
}
