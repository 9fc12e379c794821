package neuralode

import (
	"math"
	"runtime"
	"sync"
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

// gqaRetries bounds the fresh Gauss rules a panel tries before its
// Kronrod extension and bisection.
const gqaRetries = 2

// gqaSafety multiplies the decay-predicted error of step 1.
const gqaSafety = 10

// gqaResolved is the largest top Legendre coefficient, relative to ∫|g|,
// at which the integrand counts as resolved by a Gauss rule.
const gqaResolved = 0.1

// gqaMethod is GradMethod GQAdaptive or GQAdaptiveInterp. It shares the
// published methods' backward ODE (its base: the state, its norm, the
// observation jumps, the right-hand side and, for the interp variant, the
// forward record) and replaces their fixed nodes by an error-controlled
// quadrature on the recorded backward steps.
type gqaMethod struct {
	g      *GradientSolver
	base   gqaBase
	f      Func            // base's backward right-hand side
	fwd    *stepRecord     // forward record (interp variant), else nil
	tape   stepRecord      // backward steps of every interval, in solve order
	hook   func(*StepInfo) // m.record, bound once
	fChunk func(int)       // m.chunk, bound once

	first, last []int // tape steps of grid interval i: [first[i], last[i])
	nodes0      []int // first Gauss rule size of interval i
	blocks      []int // parameter block boundaries, len = blocks+1
	chunks      []*gqaChunk
	nChunks     int
	rtol, atol  float64
}

// gqaBase is what the adaptive methods take from GQAdjoint / GQInterpAdjoint.
type gqaBase interface {
	gradStrategy
	gqBackward
}

func newGQAdaptiveMethod(g *GradientSolver) gradStrategy {
	b := newGQMethod(g).(*gqMethod)
	return newGQA(g, b, b.f, nil)
}

func newGQAdaptiveInterpMethod(g *GradientSolver) gradStrategy {
	b := newGQInterpMethod(g).(*gqInterpMethod)
	return newGQA(g, b, b.f, &b.tape)
}

func newGQA(g *GradientSolver, b gqaBase, f Func, fwd *stepRecord) *gqaMethod {
	m := &gqaMethod{g: g, base: b, f: f, fwd: fwd}
	m.hook, m.fChunk = m.record, m.chunk
	return m
}

func (m *gqaMethod) forward(n int) func(*StepInfo) { return m.base.forward(n) }
func (m *gqaMethod) backwardState(n, p int) (backwardSpec, error) {
	return m.base.backwardState(n, p)
}
func (m *gqaMethod) timeGradients(ts []float64) { m.base.timeGradients(ts) }
func (m *gqaMethod) record(si *StepInfo)        { m.tape.push(si, 0) }

// gqaChunk is the workspace of one quadrature task.
type gqaChunk struct {
	ev                      Evaluator
	sum                     []float64 // integral over the task's intervals
	gk, ig, sk, ab          []float64 // node product, Gauss sum, Kronrod sum, Gauss sum of |g|
	tail                    [4][]float64
	y, z                    []float64   // interpolated backward and forward states
	ipB, ipF                interpolant // backward and forward dense output
	kvB, kvF                [][]float64
	stack                   []gqaPanel
	nodes, kronrod, retries int
	bisections, capped      int
}

type gqaPanel struct {
	lo, hi float64 // panel ends, in the interval's forward orientation
	frac   float64 // panel length / interval length
	depth  int
}

// setBlocks splits the parameters into the field's tensors (one block if
// it has no ParamTensors or their sizes do not add up).
func (m *gqaMethod) setBlocks() {
	g := m.g
	m.blocks = append(m.blocks[:0], 0)
	if pt, ok := g.field.(ParamTensors); ok {
		off := 0
		for _, sz := range pt.ParamSizes() {
			off += sz
			m.blocks = append(m.blocks, off)
		}
		if off == g.p {
			return
		}
		m.blocks = m.blocks[:1]
	}
	m.blocks = append(m.blocks, g.p)
}

// backward solves the base's backward state interval by interval,
// recording every accepted step, then integrates dL/dθ over the intervals.
func (m *gqaMethod) backward() error {
	g := m.g
	n := g.n
	y, first, err := g.beginBackward()
	if err != nil {
		return err
	}
	total := len(y)
	m.setBlocks()
	m.rtol, m.atol = g.bwd.rtol, g.bwd.atol
	m.tape.reset(g.bwd.Method(), total, true, 1)
	grid := g.grid
	nGrid := len(grid)
	m.first, m.last, m.nodes0 = resizeInts(m.first, nGrid), resizeInts(m.last, nGrid), resizeInts(m.nodes0, nGrid)
	r := &g.res
	if cap(g.augOut) < 2*total {
		g.augOut = make([]float64, 2*total)
	}
	out := g.augOut[:2*total]
	for i := nGrid - 1; i >= 1; i-- {
		g.selectPiece(grid[i-1], grid[i])
		m.base.observe(y, i)
		m.first[i] = m.tape.steps()
		g.outTimes = append(g.outTimes[:0], grid[i], grid[i-1])
		rc := g.bwd.runConfig()
		rc.firstStep, rc.onStep = first, m.hook
		st, err := g.bwd.run(m.f, y, g.outTimes, out, rc)
		r.Stats.Backward.Add(st)
		if err != nil {
			return err
		}
		copy(y, out[total:])
		m.last[i] = m.tape.steps()
		m.nodes0[i] = gqaFirstRule(m.last[i]-m.first[i], m.rtol)
		first = g.nextFirstStep()
	}
	copy(r.Z0, m.base.adjoint(y))
	Axpy(1, g.gridGrad[:n], r.Z0)
	if err := m.quadrature(nGrid - 1); err != nil {
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
func (m *gqaMethod) quadrature(intervals int) error {
	g := m.g
	q := m
	chunks := min(quadChunks, intervals)
	for len(q.chunks) < chunks {
		q.chunks = append(q.chunks, &gqaChunk{ev: g.field.NewEvaluator()})
	}
	for _, c := range q.chunks[:chunks] {
		c.ensure(g.p, g.n, g.bwd.Method(), g.fwd.Method())
		clear(c.sum)
		c.nodes, c.kronrod, c.retries, c.bisections, c.capped = 0, 0, 0, 0, 0
	}
	q.nChunks = chunks
	if err := gqaBuildRules(); err != nil {
		return err
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
			m.chunk(c)
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

func (c *gqaChunk) ensure(p, n int, bwd, fwd *Tableau) {
	if len(c.sum) != p {
		c.sum, c.gk, c.ig, c.sk, c.ab = make([]float64, p), make([]float64, p), make([]float64, p), make([]float64, p), make([]float64, p)
		for j := range c.tail {
			c.tail[j] = make([]float64, p)
		}
	}
	if len(c.y) != 2*n {
		c.y, c.z = make([]float64, 2*n), make([]float64, n)
	}
	if c.ipB.tb != bwd {
		c.ipB.init(bwd)
		c.kvB = make([][]float64, bwd.denseVectors())
	}
	if c.ipF.tb != fwd {
		c.ipF.init(fwd)
		c.kvF = make([][]float64, fwd.denseVectors())
	}
}

// gqaTails holds, for every Gauss rule size n ≤ gqaMaxN, the weights
// (2j+1)·w_k·P_j(x_k) of the Legendre coefficients j = n−1, n−2, n−3, n−4
// (four rows of n values), so that T_j = h·Σ_k row_j[k]·g(x_k) is the
// coefficient of P_j in the interpolant of g on [mid−h, mid+h], scaled like
// the integral h·Σ w g. Built once with the rules (gqaBuildRules).
var (
	gqaTails    [gqaMaxN + 1][]float64
	gqaRulesErr error
	gqaOnce     sync.Once
)

// gqaBuildRules builds the Gauss–Kronrod rules and tail weights of every
// size the adaptive quadrature may use, once per process.
func gqaBuildRules() error {
	gqaOnce.Do(func() {
		for n := gqaMinN; n <= gqaMaxN; n++ {
			gl, err := GaussLegendre(n)
			if err == nil {
				_, err = GaussKronrod(n)
			}
			if err != nil {
				gqaRulesErr = err
				return
			}
			w := make([]float64, 4*n)
			pj := make([]float64, n)
			for k, x := range gl.Nodes {
				// P_0 … P_{n−1} at x by the three-term recurrence.
				pj[0], pj[1] = 1, x
				for j := 1; j+1 < n; j++ {
					pj[j+1] = (float64(2*j+1)*x*pj[j] - float64(j)*pj[j-1]) / float64(j+1)
				}
				for r := 0; r < 4; r++ {
					j := n - 1 - r
					w[r*n+k] = float64(2*j+1) * gl.Weights[k] * pj[j]
				}
			}
			gqaTails[n] = w
		}
	})
	return gqaRulesErr
}

// chunk integrates the intervals of task c.
func (m *gqaMethod) chunk(c int) {
	g, q := m.g, m
	ch := q.chunks[c]
	intervals := len(g.grid) - 1
	lo, hi := c*intervals/q.nChunks, (c+1)*intervals/q.nChunks
	sel, _ := ch.ev.(PieceSelector)
	for i := lo + 1; i <= hi; i++ {
		if sel != nil && g.hasBreaks {
			sel.SelectPiece(g.grid[i-1], g.grid[i])
		}
		m.interval(ch, i)
	}
}

// interval integrates grid interval i into ch.sum by adaptive bisection.
func (m *gqaMethod) interval(ch *gqaChunk, i int) {
	g := m.g
	n := m.nodes0[i]
	ch.stack = append(ch.stack[:0], gqaPanel{lo: g.grid[i-1], hi: g.grid[i], frac: 1})
	for len(ch.stack) > 0 {
		pn := ch.stack[len(ch.stack)-1]
		ch.stack = ch.stack[:len(ch.stack)-1]
		if m.panel(ch, i, n, pn) {
			continue
		}
		// Bisect; the upper half is pushed first so that panels are
		// integrated from the low end (a fixed order either way).
		mid := 0.5*pn.lo + 0.5*pn.hi
		ch.bisections++
		ch.stack = append(ch.stack, gqaPanel{mid, pn.hi, pn.frac / 2, pn.depth + 1}, gqaPanel{pn.lo, mid, pn.frac / 2, pn.depth + 1})
	}
}

// panel integrates one panel: the n-point Gauss rule, accepted if the
// decay of its Legendre coefficients predicts an error within the
// tolerance; while the integrand is not resolved (up to gqaRetries
// times), a fresh Gauss rule of twice the size; then the Kronrod extension
// of the last Gauss rule, accepted if |K − G| is within the tolerance. It adds an accepted value to ch.sum and reports whether
// it accepted one (false: bisect).
func (m *gqaMethod) panel(ch *gqaChunk, i, n int, pn gqaPanel) bool {
	half, mid := 0.5*pn.hi-0.5*pn.lo, 0.5*pn.lo+0.5*pn.hi
	ok, resolved := m.gaussStage(ch, i, n, half, mid, pn.frac)
	for tries := 0; !ok && !resolved && tries < gqaRetries && n < gqaMaxN; tries++ {
		n = min(2*n, gqaMaxN)
		ch.retries++
		ok, resolved = m.gaussStage(ch, i, n, half, mid, pn.frac)
	}
	if ok {
		Axpy(1, ch.ig, ch.sum)
		return true
	}
	ch.kronrod++
	gk, _ := GaussKronrod(n) // built by gqaBuildRules
	for k, x := range gk.Nodes {
		if gk.IsGauss[k] {
			continue
		}
		m.node(ch, i, mid+half*x)
		Axpy(half*gk.Weights[k], ch.gk, ch.sk)
	}
	if m.kronrodOK(ch, pn.frac) || pn.depth >= gqaMaxDepth {
		if pn.depth >= gqaMaxDepth {
			ch.capped++
		}
		Axpy(1, ch.sk, ch.sum)
		return true
	}
	return false
}

// gaussStage evaluates the n-point Gauss rule on the panel mid ± half into
// ch.ig, the Gauss nodes' share of the Kronrod sum into ch.sk, ∫|g| into
// ch.ab and the top Legendre coefficients into ch.tail, then judges it
// (see spectralOK).
func (m *gqaMethod) gaussStage(ch *gqaChunk, i, n int, half, mid, frac float64) (ok, resolved bool) {
	gk, _ := GaussKronrod(n)
	tw := gqaTails[n]
	clear(ch.ig)
	clear(ch.sk)
	clear(ch.ab)
	for r := range ch.tail {
		clear(ch.tail[r])
	}
	gi := 0 // index of the Gauss node
	for k, x := range gk.Nodes {
		if !gk.IsGauss[k] {
			continue
		}
		m.node(ch, i, mid+half*x)
		w := half * gk.GaussWeights[k]
		Axpy(w, ch.gk, ch.ig)
		Axpy(half*gk.Weights[k], ch.gk, ch.sk)
		ab := ch.ab[:len(ch.gk)]
		for j, v := range ch.gk {
			ab[j] += math.Abs(w * v)
		}
		for r := range ch.tail {
			Axpy(half*tw[r*n+gi], ch.gk, ch.tail[r])
		}
		gi++
	}
	return m.spectralOK(ch, n, frac)
}

// node writes the parameter product a(τ)ᵀ ∂f/∂θ(τ, z(τ)) into ch.gk,
// with a (and z) from the backward dense output of interval i and, for the
// interp variant, z from the forward dense output.
func (m *gqaMethod) node(ch *gqaChunk, i int, tau float64) {
	n := m.g.n
	tp := &m.tape
	// The backward steps of interval i run from grid[i] toward grid[i−1].
	s := m.first[i]
	for s+1 < m.last[i] && (tp.t1[s]-tau)*tp.h[s] < 0 {
		s++
	}
	y := ch.y[:tp.n]
	tp.atWith(&ch.ipB, ch.kvB, s, (tau-tp.t[s])/tp.h[s], y)
	z, a := y, y
	if m.fwd != nil {
		z = ch.z
		fs, theta, _ := m.fwd.locate(tau)
		m.fwd.atWith(&ch.ipF, ch.kvF, fs, theta, z)
	} else {
		z, a = y[:n], y[n:]
	}
	clear(ch.gk)
	ch.ev.VJP(tau, z, a, nil, nil, ch.gk, nil)
	ch.nodes++
}

// atWith is stepRecord.at with the caller's interpolant and vector views,
// so that concurrent quadrature tasks can read one record.
func (r *stepRecord) atWith(ip *interpolant, kv [][]float64, i int, theta float64, dst []float64) {
	for j := range kv {
		kv[j] = r.vec(i, 1+j)
	}
	ip.eval(dst, r.y0(i), kv, theta, r.h[i])
}

// spectralOK predicts the n-point Gauss rule's error from its top
// Legendre coefficients T_{n−1…n−4} and reports whether it is within the
// tolerance of every block. The integrand counts as resolved (reported)
// when the top coefficients are below gqaResolved of ∫|g|. The error of a
// Gauss rule is about its first non-integrated coefficient: where the
// coefficients decay, ρ = (‖T_{n−1}‖+‖T_{n−2}‖)/(‖T_{n−3}‖+‖T_{n−4}‖) < ½,
// T_{2n} ≈ T_{n−1}·ρ^{(n+1)/2}; otherwise T_{n−1} itself. Times gqaSafety,
// per component.
func (q *gqaMethod) spectralOK(ch *gqaChunk, n int, frac float64) (ok, resolved bool) {
	ok = true
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
		if !(s1 <= gqaResolved*rms(ch.ab[lo:hi])) {
			return false, false
		}
		// Without a clear decay the top coefficients themselves bound the
		// error (the interpolant is resolved to their size).
		fac := float64(gqaSafety)
		if rho := s1 / s2; rho < 0.5 {
			fac *= math.Pow(rho, 0.5*float64(n+1))
		}
		sum := 0.0
		t0, t1, ig := ch.tail[0][lo:hi], ch.tail[1][lo:hi], ch.ig[lo:hi]
		for j := range ig {
			e := fac * (math.Abs(t0[j]) + math.Abs(t1[j]))
			sc := q.atol*frac + q.rtol*math.Abs(ig[j])
			sum += (e / sc) * (e / sc)
		}
		if !(sum <= float64(hi-lo)) {
			ok = false
		}
	}
	return ok, true
}

// kronrodOK reports whether |K − G| is within the tolerance of every block.
func (q *gqaMethod) kronrodOK(ch *gqaChunk, frac float64) bool {
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
