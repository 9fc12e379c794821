package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/neuralode/neuralode"
)

// runGauss implements `neuralode gauss -n N [--interval a,b] [--json]`: it
// prints the n-point Gauss–Legendre rule, mapped onto [a, b] when --interval
// is given, as a table of nodes and weights, or with --json as one JSON
// object {"n": N, "nodes": [...], "weights": [...]}. Every value is written in
// shortest round-trip form (strconv 'g', -1), so parsing the output recovers
// the float64 values bit for bit. It returns the exit code: 0 on success (and
// for -h), 2 for a bad flag or value, with a one-line message naming the flag
// on stderr.
func runGauss(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("gauss", "Prints the n-point Gauss–Legendre rule on [-1, 1] (or on --interval a,b): one line\n"+
		"per node with its weight, or with --json one JSON object {\"n\", \"nodes\", \"weights\"}. Values\n"+
		"are in shortest round-trip form: parsing them gives the float64 values bit for bit.", stdout)
	n := fs.Int("n", 0, fmt.Sprintf("number of nodes, 1…%d (required)", neuralode.MaxGaussLegendreNodes))
	interval := fs.String("interval", "", "map the rule onto [a, b], given as `a,b` (b < a gives negative weights); default -1,1")
	var out outputFlags
	out.register(fs, "print one JSON object instead of the table")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	nodes, weights, err := gaussRule(flagsSet(fs), *n, *interval)
	if err != nil {
		return fail(stderr, "gauss", err)
	}
	w := bufio.NewWriter(stdout)
	if out.json {
		fmt.Fprintf(w, `{"n": %d, "nodes": `, *n)
		writeJSONFloats(w, nodes)
		w.WriteString(`, "weights": `)
		writeJSONFloats(w, weights)
		w.WriteString("}\n")
	} else {
		var buf [32]byte
		fmt.Fprintf(w, "# %d-point Gauss–Legendre rule: node weight\n", *n)
		for i := range nodes {
			w.Write(strconv.AppendFloat(buf[:0], nodes[i], 'g', -1, 64))
			w.WriteByte(' ')
			w.Write(strconv.AppendFloat(buf[:0], weights[i], 'g', -1, 64))
			w.WriteByte('\n')
		}
	}
	if err := w.Flush(); err != nil {
		return fail(stderr, "gauss", fmt.Errorf("writing output: %w", err))
	}
	return 0
}

// gaussRule validates the flags and returns the rule's nodes and weights.
func gaussRule(set map[string]bool, n int, interval string) (nodes, weights []float64, err error) {
	if !set["n"] {
		return nil, nil, usagef("-n: required (number of nodes)")
	}
	a, b := -1.0, 1.0
	if set["interval"] {
		if a, b, err = parseInterval(interval); err != nil {
			return nil, nil, usagef("--interval: %v", err)
		}
	}
	rule, err := neuralode.GaussLegendre(n)
	if err != nil {
		return nil, nil, usagef("-n: %d is not a valid rule size (want 1…%d)", n, neuralode.MaxGaussLegendreNodes)
	}
	nodes, weights = make([]float64, n), make([]float64, n)
	if err := rule.MapTo(a, b, nodes, weights); err != nil {
		return nil, nil, usagef("--interval: %v", cliError(err))
	}
	return nodes, weights, nil
}

// parseInterval parses "a,b" into two finite floats.
func parseInterval(s string) (a, b float64, err error) {
	as, bs, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want two numbers a,b", s)
	}
	if a, err = strconv.ParseFloat(strings.TrimSpace(as), 64); err != nil {
		return 0, 0, fmt.Errorf("%q: bad start: %v", s, errors.Unwrap(err))
	}
	if b, err = strconv.ParseFloat(strings.TrimSpace(bs), 64); err != nil {
		return 0, 0, fmt.Errorf("%q: bad end: %v", s, errors.Unwrap(err))
	}
	if math.IsInf(a, 0) || math.IsNaN(a) || math.IsInf(b, 0) || math.IsNaN(b) {
		return 0, 0, fmt.Errorf("%q: ends must be finite", s)
	}
	return a, b, nil
}

// writeJSONFloats writes xs as a JSON array in shortest round-trip form. The
// values are finite, and strconv's 'g' output (e.g. "-0.5", "1e-05") is
// valid JSON number syntax.
func writeJSONFloats(w *bufio.Writer, xs []float64) {
	w.WriteByte('[')
	var buf [32]byte
	for i, x := range xs {
		if i > 0 {
			w.WriteString(", ")
		}
		w.Write(strconv.AppendFloat(buf[:0], x, 'g', -1, 64))
	}
	w.WriteByte(']')
}
