package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// eightGaussiansDensity is the density toyData("8gaussians") samples: a
// uniform mixture of N(4c_k/1.414, (0.5/1.414)² I).
func eightGaussiansDensity(x, y float64) float64 {
	const s = 1 / math.Sqrt2
	centres := [8][2]float64{{1, 0}, {-1, 0}, {0, 1}, {0, -1}, {s, s}, {s, -s}, {-s, s}, {-s, -s}}
	sd := 0.5 / 1.414
	p := 0.0
	for _, c := range centres {
		dx, dy := x-4*c[0]/1.414, y-4*c[1]/1.414
		p += math.Exp(-(dx*dx+dy*dy)/(2*sd*sd)) / (2 * math.Pi * sd * sd)
	}
	return p / 8
}

// TestEightGaussiansEntropy computes the differential entropy of the
// 8gaussians mixture, −∫ p log p, by the midpoint rule on a fine grid (the
// integrand is smooth and negligible beyond the square): 2.8319 nats,
// 0.004 below the issue's ≈ 2.836. It also checks that toyData samples that density: the
// Monte Carlo mean of −log p over its samples matches within 4 standard
// errors.
func TestEightGaussiansEntropy(t *testing.T) {
	H, mass := gridEntropy(eightGaussiansDensity, 5, 1200)
	t.Logf("8gaussians: mass %.8f, entropy %.6f nats", mass, H)
	if math.Abs(mass-1) > 1e-6 {
		t.Errorf("mixture mass %v, want 1", mass)
	}
	// Without overlap the entropy would be log 8 + log(2πe·σ²) = 2.8382
	// (σ = 0.5/1.414); the components sit 6.1σ apart, and their small
	// overlap lowers it to 2.8319, a little below the issue's ≈ 2.836.
	sd := 0.5 / 1.414
	upper := math.Log(8) + math.Log(2*math.Pi*math.E*sd*sd)
	if !(H < upper && H > upper-0.01) || math.Abs(H-2.8319) > 5e-4 {
		t.Errorf("entropy %v, want 2.8319 (below the no-overlap %v)", H, upper)
	}
	const m = 200000
	x, err := toyData("8gaussians", seedRNG(1, streamData), m)
	if err != nil {
		t.Fatal(err)
	}
	var s, s2 float64
	for i := 0; i < m; i++ {
		v := -math.Log(eightGaussiansDensity(x[2*i], x[2*i+1]))
		s += v
		s2 += v * v
	}
	mean := s / m
	se := math.Sqrt((s2/m - mean*mean) / (m - 1))
	if math.Abs(mean-H) > 4*se {
		t.Errorf("Monte Carlo entropy of toyData samples %.4f ± %.4f, quadrature %.4f", mean, se, H)
	}
}

// gridEntropy returns −∫ p log p and ∫ p over [−lim, lim]² by the midpoint
// rule with n×n cells.
func gridEntropy(p func(x, y float64) float64, lim float64, n int) (H, mass float64) {
	h := 2 * lim / float64(n)
	for j := 0; j < n; j++ {
		y := -lim + (float64(j)+0.5)*h
		for i := 0; i < n; i++ {
			v := p(-lim+(float64(i)+0.5)*h, y)
			mass += v * h * h
			if v > 0 {
				H -= v * math.Log(v) * h * h
			}
		}
	}
	return H, mass
}

// curveDensity is the density of c(a) + N(0, sd² I) for a uniform on
// [0, span], by the midpoint rule with n nodes in a.
func curveDensity(x, y, span, sd float64, n int, c func(a float64) (float64, float64)) float64 {
	p := 0.0
	for k := 0; k < n; k++ {
		cx, cy := c(span * (float64(k) + 0.5) / float64(n))
		dx, dy := x-cx, y-cy
		p += math.Exp(-(dx*dx + dy*dy) / (2 * sd * sd))
	}
	return p / (float64(n) * 2 * math.Pi * sd * sd)
}

// TestToyEntropies computes the differential entropy of the other toy
// densities, the floor of any model's expected NLL (the README quotes
// them beside the validation NLL): moons and circles by quadrature of their
// densities (Gaussian noise around uniformly parameterised curves), the
// checkerboard exactly (log 32, uniform on 8 squares of area 4), the
// pinwheel by the change of variables from its Gaussian features (arms
// assumed disjoint): x = 2R(−α)f with α = 2πk/5 + 0.25e^{f₀}, whose
// Jacobian determinant is 4(1 + 0.25e^{f₀}f₁). A Monte Carlo check of each
// quadrature against −log p over toyData's samples ties the densities to
// the generators.
func TestToyEntropies(t *testing.T) {
	if testing.Short() {
		t.Skip("quadrature of four densities")
	}
	moons := func(x, y float64) float64 {
		outer := curveDensity(x, y, math.Pi, 0.2, 120, func(a float64) (float64, float64) {
			return 2*math.Cos(a) - 1, 2*math.Sin(a) - 0.2
		})
		inner := curveDensity(x, y, math.Pi, 0.2, 120, func(a float64) (float64, float64) {
			return 2*(1-math.Cos(a)) - 1, 2*(0.5-math.Sin(a)) - 0.2
		})
		return (outer + inner) / 2
	}
	circles := func(x, y float64) float64 {
		p := 0.0
		for _, r := range []float64{3, 1.5} {
			p += curveDensity(x, y, 2*math.Pi, 0.24, 160, func(a float64) (float64, float64) {
				return r * math.Cos(a), r * math.Sin(a)
			}) / 2
		}
		return p
	}
	for _, c := range []struct {
		name string
		p    func(x, y float64) float64
		lim  float64
		want float64
	}{{"moons", moons, 4.5, 2.3939}, {"circles", circles, 4.5, 3.2681}} {
		H, mass := gridEntropy(c.p, c.lim, 180)
		t.Logf("%s: mass %.6f, entropy %.4f nats", c.name, mass, H)
		if math.Abs(mass-1) > 1e-4 || math.Abs(H-c.want) > 1e-3 {
			t.Errorf("%s: mass %v, entropy %v, want 1 and %v", c.name, mass, H, c.want)
		}
		const m = 5000
		x, _ := toyData(c.name, seedRNG(2, streamData), m)
		var s, s2 float64
		for i := 0; i < m; i++ {
			v := -math.Log(c.p(x[2*i], x[2*i+1]))
			s, s2 = s+v, s2+v*v
		}
		mean := s / m
		se := math.Sqrt((s2/m - mean*mean) / (m - 1))
		if math.Abs(mean-H) > 4*se {
			t.Errorf("%s: Monte Carlo entropy %.4f ± %.4f, quadrature %.4f", c.name, mean, se, H)
		}
	}
	// Pinwheel: H = log 5 + H(f₀) + H(f₁) + log 4 + E log|1 + 0.25e^{f₀}f₁|.
	rng := seedRNG(3, streamData)
	const m = 400000
	e := 0.0
	for i := 0; i < m; i++ {
		f0, f1 := 0.3*rng.NormFloat64()+1, 0.1*rng.NormFloat64()
		e += math.Log(math.Abs(1+0.25*math.Exp(f0)*f1)) / m
	}
	hg := func(sd float64) float64 { return 0.5 * math.Log(2*math.Pi*math.E*sd*sd) }
	H := math.Log(5) + hg(0.3) + hg(0.1) + math.Log(4) + e
	t.Logf("pinwheel: entropy %.4f nats; checkerboard: %.4f", H, math.Log(32))
	if math.Abs(H-2.3242) > 5e-3 {
		t.Errorf("pinwheel entropy %v, want 2.3242", H)
	}
}

// TestToyData checks each density's support and symmetry facts, and
// reproducibility for a seed.
func TestToyData(t *testing.T) {
	const n = 20000
	for _, name := range cnfDataSets {
		x, err := toyData(name, seedRNG(3, streamData), n)
		if err != nil {
			t.Fatal(err)
		}
		y, _ := toyData(name, seedRNG(3, streamData), n)
		if !sameBits(x, y) {
			t.Errorf("%s: not reproducible", name)
		}
		var mx, my float64
		for i := 0; i < n; i++ {
			a, b := x[2*i], x[2*i+1]
			if math.IsNaN(a+b) || math.Abs(a) > 6 || math.Abs(b) > 6 {
				t.Fatalf("%s: sample (%v, %v) outside ±6", name, a, b)
			}
			mx += a / n
			my += b / n
			switch name {
			case "checkerboard":
				// Uniform on the squares of side 2 whose indices have even sum.
				if math.Abs(a) > 4 || math.Abs(b) > 4 || (int(math.Floor(a/2))+int(math.Floor(b/2)))&1 != 0 {
					t.Fatalf("checkerboard sample (%v, %v) on a light square", a, b)
				}
			case "circles":
				r := math.Hypot(a, b) / 3
				if math.Min(math.Abs(r-1), math.Abs(r-0.5)) > 0.5 {
					t.Fatalf("circles sample at radius %v", r)
				}
			}
		}
		// Every density is centred, except moons' offset construction.
		if name != "moons" && math.Hypot(mx, my) > 0.08 {
			t.Errorf("%s: mean (%.3f, %.3f), want ≈ 0", name, mx, my)
		}
	}
	if _, err := toyData("swissroll", seedRNG(1, 1), 5); err == nil || !strings.Contains(err.Error(), "8gaussians") {
		t.Errorf("unknown data set: %v", err)
	}
}

// TestTrainCNF runs the task briefly on every density: metrics say "nll",
// the NLL is finite and falls below the standard normal's on the data, and
// the figure parses.
func TestTrainCNF(t *testing.T) {
	for _, data := range cnfDataSets {
		if testing.Short() && data != "8gaussians" {
			continue
		}
		t.Run(data, func(t *testing.T) {
			dir := t.TempDir()
			code, out, errs := runCLI("train", "--task", "cnf", "--data", data, "--method", "seminorm", "--width", "8",
				"--batch", "64", "--epochs", "2", "--lr", "0.02", "--out", dir, "--json", "--quiet")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			var recs []epochRecord
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				var r epochRecord
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				recs = append(recs, r)
			}
			if len(recs) != 3 {
				t.Fatalf("%d records, want 3", len(recs))
			}
			for _, r := range recs {
				if r.ValMetric != "nll" || math.IsNaN(r.Val) || r.Val < 0 || r.Val > 10 {
					t.Errorf("record %+v", r)
				}
				if r.NFEForward <= 0 || r.NFEBackward <= 0 {
					t.Errorf("no evaluations counted: %+v", r)
				}
			}
			svgs := checkSVGs(t, dir)
			if strings.Join(svgs, " ") != "cnf_"+data+".svg loss.svg" {
				t.Errorf("SVGs %v", svgs)
			}
		})
	}
}

// TestTrainCNFFlags: --data is checked and reserved for the cnf task.
func TestTrainCNFFlags(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCLI("train", "--task", "g1d", "--data", "moons", "--out", dir); code != 2 || !strings.Contains(errs, "--data") {
		t.Errorf("--data with g1d: exit %d, %q", code, errs)
	}
	if code, _, errs := runCLI("train", "--task", "cnf", "--data", "spiral", "--epochs", "1", "--out", dir, "--quiet"); code != 2 || !strings.Contains(errs, "spiral") {
		t.Errorf("unknown --data: exit %d, %q", code, errs)
	}
}

// TestCNFModelIsACase: a saved CNF run is a loadable case whose reference
// flow is reproduced by its network.
func TestCNFModelIsACase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cnf.json")
	code, _, errs := runCLI("train", "--task", "cnf", "--width", "6", "--batch", "32", "--epochs", "1",
		"--method", "gq", "--out", dir, "--quiet", "--save", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	st := checkpointParams(t, path)
	if st.Config.Data != "8gaussians" || st.Config.Task != "cnf" {
		t.Errorf("checkpoint config %+v", st.Config)
	}
}

// TestHeatMaps: the figure is well-formed SVG with one background per
// panel, and malformed panels are errors.
func TestHeatMaps(t *testing.T) {
	v := make([]float64, 16)
	for i := range v {
		v[i] = float64(i % 5)
	}
	v[3] = math.NaN()
	hm := &heatMaps{Title: "t", Panels: []heatPanel{
		{Title: "a", NX: 4, NY: 4, XMin: -1, XMax: 1, YMin: -1, YMax: 1, Values: v},
		{Title: "b", NX: 4, NY: 4, XMin: 0, XMax: 3, YMin: 0, YMax: 3, Values: make([]float64, 16)},
	}}
	var b bytes.Buffer
	if err := hm.WriteSVG(&b, 800, 400); err != nil {
		t.Fatal(err)
	}
	st := parseSVG(t, b.Bytes())
	if len(st.texts) < 10 {
		t.Errorf("only %d texts", len(st.texts))
	}
	if !strings.Contains(b.String(), heatColor(heatLevels-1)) || !strings.Contains(b.String(), `fill="#ffffff"`) {
		t.Errorf("top colour or NaN cell missing")
	}
	for _, bad := range []*heatMaps{
		{},
		{Panels: []heatPanel{{NX: 2, NY: 2, XMin: 0, XMax: 1, YMin: 0, YMax: 1, Values: make([]float64, 3)}}},
		{Panels: []heatPanel{{NX: 1, NY: 1, XMin: 1, XMax: 1, YMin: 0, YMax: 1, Values: make([]float64, 1)}}},
	} {
		if err := bad.WriteSVG(&b, 800, 400); !errors.Is(err, errPlotInput) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
