package link

import (
	"bufio"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
)

// memInfo returns the machine's total and available memory in bytes, from
// /proc/meminfo on Linux; elsewhere it falls back to what the Go runtime
// knows about itself (total only an estimate).
func memInfo() (total, avail uint64) {
	f, err := os.Open("/proc/meminfo")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			fields := strings.Fields(v)
			if len(fields) == 0 {
				continue
			}
			n, err := strconv.ParseUint(fields[0], 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "MemTotal":
				total = n << 10
			case "MemAvailable":
				avail = n << 10
			}
		}
		if total > 0 && avail > 0 {
			return total, avail
		}
	}
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.Sys, ms.Sys - ms.HeapInuse
}

func osHostname() (string, error) { return os.Hostname() }
