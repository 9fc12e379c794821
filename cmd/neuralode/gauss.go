package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/neuralode/neuralode"
)

// runGauss implements `neuralode gauss -n N [--interval a,b]`: it prints the
// n-point Gauss–Legendre rule, mapped onto [a, b] when --interval is given, as
// one JSON object {"n": N, "nodes": [...], "weights": [...]} on stdout. Every
// value is written in shortest round-trip form (strconv 'g', -1), so parsing
// the output recovers the float64 values bit for bit. It returns the exit
// code: 0 on success (and for -h), 2 for a bad flag or value, with a one-line
// message naming the flag on stderr.
func runGauss(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gauss", flag.ContinueOnError)
	// Parse errors are reported below as one line; usage only on -h.
	fs.SetOutput(io.Discard)
	n := fs.Int("n", 0, fmt.Sprintf("number of nodes, 1…%d (required)", neuralode.MaxGaussLegendreNodes))
	interval := fs.String("interval", "", "map the rule onto [a, b], given as `a,b` (b < a gives negative weights); default -1,1")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "usage: neuralode gauss -n N [--interval a,b]")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "neuralode gauss: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "neuralode gauss: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["n"] {
		fmt.Fprintln(stderr, "neuralode gauss: -n: required (number of nodes)")
		return 2
	}
	a, b := -1.0, 1.0
	if set["interval"] {
		var err error
		if a, b, err = parseInterval(*interval); err != nil {
			fmt.Fprintf(stderr, "neuralode gauss: --interval: %v\n", err)
			return 2
		}
	}
	rule, err := neuralode.GaussLegendre(*n)
	if err != nil {
		fmt.Fprintf(stderr, "neuralode gauss: -n: %d is not a valid rule size (want 1…%d)\n", *n, neuralode.MaxGaussLegendreNodes)
		return 2
	}
	nodes := make([]float64, *n)
	weights := make([]float64, *n)
	if err := rule.MapTo(a, b, nodes, weights); err != nil {
		fmt.Fprintf(stderr, "neuralode gauss: --interval: %v\n", err)
		return 2
	}

	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, `{"n": %d, "nodes": `, *n)
	writeJSONFloats(w, nodes)
	w.WriteString(`, "weights": `)
	writeJSONFloats(w, weights)
	w.WriteString("}\n")
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "neuralode gauss: writing output: %v\n", err)
		return 1
	}
	return 0
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
