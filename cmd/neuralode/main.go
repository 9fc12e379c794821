// Command neuralode trains neural ODEs and SDEs and reproduces the
// experiments of the seminorm (Kidger, Chen & Lyons 2021) and Gauss–Legendre
// quadrature adjoint (Norcliffe & Deisenroth 2023) papers.
//
// Usage:
//
//	neuralode                 run a short demonstration (crossing trajectories)
//	neuralode solve  …        integrate a PyTorch case file
//	neuralode grad   …        compute a case's loss and gradient
//	neuralode gauss  …        print a Gauss–Legendre rule
//	neuralode train  …        train one of the papers' tasks
//	neuralode bench  …        time every gradient method on the same problems
//
// Every subcommand explains its flags with -h.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: neuralode [command] [flags]

With no command, runs a short demonstration: the crossing-trajectories task
trained with the direct, seminorm-adjoint and Gauss–Legendre adjoint methods.

Commands:
  solve   integrate a PyTorch case file and print the loss and final state
  grad    compute a case's loss and gradient with a chosen method
  gauss   print an n-point Gauss–Legendre rule
  train   train one of the papers' tasks (g1d, spheres, sines, ou)
  bench   time every gradient method on the same problems

Run 'neuralode COMMAND -h' for a command's flags.
`

// run dispatches a command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return runDemo(nil, stdout, stderr)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "solve":
		return runSolve(rest, stdout, stderr)
	case "grad":
		return runGrad(rest, stdout, stderr)
	case "gauss":
		return runGauss(rest, stdout, stderr)
	case "train":
		return runTrain(rest, stdout, stderr)
	case "bench":
		return runBench(rest, stdout, stderr)
	case "demo":
		return runDemo(rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	if strings.HasPrefix(cmd, "-") {
		return runDemo(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "neuralode: unknown command %q (want solve, grad, gauss, train or bench)\n", cmd)
	return 2
}

// helpPrinters maps each flag set made by newFlags to its help printer. The
// flag package calls FlagSet.Usage on every parse error as well as on -h, so
// Usage itself stays silent and parseFlags prints the help only for -h.
var helpPrinters sync.Map // *flag.FlagSet → func()

// newFlags returns a flag set that reports errors in one line (parseFlags
// prints it) and prints its help on -h.
func newFlags(name, summary string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	helpPrinters.Store(fs, func() {
		fmt.Fprintf(stdout, "usage: neuralode %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	})
	return fs
}

// parseFlags parses args; it returns an exit status and false when the
// command should stop (help printed: 0; bad flag: 2, one line on stderr).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		if p, ok := helpPrinters.Load(fs); ok {
			p.(func())()
		}
		helpPrinters.Delete(fs)
		return 0, false
	}
	helpPrinters.Delete(fs)
	if err != nil {
		fmt.Fprintf(stderr, "neuralode %s: %v\n", fs.Name(), err)
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "neuralode %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}

// fail prints a one-line error for the command and returns exit status 1.
func fail(stderr io.Writer, cmd string, err error) int {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(stderr, "neuralode %s: %s\n", cmd, msg)
	return 1
}

// usageErr prints a one-line flag-value error and returns exit status 2.
func usageErr(stderr io.Writer, cmd, format string, args ...any) int {
	fmt.Fprintf(stderr, "neuralode %s: %s\n", cmd, fmt.Sprintf(format, args...))
	return 2
}
