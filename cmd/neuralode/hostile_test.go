package main

// Regression tests for the command-line defects found by a new-user and a
// red-team pass: each test names the defect it guards against.

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// writeCaseVariant writes case1 with edits applied to its top-level object.
func writeCaseVariant(t *testing.T, name string, edit func(m map[string]any)) string {
	t.Helper()
	data, err := os.ReadFile(case1)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantOneLine checks an exit status and a one-line message naming want.
func wantOneLine(t *testing.T, args []string, code int, errs string, wantCode int, want ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, wantCode, errs)
		return
	}
	if strings.Count(errs, "\n") != 1 {
		t.Errorf("%v: stderr %q, want one line", args, errs)
	}
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("%v: stderr %q does not mention %q", args, errs, w)
		}
	}
}

// Item 10: an unwritable --save is refused before training, as --out is.
func TestSaveCheckedBeforeTraining(t *testing.T) {
	dir := t.TempDir()
	for _, save := range []string{
		filepath.Join(dir, "missing", "x.json"), // missing directory
		dir,                                     // a directory, not a file
	} {
		args := []string{"train", "--width", "3", "--epochs", "1", "--save", save, "--out", filepath.Join(dir, "o")}
		code, _, errs := runCLI(args...)
		wantOneLine(t, args, code, errs, 1, "--save")
		if _, err := os.Stat(filepath.Join(dir, "o", "metrics.jsonl")); err == nil {
			t.Errorf("%v: trained although --save cannot be written", args)
		}
	}
	if os.Getuid() != 0 && runtime.GOOS != "windows" {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		args := []string{"train", "--width", "3", "--epochs", "1", "--save", filepath.Join(ro, "x.json"), "--out", filepath.Join(dir, "o2")}
		code, _, errs := runCLI(args...)
		wantOneLine(t, args, code, errs, 1, "--save")
	}
}

// Item 11: a run resumed from a checkpoint older than metrics.jsonl (a kill -9
// after the metrics but before the next save) does not repeat epochs.
func TestResumeRewritesMetricsToCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck.json")
	base := []string{"train", "--task", "g1d", "--width", "3", "--quiet", "--out", dir}
	if code, _, errs := runCLI(append(base, "--epochs", "2", "--save", ck)...); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// The killed run had written epochs 3 and 4 after the checkpoint at 2.
	f, err := os.OpenFile(filepath.Join(dir, "metrics.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []int{3, 4} {
		writeJSON(f, epochRecord{Type: "epoch", Task: "g1d", Method: "gq", Epoch: e, Loss: 123})
	}
	f.Close()
	if code, _, errs := runCLI("train", "--resume", ck, "--epochs", "5", "--quiet", "--out", dir); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errs)
	}
	seen := map[float64]int{}
	summaries := 0
	for _, r := range readMetrics(t, dir) {
		switch r["type"] {
		case "epoch":
			seen[r["epoch"].(float64)]++
			if r["loss"].(float64) == 123 {
				t.Errorf("the killed run's epoch %v survived the resume", r["epoch"])
			}
		case "summary":
			summaries++
		}
	}
	for e := 1.0; e <= 5; e++ {
		if seen[e] != 1 {
			t.Errorf("epoch %v recorded %d times, want once (%v)", e, seen[e], seen)
		}
	}
	if summaries != 1 {
		t.Errorf("%d summary records, want 1", summaries)
	}
}

// Item 12: --resume without --save saves back to the resumed file.
func TestResumeWithoutSaveSavesBack(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "r.json")
	if code, _, errs := runCLI("train", "--width", "3", "--epochs", "1", "--save", ck, "--quiet", "--out", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	code, _, errs := runCLI("train", "--resume", ck, "--epochs", "3", "--out", dir)
	if code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errs)
	}
	if st := checkpointParams(t, ck); st.Epoch != 3 {
		t.Errorf("resumed file is at epoch %d, want 3 (the work was thrown away)", st.Epoch)
	}
	if !strings.Contains(errs, ck) {
		t.Errorf("stderr does not say where the model went: %q", errs)
	}
}

// Item 13: sizes that cannot fit in memory are refused with a clear usage
// error instead of a runtime crash.
func TestHugeSizesRefused(t *testing.T) {
	for _, args := range [][]string{
		{"train", "--task", "sines", "--obs", "100000000"},
		{"train", "--task", "ou", "--batch", "1000000000"},
		{"train", "--task", "spheres", "--width", "2000000"},
		{"demo", "--width", "100000000"},
		{"bench", "--sizes", "100000x100000x100000"},
	} {
		start := time.Now()
		code, _, errs := runCLI(args...)
		wantOneLine(t, args, code, errs, 2, "memory")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%v: took %v to refuse", args, d)
		}
	}
}

// Item 13: an SVG's size is bounded however many points are drawn.
func TestSVGSizeCapped(t *testing.T) {
	const n = 200000
	x, y := make([]float64, n), make([]float64, n)
	for i := range x {
		x[i], y[i] = float64(i), math.Sin(float64(i)/1000)
	}
	p := &lineChart{Title: "many points", Series: []lineSeries{
		{Name: "line", X: x, Y: y},
		{Name: "markers", X: x, Y: y, NoLine: true},
	}}
	var buf bytes.Buffer
	if err := p.writeSVG(&buf, 800, 480); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 1<<20 {
		t.Errorf("%d points give a %d-byte SVG, want at most 1 MiB", n, buf.Len())
	}
	parseSVG(t, buf.Bytes())
}

// Item 14: an interrupt requested while a long step runs stops inside the
// step (not after it), keeps the state of the last completed step, and the
// run resumes from it.
func TestInterruptInsideStep(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck.json")
	var evals atomic.Int64
	var requested atomic.Bool
	in := interrupts{
		betweenSteps: requested.Load,
		withinStep: func() bool {
			// The request arrives during the 5th evaluation of the run.
			if evals.Add(1) == 5 {
				requested.Store(true)
			}
			return requested.Load()
		},
	}
	var out, errb bytes.Buffer
	args := []string{"--task", "ou", "--width", "4", "--batch", "8", "--epochs", "3", "--save", ck, "--out", dir, "--quiet"}
	code := trainCommandWith(args, &out, &errb, in)
	if code != exitInterrupted {
		t.Fatalf("exit %d, want %d: %s", code, exitInterrupted, errb.String())
	}
	if n := evals.Load(); n > 10 {
		t.Errorf("%d evaluations before stopping, want the step abandoned right after the 5th", n)
	}
	st := checkpointParams(t, ck)
	if st.Epoch != 0 || st.Step != 0 {
		t.Errorf("checkpoint at epoch %d step %d, want the start (no step completed)", st.Epoch, st.Step)
	}
	if code, _, errs := runCLI("train", "--resume", ck, "--quiet", "--out", dir); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, errs)
	}
	if st := checkpointParams(t, ck); st.Epoch != 3 {
		t.Errorf("resumed to epoch %d, want 3", st.Epoch)
	}
}

// Item 14: the first signal asks for a graceful stop, the second forces an
// exit (status 130) at once.
func TestSecondSignalForcesExit(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	var stderr bytes.Buffer
	exited := make(chan int, 1)
	h := newInterruptHandler(&stderr, func(code int) { exited <- code })
	go h.watch(sigs)
	sigs <- os.Interrupt
	deadline := time.Now().Add(5 * time.Second)
	for !h.requested() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !h.requested() {
		t.Fatal("first signal did not request a stop")
	}
	select {
	case c := <-exited:
		t.Fatalf("first signal exited (%d)", c)
	case <-time.After(20 * time.Millisecond):
	}
	sigs <- os.Interrupt
	select {
	case c := <-exited:
		if c != exitInterrupted {
			t.Errorf("forced exit status %d, want %d", c, exitInterrupted)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second signal did not force an exit")
	}
}

// Item 15: hand-edited checkpoints give one-line errors that say what is
// wrong, never a panic or a misleading message.
func TestEditedCheckpointsRejected(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck.json")
	if code, _, errs := runCLI("train", "--task", "spheres", "--width", "3", "--epochs", "2", "--batch", "1000",
		"--save", ck, "--quiet", "--out", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	data, err := os.ReadFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(st map[string]any)
		want string
	}{
		{"batch 0", func(st map[string]any) { st["config"].(map[string]any)["batch"] = 0 }, "batch"},
		{"width -1", func(st map[string]any) { st["config"].(map[string]any)["width"] = -1 }, "width"},
		{"lr NaN-like", func(st map[string]any) { st["config"].(map[string]any)["lr"] = -1 }, "lr"},
		{"epoch -1", func(st map[string]any) { st["epoch"] = -1 }, "epoch"},
		{"epoch huge", func(st map[string]any) { st["epoch"] = 1e15 }, "epoch"},
		{"step huge", func(st map[string]any) { st["step"] = 1e9 }, "step"},
		{"step -2", func(st map[string]any) { st["step"] = -2 }, "step"},
		{"adam_t -1", func(st map[string]any) { st["adam_t"] = -1 }, "adam_t"},
		{"adam_m truncated", func(st map[string]any) { st["adam_m"] = st["adam_m"].([]any)[:10] }, "adam_m has 10"},
		{"params truncated", func(st map[string]any) { st["params"] = st["params"].([]any)[:10] }, "params has 10"},
		{"history short", func(st map[string]any) { st["history"] = st["history"].([]any)[:1] }, "history"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			c.edit(m[checkpointKey].(map[string]any))
			out, _ := json.Marshal(m)
			path := filepath.Join(t.TempDir(), "edited.json")
			if err := os.WriteFile(path, out, 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"train", "--resume", path, "--epochs", "3", "--quiet", "--out", t.TempDir()}
			code, _, errs := runCLI(args...)
			wantOneLine(t, args, code, errs, 1, c.want)
			if m := regexp.MustCompile(`(\d+) parameters, the model (\d+)`).FindStringSubmatch(errs); m != nil && m[1] == m[2] {
				t.Errorf("self-contradictory message %q", errs)
			}
		})
	}
}

// Item 16: usage errors exit 2 and runtime errors 1, with messages in the
// command's own terms (flag names, not library option names).
func TestExitCodesAndMessages(t *testing.T) {
	tiny := writeCaseVariant(t, "tiny.json", func(m map[string]any) {
		m["t"] = []float64{1, math.Nextafter(1, 2)}
		delete(m, "reference")
	})
	huge := writeCaseVariant(t, "huge.json", func(m map[string]any) {
		z := m["z0"].([]any)
		for i := range z {
			z[i] = []float64{1e308, 1e308}
		}
		delete(m, "reference")
	})
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want []string
		not  []string
	}{
		{[]string{"grad", "--case", case1, "--gq-cap", "100000", "--method", "gq"}, 2, []string{"--gq-cap"}, []string{"GradOptions"}},
		{[]string{"grad", "--case", case1, "--gq-cap", "0"}, 2, []string{"--gq-cap"}, nil},
		{[]string{"grad", "--case", case1, "--rtol", "Inf"}, 2, []string{"--rtol"}, []string{"Options."}},
		{[]string{"grad", "--case", case1, "--rtol", "-1"}, 2, []string{"--rtol"}, nil},
		{[]string{"grad", "--case", case1, "--rtol", "1e-300", "--atol", "1e-300"}, 2, []string{"--rtol"}, []string{"non-finite"}},
		{[]string{"solve", "--case", case1, "--method", "rk4"}, 2, []string{"--step"}, []string{"Options."}},
		{[]string{"solve", "--case", case1, "--step", "1e-400"}, 2, []string{"--step"}, nil},
		{[]string{"solve", "--case", case1, "--rtol", "0"}, 2, []string{"--rtol"}, nil},
		{[]string{"grad", "--case", case1, "--atol", "0"}, 2, []string{"--atol"}, nil},
		{[]string{"bench", "--rtol", "0"}, 2, []string{"--rtol"}, nil},
		{[]string{"train", "--rtol", "Inf"}, 2, []string{"--rtol"}, nil},
		{[]string{"solve"}, 2, []string{"--case"}, nil},
		{[]string{"solve", "--case", dir}, 1, []string{"directory"}, []string{"malformed JSON"}},
		{[]string{"solve", "--case", huge}, 1, []string{"overflow"}, []string{"json:", "unsupported value"}},
		{[]string{"grad", "--case", huge}, 1, []string{"overflow"}, nil},
	} {
		code, out, errs := runCLI(c.args...)
		wantOneLine(t, c.args, code, errs, c.code, c.want...)
		for _, n := range c.not {
			if strings.Contains(errs, n) {
				t.Errorf("%v: stderr %q mentions %q", c.args, errs, n)
			}
		}
		if out != "" {
			t.Errorf("%v: failed but wrote %q on stdout", c.args, out)
		}
	}
	// Two observation times one ulp apart are fine for every method, the
	// quadrature ones included (they no longer name a t[2] the user never
	// gave).
	for _, m := range []string{"direct", "gq", "gq-interp", "gq-adaptive"} {
		if code, _, errs := runCLI("grad", "--case", tiny, "--method", m); code != 0 {
			t.Errorf("%s on close times: exit %d: %s", m, code, errs)
		}
	}
}

// Item 18: every command accepts --json and --quiet; without --json the
// output is for people (grad no longer prints one 10 KB line).
func TestJSONAndQuietEverywhere(t *testing.T) {
	dir := t.TempDir()
	for _, c := range [][]string{
		{"solve", "--case", case1},
		{"grad", "--case", case1},
		{"gauss", "-n", "3"},
		{"bench", "--sizes", "2x3x2", "--repeats", "1", "--out", dir},
		{"train", "--width", "3", "--epochs", "1", "--out", dir},
		{"demo", "--width", "3", "--epochs", "1", "--out", dir},
	} {
		code, out, errs := runCLI(append(c, "--json", "--quiet")...)
		if code != 0 {
			t.Errorf("%v --json --quiet: exit %d: %s", c, code, errs)
			continue
		}
		if errs != "" {
			t.Errorf("%v --quiet: stderr %q", c, errs)
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !json.Valid([]byte(l)) {
				t.Errorf("%v --json: line %q is not JSON", c, l)
			}
		}
	}
	code, out, errs := runCLI("grad", "--case", case1)
	if code != 0 {
		t.Fatalf("grad: exit %d: %s", code, errs)
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 200 {
			t.Errorf("grad prints a %d-character line", len(l))
		}
	}
	for _, w := range []string{"loss", "gradient", "evaluations"} {
		if !strings.Contains(out, w) {
			t.Errorf("grad output lacks %q:\n%s", w, out)
		}
	}
}

// Item 18: the top-level help lists every command, demo included.
func TestHelpListsEveryCommand(t *testing.T) {
	_, out, _ := runCLI("-h")
	for _, c := range []string{"solve", "grad", "gauss", "train", "bench", "demo"} {
		if !regexp.MustCompile(`(?m)^\s+` + c + `\s`).MatchString(out) {
			t.Errorf("neuralode -h does not list %s:\n%s", c, out)
		}
	}
	for _, task := range taskOrder {
		if !strings.Contains(out, task) {
			t.Errorf("neuralode -h does not name the task %s:\n%s", task, out)
		}
	}
}

// Item 18: g1d's validation column is not the training loss under another
// name: it is named for what it measures.
func TestG1DMetricIsHonest(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCLI("train", "--task", "g1d", "--width", "3", "--epochs", "3", "--quiet", "--out", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, r := range readMetrics(t, dir) {
		if r["val_metric"] == "val_mse" {
			t.Fatalf("g1d reports %q although it has no held-out data", r["val_metric"])
		}
	}
}

// Item 18: the README opens with its title, not with an unexplained code block.
func TestREADMEOpensWithTitle(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(strings.TrimSpace(string(data)), "\n", 2)[0]
	if !strings.HasPrefix(first, "# ") {
		t.Errorf("README starts with %q, want its title", first)
	}
}

// Item 17: a save that fails leaves no temporary file, a save cleans up the
// temporary files of an earlier killed save, and checkpoints get the same
// permissions as the other outputs.
func TestAtomicSaveHygiene(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.json")
	errBoom := os.ErrInvalid
	if err := writeAtomic(path, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return errBoom
	}); err != errBoom {
		t.Fatalf("writeAtomic error %v, want %v", err, errBoom)
	}
	stale := filepath.Join(dir, ".m.json.tmp12345")
	if err := os.WriteFile(stale, []byte("left by kill -9"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(path, func(w io.Writer) error { _, err := w.Write([]byte("{}")); return err }); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".m.json.tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	ref := filepath.Join(dir, "ref")
	f, err := os.OpenFile(ref, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	a, _ := os.Stat(path)
	b, _ := os.Stat(ref)
	if a.Mode().Perm() != b.Mode().Perm() {
		t.Errorf("saved file mode %v, other outputs %v", a.Mode().Perm(), b.Mode().Perm())
	}
}

// Item 19: the spheres plot (equal aspect) has no empty band between the
// title and the plot area, and the canvas keeps its aspect-driven height.
func TestEqualAspectNoEmptyBand(t *testing.T) {
	s := exampleSpheresPlot(t)
	var buf bytes.Buffer
	if err := s.writeSVG(&buf, 640, 560); err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	m := regexp.MustCompile(`<clipPath id="plotarea"><rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)"`).FindStringSubmatch(svg)
	if m == nil {
		t.Fatal("no plot-area clip rectangle")
	}
	top := mustFloat(t, m[1])
	if top > 60 {
		t.Errorf("plot area starts %g px from the top: an empty band under the title", top)
	}
	h := regexp.MustCompile(`<svg [^>]*height="([\d.]+)"`).FindStringSubmatch(svg)
	bottom := top + mustFloat(t, m[2])
	if canvasH := mustFloat(t, h[1]); canvasH-bottom > 70 {
		t.Errorf("plot area ends %g px above the bottom: an empty band under the axis", canvasH-bottom)
	}
}

// Item 19: markers on the edge of the data range (the g1d targets at t = 1)
// are drawn whole, not cut by the frame's clip rectangle.
func TestEdgeMarkersNotClipped(t *testing.T) {
	p := &lineChart{Title: "targets", Series: []lineSeries{
		{Name: "x", X: []float64{0, 0.5, 1}, Y: []float64{-1, 0, 1}},
		{Name: "targets", X: []float64{1, 1}, Y: []float64{1, -1}, NoLine: true},
	}}
	var buf bytes.Buffer
	if err := p.writeSVG(&buf, 640, 400); err != nil {
		t.Fatal(err)
	}
	svg := buf.String()
	clips := map[string][4]float64{}
	for _, m := range regexp.MustCompile(`<clipPath id="(\w+)"><rect x="([\d.-]+)" y="([\d.-]+)" width="([\d.]+)" height="([\d.]+)"`).FindAllStringSubmatch(svg, -1) {
		clips[m[1]] = [4]float64{mustFloat(t, m[2]), mustFloat(t, m[3]), mustFloat(t, m[4]), mustFloat(t, m[5])}
	}
	// Walk the document keeping the clip of the innermost clipped group.
	var stack []string
	tok := regexp.MustCompile(`<g[^>]*?(?: clip-path="url\(#(\w+)\)")?[^>]*>|</g>|<circle cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"[^>]*class="marker"`)
	markers := 0
	for _, m := range tok.FindAllStringSubmatch(svg, -1) {
		switch {
		case strings.HasPrefix(m[0], "</g"):
			stack = stack[:len(stack)-1]
		case strings.HasPrefix(m[0], "<g"):
			stack = append(stack, m[1])
		default:
			markers++
			clip := ""
			for _, c := range stack {
				if c != "" {
					clip = c
				}
			}
			if clip == "" {
				continue
			}
			r := clips[clip]
			cx, cy, rad := mustFloat(t, m[2]), mustFloat(t, m[3]), mustFloat(t, m[4])
			if cx-rad < r[0] || cx+rad > r[0]+r[2] || cy-rad < r[1] || cy+rad > r[1]+r[3] {
				t.Errorf("marker at (%g, %g) r %g is cut by clip %q %v", cx, cy, rad, clip, r)
			}
		}
	}
	if markers < 2 {
		t.Fatalf("found %d markers", markers)
	}
}

func mustFloat(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Item 10: saving into the (not yet existing) output directory works.
func TestSaveIntoNewOutDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "new")
	code, _, errs := runCLI("train", "--width", "3", "--epochs", "1", "--out", out, "--save", filepath.Join(out, "m.json"), "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	checkpointParams(t, filepath.Join(out, "m.json"))
}
