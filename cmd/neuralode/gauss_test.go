package main

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/neuralode/neuralode"
)

// gaussOutput mirrors the printed object; json.Number keeps each value's
// text so the test can check the shortest round-trip formatting.
type gaussOutput struct {
	N       int           `json:"n"`
	Nodes   []json.Number `json:"nodes"`
	Weights []json.Number `json:"weights"`
}

func runGaussCapture(args ...string) (code int, out, errOut string) {
	var o, e bytes.Buffer
	code = runGauss(args, &o, &e)
	return code, o.String(), e.String()
}

func TestRunGaussOutput(t *testing.T) {
	cases := []struct {
		args []string
		n    int
		a, b float64
	}{
		{[]string{"-n", "1"}, 1, -1, 1},
		{[]string{"-n", "5"}, 5, -1, 1},
		{[]string{"--n=64", "--interval", "0,2.5"}, 64, 0, 2.5},
		{[]string{"-n", "7", "--interval", "3,-1"}, 7, 3, -1},
		{[]string{"-n", "3", "-interval=-2, -1e-5"}, 3, -2, -1e-5},
	}
	for _, c := range cases {
		code, out, errOut := runGaussCapture(append(c.args, "--json")...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", c.args, code, errOut)
		}
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "}\n") {
			t.Errorf("%v: output is not one line: %q", c.args, out)
		}
		var got gaussOutput
		dec := json.NewDecoder(strings.NewReader(out))
		dec.UseNumber()
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%v: invalid JSON %q: %v", c.args, out, err)
		}
		rule, err := neuralode.GaussLegendre(c.n)
		if err != nil {
			t.Fatal(err)
		}
		wantX, wantW := make([]float64, c.n), make([]float64, c.n)
		if err := rule.MapTo(c.a, c.b, wantX, wantW); err != nil {
			t.Fatal(err)
		}
		if got.N != c.n || len(got.Nodes) != c.n || len(got.Weights) != c.n {
			t.Fatalf("%v: n=%d with %d nodes, %d weights", c.args, got.N, len(got.Nodes), len(got.Weights))
		}
		check := func(kind string, k int, s json.Number, want float64) {
			v, err := strconv.ParseFloat(string(s), 64)
			if err != nil || math.Float64bits(v) != math.Float64bits(want) {
				t.Errorf("%v: %s %d = %s, want %v bit for bit", c.args, kind, k, s, want)
			}
			if short := strconv.FormatFloat(want, 'g', -1, 64); string(s) != short {
				t.Errorf("%v: %s %d printed %s, want shortest form %s", c.args, kind, k, s, short)
			}
		}
		for k := 0; k < c.n; k++ {
			check("node", k, got.Nodes[k], wantX[k])
			check("weight", k, got.Weights[k], wantW[k])
		}
	}
}

func TestRunGaussErrors(t *testing.T) {
	cases := []struct {
		args []string
		flag string // must appear in the message
	}{
		{nil, "-n"},
		{[]string{"-n", "0"}, "-n"},
		{[]string{"-n", "-3"}, "-n"},
		{[]string{"-n", strconv.Itoa(neuralode.MaxGaussLegendreNodes + 1)}, "-n"},
		{[]string{"-n", "abc"}, "-n"},
		{[]string{"-n", "2.5"}, "-n"},
		{[]string{"-n", "4", "--interval", "1"}, "--interval"},
		{[]string{"-n", "4", "--interval", "a,b"}, "--interval"},
		{[]string{"-n", "4", "--interval", "0,inf"}, "--interval"},
		{[]string{"-n", "4", "--interval", "NaN,1"}, "--interval"},
		{[]string{"-n", "4", "--interval", "0,1,2"}, "--interval"},
		{[]string{"-n", "4", "--interval"}, "-interval"},
		{[]string{"-n", "4", "--bogus"}, "-bogus"},
		{[]string{"-n", "4", "extra"}, "extra"},
	}
	lineRE := regexp.MustCompile(`^neuralode gauss: [^\n]+\n$`)
	for _, c := range cases {
		code, out, errOut := runGaussCapture(c.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", c.args, code)
		}
		if out != "" {
			t.Errorf("%v: wrote to stdout: %q", c.args, out)
		}
		if !lineRE.MatchString(errOut) || !strings.Contains(errOut, c.flag) {
			t.Errorf("%v: stderr %q, want one line naming %s", c.args, errOut, c.flag)
		}
	}
}

// TestRunGaussTable checks the default output, one "node weight" line per
// node after a comment line, against the JSON form.
func TestRunGaussTable(t *testing.T) {
	code, out, errOut := runGaussCapture("-n", "4", "--interval", "0,1")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	_, js, _ := runGaussCapture("-n", "4", "--interval", "0,1", "--json")
	var want gaussOutput
	if err := json.Unmarshal([]byte(js), &want); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "#") {
		t.Fatalf("table %q", out)
	}
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != want.Nodes[i].String() || f[1] != want.Weights[i].String() {
			t.Errorf("line %q, want %s %s", l, want.Nodes[i], want.Weights[i])
		}
	}
}

func TestRunGaussHelp(t *testing.T) {
	code, out, errOut := runGaussCapture("-h")
	if code != 0 || errOut != "" || !strings.Contains(out, "usage: neuralode gauss") {
		t.Errorf("-h: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
