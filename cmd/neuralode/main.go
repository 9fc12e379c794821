// Command neuralode trains neural ODEs and SDEs and reproduces the
// experiments of the seminorm (Kidger, Chen & Lyons 2021) and Gauss–Legendre
// quadrature adjoint (Norcliffe & Deisenroth 2023) papers.
//
// Usage:
//
//	neuralode                 run a short demonstration (crossing trajectories)
//	neuralode demo   …        the same, with flags
//	neuralode solve  …        integrate a PyTorch case file
//	neuralode grad   …        compute a case's loss and gradient
//	neuralode gauss  …        print a Gauss–Legendre rule
//	neuralode train  …        train one of the papers' tasks
//	neuralode bench  …        time every gradient method on the same problems
//
// Every subcommand explains its flags with -h and accepts --json (JSON lines
// on standard output) and --quiet (no progress on standard error). Exit
// status: 0 success, 1 runtime error, 2 usage error (a bad flag or value),
// 130 interrupted (after saving a checkpoint).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"

	"github.com/neuralode/neuralode"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usage is the top-level help; the task list comes from the task registry.
var usage = `usage: neuralode [command] [flags]

With no command, runs a short demonstration: the crossing-trajectories task
trained with the direct, seminorm-adjoint and Gauss–Legendre adjoint methods.

Commands:
  demo    the demonstration, with flags (width, epochs, output directory)
  solve   integrate a PyTorch case file and print the loss and final state
  grad    compute a case's loss and gradient with a chosen method
  gauss   print an n-point Gauss–Legendre rule
  train   train one of the papers' tasks (` + strings.Join(taskOrder, ", ") + `)
  bench   time every gradient method on the same problems

Every command takes --json (JSON lines on stdout) and --quiet (no progress
on stderr). Exit status: 0 success, 1 runtime error, 2 usage error,
130 interrupted. Run 'neuralode COMMAND -h' for a command's flags.
`

// commands maps each command name to its implementation.
var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"solve": runSolve,
	"grad":  runGrad,
	"gauss": runGauss,
	"train": runTrain,
	"bench": runBench,
	"demo":  runDemo,
}

// run dispatches a command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return runDemo(nil, stdout, stderr)
	}
	cmd, rest := args[0], args[1:]
	if f, ok := commands[cmd]; ok {
		return f(rest, stdout, stderr)
	}
	switch cmd {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	if strings.HasPrefix(cmd, "-") {
		return runDemo(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "neuralode: unknown command %q (want demo, solve, grad, gauss, train or bench)\n", cmd)
	return 2
}

// ---------------------------------------------------------------------------
// Flags shared by the commands

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

// flagsSet returns the names of the flags given on the command line.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// outputFlags are --json and --quiet, which every command takes.
type outputFlags struct {
	json, quiet bool
}

func (o *outputFlags) register(fs *flag.FlagSet, jsonUsage string) {
	fs.BoolVar(&o.json, "json", false, jsonUsage)
	fs.BoolVar(&o.quiet, "quiet", false, "no progress on stderr")
}

// outDirFlag registers --out, the output directory of train, bench and
// demo, and returns a check of its value.
func outDirFlag(fs *flag.FlagSet, dst *string, what string) func() error {
	fs.StringVar(dst, "out", "neuralode-out", "output directory for "+what)
	return func() error {
		if *dst == "" {
			return usagef("--out: empty directory name")
		}
		return nil
	}
}

// logf prints progress on stderr unless --quiet.
func (o *outputFlags) logf(stderr io.Writer, format string, args ...any) {
	if !o.quiet {
		fmt.Fprintf(stderr, format, args...)
	}
}

// minRTol is the smallest relative tolerance accepted: an error estimate
// below about 100 units of round-off cannot be met in float64, and the
// solver would shrink its step until the state stops being finite.
const minRTol = 100 * 0x1p-52

// tolFlags are --rtol and --atol. Their one meaning everywhere: a value
// given on the command line must be positive and finite; a flag left out
// takes the default (the case's, the task's or the command's).
type tolFlags struct {
	rtol, atol float64
}

func (t *tolFlags) register(fs *flag.FlagSet, what string, rdef, adef float64, defName string) {
	fs.Float64Var(&t.rtol, "rtol", rdef, "relative tolerance "+what+" (default: "+defName+")")
	fs.Float64Var(&t.atol, "atol", adef, "absolute tolerance "+what+" (default: "+defName+")")
}

// check validates the tolerances given on the command line.
func (t *tolFlags) check(set map[string]bool) error {
	if set["rtol"] {
		if err := positiveFlag("rtol", t.rtol); err != nil {
			return err
		}
		if t.rtol < minRTol {
			return usagef("--rtol %g: below %.1e (100 × machine epsilon), which float64 cannot meet", t.rtol, minRTol)
		}
	}
	if set["atol"] {
		return positiveFlag("atol", t.atol)
	}
	return nil
}

// resolve returns the tolerances: the given flags, else the defaults.
func (t *tolFlags) resolve(set map[string]bool, rdef, adef float64) (float64, float64) {
	r, a := rdef, adef
	if set["rtol"] {
		r = t.rtol
	}
	if set["atol"] {
		a = t.atol
	}
	return r, a
}

// positiveFlag checks that a flag value is positive and finite.
func positiveFlag(name string, v float64) error {
	if !(v > 0) || math.IsInf(v, 0) {
		return usagef("--%s %v: must be positive and finite", name, v)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Errors and exit status

// usageError is a bad flag or flag value: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// libraryFlags names the command-line flag behind each library option, so
// that an option the library rejects is reported in the user's terms.
var libraryFlags = map[string]string{
	"GradOptions.GQ.Cap": "--gq-cap",
	"GradOptions.GQ.C":   "--gq-c",
	"Options.RTol":       "--rtol",
	"Options.ATol":       "--atol",
	"Options.Step":       "--step",
	"Options.Method":     "--method",
}

// cliError rewrites a library error for the command line: an invalid
// option that comes from a flag becomes a usage error naming the flag, and
// the library's "neuralode: " prefixes are dropped (the command adds its own).
func cliError(err error) error {
	var ue *usageError
	if errors.As(err, &ue) {
		return err
	}
	var ie *neuralode.InputError
	if errors.As(err, &ie) {
		for field, flagName := range libraryFlags {
			if ie.Field == field || strings.HasSuffix(ie.Field, "."+field) {
				return usagef("%s: %s", flagName, ie.Reason)
			}
		}
	}
	return errors.New(strings.ReplaceAll(err.Error(), "neuralode: ", ""))
}

// fail prints a one-line error for the command and returns its exit status:
// 2 for a usage error, 1 otherwise.
func fail(stderr io.Writer, cmd string, err error) int {
	err = cliError(err)
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(stderr, "neuralode %s: %s\n", cmd, msg)
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// usageErr prints a one-line flag-value error and returns exit status 2.
func usageErr(stderr io.Writer, cmd, format string, args ...any) int {
	return fail(stderr, cmd, usagef(format, args...))
}
