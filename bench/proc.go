package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs owns every process the bench starts. Each runs in its own process
// group, so that killing the group also kills anything it spawned, and
// with a parent-death signal as a backstop should the bench itself die.
// killAll, deferred by run, leaves nothing behind on success, error or
// interrupt.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

// proc is one started process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
	log  string

	// matches[i] receives the submatches of the first line matching the
	// i-th regexp given to start.
	matches []<-chan []string

	mu      sync.Mutex
	watches []lineWatch // guarded by mu
}

type lineWatch struct {
	re *regexp.Regexp
	c  chan []string
}

// start runs bin args... with its output appended to logPath. Each
// regexp of expect gets a channel in proc.matches that receives the
// submatches of its first matching output line.
func (ps *procs) start(name, logPath string, env []string, expect []*regexp.Regexp, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, log: logPath, done: make(chan struct{})}
	for _, re := range expect {
		c := make(chan []string, 1)
		p.matches = append(p.matches, c)
		p.watches = append(p.watches, lineWatch{re: re, c: c})
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	p.cmd.Stdout = p.cmd.Stderr
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ps.list = append(ps.list, p)
	go func() {
		defer close(p.done)
		defer logf.Close()
		r := bufio.NewReaderSize(out, 64<<10)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				logf.WriteString(line)
				p.match(strings.TrimRight(line, "\n"))
			}
			if err != nil {
				break
			}
		}
		p.err = p.cmd.Wait()
	}()
	return p, nil
}

func (p *proc) match(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.watches[:0]
	for _, w := range p.watches {
		if m := w.re.FindStringSubmatch(line); m != nil {
			w.c <- m
			continue
		}
		kept = append(kept, w)
	}
	p.watches = kept
}

// waitLine waits for the line c (one of p.matches) announces.
func (p *proc) waitLine(ctx context.Context, c <-chan []string, timeout time.Duration) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-c:
		return m, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited (%v); see %s", p.name, p.err, p.log)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("%s: no expected output after %v; see %s", p.name, timeout, p.log)
	}
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s: %w; see %s", p.name, p.err, p.log)
		}
		return nil
	case <-ctx.Done():
		p.kill()
		return ctx.Err()
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// cpu returns the CPU time, user and system, of the exited process.
func (p *proc) cpu() time.Duration {
	<-p.done
	if st := p.cmd.ProcessState; st != nil {
		return st.UserTime() + st.SystemTime()
	}
	return 0
}

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuTime returns the CPU time, user and system, pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(string(b))
}

// parseStat reads utime and stime from a /proc/PID/stat line. The command
// name, in parentheses, may hold spaces: fields are counted after its
// closing parenthesis.
func parseStat(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields", len(f)+2)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// selfCPU returns the CPU time this process has used so far: in the
// bench, mostly the proxies copying traffic between servers.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// kill SIGKILLs the process group and waits for the process.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop asks the process to exit (SIGTERM), then kills its group after
// grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	p.kill()
}

// killAll kills every process group still running.
func (ps *procs) killAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for _, p := range list {
		p.kill()
	}
}

// rssAnon returns the RssAnon and VmRSS of pid, in bytes, from
// /proc/PID/status.
func rssAnon(pid int) (anon, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseStatus(f)
}

func parseStatus(r io.Reader) (anon, rss int64, err error) {
	sc := bufio.NewScanner(r)
	found := 0
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "RssAnon" && k != "VmRSS") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status %s: %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "RssAnon" {
			anon = n << 10
		} else {
			rss = n << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("/proc status: no RssAnon or VmRSS")
	}
	return anon, rss, sc.Err()
}

// memSampler polls the RssAnon of a set of processes and keeps the peak.
type memSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak map[int]int64 // pid -> peak RssAnon
}

func sampleMem(every time.Duration, pids func() []int) *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{}), peak: map[int]int64{}}
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for _, pid := range pids() {
				if a, _, err := rssAnon(pid); err == nil {
					m.mu.Lock()
					m.peak[pid] = max(m.peak[pid], a)
					m.mu.Unlock()
				}
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// finish stops sampling and returns the peaks by pid.
func (m *memSampler) finish() map[int]int64 {
	close(m.stop)
	<-m.done
	return m.peak
}
