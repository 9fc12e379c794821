package neuralode

import (
	"math"
	"runtime"
)

// Error-controlled Gauss–Legendre quadrature adjoint (GQAdaptive,
// GQAdaptiveInterp).
//
// The backward pass is that of GQAdjoint (GQInterpAdjoint): [z, a] (a alone)
// is solved backward interval by interval with [z, a] (a) in the error norm,
// but instead of stopping at pre-computed nodes every accepted backward step
// is recorded with its dense output, so that z(τ) and a(τ) are available
// at any τ afterwards. dL/dθ = ∫ a(τ)ᵀ ∂f/∂θ(τ, z(τ)) dτ is then integrated
// on each observation interval (between break points) by an adaptive
// Gauss–Legendre rule whose node count is set by the backward tolerances:
//
//  1. A panel (initially the whole interval) gets an n-point Gauss rule.
//     Alongside the integral, the node products give the top Legendre
//     coefficients of the integrand's interpolant (degrees n−4 … n−1, per
//     parameter). Their decay predicts the rule's error (an n-point Gauss
//     rule errs by about the degree-2n coefficient, ‖T_{2n}‖ ≈
//     ‖T_{n−1}‖·ρ^{(n+1)/2} with ρ the decay over two degrees). If the
//     prediction is within the tolerance for every parameter block, the
//     Gauss value is accepted: n products, the cost of the published rule
//     with the same n.
//  2. Otherwise the n+1 Kronrod nodes of the Gauss–Kronrod extension are
//     added (the Gauss products are reused) and |K − G| is the error
//     estimate; K is accepted if it is within the tolerance.
//  3. Otherwise the panel is bisected and each half starts at step 1.
//
// The tolerance of block b (each tensor of ParamTensors, or all parameters)
// is the scaled RMS norm of the solves: sqrt(mean_i (e_i/(atol·ℓ +
// rtol·|I_i|))²) ≤ 1 with the backward rtol, atol, I the panel's integral
// and ℓ the panel's fraction of its interval.
//
// Cost per node: one parameter vector–Jacobian product (a forward pass of
// the batch, its reverse sweep and the weight-gradient products), as for
// GQAdjoint; the per-block bookkeeping adds seven passes over the p
// parameters per node.

// gqaMaxDepth bounds the bisections of a panel; at this depth (a panel
// 2⁻¹² of its interval) the Kronrod value is accepted as it is.
const gqaMaxDepth = 12

// gqaMaxN bounds the Gauss nodes of a panel.
const gqaMaxN = 48

// gqaMinN is the smallest Gauss rule: the decay of the top four Legendre
// coefficients is meaningless for fewer nodes.
const gqaMinN = 6

// gqaSafety multiplies the decay-predicted error of step 1.
const gqaSafety = 10

// gqaState is the workspace of the error-controlled quadrature.
type gqaState struct {
	tape        stepTape // backward steps of every interval, in solve order
	first, last []int    // tape steps of grid interval i: [first[i], last[i])
	nodes0      []int    // first Gauss rule size of interval i
	blocks      []int    // parameter block boundaries, len = blocks+1
	chunks      []*gqaChunk
	nChunks     int
	rtol, atol  float64
	tails       map[int][]float64 // per rule size n: (2j+1)·w_k·P_j(x_k) for j = n−1…n−4
	hook        func(*StepInfo)
	fChunk      func(int)
}

// gqaChunk is the workspace of one quadrature task.
type gqaChunk struct {
	ev                 Evaluator
	sum                []float64 // integral over the task's intervals
	gk, ig, sk         []float64 // node product, Gauss sum, Kronrod sum
	tail               [4][]float64
	y, z               []float64 // interpolated backward state and forward state
	beta, coef         []float64
	vecs               [][]float64
	stack              []gqaPanel
	nodes, kronrod     int
	bisections, capped int
}

type gqaPanel struct {
	lo, hi float64 // panel ends, in the interval's forward orientation
	frac   float64 // panel length / interval length
	depth  int
}

func (g *GradientSolver) gqaSetup() *gqaState {
	q := g.gqa
	if q == nil {
		q = &gqaState{tails: map[int][]float64{}}
		q.hook = func(si *StepInfo) {
			q.tape.push(si, 0, nil)
			q.tape.data = append(q.tape.data, si.Y0...)
			for _, k := range si.K {
				q.tape.data = append(q.tape.data, k...)
			}
		}
		q.fChunk = g.gqaChunkTask
		g.gqa = q
	}
	q.blocks = q.blocks[:0]
	q.blocks = append(q.blocks, 0)
	if pt, ok := g.field.(ParamTensors); ok {
		off := 0
		for _, sz := range pt.ParamSizes() {
			off += sz
			q.blocks = append(q.blocks, off)
		}
		if off != g.p {
			q.blocks = append(q.blocks[:1], g.p)
		}
	} else {
		q.blocks = append(q.blocks, g.p)
	}
	return q
}

// backwardGQA is the backward pass of GQAdaptive and GQAdaptiveInterp.
func (g *GradientSolver) backwardGQA() error {
	n := g.n
	interp := g.opts.Method == GQAdaptiveInterp
	total := 2 * n
	f := g.fGQ
	if interp {
		total = n
		f = g.fInterp
	}
	y, first, err := g.configureBackward(total, 0)
	if err != nil {
		return err
	}
	q := g.gqaSetup()
	q.rtol, q.atol = g.bwd.rtol, g.bwd.atol
	q.tape.reset(1+g.bwd.tb.denseVectors(), total)
	grid := g.grid
	m := len(grid)
	q.first, q.last, q.nodes0 = resizeInts(q.first, m), resizeInts(q.last, m), resizeInts(q.nodes0, m)
	r := &g.res
	for i := m - 1; i >= 1; i-- {
		g.selectPiece(grid[i-1], grid[i])
		if interp {
			Axpy(1, g.gridGrad[i*n:(i+1)*n], y)
		} else {
			copy(y[:n], g.gridStates[i*n:(i+1)*n])
			Axpy(1, g.gridGrad[i*n:(i+1)*n], y[n:2*n])
		}
		q.first[i] = q.tape.steps()
		g.outTimes = append(g.outTimes[:0], grid[i], grid[i-1])
		need := 2 * total
		if cap(g.augOut) < need {
			g.augOut = make([]float64, need)
		}
		g.bwd.opts.FirstStep = first
		st, err := g.bwd.solve(f, y, g.outTimes, g.augOut[:need], q.hook)
		r.Stats.Backward.Add(st)
		if err != nil {
			return err
		}
		copy(y, g.augOut[total:need])
		q.last[i] = q.tape.steps()
		q.nodes0[i] = gqaFirstRule(q.last[i]-q.first[i], q.rtol)
		first = g.nextFirstStep()
	}
	if interp {
		copy(r.Z0, y)
	} else {
		copy(r.Z0, y[n:])
	}
	Axpy(1, g.gridGrad[:n], r.Z0)
	if err := g.gqaQuadrature(m - 1); err != nil {
		return err
	}
	r.Stats.VJPs = r.Stats.Backward.NFE + r.Stats.QuadratureNodes
	return nil
}

// gqaFirstRule is the Gauss rule size an interval starts with: the
// backward steps taken on it (their sizes follow the dynamics of [z, a],
// and with them the integrand's) plus the digits asked for, a guess the
// error estimate then corrects.
func gqaFirstRule(steps int, rtol float64) int {
	k := steps/2 + int(math.Ceil(-math.Log10(rtol)))
	return max(gqaMinN, min(k, gqaMaxN))
}

func resizeInts(x []int, n int) []int {
	if cap(x) < n {
		return make([]int, n)
	}
	return x[:n]
}

// gqaQuadrature integrates the intervals 1…intervals in a fixed number of
// tasks of contiguous intervals, each summing into its own buffer; the
// buffers are added in task order, so the result does not depend on the
// number of goroutines.
func (g *GradientSolver) gqaQuadrature(intervals int) error {
	q := g.gqa
	chunks := min(quadChunks, intervals)
	for len(q.chunks) < chunks {
		q.chunks = append(q.chunks, &gqaChunk{ev: g.field.NewEvaluator()})
	}
	nk := g.bwd.tb.denseVectors()
	for _, c := range q.chunks[:chunks] {
		c.ensure(g.p, g.n, nk, len(g.fwdDense))
		clear(c.sum)
		c.nodes, c.kronrod, c.bisections, c.capped = 0, 0, 0, 0
	}
	q.nChunks = chunks
	// Rules are built before the fan-out: the cache of tail weights is not
	// safe for concurrent writes.
	for i := 1; i <= intervals; i++ {
		if _, err := q.tailWeights(q.nodes0[i]); err != nil {
			return err
		}
	}
	workers := g.opts.Workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, chunks)
	if sp, ok := q.chunks[0].ev.(interface{ splits(rows int) bool }); ok && sp.splits(g.n/g.dim) {
		workers = 1
	}
	if workers <= 1 {
		for c := 0; c < chunks; c++ {
			g.gqaChunkTask(c)
		}
	} else if err := fanOut(g.pool, workers, chunks, q.fChunk); err != nil {
		return err
	}
	st := &g.res.Stats
	for _, c := range q.chunks[:chunks] {
		Axpy(1, c.sum, g.res.Params)
		st.QuadratureNodes += c.nodes
	}
	return nil
}

func (c *gqaChunk) ensure(p, n, nk, nz int) {
	if len(c.sum) != p {
		c.sum, c.gk, c.ig, c.sk = make([]float64, p), make([]float64, p), make([]float64, p), make([]float64, p)
		for j := range c.tail {
			c.tail[j] = make([]float64, p)
		}
	}
	if len(c.y) != 2*n {
		c.y, c.z = make([]float64, 2*n), make([]float64, n)
	}
	if len(c.beta) != nk {
		c.beta, c.coef, c.vecs = make([]float64, nk), make([]float64, nk), make([][]float64, nk)
	}
}

// tailWeights returns, for the n-point Gauss rule, the weights
// (2j+1)·w_k·P_j(x_k) of the Legendre coefficients j = n−1, n−2, n−3, n−4,
// four rows of n values, so that T_j = h·Σ_k row_j[k]·g(x_k) is the
// coefficient of P_j in the interpolant of g scaled like the integral h·Σ w g.
func (q *gqaState) tailWeights(n int) ([]float64, error) {
	if w, ok := q.tails[n]; ok {
		return w, nil
	}
	gl, err := GaussLegendre(n)
	if err != nil {
		return nil, err
	}
	if _, err := GaussKronrod(n); err != nil {
		return nil, err
	}
	w := make([]float64, 4*n)
	for k, x := range gl.Nodes {
		// P_0 … P_{n−1} at x by the three-term recurrence.
		p0, p1 := 1.0, x
		pj := make([]float64, n)
		pj[0] = 1
		if n > 1 {
			pj[1] = x
		}
		for j := 1; j+1 < n; j++ {
			p0, p1 = p1, (float64(2*j+1)*x*p1-float64(j)*p0)/float64(j+1)
			pj[j+1] = p1
		}
		for r := 0; r < 4; r++ {
			j := n - 1 - r
			w[r*n+k] = float64(2*j+1) * gl.Weights[k] * pj[j]
		}
	}
	q.tails[n] = w
	return w, nil
}

// gqaChunkTask integrates the intervals of task c.
func (g *GradientSolver) gqaChunkTask(c int) {
	q := g.gqa
	ch := q.chunks[c]
	intervals := len(g.grid) - 1
	lo, hi := c*intervals/q.nChunks, (c+1)*intervals/q.nChunks
	sel, _ := ch.ev.(PieceSelector)
	for i := lo + 1; i <= hi; i++ {
		if sel != nil && g.hasBreaks {
			sel.SelectPiece(g.grid[i-1], g.grid[i])
		}
		g.gqaInterval(ch, i)
	}
}

// gqaInterval integrates grid interval i into ch.sum by adaptive bisection.
func (g *GradientSolver) gqaInterval(ch *gqaChunk, i int) {
	q := g.gqa
	n := q.nodes0[i]
	ch.stack = append(ch.stack[:0], gqaPanel{lo: g.grid[i-1], hi: g.grid[i], frac: 1})
	for len(ch.stack) > 0 {
		pn := ch.stack[len(ch.stack)-1]
		ch.stack = ch.stack[:len(ch.stack)-1]
		if g.gqaPanel(ch, i, n, pn) {
			continue
		}
		// Bisect; the upper half is pushed first so that panels are
		// integrated from the low end (a fixed order either way).
		mid := 0.5*pn.lo + 0.5*pn.hi
		ch.bisections++
		ch.stack = append(ch.stack, gqaPanel{mid, pn.hi, pn.frac / 2, pn.depth + 1}, gqaPanel{pn.lo, mid, pn.frac / 2, pn.depth + 1})
	}
}

// gqaPanel integrates one panel with the n-point Gauss rule and, if its
// predicted error is too large, its Kronrod extension. It adds an accepted
// value to ch.sum and reports whether it accepted one.
func (g *GradientSolver) gqaPanel(ch *gqaChunk, i, n int, pn gqaPanel) bool {
	q := g.gqa
	gk, _ := GaussKronrod(n) // built by gqaQuadrature
	tw := q.tails[n]
	half, mid := 0.5*pn.hi-0.5*pn.lo, 0.5*pn.lo+0.5*pn.hi
	clear(ch.ig)
	clear(ch.sk)
	for r := range ch.tail {
		clear(ch.tail[r])
	}
	gi := 0 // index of the Gauss node
	for k, x := range gk.Nodes {
		if !gk.IsGauss[k] {
			continue
		}
		g.gqaNode(ch, i, mid+half*x)
		Axpy(half*gk.GaussWeights[k], ch.gk, ch.ig)
		Axpy(half*gk.Weights[k], ch.gk, ch.sk)
		for r := range ch.tail {
			Axpy(half*tw[r*n+gi], ch.gk, ch.tail[r])
		}
		gi++
	}
	if q.spectralOK(ch, n, pn.frac) {
		Axpy(1, ch.ig, ch.sum)
		return true
	}
	ch.kronrod++
	for k, x := range gk.Nodes {
		if gk.IsGauss[k] {
			continue
		}
		g.gqaNode(ch, i, mid+half*x)
		Axpy(half*gk.Weights[k], ch.gk, ch.sk)
	}
	if q.kronrodOK(ch, pn.frac) || pn.depth >= gqaMaxDepth {
		if pn.depth >= gqaMaxDepth {
			ch.capped++
		}
		Axpy(1, ch.sk, ch.sum)
		return true
	}
	return false
}

// gqaNode writes the parameter product a(τ)ᵀ ∂f/∂θ(τ, z(τ)) into ch.gk.
func (g *GradientSolver) gqaNode(ch *gqaChunk, i int, tau float64) {
	q := g.gqa
	n := g.n
	tp := &q.tape
	// The backward steps of interval i run from grid[i] toward grid[i−1].
	s0, s1 := q.first[i], q.last[i]
	s := s0
	for s+1 < s1 && (tp.t1[s]-tau)*tp.h[s] < 0 {
		s++ // few steps per interval: a linear scan beats a search setup
	}
	h := tp.h[s]
	theta := (tau - tp.t[s]) / h
	y := gqaDense(g.bwd.tb, tp, s, theta, ch, ch.y[:tp.n])
	var z, a []float64
	if tp.n == n { // GQAdaptiveInterp: a from the backward, z from the forward solve
		a = y
		z = g.gqaForwardAt(ch, tau)
	} else {
		z, a = y[:n], y[n:]
	}
	clear(ch.gk)
	ch.ev.VJP(tau, z, a, nil, nil, ch.gk, nil)
	ch.nodes++
}

// gqaDense evaluates the dense output of tape step s at fraction theta.
func gqaDense(tb *Tableau, tp *stepTape, s int, theta float64, ch *gqaChunk, dst []float64) []float64 {
	h := tp.h[s]
	tb.denseWeights(theta, ch.beta)
	m := 0
	for j, b := range ch.beta {
		if b != 0 {
			ch.coef[m] = h * b
			ch.vecs[m] = tp.vec(s, 1+j)
			m++
		}
	}
	LinComb(dst, tp.vec(s, 0), ch.coef[:m], ch.vecs[:m])
	return dst
}

// gqaForwardAt is forwardAt with the task's own scratch.
func (g *GradientSolver) gqaForwardAt(ch *gqaChunk, t float64) []float64 {
	tp := &g.tape
	dir := 1.0
	if tp.h[0] < 0 {
		dir = -1
	}
	s, theta, _ := tp.locate(t, dir)
	return gqaDense(g.fwd.tb, tp, s, theta, ch, ch.z)
}

// spectralOK predicts the Gauss rule's error from the decay of the top
// Legendre coefficients and reports whether it is within the tolerance of
// every block.
func (q *gqaState) spectralOK(ch *gqaChunk, n int, frac float64) bool {
	if n < gqaMinN {
		return false
	}
	for b := 0; b+1 < len(q.blocks); b++ {
		lo, hi := q.blocks[b], q.blocks[b+1]
		if hi == lo {
			continue
		}
		s1 := rms(ch.tail[0][lo:hi]) + rms(ch.tail[1][lo:hi])
		s2 := rms(ch.tail[2][lo:hi]) + rms(ch.tail[3][lo:hi])
		if s1 == 0 {
			continue
		}
		rho := s1 / s2
		if !(rho < 0.5) { // not decaying: no prediction
			return false
		}
		fac := gqaSafety * math.Pow(rho, 0.5*float64(n+1))
		sum := 0.0
		t0, t1, ig := ch.tail[0][lo:hi], ch.tail[1][lo:hi], ch.ig[lo:hi]
		for j := range ig {
			e := fac * (math.Abs(t0[j]) + math.Abs(t1[j]))
			sc := q.atol*frac + q.rtol*math.Abs(ig[j])
			sum += (e / sc) * (e / sc)
		}
		if !(sum <= float64(hi-lo)) {
			return false
		}
	}
	return true
}

// kronrodOK reports whether |K − G| is within the tolerance of every block.
func (q *gqaState) kronrodOK(ch *gqaChunk, frac float64) bool {
	for b := 0; b+1 < len(q.blocks); b++ {
		lo, hi := q.blocks[b], q.blocks[b+1]
		sum := 0.0
		ig, sk := ch.ig[lo:hi], ch.sk[lo:hi]
		for j := range ig {
			e := sk[j] - ig[j]
			sc := q.atol*frac + q.rtol*math.Abs(sk[j])
			sum += (e / sc) * (e / sc)
		}
		if !(sum <= float64(hi-lo)) {
			return false
		}
	}
	return true
}
