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
