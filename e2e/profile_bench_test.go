package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strom-io/strom/e2e/bench"
)

// cpuProfile fetches a CPU profile of the server p (started with
// -server.pprof-enabled) over the next d while run runs, writes it to
// <outDir>/<name>.cpu.pprof and returns its top entries (go tool pprof
// -top), for bench/results/README.md.
func cpuProfile(b *testing.B, p *process, outDir, name string, d time.Duration, run func()) bench.Profile {
	b.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
		defer cancel()
		url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.url(), max(1, int(d/time.Second)))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, data)
		}
		done <- result{data, err}
	}()
	run()
	r := <-done
	if r.err != nil {
		b.Fatalf("CPU profile: %v", r.err)
	}
	file := filepath.Join(outDir, name+".cpu.pprof")
	if err := os.WriteFile(file, r.data, 0o644); err != nil {
		b.Fatal(err)
	}
	prof := bench.Profile{File: filepath.Base(file), Seconds: d.Seconds()}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", stromBin, file).Output()
	if err != nil {
		b.Fatalf("go tool pprof: %v", err)
	}
	prof.Top = parsePprofTop(string(out))
	return prof
}

// parsePprofTop reads the table of `go tool pprof -top`:
//
//	flat  flat%   sum%        cum   cum%
//	0.23s 21.30% 21.30%      0.23s 21.30%  pkg.Func
func parsePprofTop(out string) []bench.ProfileEntry {
	var top []bench.ProfileEntry
	sc := bufio.NewScanner(strings.NewReader(out))
	header := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if !header {
			header = len(f) >= 5 && f[0] == "flat" && f[1] == "flat%"
			continue
		}
		if len(f) < 6 {
			continue
		}
		flat, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		top = append(top, bench.ProfileEntry{Func: strings.Join(f[5:], " "), FlatPct: flat, CumPct: cum})
	}
	return top
}

// processCPU returns the user+system CPU seconds process p has used.
func processCPU(b *testing.B, p *process) float64 {
	b.Helper()
	st, err := readProcStat(strconv.Itoa(p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	return st.cpu
}
