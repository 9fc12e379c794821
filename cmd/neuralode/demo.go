package main

import "io"

// runDemo is the command run without arguments: the crossing-trajectories
// task trained with the direct, seminorm-adjoint and GQ-adjoint methods from
// the same initial weights, a table comparing them, and plots.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "Runs a short demonstration: the crossing-trajectories task (g1d) trained with\n"+
		"the direct, seminorm adjoint and GQ adjoint methods, then prints a comparison table and\n"+
		"writes plots into --out. 'neuralode' with no arguments runs it with the defaults.", stdout)
	width := fs.Int("width", 256, "hidden width of the vector field")
	epochs := fs.Int("epochs", 60, "epochs per method")
	var out string
	checkOut := outDirFlag(fs, &out, "plots and metrics.jsonl")
	var of outputFlags
	of.register(fs, "print JSON lines on stdout instead of the table")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if err := checkOut(); err != nil {
		return fail(stderr, "demo", err)
	}
	cfg := taskRegistry["g1d"].defaults
	cfg.Task, cfg.Width, cfg.Epochs, cfg.GQC, cfg.Seed = "g1d", *width, *epochs, 0.1, 1
	if err := validateConfig(cfg); err != nil {
		return fail(stderr, "demo", err)
	}
	of.logf(stderr, "neuralode demo: crossing trajectories (g1d), dopri5 at rtol = atol = 1e-3,\n"+
		"trained with direct backpropagation, the seminorm adjoint and the GQ adjoint\n")
	return trainRun(cfg, []string{"direct", "seminorm", "gq"}, nil,
		trainOpts{out: out, json: of.json, quiet: of.quiet}, stdout, stderr, "demo")
}
