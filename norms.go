package neuralode

import (
	"fmt"
	"math"
)

// Norm measures a vector of scaled errors for step-size control.
//
// The solver divides each component of the local error estimate by its
// tolerance, err_i / (atol + rtol·max(|y0_i|, |y1_i|)), and accepts the step
// when the norm of the result is at most 1. The same norm measures y0/s and
// f0/s in the initial-step rule (Hairer, Nørsett & Wanner I, II.4), so a
// seminorm governs the initial step of the backward pass too.
//
// A Norm must not modify its argument and must be safe for concurrent use.
type Norm interface {
	Norm(scaled []float64) float64
}

// RMSNorm is the root-mean-square norm sqrt(Σ x_i² / n), the default of
// torchdiffeq, diffrax and SciPy. The empty vector has norm 0.
type RMSNorm struct{}

// Norm returns the RMS of x.
func (RMSNorm) Norm(x []float64) float64 { return rms(x) }

func rms(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	return math.Sqrt(SumSq(x) / float64(len(x)))
}

// MaxNorm is the infinity norm max_i |x_i|. NaN in x yields NaN.
type MaxNorm struct{}

// Norm returns max |x_i|.
func (MaxNorm) Norm(x []float64) float64 {
	m := 0.0
	for _, v := range x {
		a := math.Abs(v)
		if a > m || a != a {
			m = a
			if a != a {
				return a
			}
		}
	}
	return m
}

// NormFunc adapts a function to the Norm interface.
type NormFunc func(scaled []float64) float64

// Norm calls f.
func (f NormFunc) Norm(x []float64) float64 { return f(x) }

// Group is a contiguous range [Start, End) of the state, a channel group of
// a GroupedNorm, with a weight. Weight 0 drops the group from the norm: the
// group is still integrated, but its error never rejects a step.
type Group struct {
	Name       string
	Start, End int
	Weight     float64
}

// GroupedNorm is a mixed norm over channel groups: the RMS inside each group,
// multiplied by the group's weight, and the maximum across groups,
//
//	‖x‖ = max_g w_g · RMS(x[g.Start:g.End]).
//
// With weight 0 on the groups that feed back nowhere (the parameter and time
// adjoints) it is the seminorm of Kidger, Chen & Lyons (ICML 2021, §3); with
// every weight 1 and one group per tensor it is torchdiffeq's default
// adjoint norm. Groups with weight 0 cost nothing to evaluate.
type GroupedNorm struct {
	n      int
	groups []Group
}

// NewGroupedNorm returns the grouped norm for states of length n. The groups
// must be listed in order and cover [0, n) exactly, without gaps or overlaps;
// weights must be finite and non-negative, and at least one must be positive
// (a norm that ignores everything would accept every step). Empty groups are
// allowed and ignored.
func NewGroupedNorm(n int, groups ...Group) (*GroupedNorm, error) {
	if n < 0 {
		return nil, invalidf("GroupedNorm", "negative state length %d", n)
	}
	next := 0
	positive := false
	for i, g := range groups {
		field := fmt.Sprintf("GroupedNorm.groups[%d] (%q)", i, g.Name)
		if g.Start != next {
			return nil, invalidf(field, "starts at %d, want %d (groups must be contiguous and in order)", g.Start, next)
		}
		if g.End < g.Start {
			return nil, invalidf(field, "ends at %d before it starts at %d", g.End, g.Start)
		}
		if !(g.Weight >= 0) || math.IsInf(g.Weight, 0) {
			return nil, invalidf(field, "weight %v is not a finite non-negative number", g.Weight)
		}
		if g.Weight > 0 && g.End > g.Start {
			positive = true
		}
		next = g.End
	}
	if next != n {
		return nil, invalidf("GroupedNorm", "groups cover [0, %d), state has length %d", next, n)
	}
	if !positive && n > 0 {
		return nil, invalidf("GroupedNorm", "every group has weight 0 or is empty: the norm would ignore the whole state")
	}
	return &GroupedNorm{n: n, groups: append([]Group(nil), groups...)}, nil
}

// Len returns the state length the norm was built for.
func (g *GroupedNorm) Len() int { return g.n }

// Groups returns a copy of the groups.
func (g *GroupedNorm) Groups() []Group { return append([]Group(nil), g.groups...) }

// Norm returns max_g w_g·RMS(x[g]). It panics if len(x) differs from Len;
// the solver checks the length when a solve starts.
func (g *GroupedNorm) Norm(x []float64) float64 {
	if len(x) != g.n {
		panic(fmt.Sprintf("neuralode: GroupedNorm of length %d applied to %d values", g.n, len(x)))
	}
	m := 0.0
	for _, gr := range g.groups {
		if gr.Weight == 0 || gr.End == gr.Start {
			continue
		}
		v := gr.Weight * rms(x[gr.Start:gr.End])
		if v > m || v != v {
			if v != v {
				return v
			}
			m = v
		}
	}
	return m
}

// lengthChecker is implemented by norms that only apply to states of one length.
type lengthChecker interface{ Len() int }

// weightedLen returns the length of the shortest prefix of the state that
// holds every group of positive weight: the norm ignores everything after
// it, so a solver need not form or scale the error estimate there (for a
// seminorm adjoint, the whole parameter gradient).
func (g *GroupedNorm) weightedLen() int {
	n := 0
	for _, gr := range g.groups {
		if gr.Weight > 0 {
			n = gr.End
		}
	}
	return n
}

// errorLen returns how many leading components of an error vector of length
// n the norm reads: weightedLen for a GroupedNorm, n for any other norm.
func errorLen(norm Norm, n int) int {
	if g, ok := norm.(*GroupedNorm); ok && g.n == n {
		return g.weightedLen()
	}
	return n
}
