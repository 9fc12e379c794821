package neuralode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand"
	randv2 "math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"
)

// eigResidualCheck verifies an eigendecomposition of the tridiagonal (d, e)
// independently of how it was computed: ascending values, unit-norm and
// mutually orthogonal eigenvectors, and small residuals ‖Tv − λv‖. For a
// symmetric matrix a residual r bounds the eigenvalue error by ‖r‖ (Weyl), so
// this proves the eigenvalues too.
func eigResidualCheck(t *testing.T, d, e, vals, vecs []float64, tol float64) {
	t.Helper()
	n := len(d)
	if len(vals) != n || len(vecs) != n*n {
		t.Fatalf("got %d values, %d vector entries; want %d, %d", len(vals), len(vecs), n, n*n)
	}
	if !slices.IsSorted(vals) {
		t.Errorf("eigenvalues not ascending: %v", vals)
	}
	norm := 0.0
	for i := range d {
		row := math.Abs(d[i])
		if i > 0 {
			row += math.Abs(e[i-1])
		}
		if i < n-1 {
			row += math.Abs(e[i])
		}
		norm = math.Max(norm, row)
	}
	for k := 0; k < n; k++ {
		v := vecs[k*n : (k+1)*n]
		if v[0] < 0 {
			t.Errorf("eigenvector %d has negative first component %g", k, v[0])
		}
		maxRes := 0.0
		for i := 0; i < n; i++ {
			tv := d[i] * v[i]
			if i > 0 {
				tv += e[i-1] * v[i-1]
			}
			if i < n-1 {
				tv += e[i] * v[i+1]
			}
			maxRes = math.Max(maxRes, math.Abs(tv-vals[k]*v[i]))
		}
		if maxRes > tol*norm {
			t.Errorf("eigenpair %d (λ=%g): residual %.3g > %.3g", k, vals[k], maxRes, tol*norm)
		}
		for j := k; j < n; j++ {
			w := vecs[j*n : (j+1)*n]
			dot := 0.0
			for i := range v {
				dot += v[i] * w[i]
			}
			want := 0.0
			if j == k {
				want = 1
			}
			if math.Abs(dot-want) > tol {
				t.Errorf("⟨v%d, v%d⟩ = %.17g, want %g", k, j, dot, want)
			}
		}
	}
}

func TestSymTridiagEigenSmallAnalytic(t *testing.T) {
	// n = 1: the matrix is its own eigenvalue, eigenvector [1].
	vals, vecs, err := SymTridiagEigen([]float64{-3.5}, nil, AllComponents)
	if err != nil || len(vals) != 1 || vals[0] != -3.5 || len(vecs) != 1 || vecs[0] != 1 {
		t.Fatalf("n=1: got %v %v %v", vals, vecs, err)
	}

	// 2×2 [[a, b], [b, c]]: λ = (a+c)/2 ∓ √(((a−c)/2)² + b²).
	for _, c := range []struct{ a, b, cc float64 }{
		{1, 2, 3}, {0, 1, 0}, {5, 1e-9, 5}, {-2, 7, 4}, {1e-200, 3e-201, -1e-200},
	} {
		m, r := (c.a+c.cc)/2, math.Hypot((c.a-c.cc)/2, c.b)
		vals, vecs, err := SymTridiagEigen([]float64{c.a, c.cc}, []float64{c.b}, AllComponents)
		if err != nil {
			t.Fatal(err)
		}
		want := []float64{m - r, m + r}
		for k := range want {
			if math.Abs(vals[k]-want[k]) > 4e-16*(math.Abs(m)+r) {
				t.Errorf("2×2 %+v: λ%d = %.17g, want %.17g", c, k, vals[k], want[k])
			}
		}
		eigResidualCheck(t, []float64{c.a, c.cc}, []float64{c.b}, vals, vecs, 1e-15)
	}
}

// TestSymTridiagEigenToeplitz checks tridiag(−1, 2, −1), whose eigenpairs are
// known in closed form: λ_k = 2 − 2cos(kπ/(n+1)), v_k(j) = √(2/(n+1))·sin(jkπ/(n+1)).
func TestSymTridiagEigenToeplitz(t *testing.T) {
	for _, n := range []int{2, 3, 7, 50, 200} {
		d := make([]float64, n)
		e := make([]float64, n-1)
		for i := range d {
			d[i] = 2
		}
		for i := range e {
			e[i] = -1
		}
		vals, first, err := SymTridiagEigen(d, e, FirstComponents)
		if err != nil {
			t.Fatal(err)
		}
		h := math.Pi / float64(n+1)
		for k := 0; k < n; k++ {
			wantL := 2 - 2*math.Cos(float64(k+1)*h)
			wantV := math.Sqrt(2/float64(n+1)) * math.Sin(float64(k+1)*h) // first component, positive
			// Backward stability bounds the error by a small multiple of ε‖T‖, ‖T‖ = 4.
			if math.Abs(vals[k]-wantL) > 6e-15 {
				t.Errorf("n=%d λ%d = %.17g, want %.17g", n, k, vals[k], wantL)
			}
			if math.Abs(first[k]-wantV) > 2e-14 {
				t.Errorf("n=%d v%d[0] = %.17g, want %.17g", n, k, first[k], wantV)
			}
		}
	}
}

func TestSymTridiagEigenSplitAndRepeated(t *testing.T) {
	cases := []struct {
		name string
		d, e []float64
		want []float64
	}{
		{"diagonal", []float64{3, 1, 2, -1}, []float64{0, 0, 0}, []float64{-1, 1, 2, 3}},
		{"two equal blocks", []float64{2, 2, 2, 2}, []float64{1, 0, 1}, []float64{1, 1, 3, 3}},
		{"zero matrix", make([]float64, 5), make([]float64, 4), make([]float64, 5)},
		{"identity", []float64{1, 1, 1}, []float64{0, 0}, []float64{1, 1, 1}},
		{"block then scalar", []float64{0, 0, 7}, []float64{1, 0}, []float64{-1, 1, 7}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vals, vecs, err := SymTridiagEigen(c.d, c.e, AllComponents)
			if err != nil {
				t.Fatal(err)
			}
			for k := range c.want {
				if math.Abs(vals[k]-c.want[k]) > 1e-15 {
					t.Errorf("λ%d = %.17g, want %g", k, vals[k], c.want[k])
				}
			}
			eigResidualCheck(t, c.d, c.e, vals, vecs, 1e-15)
		})
	}
}

// TestSymTridiagEigenWilkinson uses Wilkinson's W⁺₂₁ (d_i = |10 − i|, e = 1),
// whose largest eigenvalues come in pairs agreeing to 14+ digits: a hard case
// for eigenvector orthogonality.
func TestSymTridiagEigenWilkinson(t *testing.T) {
	n := 21
	d := make([]float64, n)
	e := make([]float64, n-1)
	for i := range d {
		d[i] = math.Abs(float64(10 - i))
	}
	for i := range e {
		e[i] = 1
	}
	vals, vecs, err := SymTridiagEigen(d, e, AllComponents)
	if err != nil {
		t.Fatal(err)
	}
	eigResidualCheck(t, d, e, vals, vecs, 2e-14)
	if gap := vals[n-1] - vals[n-2]; gap <= 0 || gap > 1e-13 {
		t.Errorf("top pair gap %g, want tiny positive", gap)
	}
	// Trace and Frobenius norm are preserved by similarity.
	tr, fro, sv, s2 := 0.0, 0.0, 0.0, 0.0
	for i := range d {
		tr += d[i]
		fro += d[i] * d[i]
		sv += vals[i]
		s2 += vals[i] * vals[i]
	}
	fro += 2 * float64(n-1)
	if math.Abs(sv-tr) > 1e-12 || math.Abs(s2-fro) > 1e-11 {
		t.Errorf("trace %g vs Σλ %g; ‖T‖²_F %g vs Σλ² %g", tr, sv, fro, s2)
	}
}

func TestSymTridiagEigenRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, n := range []int{1, 2, 5, 17, 64, 150} {
		d := make([]float64, n)
		e := make([]float64, max(n-1, 0))
		for i := range d {
			d[i] = rng.NormFloat64()
		}
		for i := range e {
			e[i] = rng.NormFloat64()
			if rng.Intn(8) == 0 {
				e[i] = 0 // pre-split blocks
			}
		}
		dCopy, eCopy := slices.Clone(d), slices.Clone(e)
		vals, vecs, err := SymTridiagEigen(d, e, AllComponents)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d, dCopy) || !slices.Equal(e, eCopy) {
			t.Fatal("inputs modified")
		}
		eigResidualCheck(t, d, e, vals, vecs, 1e-14*float64(n))

		// The cheaper modes reproduce the same numbers bit for bit: they run
		// the same rotations on fewer rows.
		v1, first, err := SymTridiagEigen(d, e, FirstComponents)
		if err != nil {
			t.Fatal(err)
		}
		v0, none, err := SymTridiagEigen(d, e, EigenvaluesOnly)
		if err != nil || none != nil {
			t.Fatal(err, none)
		}
		if !slices.Equal(v1, vals) || !slices.Equal(v0, vals) {
			t.Errorf("n=%d: eigenvalues differ between modes", n)
		}
		for k := 0; k < n; k++ {
			if first[k] != vecs[k*n] {
				t.Errorf("n=%d: first component %d: %g vs %g", n, k, first[k], vecs[k*n])
			}
		}
	}
}

// TestSymTridiagEigenScaling: scaling by a power of two is exact, so
// eigenvalues of 2^s·T must be exactly 2^s times those of T, also where the
// unscaled arithmetic would overflow or underflow.
func TestSymTridiagEigenScaling(t *testing.T) {
	d := []float64{1, -2, 0.5, 3, 0}
	e := []float64{0.7, 1.1, -0.3, 2}
	base, bv, err := SymTridiagEigen(d, e, FirstComponents)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []int{1000, 500, -500, -1000} {
		ds, es := make([]float64, len(d)), make([]float64, len(e))
		for i := range d {
			ds[i] = math.Ldexp(d[i], s)
		}
		for i := range e {
			es[i] = math.Ldexp(e[i], s)
		}
		vals, v, err := SymTridiagEigen(ds, es, FirstComponents)
		if err != nil {
			t.Fatal(err)
		}
		for k := range vals {
			if vals[k] != math.Ldexp(base[k], s) || v[k] != bv[k] {
				t.Errorf("scale 2^%d: λ%d = %g, want %g; v %g vs %g", s, k, vals[k], math.Ldexp(base[k], s), v[k], bv[k])
			}
		}
	}
}

func TestSymTridiagEigenErrors(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	cases := []struct {
		name string
		d, e []float64
		mode EigenvectorMode
		want error
	}{
		{"e too long", []float64{1, 2}, []float64{1, 2}, EigenvaluesOnly, ErrInvalidInput},
		{"e too short", []float64{1, 2, 3}, []float64{1}, FirstComponents, ErrInvalidInput},
		{"e for empty d", nil, []float64{1}, EigenvaluesOnly, ErrInvalidInput},
		{"bad mode", []float64{1}, nil, EigenvectorMode(7), ErrInvalidInput},
		{"negative mode", []float64{1}, nil, EigenvectorMode(-1), ErrInvalidInput},
		{"NaN in d", []float64{1, nan}, []float64{1}, EigenvaluesOnly, ErrNonFinite},
		{"Inf in e", []float64{1, 2}, []float64{inf}, AllComponents, ErrNonFinite},
	}
	for _, c := range cases {
		vals, vecs, err := SymTridiagEigen(c.d, c.e, c.mode)
		var ie *InputError
		if !errors.Is(err, c.want) || !errors.As(err, &ie) || vals != nil || vecs != nil {
			t.Errorf("%s: got (%v, %v, %v), want %v", c.name, vals, vecs, err, c.want)
		}
	}
	// Empty input is a valid (empty) matrix.
	vals, vecs, err := SymTridiagEigen(nil, nil, FirstComponents)
	if err != nil || len(vals) != 0 || len(vecs) != 0 {
		t.Errorf("n=0: got %v %v %v", vals, vecs, err)
	}
}

// TestSymTridiagEigenNoConvergence exhausts a deliberately tiny iteration
// budget: the solver must stop with ErrNoConvergence, not loop or panic.
func TestSymTridiagEigenNoConvergence(t *testing.T) {
	d := []float64{1, 2, 3, 4}
	e := []float64{1, 1, 1}
	for _, budget := range []int{0, 1, 2} {
		_, _, err := symTridiagEigen(d, e, FirstComponents, budget)
		if !errors.Is(err, ErrNoConvergence) {
			t.Errorf("budget %d: err = %v, want ErrNoConvergence", budget, err)
		}
	}
	if _, _, err := symTridiagEigen(d, e, FirstComponents, eigMaxIterPerValue*len(d)); err != nil {
		t.Errorf("normal budget: %v", err)
	}
}

func TestEigenvectorModeString(t *testing.T) {
	for m, want := range map[EigenvectorMode]string{
		EigenvaluesOnly: "EigenvaluesOnly", FirstComponents: "FirstComponents",
		AllComponents: "AllComponents", 9: "EigenvectorMode(9)",
	} {
		if got := m.String(); got != want {
			t.Errorf("%d: %q, want %q", int(m), got, want)
		}
	}
}

func ExampleSymTridiagEigen() {
	// tridiag(1, 2, 1) of size 3 has eigenvalues 2 − √2, 2, 2 + √2.
	vals, first, err := SymTridiagEigen([]float64{2, 2, 2}, []float64{1, 1}, FirstComponents)
	if err != nil {
		fmt.Println(err)
		return
	}
	for k := range vals {
		fmt.Printf("λ = %.6f  v[0] = %.6f\n", vals[k], first[k])
	}
	// Output:
	// λ = 0.585786  v[0] = 0.500000
	// λ = 2.000000  v[0] = 0.707107
	// λ = 3.414214  v[0] = 0.500000
}

func BenchmarkSymTridiagEigen(b *testing.B) {
	for _, n := range []int{64, 256, 1024} {
		d := make([]float64, n)
		e := make([]float64, n-1)
		for k := 1; k < n; k++ {
			fk := float64(k)
			e[k-1] = fk / math.Sqrt(4*fk*fk-1)
		}
		for _, mode := range []EigenvectorMode{EigenvaluesOnly, FirstComponents} {
			b.Run(fmt.Sprintf("n=%d/%v", n, mode), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, _, err := SymTridiagEigen(d, e, mode); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestVectorKernels(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, n := range []int{0, 1, 3, 4, 5, 17, 64} {
		x, y := make([]float64, n), make([]float64, n)
		for i := range x {
			x[i], y[i] = rng.NormFloat64(), rng.NormFloat64()
		}
		// Dot and SumSq against the documented summation order.
		// Products rounded, as Dot rounds them (no fused multiply–add).
		var acc [4]float64
		for i := 0; i < n-n%4; i++ {
			acc[i%4] += float64(x[i] * y[i])
		}
		want := (acc[0] + acc[1]) + (acc[2] + acc[3])
		for i := n - n%4; i < n; i++ {
			want += float64(x[i] * y[i])
		}
		if got := Dot(x, y); got != want {
			t.Errorf("n=%d: Dot = %v, want %v (bit for bit)", n, got, want)
		}
		if got, w := SumSq(x), Dot(x, x); got != w {
			t.Errorf("n=%d: SumSq = %v, Dot(x,x) = %v", n, got, w)
		}
		// LinComb against a plain loop, for every number of vectors.
		for m := 0; m <= 7; m++ {
			coef := make([]float64, m)
			vecs := make([][]float64, m)
			for j := range vecs {
				coef[j] = rng.NormFloat64()
				vecs[j] = make([]float64, n)
				for i := range vecs[j] {
					vecs[j][i] = rng.NormFloat64()
				}
			}
			for _, base := range [][]float64{nil, y} {
				dst := make([]float64, n)
				LinComb(dst, base, coef, vecs)
				for i := range dst {
					w := 0.0
					if base != nil {
						w = base[i]
					}
					for j := range vecs {
						w += coef[j] * vecs[j][i]
					}
					if math.Abs(dst[i]-w) > 1e-14*(1+math.Abs(w)) {
						t.Fatalf("n=%d m=%d base=%v: LinComb[%d] = %v, want %v", n, m, base != nil, i, dst[i], w)
					}
				}
			}
		}
		z := append([]float64(nil), y...)
		Axpy(2, x, z)
		Scale(0.5, z)
		for i := range z {
			if w := (y[i] + 2*x[i]) * 0.5; z[i] != w {
				t.Fatalf("Axpy/Scale: %v, want %v", z[i], w)
			}
		}
	}
}

func BenchmarkVectorKernels(b *testing.B) {
	const n = 4096
	x, y, dst := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range x {
		x[i], y[i] = float64(i), 1/float64(i+1)
	}
	vecs := [][]float64{x, y, x, y, x, y}
	coef := []float64{1, 2, 3, 4, 5, 6}
	report := func(b *testing.B, flops float64) {
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	}
	b.Run("Dot", func(b *testing.B) {
		s := 0.0
		for i := 0; i < b.N; i++ {
			s += Dot(x, y)
		}
		report(b, 2*n)
		_ = s
	})
	b.Run("Axpy", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Axpy(1e-9, x, dst)
		}
		report(b, 2*n)
	})
	b.Run("LinComb6", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			LinComb(dst, y, coef, vecs)
		}
		report(b, 12*n)
	})
}

func randSlice(rng *randv2.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = 2*rng.Float64() - 1
	}
	return x
}

// kernelShapes covers every remainder path of the blocked loops (sizes not
// multiples of 2 or 4, ones, zeros).
var kernelShapes = [][3]int{
	{0, 3, 2}, {3, 0, 2}, {3, 2, 0}, {1, 1, 1}, {1, 5, 3}, {2, 3, 7}, {3, 2, 1},
	{4, 2, 5}, {5, 3, 4}, {7, 7, 7}, {8, 9, 10}, {13, 6, 11}, {16, 16, 16}, {9, 17, 33},
}

func TestMatMulKernels(t *testing.T) {
	rng := randv2.New(randv2.NewPCG(1, 2))
	for _, s := range kernelShapes {
		m, n, k := s[0], s[1], s[2]
		t.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(t *testing.T) {
			// Each kernel against naiveMul, its operands described by
			// strides: C(q, j) = [C(q, j) +] Σ_p A(q, p)·B(p, j).
			for _, kc := range []struct {
				name              string
				na, nb, nc        int  // operand lengths
				add               bool // c accumulates (else garbage must be overwritten)
				rows, cols, inner int
				aq, ap, bp, bj    int // A(q, p) = a[q·aq + p·ap], B(p, j) = b[p·bp + j·bj]
				mul               func(c, a, b []float64)
			}{
				// c (m×n) = a (m×k) · b(n×k)ᵀ.
				{"matMulABt", m * k, n * k, m * n, false, m, n, k, k, 1, 1, k,
					func(c, a, b []float64) { matMulABt(c, a, b, m, n, k) }},
				// c (n×k) += a(m×n)ᵀ · b (m×k).
				{"matMulAtBAdd", m * n, m * k, n * k, true, n, k, m, 1, n, k, 1,
					func(c, a, b []float64) { matMulAtBAdd(testScratch, c, a, b, m, n, k) }},
				// c (m×k) = a (m×n) · b (n×k).
				{"matMulAB", m * n, n * k, m * k, false, m, k, n, n, 1, k, 1,
					func(c, a, b []float64) { matMulAB(testScratch, c, a, b, m, n, k) }},
			} {
				a := randSlice(rng, kc.na)
				b := randSlice(rng, kc.nb)
				c := randSlice(rng, kc.nc)
				want := make([]float64, kc.nc)
				if kc.add {
					copy(want, c)
				}
				naiveMul(want, a, b, kc.rows, kc.cols, kc.inner, kc.aq, kc.ap, kc.bp, kc.bj)
				kc.mul(c, a, b)
				if d := maxRelDiff(c, want); d > 1e-14 {
					t.Errorf("%s: rel diff %g", kc.name, d)
				}
			}
		})
	}
}

// naiveMul adds Σ_p A(q, p)·B(p, j) to c[q·cols + j] for q < rows,
// j < cols, p < inner (in increasing p), where A(q, p) = a[q·aq + p·ap]
// and B(p, j) = b[p·bp + j·bj]: the definition the kernels are checked
// against.
func naiveMul(c, a, b []float64, rows, cols, inner, aq, ap, bp, bj int) {
	for q := 0; q < rows; q++ {
		for j := 0; j < cols; j++ {
			for p := 0; p < inner; p++ {
				c[q*cols+j] += a[q*aq+p*ap] * b[p*bp+j*bj]
			}
		}
	}
}

// TestMatMulABtRowSplit checks that computing the rows of a·bᵀ in two
// contiguous ranges (as a two-worker split would) gives bit-identical output.
func TestMatMulABtRowSplit(t *testing.T) {
	rng := randv2.New(randv2.NewPCG(3, 4))
	m, n, k := 13, 10, 17
	a := randSlice(rng, m*k)
	b := randSlice(rng, n*k)
	checkRowSplit(t, m, k, n, a, func(c, a []float64, rows int) { matMulABt(c, a, b, rows, n, k) })
}

// checkRowSplit checks that mul, which writes rows rows of c (cRow long
// each) from as many rows of a (aRow long each), gives bit-identical output
// when the m rows are computed in two contiguous ranges, for every split.
func checkRowSplit(t *testing.T, m, aRow, cRow int, a []float64, mul func(c, a []float64, rows int)) {
	t.Helper()
	whole := make([]float64, m*cRow)
	mul(whole, a, m)
	for split := 1; split < m; split++ {
		parts := make([]float64, m*cRow)
		mul(parts[:split*cRow], a[:split*aRow], split)
		mul(parts[split*cRow:], a[split*aRow:], m-split)
		for i := range whole {
			if parts[i] != whole[i] {
				t.Fatalf("split %d: element %d differs: %v vs %v", split, i, parts[i], whole[i])
			}
		}
	}
}

// benchmarkLayer sizes: a 256×256 layer with batch 128.
const benchBatch, benchIn, benchOut = 128, 256, 256

func reportGFLOPS(b *testing.B, flopsPerOp float64) {
	b.ReportMetric(flopsPerOp*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// reportCPUGFLOPS reports GFLOP/s per wall second and per CPU second of
// the process since cpu0 (processCPUTime at the start of the timed loop):
// on a shared machine the second shows what the cores delivered while
// they ran the benchmark.
func reportCPUGFLOPS(b *testing.B, flopsPerOp float64, cpu0 time.Duration) {
	reportGFLOPS(b, flopsPerOp)
	if cpu := processCPUTime() - cpu0; cpu > 0 && cpu0 > 0 {
		b.ReportMetric(flopsPerOp*float64(b.N)/cpu.Seconds()/1e9, "cpuGFLOP/s")
	}
}

// benchMatMul times mul on the benchmark layer's shapes: x and y are
// random (drawn in that order) with nx and ny elements, c has nc.
func benchMatMul(b *testing.B, nx, ny, nc int, mul func(c, x, y []float64)) {
	rng := randv2.New(randv2.NewPCG(1, 1))
	x := randSlice(rng, nx)
	y := randSlice(rng, ny)
	c := make([]float64, nc)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mul(c, x, y)
	}
	reportGFLOPS(b, 2*benchBatch*benchIn*benchOut)
}

func BenchmarkMatMulABt(b *testing.B) {
	benchMatMul(b, benchBatch*benchIn, benchOut*benchIn, benchBatch*benchOut, func(c, h, w []float64) {
		matMulABt(c, h, w, benchBatch, benchOut, benchIn)
	})
}

func BenchmarkMatMulAtBAdd(b *testing.B) {
	benchMatMul(b, benchBatch*benchOut, benchBatch*benchIn, benchOut*benchIn, func(dw, d, h []float64) {
		matMulAtBAdd(testScratch, dw, d, h, benchBatch, benchOut, benchIn)
	})
}

func BenchmarkMatMulAB(b *testing.B) {
	benchMatMul(b, benchBatch*benchOut, benchOut*benchIn, benchBatch*benchIn, func(dh, d, w []float64) {
		matMulAB(testScratch, dh, d, w, benchBatch, benchOut, benchIn)
	})
}

// TestTransposeRows checks the blocked transpose against the definition,
// for whole matrices and for row ranges (as the MLP splits it over tasks):
// the rows in range are transposed, every other element of dst is untouched.
func TestTransposeRows(t *testing.T) {
	rng := randv2.New(randv2.NewPCG(7, 8))
	for _, s := range []struct{ rows, cols int }{{1, 1}, {3, 5}, {8, 8}, {17, 9}, {16, 2}, {35, 64}} {
		src := randSlice(rng, s.rows*s.cols)
		for _, rg := range [][2]int{{0, s.rows}, {0, s.rows / 2}, {s.rows / 3, s.rows}, {1, 1}} {
			r0, r1 := rg[0], min(rg[1], s.rows)
			dst := make([]float64, s.rows*s.cols)
			for i := range dst {
				dst[i] = -1000
			}
			transposeRows(dst, src, s.rows, s.cols, r0, r1)
			for r := 0; r < s.rows; r++ {
				for c := 0; c < s.cols; c++ {
					want := -1000.0
					if r >= r0 && r < r1 {
						want = src[r*s.cols+c]
					}
					if got := dst[c*s.rows+r]; got != want {
						t.Fatalf("%dx%d rows [%d,%d): dst[%d,%d] = %v, want %v", s.rows, s.cols, r0, r1, c, r, got, want)
					}
				}
			}
		}
	}
}

// TestMatMulABRowSplit checks that computing the rows of a·b in two
// contiguous ranges (as the MLP's row blocks do, now that the forward
// product also runs through matMulAB) gives bit-identical output: the
// paired-row and single-row paths sum each element in the same order.
func TestMatMulABRowSplit(t *testing.T) {
	rng := randv2.New(randv2.NewPCG(5, 6))
	m, n, k := 13, 11, 17
	a := randSlice(rng, m*n)
	b := randSlice(rng, n*k)
	checkRowSplit(t, m, n, k, a, func(c, a []float64, rows int) { matMulAB(testScratch, c, a, b, rows, n, k) })
}

// BenchmarkMatMulForward compares the two ways of computing a layer's
// forward product H·Wᵀ (H: B×in, W: out×in) on the row-block shapes the MLP
// benchmarks produce: matMulABt directly ("abt"), and matMulAB on a
// transposed copy of W ("ab", the copy made once outside the loop;
// "transpose" times the copy alone). It is the measurement behind
// mlpMinTransposedOut.
func BenchmarkMatMulForward(b *testing.B) {
	for _, s := range []struct{ rows, out, in int }{
		{64, 32, 2}, {64, 2, 32}, {64, 32, 32}, {32, 128, 128},
		{16, 256, 16}, {16, 16, 256}, {16, 256, 256}, {8, 512, 64}, {8, 512, 512}, {8, 64, 512},
	} {
		rng := randv2.New(randv2.NewPCG(1, 1))
		h := randSlice(rng, s.rows*s.in)
		w := randSlice(rng, s.out*s.in)
		wt := make([]float64, s.out*s.in)
		c := make([]float64, s.rows*s.out)
		fl := 2 * float64(s.rows*s.out*s.in)
		name := fmt.Sprintf("B%d_out%d_in%d", s.rows, s.out, s.in)
		b.Run("abt/"+name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				matMulABt(c, h, w, s.rows, s.out, s.in)
			}
			reportGFLOPS(b, fl)
		})
		b.Run("ab/"+name, func(b *testing.B) {
			transposeRows(wt, w, s.out, s.in, 0, s.out)
			for i := 0; i < b.N; i++ {
				matMulAB(testScratch, c, h, wt, s.rows, s.in, s.out)
			}
			reportGFLOPS(b, fl)
		})
		b.Run("transpose/"+name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				transposeRows(wt, w, s.out, s.in, 0, s.out)
			}
		})
	}
}

// testScratch is the gemm scratch of the single-goroutine kernel tests.
var testScratch = new(gemmScratch)

// With NEURALODE_TEST_NO_AVX512 set, the package's tests run on the AVX2
// kernels even where the processor has AVX-512, so that CI exercises both
// assembly paths on one machine (and the pure-Go one with -tags purego).
// Tests that switch useAVX512 restore the value they found.
func init() {
	if os.Getenv("NEURALODE_TEST_NO_AVX512") != "" {
		useAVX512 = false
	}
}

// gemmPeak returns the measured FP64 peak of one core of the benchmark
// machine (2-vCPU AMD EPYC, family 26, 2026-12-02) for the active kernel, the
// reference of the "%peak" metric: a pure FMA loop (twelve independent
// accumulators) ran 62.6 GFLOP/s on YMM registers (AVX2: 16 flops per
// cycle) and 124.7 on ZMM registers (AVX-512: 32 flops per cycle).
func gemmPeak() float64 {
	if useAVX512 {
		return 124.7
	}
	return 62.6
}

// BenchmarkGemm times the three products of a dense layer (B rows, in
// inputs, out outputs) on the active path (assembly when useFMA, else Go):
// the forward product H·Wᵀ ("fwd", from packed weights on the assembly
// path), the input cotangent δ·W ("bwd") and the weight gradient dW += δᵀH
// ("dw"). Run with -cpu 1: each call is single-threaded. The 2×1000×1000
// shape is g1d's middle layer at batch 2, a matrix–vector product bound by
// the 8 MB of weights it reads, not by the multiply–adds.
func BenchmarkGemm(b *testing.B) {
	for _, s := range []struct{ B, in, out int }{{128, 256, 256}, {64, 512, 512}, {64, 32, 32}, {64, 2, 32}, {256, 128, 128}, {2, 1000, 1000}} {
		rng := randv2.New(randv2.NewPCG(1, 1))
		h := randSlice(rng, s.B*s.in)
		w := randSlice(rng, s.out*s.in)
		d := randSlice(rng, s.B*s.out)
		y := make([]float64, s.B*s.out)
		dh := make([]float64, s.B*s.in)
		dw := make([]float64, s.out*s.in)
		pk := make([]float64, packedLen(s.in, s.out))
		pkb := make([]float64, packedLen(s.out, s.in))
		wt := make([]float64, s.out*s.in)
		if useFMA {
			packB(pk, w, 1, s.in, s.in, s.out, 0, (s.out+7)/8)
			packB(pkb, w, s.in, 1, s.out, s.in, 0, (s.in+7)/8)
		} else {
			transposeRows(wt, w, s.out, s.in, 0, s.out)
		}
		scr := new(gemmScratch)
		fl := 2 * float64(s.B*s.in*s.out)
		var cpu0 time.Duration
		report := func(b *testing.B) {
			g := fl * float64(b.N) / b.Elapsed().Seconds() / 1e9
			b.ReportMetric(g, "GFLOP/s")
			b.ReportMetric(100*g/gemmPeak(), "%peak")
			// Per CPU second: what one core delivers while it runs, free of
			// the waits for a core that a shared machine adds to the wall time.
			if cpu := processCPUTime() - cpu0; cpu > 0 && cpu0 > 0 {
				b.ReportMetric(fl*float64(b.N)/cpu.Seconds()/1e9, "cpuGFLOP/s")
			}
		}
		name := fmt.Sprintf("%dx%dx%d", s.B, s.in, s.out)
		b.Run("fwd/"+name, func(b *testing.B) {
			cpu0 = processCPUTime()
			for i := 0; i < b.N; i++ {
				if useFMA {
					gemm(scr, y, s.out, h, s.in, 1, pk, 0, true, s.B, s.out, s.in, false)
				} else if fwdTransposed(s.out) {
					matMulAB(nil, y, h, wt, s.B, s.in, s.out)
				} else {
					matMulABt(y, h, w, s.B, s.out, s.in)
				}
			}
			report(b)
		})
		b.Run("bwd/"+name, func(b *testing.B) {
			cpu0 = processCPUTime()
			for i := 0; i < b.N; i++ {
				if useFMA {
					gemm(scr, dh, s.in, d, s.out, 1, pkb, 0, true, s.B, s.in, s.out, false)
				} else {
					matMulAB(nil, dh, d, w, s.B, s.out, s.in)
				}
			}
			report(b)
		})
		b.Run("dw/"+name, func(b *testing.B) {
			cpu0 = processCPUTime()
			for i := 0; i < b.N; i++ {
				matMulAtBAdd(scr, dw, d, h, s.B, s.out, s.in)
			}
			report(b)
		})
	}
}

// naiveGemm returns C0 + A·B (or A·B with c0 nil) for A(i, p) = a[i·rsA +
// p·csA] and row-major B (k×n), summed in float64 in order.
func naiveGemm(c0, a []float64, rsA, csA int, b []float64, m, n, k int) []float64 {
	c := make([]float64, m*n)
	if c0 != nil {
		copy(c, c0)
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			s := 0.0
			for p := 0; p < k; p++ {
				s += a[i*rsA+p*csA] * b[p*n+j]
			}
			c[i*n+j] += s
		}
	}
	return c
}

// TestGemm checks the assembly product against the definition on shapes
// that cross every blocking boundary (edge tiles in both directions, more
// than one KC block of the inner index, more than one NC block of
// columns), with A in place or transposed, B row-major or packed, storing
// or accumulating; then that splitting the rows of C over calls (as the
// MLP's tasks do) gives bit-identical results.
func TestGemm(t *testing.T) {
	if !useFMA {
		t.Skip("no assembly kernels (purego build or no AVX2/FMA)")
	}
	rng := randv2.New(randv2.NewPCG(11, 12))
	s := new(gemmScratch)
	shapes := [][3]int{{1, 1, 1}, {6, 8, 1}, {5, 7, 3}, {7, 9, 257}, {13, 17, 40}, {12, 136, 300}, {19, 300, 513}, {64, 32, 2}, {2, 33, 64}}
	forGemmCases(rng, shapes, func(gc gemmCase) {
		m, n, k := gc.m, gc.n, gc.k
		sh := [3]int{m, n, k}
		c := randSlice(rng, m*n)
		var want []float64
		if gc.acc {
			want = naiveGemm(c, gc.a, gc.rsA, gc.csA, gc.b, m, n, k)
		} else {
			want = naiveGemm(nil, gc.a, gc.rsA, gc.csA, gc.b, m, n, k)
		}
		gemm(s, c, n, gc.a, gc.rsA, gc.csA, gc.bp, n, gc.packed, m, n, k, gc.acc)
		if d := maxRelDiff(c, want); d > 1e-14 {
			t.Errorf("%v trans %v packed %v acc %v: rel diff %g", sh, gc.trans, gc.packed, gc.acc, d)
		}
		if gc.trans || gc.acc {
			return
		}
		for split := 1; split < m; split += 5 {
			parts := make([]float64, m*n)
			gemm(s, parts, n, gc.a, gc.rsA, gc.csA, gc.bp, n, gc.packed, split, n, k, false)
			gemm(s, parts[split*n:], n, gc.a[split*gc.rsA:], gc.rsA, gc.csA, gc.bp, n, gc.packed, m-split, n, k, false)
			if !sameBits(parts, c) {
				t.Fatalf("%v packed %v: row split at %d changes the result", sh, gc.packed, split)
			}
		}
	})
}

// TestGemmAVX512MatchesAVX2: the 6×16 AVX-512 kernel computes every element
// with the same fused multiply–adds in the same order as the 6×8 AVX2
// kernel, so gemm's results are bit-identical with and without it, on
// shapes with odd and even panel counts, edge tiles, several KC and NC
// blocks, A in place or transposed, B row-major or packed.
func TestGemmAVX512MatchesAVX2(t *testing.T) {
	if !haveAVX512 {
		t.Skip("no AVX-512 on this machine (or a purego build)")
	}
	defer func(old bool) { useAVX512 = old }(useAVX512)
	rng := randv2.New(randv2.NewPCG(15, 16))
	s := new(gemmScratch)
	shapes := [][3]int{{6, 16, 1}, {6, 24, 5}, {13, 40, 257}, {12, 136, 300}, {19, 300, 513}, {64, 512, 64}, {7, 17, 3}, {8, 40, 17}, {9, 33, 20}, {10, 48, 300}, {11, 64, 64}, {4, 16, 5}, {2, 32, 3}, {8, 8, 5}, {15, 24, 9}, {16, 56, 300}, {14, 3, 7}, {17, 136, 40}, {32, 512, 64}}
	forGemmCases(rng, shapes, func(gc gemmCase) {
		m, n, k := gc.m, gc.n, gc.k
		c0 := randSlice(rng, m*n)
		var out [2][]float64
		for i, wide := range []bool{true, false} {
			useAVX512 = wide
			out[i] = append([]float64(nil), c0...)
			gemm(s, out[i], n, gc.a, gc.rsA, gc.csA, gc.bp, n, gc.packed, m, n, k, gc.acc)
		}
		if !sameBits(out[0], out[1]) {
			t.Errorf("%v trans %v packed %v acc %v: AVX-512 and AVX2 kernels differ", [3]int{m, n, k}, gc.trans, gc.packed, gc.acc)
		}
	})
}

// gemmCase is one product of forGemmCases: m×k A (Aᵀ stored when trans),
// k×n B row-major in b and, when packed, in packB's layout in bp (packed in
// two halves, as the MLP's tasks do).
type gemmCase struct {
	m, n, k            int
	trans, packed, acc bool
	a                  []float64
	rsA, csA           int
	b, bp              []float64
}

// forGemmCases calls fn for every shape with A in place or transposed, B
// row-major or packed, storing or accumulating, on fresh random operands.
func forGemmCases(rng *randv2.Rand, shapes [][3]int, fn func(gemmCase)) {
	for _, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for _, trans := range []bool{false, true} {
			for _, packed := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					gc := gemmCase{m: m, n: n, k: k, trans: trans, packed: packed, acc: acc, a: randSlice(rng, m*k), rsA: k, csA: 1}
					if trans {
						gc.rsA, gc.csA = 1, m // a holds Aᵀ (k×m)
					}
					gc.b = randSlice(rng, k*n)
					gc.bp = gc.b
					if packed {
						gc.bp = make([]float64, packedLen(k, n))
						packB(gc.bp, gc.b, n, 1, k, n, 0, (n+7)/8/2)
						packB(gc.bp, gc.b, n, 1, k, n, (n+7)/8/2, (n+7)/8)
					}
					fn(gc)
				}
			}
		}
	}
}

// TestGemmMatchesGo measures the difference between the assembly and the
// pure-Go kernels on the MLP's shapes. They round differently (a fused
// multiply–add rounds once; the Go kernels add in groups of four), so they
// agree to a few units of 2⁻⁵³·Σ_p|a_ip·b_pj| per element, not bit for bit:
// the test allows 4·k·2⁻⁵³ of that sum, the classical bound for two
// summation orders.
func TestGemmMatchesGo(t *testing.T) {
	if !haveFMA {
		t.Skip("no assembly kernels (purego build or no AVX2/FMA)")
	}
	defer func() { useFMA = haveFMA }()
	rng := randv2.New(randv2.NewPCG(13, 14))
	for _, sh := range [][3]int{{64, 2, 32}, {64, 32, 32}, {37, 256, 129}, {64, 512, 64}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b := randSlice(rng, m*n), randSlice(rng, n*k)
		var out [2][]float64
		for i, fma := range []bool{true, false} {
			useFMA = fma
			out[i] = make([]float64, m*k)
			matMulAB(new(gemmScratch), out[i], a, b, m, n, k)
		}
		worst := 0.0
		for i := 0; i < m; i++ {
			for j := 0; j < k; j++ {
				abs := 0.0
				for r := 0; r < n; r++ {
					abs += math.Abs(a[i*n+r] * b[r*k+j])
				}
				d := math.Abs(out[0][i*k+j]-out[1][i*k+j]) / (abs * 0x1p-53)
				worst = max(worst, d/float64(n))
				if d > 4*float64(n) {
					t.Fatalf("%v: element (%d, %d) differs by %.3g units of 2⁻⁵³Σ|ab|", sh, i, j, d)
				}
			}
		}
		t.Logf("%v: max difference %.3f·n units of 2⁻⁵³Σ|ab|", sh, worst)
	}
}

// TestGemmKernelBitsAcrossArchitectures: the assembly kernels of every
// architecture (amd64 AVX2 and AVX-512, arm64 ASIMD) compute each element
// of C as the same sequence of fused multiply–adds, so they give the same
// bits; the checksum was recorded on amd64.
func TestGemmKernelBitsAcrossArchitectures(t *testing.T) {
	if !haveFMA {
		t.Skip("no assembly kernels (purego build, no AVX2/FMA, or an architecture without them)")
	}
	rng := randv2.New(randv2.NewPCG(17, 18))
	s := new(gemmScratch)
	h := fnv.New64a()
	forGemmCases(rng, [][3]int{{13, 40, 257}, {8, 24, 9}, {64, 32, 64}, {3, 2, 5}}, func(gc gemmCase) {
		c := randSlice(rng, gc.m*gc.n)
		gemm(s, c, gc.n, gc.a, gc.rsA, gc.csA, gc.bp, gc.n, gc.packed, gc.m, gc.n, gc.k, gc.acc)
		var buf [8]byte
		for _, v := range c {
			binary.LittleEndian.PutUint64(buf[:], math.Float64bits(v))
			h.Write(buf[:])
		}
	})
	const want = 0xa5216b47a22cbfc5
	if got := h.Sum64(); got != want {
		t.Errorf("checksum %#x, want %#x", got, uint64(want))
	}
}
