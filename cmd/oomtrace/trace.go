// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/output"
	"github.com/oomtrace/oomtrace/internal/probe"
	"github.com/oomtrace/oomtrace/internal/safetext"
	"github.com/oomtrace/oomtrace/internal/stream"
)

// dialTimeout bounds the wait for an agent's answer at the socket.
const dialTimeout = 3 * time.Second

func newTraceCmd() *cobra.Command {
	var (
		req       stream.Request
		forDur    time.Duration
		since     time.Duration
		count     int
		outputFmt string
		socket    string
		names     *nameFlags
		// endOnStdinEOF: the kubectl plugin's sessions end with its stdin.
		endOnStdinEOF bool
	)
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Watch matching OOM events live for a while, then print a summary",
		Long: `Show the OOM events that match the filters as they happen, until --for has
passed, --count events were shown, or Ctrl-C; then print a summary to
stderr: events by kind and by pod, events dropped, how long it ran.

When an agent serves its stream on the node (--socket), the session
subscribes to it: the agent filters, and --since replays the events it
still holds. Without one, the session loads the probes itself (root, as
the agent) and unloads them when it ends; --pid and the cgroup of --cgroup
(or of --pod-uid's pod) then run in the kernel, the other filters in this
process, and there is no history for --since.

Output: table (one aligned row per event, the diagnosis last; the default
on a terminal), pretty (an incident card per event), json (the agent's
own line format; the default when stdout is not a terminal).`,
		Example: `  # the kills of one pod for the next ten minutes
  sudo oomtrace trace --namespace shop --pod web-7c9d8f6b5-x2x4q --for 10m

  # what just happened to it, then wait for the next kill
  sudo oomtrace trace --pod-uid bc001ffa-68fc-11e9-92d7-5ef9efd9374c --since 15m --count 1

  # every OOM in a cgroup subtree, as JSON lines
  sudo oomtrace trace --cgroup /kubepods/burstable --events oom_kill,memcg_oom -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := req.Check(); err != nil {
				return usageError{traceFlagError(err)}
			}
			if forDur < 0 {
				return usageError{fmt.Errorf("--for %s: want a positive duration, e.g. 10m (0: until Ctrl-C)", forDur)}
			}
			if since < 0 {
				return usageError{fmt.Errorf("--since %s: want a positive duration, e.g. 5m", since)}
			}
			if count < 0 {
				return usageError{fmt.Errorf("--count %d: want 1 or more (0: no limit)", count)}
			}
			if since > 0 {
				req.Since = since.String()
			}
			if outputFmt == "" {
				outputFmt = "json"
				if isTerminal(cmd.OutOrStdout()) {
					outputFmt = "table"
				}
			}
			out, err := newSessionOutput(outputFmt, cmd.OutOrStdout())
			if err != nil {
				return usageError{err}
			}
			if err := names.check(); err != nil {
				return usageError{err}
			}
			if socket != "" && !strings.HasPrefix(socket, "/") {
				return usageError{fmt.Errorf("--socket %q: want an absolute path, e.g. %s, or empty to trace without an agent", socket, stream.DefaultPath)}
			}

			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if endOnStdinEOF {
				// Run through kubectl exec without a TTY, a session learns
				// that its client went away only from its stdin closing.
				go func() {
					io.Copy(io.Discard, cmd.InOrStdin())
					stop()
				}()
			}
			if forDur > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, forDur)
				defer cancel()
			}
			s := &session{out: out, count: count, start: time.Now(), byKind: map[string]uint64{}, byPod: map[string]uint64{}}
			errOut := cmd.ErrOrStderr()
			if socket != "" {
				cl, err := stream.Dial(socket, req, dialTimeout)
				var notAgent *stream.NotAgentError
				var refused *stream.RefusedError
				switch {
				case err == nil:
					fmt.Fprintf(errOut, "oomtrace trace: following the agent at %s (node %s)\n", safetext.Quote(socket), safetext.Quote(cl.Ready.Node))
					err = s.follow(ctx, cl)
					s.summary(errOut)
					return err
				case errors.As(err, &notAgent), errors.As(err, &refused):
					return usageError{fmt.Errorf("--socket: %w", err)}
				case !errors.Is(err, stream.ErrNoAgent):
					return fmt.Errorf("--socket %s: %w (the agent's socket is root's)", socket, err)
				}
				fmt.Fprintf(errOut, "oomtrace trace: no agent at %s; loading the probes in this process\n", socket)
			}
			if since > 0 {
				fmt.Fprintln(errOut, "oomtrace trace: --since: without an agent there is no history to replay; showing new events only")
			}
			// The probes' own notes (a hook this kernel lacks, no runtime
			// to name pods) are the agent's business; a session shows
			// errors only.
			log, err := newLogger("error")
			if err != nil {
				return err
			}
			defer log.Sync()
			err = s.standalone(ctx, req.Filter, names, errOut, log)
			s.summary(errOut)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Namespace, "namespace", "", "only events of pods in this namespace")
	f.StringVar(&req.Pod, "pod", "", "only events of the pod of this name")
	f.StringVar(&req.PodUID, "pod-uid", "", "only events of the pod of this UID")
	f.StringVar(&req.Container, "container", "", "only events of containers of this name")
	f.StringVar(&req.Cgroup, "cgroup", "", "only events in this memory cgroup or below it (a path from the hierarchy's root, e.g. /kubepods/burstable; whole levels)")
	f.Uint32Var(&req.PID, "pid", 0, "only events whose victim or trigger has this host pid")
	f.StringVar(&req.Comm, "comm", "", "only events whose victim or trigger has this command name")
	f.StringSliceVar(&req.Events, "events", nil, "only these event kinds, comma-separated: "+strings.Join(stream.Kinds, ", ")+" (default: all)")
	f.Uint32Var(&req.MinOrder, "min-order", 0, "only alloc_failure events of this allocation order or higher")
	f.DurationVar(&forDur, "for", 0, "end after this long, e.g. 10m (default: until Ctrl-C)")
	f.IntVar(&count, "count", 0, "end after this many events (default: no limit)")
	f.DurationVar(&since, "since", 0, "first replay the matching events of this last while that the agent still holds, e.g. 5m")
	f.StringVarP(&outputFmt, "output", "o", "", "table, pretty or json (default: table on a terminal, else json)")
	f.StringVar(&socket, "socket", stream.DefaultPath, "the agent's stream socket; empty: trace without an agent")
	f.BoolVar(&endOnStdinEOF, "end-on-stdin-eof", false, "end when stdin closes (the kubectl plugin's sessions, whose client may go away)")
	f.MarkHidden("end-on-stdin-eof")
	names = addNameFlags(f)
	for _, n := range []string{"cri-endpoint", "kube-api", "kubeconfig", "names-poll-interval"} {
		fl := f.Lookup(n)
		fl.Usage = "without an agent: " + fl.Usage
	}
	return cmd
}

// traceFlagError names the flag a filter error is about.
func traceFlagError(err error) error {
	msg := err.Error()
	for prefix, flag := range map[string]string{"event kind": "--events", "cgroup": "--cgroup"} {
		if strings.HasPrefix(msg, prefix) {
			return fmt.Errorf("%s: %s", flag, msg)
		}
	}
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// terminalWidth is the width of the terminal w is, 0 if none.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

// sessionOutput writes a session's events; json writes the line as the
// agent encoded it.
type sessionOutput struct {
	json io.Writer
	w    agent.Writer
}

func newSessionOutput(format string, w io.Writer) (sessionOutput, error) {
	switch format {
	case "json":
		return sessionOutput{json: w}, nil
	case "table":
		return sessionOutput{w: output.NewTableWidth(w, terminalWidth(w))}, nil
	case "pretty":
		return sessionOutput{w: output.NewPretty(w)}, nil
	}
	return sessionOutput{}, fmt.Errorf("--output %q: want table, pretty or json", format)
}

func (o sessionOutput) write(line []byte, e *event.Event) error {
	if o.json == nil {
		return o.w.Write(e)
	}
	if line == nil {
		buf, err := event.EncodeLine(e)
		if err != nil {
			return err
		}
		defer buf.Free()
		line = buf.Bytes()
	}
	_, err := o.json.Write(line)
	return err
}

// session counts and shows one trace session's events.
type session struct {
	out     sessionOutput
	count   int
	start   time.Time
	seen    int
	byKind  map[string]uint64
	byPod   map[string]uint64
	dropped uint64
	// kernelFilter: what the probes filtered in the kernel (standalone).
	kernelFilter *kernelFilterStats
}

type kernelFilterStats struct {
	what     string // the filters the kernel applied, e.g. "pid 42, cgroup /a"
	filtered uint64
}

// show writes e; true once --count events were shown.
func (s *session) show(line []byte, e *event.Event) (bool, error) {
	if err := s.out.write(line, e); err != nil {
		return true, fmt.Errorf("write %s event: %w", e.Event, err)
	}
	s.seen++
	s.byKind[safetext.Escape(e.Event)]++
	// Names chosen by others reach the terminal quoted, with escapes.
	pod := "(no pod)"
	if k := e.K8s; k != nil && k.Pod != "" {
		pod = safetext.Quote(k.Namespace) + "/" + safetext.Quote(k.Pod)
	} else if k != nil && k.PodUID != "" {
		pod = "pod " + safetext.Quote(k.PodUID)
	} else if e.Memcg != nil && e.Memcg.Path != "" {
		pod = "(no pod) cgroup " + safetext.Quote(e.Memcg.Path)
	}
	s.byPod[pod]++
	return s.count > 0 && s.seen >= s.count, nil
}

// summary tells what the session saw, on stderr.
func (s *session) summary(w io.Writer) {
	fmt.Fprintf(w, "oomtrace trace: %d events in %s, %d dropped\n", s.seen, time.Since(s.start).Round(100*time.Millisecond), s.dropped)
	if k := s.kernelFilter; k != nil {
		fmt.Fprintf(w, "  %d filtered in the kernel (%s)\n", k.filtered, k.what)
	}
	for _, group := range []struct {
		name string
		m    map[string]uint64
	}{{"by kind", s.byKind}, {"by pod", s.byPod}} {
		if len(group.m) == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s:\n", group.name)
		for _, k := range slices.Sorted(maps.Keys(group.m)) {
			fmt.Fprintf(w, "    %-50s %d\n", k, group.m[k])
		}
	}
}

type streamItem struct {
	line []byte
	ev   *event.Event
	err  error
}

// follow shows the agent's stream until ctx ends or --count is reached,
// then hangs up and takes the agent's final counts.
func (s *session) follow(ctx context.Context, cl *stream.Client) error {
	items := make(chan streamItem, 64)
	go func() {
		defer close(items)
		for {
			line, e, err := cl.Next()
			items <- streamItem{line, e, err}
			if err != nil {
				return
			}
		}
	}()
	defer cl.Close()
	var failed error
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case it := <-items:
			if it.err != nil {
				failed = it.err
				done = true
				break
			}
			if done, failed = s.show(it.line, it.ev); failed != nil {
				done = true
			}
		}
	}
	if failed == nil {
		// The agent answers a hang-up with its end line: the final drops.
		cl.CloseWrite()
		cl.SetReadDeadline(time.Now().Add(2 * time.Second))
		for it := range items {
			if it.err != nil && !errors.Is(it.err, io.EOF) {
				failed = fmt.Errorf("the agent did not end the session: %w", it.err)
			}
		}
	}
	s.dropped = cl.Last.Dropped + cl.Last.AgentDropped
	return failed
}

// localSink hands the probes' matching events to a session without an
// agent; like the agent's own sinks, it never waits.
type localSink struct {
	filter stream.Filter
	ch     chan *event.Event
	drops  atomic.Uint64
}

func (l *localSink) Observe(e *event.Event) {
	if !l.filter.Match(e) {
		return
	}
	select {
	case l.ch <- e:
	default:
		l.drops.Add(1)
	}
}

// discard is the probes' own output in a session: the session writes.
type discard struct{}

func (discard) Write(*event.Event) error { return nil }
func (discard) Sync() error              { return nil }

// standalone loads the probes in this process, shows matching events, and
// unloads them before it returns.
func (s *session) standalone(ctx context.Context, filter stream.Filter, names *nameFlags, errOut io.Writer, log *zap.Logger) error {
	sink := &localSink{filter: filter, ch: make(chan *event.Event, 1024)}
	cfg := agent.Config{Node: nodeName(), QueueSize: 1024, AllocFailures: true, AllocMinOrder: 1, Sinks: []agent.Sink{sink}}
	var what string
	cfg.KernelFilter, what = kernelFilter(filter)
	cfg.OnReady = func() { fmt.Fprintln(errOut, "oomtrace trace: probes attached; tracing") }
	var err error
	var stopNames func()
	if cfg.Names, stopNames, err = names.start(cfg.Node, log); err != nil {
		return err
	}
	defer stopNames()
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	type result struct {
		stats agent.Stats
		err   error
	}
	ran := make(chan result, 1)
	go func() {
		st, err := agent.Run(runCtx, cfg, discard{}, log)
		ran <- result{st, err}
	}()
	var failed error
	var res result
	running := true
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case res = <-ran:
			running, done = false, true
			if res.err == nil {
				res.err = errors.New("the probes stopped")
			}
			failed = res.err
		case e := <-sink.ch:
			if done, failed = s.show(nil, e); failed != nil {
				done = true
			}
		}
	}
	if running {
		stopRun()
		res = <-ran // the probes are detached and closed once Run returns
		if failed == nil {
			failed = res.err
		}
	}
	s.dropped = sink.drops.Load() + res.stats.QueueDrops + res.stats.Kernel.Lost()
	if what != "" {
		s.kernelFilter = &kernelFilterStats{what: what, filtered: res.stats.Kernel.Filtered}
	}
	return failed
}

// kernelFilter is the part of filter the probes can apply in the kernel:
// the pid, and the memory cgroup subtree of --cgroup, or else of the
// --pod-uid pod's cgroup directory when it exists now. It also says, for
// the summary, what it covers ("" for nothing). The exact filter still
// runs in user space.
func kernelFilter(filter stream.Filter) (probe.Filter, string) {
	kf := probe.Filter{PID: filter.PID}
	var what []string
	if kf.PID != 0 {
		what = append(what, fmt.Sprintf("pid %d", kf.PID))
	}
	if hier, err := cgroup.FindMemoryHierarchy(); err == nil && hier.Whole() {
		var dir string
		if filter.Cgroup != "" {
			dir = filepath.Join(hier.Mount, filter.Cgroup)
		} else if filter.PodUID != "" {
			dir = podCgroupDir(hier.Mount, filter.PodUID)
		}
		if id, ok := dirInode(dir); ok {
			kf.CgroupID = id
			what = append(what, "cgroup "+safetext.Quote(strings.TrimPrefix(dir, hier.Mount)))
		}
	}
	return kf, strings.Join(what, ", ")
}

// podCgroupDir finds the pod's memory cgroup directory below mount, for
// the cgroupfs and the systemd cgroup drivers and every QoS class; "" when
// there is none.
func podCgroupDir(mount, uid string) string {
	systemd := strings.ReplaceAll(uid, "-", "_")
	for _, pattern := range []string{
		"kubepods/pod" + uid, "kubepods/*/pod" + uid,
		"kubepods.slice/kubepods-pod" + systemd + ".slice",
		"kubepods.slice/*/kubepods-*-pod" + systemd + ".slice",
	} {
		if m, _ := filepath.Glob(filepath.Join(mount, pattern)); len(m) == 1 {
			return m[0]
		}
	}
	return ""
}

// dirInode is dir's inode: on the memory hierarchy, the cgroup's kernfs id.
func dirInode(dir string) (uint64, bool) {
	if dir == "" {
		return 0, false
	}
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		return 0, false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}
