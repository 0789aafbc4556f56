package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// logLine is the part of a pointsd JSON log line the harness reads.
type logLine struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	Cycle int64     `json:"cycle"`
	Err   string    `json:"err"`
}

// cutShortMsg is what a leader logs when a held lock (another session's)
// cut a cycle short: its locked buckets are left to the next cycle.
const cutShortMsg = "cycle cut short by a lock another session holds"

// cutShort returns the cycles the replicas logged as cut short by a held
// lock.
func (x *sc) cutShort() map[int64]bool {
	cycles := map[int64]bool{}
	for _, r := range x.replicas {
		for _, l := range readLog(r.logPath) {
			if l.Msg == cutShortMsg && l.Cycle > 0 {
				cycles[l.Cycle] = true
			}
		}
	}
	return cycles
}

// readLog returns a replica's log lines; lines that are not JSON (a panic,
// say) get level "RAW" and the time of the previous line.
func readLog(path string) []logLine {
	f, err := os.Open(path) //nolint:gosec // a replica's log, in the harness's own log folder
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose
	var out []logLine
	var last time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Time.IsZero() {
			l = logLine{Time: last, Level: "RAW", Msg: snippet(sc.Bytes())}
		}
		last = l.Time
		out = append(out, l)
	}
	return out
}

// logLines returns the messages logged at one of levels in [from, to).
func logLines(path string, from, to time.Time, levels ...string) []string {
	var out []string
	for _, l := range readLog(path) {
		if !l.Time.Before(from) && l.Time.Before(to) && slices.Contains(levels, l.Level) {
			out = append(out, l.Msg)
		}
	}
	return out
}

// logCount is what one replica logged during a scenario, and during its
// fault.
type logCount struct {
	replica        string
	lines, warn    int
	errors, raw    int
	faultSecs      float64 // 0 when the fault was instantaneous
	faultWarn      int
	faultErrors    int
	top            string // most frequent WARN/ERROR messages
	file           string
	faultLinesRate float64 // WARN+ERROR lines per second during the fault
}

// countLogs counts the scenario's replicas' log lines by level.
func (x *sc) countLogs() []logCount {
	var out []logCount
	r := x.res
	secs := r.faultEnd.Sub(r.faultStart).Seconds()
	for _, rep := range x.replicas {
		c := logCount{replica: rep.name, file: rep.logPath}
		msgs := map[string]int{}
		for _, l := range readLog(rep.logPath) {
			c.lines++
			inFault := !r.faultStart.IsZero() && !l.Time.Before(r.faultStart) && l.Time.Before(r.faultEnd)
			switch l.Level {
			case "WARN":
				c.warn++
				msgs[l.Msg]++
				if inFault {
					c.faultWarn++
				}
			case "ERROR":
				c.errors++
				msgs[l.Msg]++
				if inFault {
					c.faultErrors++
				}
			case "RAW":
				c.raw++
				msgs[l.Msg]++
			}
		}
		if secs >= 1 {
			c.faultSecs = secs
			c.faultLinesRate = float64(c.faultWarn+c.faultErrors) / secs
		}
		keys := slices.SortedFunc(maps.Keys(msgs), func(a, b string) int {
			if msgs[a] != msgs[b] {
				return msgs[b] - msgs[a]
			}
			return strings.Compare(a, b)
		})
		var top []string
		for _, k := range keys[:min(3, len(keys))] {
			top = append(top, fmt.Sprintf("%d× %q", msgs[k], k))
		}
		c.top = strings.Join(top, ", ")
		out = append(out, c)
	}
	return out
}
