package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// report is the run, written as RELIABILITY.md.
type report struct {
	cfg     config
	env     machine
	started time.Time
	took    time.Duration
	results []*result
	code    string // codeUnderTest's, "" if unknown
}

func (r *report) write(dir string) (string, error) {
	//nolint:gosec // G301: docs/, a folder of the repository
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "RELIABILITY.md")
	return path, os.WriteFile(path, []byte(r.markdown()), 0o644) //nolint:gosec // G306: a document of the repository, for everyone to read
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	passed := 0
	var failed []string
	for _, res := range r.results {
		if res.pass() {
			passed++
		} else {
			failed = append(failed, fmt.Sprintf("`%s` (%s)", res.name, strings.ToLower(res.verdict())))
		}
	}
	p("# pointsd reliability: the fault matrix\n\n")
	p("Written by `make chaos` from one run on %s (took %s): %d scenarios, **%d passed, %d failed**. ",
		r.started.UTC().Format("2006-01-02 15:04 MST"), r.took.Round(time.Second), len(r.results), passed, len(failed))
	p("Every figure below comes from that run; rerun `make chaos` to regenerate this file.\n\n")
	if len(failed) > 0 {
		p("Failed: %s.\n\n", strings.Join(failed, ", "))
	}
	p("- Machine: %d cores (%s), %s of memory; %s; open files limit %d\n", r.env.cores, r.env.cpu, r.env.mem, r.env.pgVersion, r.env.nofile)
	p("- Command: `%s`\n", strings.Join(r.cfg.args, " "))
	if r.code != "" {
		p("- Code under test: %s\n", r.code)
	}
	p("- %d users in 60 partitions, `serve -period %s`, replicas started fresh for each scenario (`-mode` given explicitly); ", r.cfg.users, r.cfg.period)
	p("a PostgreSQL of the harness's own on a fixed loopback port, restarted with `pg_ctl`\n")
	p("- The normal client: `GET /` and `GET /readyz` on every replica every %s, throughout each scenario\n\n", probeEvery)

	p("## Results\n\n")
	p("| scenario | what was done | recovery | clients: 200 / 503 / other | invariants | notes |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, res := range r.results {
		var inv []string
		for _, c := range res.checks {
			mark := "pass"
			if !c.ok {
				mark = "**FAIL**"
			}
			inv = append(inv, fmt.Sprintf("%s %s: %s", mark, c.name, c.detail))
		}
		if res.err != nil {
			inv = append(inv, "**ERROR** the scenario could not run to its end: "+res.err.Error())
		}
		clients := "–"
		if res.clients.total() > 0 {
			clients = fmt.Sprintf("%d / %d / %d", res.clients.ok, res.clients.unavailable, res.clients.other)
		}
		notes := append([]string{}, res.notes...)
		if d := describeDetails(res.clients); d != "" {
			notes = append(notes, "clients' "+d)
		}
		p("| **%s** `%s`<br>%s | %s | %s | %s | %s | %s |\n",
			res.verdict(), res.name, cell(res.title), cellList(res.did), cellList(res.recovery), clients, cellList(inv), cellList(notes))
	}

	p("\n## Logs\n\n")
	p("Lines each replica wrote to stderr (JSON, one per line) during the scenario, and during the fault itself where it lasted a second or more. ")
	p("The normal client sends %d requests/s per replica, so a line per failed request shows up as about that rate.\n\n", int(2*time.Second/probeEvery))
	p("| scenario | replica | lines | WARN | ERROR | WARN+ERROR during the fault | most frequent WARN/ERROR |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, res := range r.results {
		for _, l := range res.logs {
			during := "–"
			if l.faultSecs > 0 {
				during = fmt.Sprintf("%d in %.1f s (%.1f/s)", l.faultWarn+l.faultErrors, l.faultSecs, l.faultLinesRate)
			}
			raw := ""
			if l.raw > 0 {
				raw = fmt.Sprintf(" (+%d not JSON)", l.raw)
			}
			p("| `%s` | %s | %d%s | %d | %d | %s | %s |\n", res.name, l.replica, l.lines, raw, l.warn, l.errors, during, cell(l.top))
		}
	}

	p("\n## The invariants\n\n")
	p("Checked after each scenario, once the fault is over and the cluster has had time to recover:\n\n")
	p("- **users**: users 1..N all present (`count(*) = N` and `max(id) = N`).\n")
	p("- **draws**: every user holds exactly the draw of the cycle recorded for its bucket: ")
	p("`SELECT count(*) FROM users u JOIN buckets b ON b.partition = u.tableoid WHERE u.points <> CASE WHEN b.cycle = 0 THEN 0 ELSE pointsd_draw(u.id, b.seed) END` is 0 (one statement, one snapshot).\n")
	p("- **buckets**: no bucket is ahead of `cycle_state.cycle`, and none is behind it once that cycle finished.\n")
	p("- **cycles**: every cycle started from the fault on finishes (and the one running when the fault began), ")
	p("and from one period (plus 2 s) after `GET /` answers again, every boundary starts a cycle: two boundaries are watched. ")
	p("A trigger of the harness's on `cycle_state` records every start and finish, in the transaction that makes it, so no cycle goes unseen between samples.\n")
	p("- **clients**: the normal client saw only 200 (for `GET /`, a well-formed answer) or 503 with `Content-Type: application/json` and a body `{\"error\":…}`. ")
	p("A replica killed or stopped on purpose is taken out of its rotation first.\n")
	p("- **resources**: each live replica's peak RSS stays under %s and `/metrics` under %s (the method flood: RSS growth under %s, no series labelled with a client's method).\n",
		mib(maxRSS), kib(maxMetricsBytes), mib(maxRSSGrowth))
	p("- **truth**: every user in every 200 of `GET /` the normal client got had those points, above the floor, at some moment while the request was served. ")
	p("Deferred triggers of the harness's record each bucket's (cycle, seed) and each floor as they commit; a user's points at a time are `pointsd_draw(id, seed)` of its bucket's last write before it. ")
	p("A change may be read from its commit record on, and its old state until a watcher polling `cycle_state` and `buckets` every %s first sees it (a strict COMMIT's WAL flush takes tens of milliseconds). ", watchEvery)
	p("A control, each answered user one point off, must come out untrue in full. A timestamp later than its answer is untrue too.\n")
	p("- **stale writes**: no bucket write commits a cycle below `cycle_state.cycle` as it commits (a leader that lost the lead and wrote anyway).\n")
	p("- **recovery**: from the fault's end to the first 200 on `GET /`; also, where relevant, to a new leader and to the next finished cycle.\n")
	p("\nScenario-specific checks: **failover** (another replica leads within 6 s of a kill; within %s of a gray fault's start, while it lasts), ", grayFailover)
	p("**step down** (the replica back from a gray fault follows: one leader, not it, within two periods), **boundaries** (at most one boundary passes without a cycle while a gray fault lasts), ")
	p("**ready/leader/GET /** behind PgBouncer, **other buckets**, **leader stays** and **named** (disk full: the other buckets commit, the leader keeps leading, a log line says disk; an old snapshot: named in the metrics), ")
	p("**shutdown** (SIGTERM: exit status 0 within 5 s), ")
	p("**responsive** (during a client-side fault the normal client gets only 200s, p99 under 1 s), **load** (the overload's own clients see only 200 or JSON 503), ")
	p("**leader** (the normal replica ends up leading), **reader** (the read-only replica starts and answers `GET /`), **warning** (a WARN or ERROR line after the edit), ")
	p("**readyz** (503 with a reason while damaged), **repair** (`pointsd migrate` and `pointsd seed -users N` exit 0), **ready again** (`/readyz` 200 after the repair).\n")
	p("\n## Reproduce\n\n```sh\nmake chaos                                   # everything, about %s here\n", r.took.Round(time.Minute))
	p("bin/chaos -only leader-kill,overload         # a subset, printed instead of written\nbin/chaos -list                              # the scenarios\n```\n\n")
	p("It starts its own PostgreSQL under `%s/pg` and writes each replica's log to `%s/logs/SCENARIO-REPLICA.log`.\n", r.cfg.dir, r.cfg.dir)
	return b.String()
}

// codeUnderTest names the commit the binary was built from, and whether the
// work tree had changes.
func codeUnderTest(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := "commit `" + strings.TrimSpace(string(out)) + "`"
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		s += " with uncommitted changes"
	}
	return s
}

// cell makes s safe inside a table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func cellList(ss []string) string {
	if len(ss) == 0 {
		return "–"
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = cell(s)
	}
	return strings.Join(out, "<br>")
}
