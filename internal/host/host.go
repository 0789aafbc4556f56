// Package host describes the computer pointsd runs on: for the reports
// benchmarks and fault runs write (docs/BENCHMARKS.md, docs/RELIABILITY.md),
// and for pointsd size's defaults.
package host

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPUModel is the processor's model name, from /proc/cpuinfo.
func CPUModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// MemTotal is the machine's memory, from /proc/meminfo, in GiB.
func MemTotal() string {
	if b := MemBytes(); b > 0 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return "unknown"
}

// MemBytes is the machine's memory in bytes, from /proc/meminfo; 0 if
// unknown.
func MemBytes() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
