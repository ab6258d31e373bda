package runtime

import (
	"os/exec"
	"syscall"
)

// limitMemory caps the process's data segment and private writable
// mappings (RLIMIT_DATA): the Go heap and wazero's code buffers.
func limitMemory(n uint64) error {
	return syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: n, Max: n})
}

// cpuLimited: a worker's time budget is CPU time (RLIMIT_CPU).
const cpuLimited = true

// limitCPU makes the kernel kill the process (SIGKILL at the hard limit;
// the Go runtime ignores the SIGXCPU at the soft one) once it has used n
// seconds of CPU, plus at most one.
func limitCPU(n uint64) error {
	return syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: n, Max: n + 1})
}

// setWorkerAttrs makes a worker die with the process that started it.
func setWorkerAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// lowerPriority raises this process's nice value by 10: a compile worker
// takes the CPU that serving leaves.
func lowerPriority() {
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		return
	}
	// The raw syscall returns 20 - nice.
	syscall.Setpriority(syscall.PRIO_PROCESS, 0, min(19, 20-prio+10))
}
