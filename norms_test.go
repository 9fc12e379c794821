package neuralode

import (
	"errors"
	"fmt"
	"math"
	"testing"
)

func TestNorms(t *testing.T) {
	x := []float64{3, -4, 0, 12}
	if got, want := (RMSNorm{}).Norm(x), math.Sqrt((9+16+144)/4.0); math.Abs(got-want) > 1e-15 {
		t.Errorf("RMS = %v, want %v", got, want)
	}
	if got := (MaxNorm{}).Norm(x); got != 12 {
		t.Errorf("max = %v, want 12", got)
	}
	if got := (MaxNorm{}).Norm([]float64{1, math.NaN(), 2}); !math.IsNaN(got) {
		t.Errorf("max with NaN = %v, want NaN", got)
	}
	if got := (RMSNorm{}).Norm(nil); got != 0 {
		t.Errorf("RMS of nothing = %v", got)
	}
}

func TestGroupedNorm(t *testing.T) {
	g, err := NewGroupedNorm(6,
		Group{Name: "z", Start: 0, End: 2, Weight: 1},
		Group{Name: "a", Start: 2, End: 4, Weight: 2},
		Group{Name: "aθ", Start: 4, End: 6, Weight: 0})
	if err != nil {
		t.Fatal(err)
	}
	x := []float64{1, 1, 0.5, 0.5, 7, 7}
	// max(1·RMS(1,1), 2·RMS(.5,.5), 0) = 1
	if got := g.Norm(x); got != 1 {
		t.Errorf("grouped norm = %v, want 1", got)
	}
	// The zero-weight group is ignored exactly, whatever it holds.
	for _, v := range []float64{0, 1e300, math.Inf(1), math.NaN()} {
		x[4], x[5] = v, -v
		if got := g.Norm(x); got != 1 {
			t.Errorf("zero-weight group holding %v changed the norm to %v", v, got)
		}
	}
	x[0] = math.NaN()
	if got := g.Norm(x); !math.IsNaN(got) {
		t.Errorf("NaN in a weighted group gave %v", got)
	}
}

func TestGroupedNormBadGroupings(t *testing.T) {
	cases := []struct {
		name   string
		n      int
		groups []Group
	}{
		{"gap", 4, []Group{{Start: 0, End: 1, Weight: 1}, {Start: 2, End: 4, Weight: 1}}},
		{"overlap", 4, []Group{{Start: 0, End: 3, Weight: 1}, {Start: 2, End: 4, Weight: 1}}},
		{"short", 4, []Group{{Start: 0, End: 3, Weight: 1}}},
		{"long", 4, []Group{{Start: 0, End: 5, Weight: 1}}},
		{"all dropped", 4, []Group{{Start: 0, End: 2, Weight: 0}, {Start: 2, End: 4, Weight: 0}}},
		{"negative weight", 2, []Group{{Start: 0, End: 2, Weight: -1}}},
		{"NaN weight", 2, []Group{{Start: 0, End: 2, Weight: math.NaN()}}},
		{"reversed", 2, []Group{{Start: 0, End: 2, Weight: 1}, {Start: 2, End: 1, Weight: 1}}},
		{"none", 3, nil},
	}
	for _, c := range cases {
		if _, err := NewGroupedNorm(c.n, c.groups...); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", c.name, err)
		}
	}
	// A norm of the wrong length is caught when the solve starts.
	g, _ := NewGroupedNorm(3, Group{Start: 0, End: 3, Weight: 1})
	s, _ := NewSolver(Options{Norm: g})
	_, err := s.Solve(func(t float64, y, dy []float64) { copy(dy, y) }, []float64{1, 2}, []float64{0, 1}, make([]float64, 4))
	if !errors.Is(err, ErrInvalidInput) {
		t.Errorf("norm of length 3 on a state of length 2: got %v", err)
	}
}

// TestSeminormIgnoresPassiveChannel: a solve whose extra channel has zero
// weight takes exactly the steps of the solve without that channel.
func TestSeminormIgnoresPassiveChannel(t *testing.T) {
	base := func(t float64, y, dy []float64) { dy[0] = -y[0] * math.Cos(3*t) }
	withExtra := func(t float64, y, dy []float64) {
		base(t, y[:1], dy[:1])
		dy[1] = 1e6 * math.Sin(100*t) // a wild channel nothing reads
	}
	s1, _ := NewSolver(Options{RTol: 1e-6, ATol: 1e-9})
	st1, err := s1.Solve(base, []float64{1}, []float64{0, 2}, make([]float64, 2))
	if err != nil {
		t.Fatal(err)
	}
	g, _ := NewGroupedNorm(2, Group{Name: "y", Start: 0, End: 1, Weight: 1}, Group{Name: "q", Start: 1, End: 2, Weight: 0})
	s2, _ := NewSolver(Options{RTol: 1e-6, ATol: 1e-9, Norm: g})
	st2, err := s2.Solve(withExtra, []float64{1, 0}, []float64{0, 2}, make([]float64, 4))
	if err != nil {
		t.Fatal(err)
	}
	if st1.Accepted != st2.Accepted || st1.Rejected != st2.Rejected || st1.NFE != st2.NFE {
		t.Errorf("seminorm solve took %+v, plain solve %+v", st2, st1)
	}
	s3, _ := NewSolver(Options{RTol: 1e-6, ATol: 1e-9})
	st3, _ := s3.Solve(withExtra, []float64{1, 0}, []float64{0, 2}, make([]float64, 4))
	if st3.NFE <= st1.NFE {
		t.Errorf("the full norm should pay for the wild channel: %d vs %d evaluations", st3.NFE, st1.NFE)
	}
}

// FuzzGroupedNorm: a grouping is either rejected with ErrInvalidInput or
// gives a norm that is non-negative, ignores zero-weight groups and is at
// most the largest weight times the largest |x_i|.
func FuzzGroupedNorm(f *testing.F) {
	f.Add(6, []byte{2, 2, 2}, []byte{1, 2, 0}, 1.5)
	f.Add(3, []byte{3}, []byte{0}, -1.0)
	f.Add(0, []byte{}, []byte{}, 0.0)
	f.Add(5, []byte{1, 0, 4}, []byte{255, 1, 1}, 1e300)
	f.Fuzz(func(t *testing.T, n int, sizes, weights []byte, xval float64) {
		if n > 1<<12 || n < -1 {
			return
		}
		var groups []Group
		start := 0
		for i, sz := range sizes {
			w := 0.0
			if i < len(weights) {
				w = float64(weights[i]) / 64
			}
			groups = append(groups, Group{Start: start, End: start + int(sz%8), Weight: w})
			start += int(sz % 8)
		}
		g, err := NewGroupedNorm(n, groups...)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		x := make([]float64, n)
		maxW, maxX := 0.0, 0.0
		for i := range x {
			x[i] = xval * float64(i%3-1)
			if math.IsNaN(x[i]) {
				x[i] = 0
			}
			maxX = math.Max(maxX, math.Abs(x[i]))
		}
		for _, gr := range groups {
			maxW = math.Max(maxW, gr.Weight)
		}
		v := g.Norm(x)
		if math.IsInf(maxX, 0) {
			return
		}
		if !(v >= 0) || (!math.IsInf(v, 0) && v > maxW*maxX*(1+1e-15)) {
			t.Fatalf("norm %v outside [0, %v·%v]", v, maxW, maxX)
		}
		for _, gr := range groups {
			if gr.Weight == 0 {
				for i := gr.Start; i < gr.End; i++ {
					x[i] = math.NaN()
				}
			}
		}
		if v2 := g.Norm(x); v2 != v && !(math.IsNaN(v) && math.IsNaN(v2)) {
			t.Fatalf("zero-weight groups changed the norm: %v → %v", v, v2)
		}
	})
}

func ExampleNewGroupedNorm() {
	// The state [z (2 values), a (2 values), aθ (3 values)] of an adjoint
	// solve; the seminorm gives the parameter adjoint aθ zero weight.
	semi, err := NewGroupedNorm(7,
		Group{Name: "z", Start: 0, End: 2, Weight: 1},
		Group{Name: "a", Start: 2, End: 4, Weight: 1},
		Group{Name: "aθ", Start: 4, End: 7, Weight: 0})
	if err != nil {
		panic(err)
	}
	scaled := []float64{0.3, 0.4, 0.1, 0.1, 50, 50, 50}
	fmt.Printf("%.4f\n", semi.Norm(scaled))
	// Output: 0.3536
}

// ExampleNormFunc controls the step size by the largest error of the first
// component only, through a norm written as a function.
func ExampleNormFunc() {
	first := NormFunc(func(scaled []float64) float64 { return math.Abs(scaled[0]) })
	s, _ := NewSolver(Options{RTol: 1e-9, ATol: 1e-9, Norm: first})
	out := make([]float64, 4)
	f := func(t float64, y, dy []float64) { dy[0], dy[1] = -y[0], -100*y[1] }
	s.Solve(f, []float64{1, 1}, []float64{0, 1}, out)
	fmt.Printf("y0(1) = %.8f\n", out[2])
	// Output: y0(1) = 0.36787944
}
