//go:build linux

package neuralode

import (
	"syscall"
	"time"
)

// processCPUTime returns the CPU time the process has used (user + system).
// On a shared machine it measures the work of a benchmark without the time
// its threads spent waiting for a core.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
