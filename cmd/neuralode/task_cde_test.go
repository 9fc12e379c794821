package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpirals: shapes, the drop rate, the time channel, and the orientation
// of every series against its label (the signed area swept between
// consecutive observed points is positive anticlockwise).
func TestSpirals(t *testing.T) {
	const n = 64
	d, err := makeSpirals(newRNG(3), n, cdeDropFrac)
	if err != nil {
		t.Fatal(err)
	}
	K, C := cdeSamples, cdeChannels
	if len(d.Obs) != K*n*C || len(d.Labels) != n || len(d.Times) != K {
		t.Fatalf("shapes: %d observations, %d labels, %d times", len(d.Obs), len(d.Labels), len(d.Times))
	}
	counts := [2]int{}
	for b := 0; b < n; b++ {
		counts[d.Labels[b]]++
		missing := 0
		area := 0.0
		px, py := math.NaN(), math.NaN()
		for k := 0; k < K; k++ {
			o := (k*n + b) * C
			if d.Obs[o] != d.Times[k] {
				t.Fatalf("series %d: time channel %v at knot %d, want %v", b, d.Obs[o], k, d.Times[k])
			}
			x, y := d.Obs[o+1], d.Obs[o+2]
			if math.IsNaN(x) != math.IsNaN(y) {
				t.Fatalf("series %d knot %d: one position channel missing", b, k)
			}
			if math.IsNaN(x) {
				missing++
				continue
			}
			if !math.IsNaN(px) {
				area += px*y - py*x
			}
			px, py = x, y
		}
		if missing != 30 {
			t.Errorf("series %d: %d of %d samples dropped, want 30", b, missing, K)
		}
		if (area > 0) != (d.Labels[b] == 0) {
			t.Errorf("series %d: swept area %v for label %d", b, area, d.Labels[b])
		}
	}
	if counts[0] < n/4 || counts[1] < n/4 {
		t.Errorf("class counts %v", counts)
	}
	if _, err := makeSpirals(newRNG(1), 4, 1); err == nil {
		t.Error("drop fraction 1 accepted")
	}
}

// TestCDETaskGradient: the task's joint gradient (θ of f, the initial map
// ζ, the readout) against central differences of its loss, for both path
// kinds. The natural path's solve is slightly rough in its inputs (its third
// derivative jumps at knots the solver steps across), so the difference
// step is large and the solves tight.
func TestCDETaskGradient(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	for _, kind := range []string{"cde", "cde-hermite"} {
		cfg := taskRegistry[kind].defaults
		cfg.Task, cfg.Method, cfg.Seed = kind, "direct", 5
		cfg.Width, cfg.Batch, cfg.RTol, cfg.ATol = 4, 3, 1e-12, 1e-12
		tk, err := newTask(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ct := tk.(*cdeTask)
		p := tk.params()
		grad := make([]float64, len(p))
		if _, _, err := tk.gradient(0, 0, grad); err != nil {
			t.Fatal(err)
		}
		scratch := make([]float64, len(p))
		loss := func() float64 {
			l, _, err := tk.gradient(0, 0, scratch)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		// Indices from each block: f's first weights and last bias, ζ, readout.
		idx := []int{0, 3, ct.nf - 1, ct.nf, ct.nf + 5, ct.nf + ct.ni - 1, ct.nf + ct.ni, len(p) - 1}
		// Fourth-order central differences: the step can be large enough
		// that the solves' roughness does not matter.
		at := func(i int, d float64) float64 {
			old := p[i]
			p[i] = old + d
			l := loss()
			p[i] = old
			return l
		}
		const h = 1e-2
		for _, i := range idx {
			fd := (8*(at(i, h)-at(i, -h)) - (at(i, 2*h) - at(i, -2*h))) / (12 * h)
			if math.Abs(fd-grad[i]) > 1e-6*(1+math.Abs(fd)) {
				t.Errorf("%s: dL/dp[%d] = %v, finite difference %v", kind, i, grad[i], fd)
			}
		}
	}
}

// TestTrainCDE runs both CDE tasks briefly through the command: JSON lines
// with "val_metric": "accuracy", forward and backward evaluations counted,
// the path plot written.
func TestTrainCDE(t *testing.T) {
	for _, task := range []string{"cde", "cde-hermite"} {
		dir := t.TempDir()
		code, out, errs := runCLI("train", "--task", task, "--method", "seminorm", "--width", "4", "--epochs", "1",
			"--json", "--quiet", "--out", dir)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", task, code, errs)
		}
		sc := bufio.NewScanner(strings.NewReader(out))
		n := 0
		for sc.Scan() {
			var r epochRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: %v in %q", task, err, sc.Text())
			}
			n++
			if r.ValMetric != "accuracy" || !(r.Val >= 0 && r.Val <= 1) || r.NFEForward <= 0 || r.NFEBackward <= 0 {
				t.Errorf("%s: record %+v", task, r)
			}
		}
		if n != 2 {
			t.Errorf("%s: %d JSON lines, want an epoch and a summary", task, n)
		}
		if _, err := os.Stat(filepath.Join(dir, task+"_paths.svg")); err != nil {
			t.Errorf("%s: no path plot: %v", task, err)
		}
	}
}

// TestCDEResume: a CDE run saved after one epoch and resumed for a second
// ends with the parameters of an uninterrupted two-epoch run.
func TestCDEResume(t *testing.T) {
	dir := t.TempDir()
	base := []string{"train", "--task", "cde", "--method", "gq", "--width", "4", "--quiet"}
	full, half := filepath.Join(dir, "full.json"), filepath.Join(dir, "half.json")
	if code, _, errs := runCLI(append(base, "--epochs", "2", "--save", full, "--out", filepath.Join(dir, "a"))...); code != 0 {
		t.Fatalf("full run: exit %d: %s", code, errs)
	}
	if code, _, errs := runCLI(append(base, "--epochs", "1", "--save", half, "--out", filepath.Join(dir, "b"))...); code != 0 {
		t.Fatalf("first half: exit %d: %s", code, errs)
	}
	if code, _, errs := runCLI("train", "--resume", half, "--epochs", "2", "--save", half, "--quiet", "--out", filepath.Join(dir, "b")); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errs)
	}
	if a, b := checkpointParams(t, full), checkpointParams(t, half); !sameBits(a.Params, b.Params) || !sameBits(a.AdamV, b.AdamV) {
		t.Error("resumed CDE run differs from the uninterrupted one")
	}
}
