//go:build !linux

package runtime

import "os/exec"

// limitMemory is a no-op outside Linux: only the worker's time budget and
// the Go memory limit (a soft one) apply there.
func limitMemory(uint64) error { return nil }

// cpuLimited: outside Linux the time budget is wall time.
const cpuLimited = false

func limitCPU(uint64) error { return nil }

func setWorkerAttrs(*exec.Cmd) {}

func lowerPriority() {}
