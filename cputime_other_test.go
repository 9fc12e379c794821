//go:build !linux

package neuralode

import "time"

// processCPUTime is unavailable here: the CPU-time metrics are skipped.
func processCPUTime() time.Duration { return 0 }
