package main

import (
	"fmt"
	"io"
)

func runDemo(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "neuralode: the demonstration is not built yet")
	return 1
}

func runTrain(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "neuralode train: not built yet")
	return 1
}

func runBench(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "neuralode bench: not built yet")
	return 1
}
