// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/health"
	"github.com/oomtrace/oomtrace/internal/kube"
	"github.com/oomtrace/oomtrace/internal/metrics"
	"github.com/oomtrace/oomtrace/internal/output"
	"github.com/oomtrace/oomtrace/internal/probe"
	"github.com/oomtrace/oomtrace/internal/stream"
	"github.com/oomtrace/oomtrace/internal/version"
)

func newAgentCmd() *cobra.Command {
	var (
		cfg         agent.Config
		ringBufSize uint32
		logLevel    string
		tier        string
		outputFmt   string
		metricsAddr string
		seriesTTL   time.Duration
		names       *nameFlags
		kubeEvents  bool
		streamOpts  stream.Options
		timingsFile string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Trace OOM kills until stopped; one JSON line per event on stdout",
		Long: `Run the tracing agent, as a DaemonSet does. Every OOM kill becomes one
JSON object on stdout (fields: docs/events.md). The agent's own logs go to
stderr. SIGINT or SIGTERM detaches every probe, writes out the events
already captured, and exits 0 (a stdout that takes no line for 5 s is
given up on, its lines counted as dropped).

An event in a Kubernetes pod names its namespace, pod and container, from
the node's container runtime (CRI socket), and its workload, from the
Kubernetes API when the agent runs in a cluster; what cannot be named is
said in k8s.lookup_error, and never holds an event back more than ` + kube.LookupTimeout.String() + `.`,
		Example: `  # trace on this node, events to a file, logs on the terminal
  sudo oomtrace agent > oom-events.jsonl

  # watch on a terminal: an incident card per event, the diagnosis first
  sudo oomtrace agent --output pretty 2>/dev/null

  # let a test or a probe script know when tracing has started
  sudo oomtrace agent --ready-file /run/oomtrace.ready`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return usageError{err}
			}
			defer log.Sync()
			if err := probe.ValidateRingBufSize(ringBufSize); err != nil {
				return usageError{fmt.Errorf("--ringbuf-size: %w", err)}
			}
			cfg.RingBufSize = ringBufSize
			if cfg.QueueSize < 1 {
				return usageError{fmt.Errorf("--queue-size %d: want 1 or more events", cfg.QueueSize)}
			}
			if cfg.StatsInterval <= 0 {
				return usageError{fmt.Errorf("--stats-interval %s: want a positive duration, e.g. 10s", cfg.StatsInterval)}
			}
			if err := cfg.AllocLimits.Validate(); err != nil {
				return usageError{err}
			}
			if cfg.AllocFoldInterval <= 0 {
				return usageError{fmt.Errorf("--alloc-fold-interval %s: want a positive duration, e.g. 1s", cfg.AllocFoldInterval)}
			}
			if tier != "" {
				if cfg.Tier, err = probe.ParseTier(tier); err != nil {
					return usageError{fmt.Errorf("--tier: %w", err)}
				}
			}
			if cfg.OOMScoreAdj < agent.MinOOMScoreAdj || cfg.OOMScoreAdj > 0 {
				return usageError{fmt.Errorf("--oom-score-adj %d: want %d to 0 (0 leaves it as inherited)", cfg.OOMScoreAdj, agent.MinOOMScoreAdj)}
			}
			if err := names.check(); err != nil {
				return usageError{err}
			}
			if cfg.Node == "" {
				cfg.Node = nodeName()
			}
			if metricsAddr != "" {
				if err := health.CheckAddr(metricsAddr); err != nil {
					return usageError{fmt.Errorf("--metrics-addr %w", err)}
				}
			}
			if err := checkStreamFlags(streamOpts); err != nil {
				return usageError{err}
			}
			if seriesTTL < 0 {
				return usageError{fmt.Errorf("--metrics-series-ttl %s: want 0 (keep every series) or a positive duration, e.g. 24h", seriesTTL)}
			}

			var out agent.Writer
			switch outputFmt {
			case "json":
				out = output.NewJSONLines(cmd.OutOrStdout())
			case "pretty":
				out = output.NewPretty(cmd.OutOrStdout())
			default:
				return usageError{fmt.Errorf("--output %q: want json or pretty", outputFmt)}
			}

			// A stdout whose reader went (a log collector that died)
			// must not kill the agent, as Go does on a write to a broken
			// pipe on fd 1: the write fails and is counted, and the kills
			// still reach the metrics and Events.
			signal.Ignore(syscall.SIGPIPE)
			if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
				// The agent keeps a few MiB (the kernel's symbol table,
				// caches); without a limit the heap grows to twice that
				// between collections, and loading the probes (the
				// kernel's BTF) peaks at 60 MiB. The limit is soft: past
				// it the collector runs more often, nothing fails.
				debug.SetMemoryLimit(defaultMemoryLimit)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()

			log.Info("starting", zap.String("version", version.Version), zap.String("node", cfg.Node))
			hs, stopHealth, err := startHealth(ctx, metricsAddr, log)
			if err != nil {
				return err
			}
			defer stopHealth()
			var m *metrics.Metrics
			if hs != nil {
				cfg.OnReady = func() { hs.SetState(health.Ready) }
				m = metrics.New(metrics.Options{SeriesTTL: seriesTTL})
				defer m.Close()
				hs.Handle("/metrics", m.Handler())
				cfg.Sinks = append(cfg.Sinks, m)
				cfg.OnRunning = func(r *agent.Running) { m.SetSource(r) }
			}
			if streamOpts.Path != "" {
				streamOpts.Node, streamOpts.Log = cfg.Node, log
				srv, err := stream.Listen(streamOpts)
				switch {
				case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
					// Not root (loading the probes says what is missing),
					// or a read-only root without a volume for the socket:
					// tracing matters more than sessions.
					log.Warn("trace sessions off: cannot make the stream socket", zap.Error(err))
				case err != nil:
					return err
				default:
					defer srv.Close()
					log.Info("serving trace sessions", zap.String("socket", streamOpts.Path))
					cfg.Sinks = append(cfg.Sinks, srv)
				}
			}
			var stopNames func()
			if cfg.Names, stopNames, err = names.start(cfg.Node, log); err != nil {
				return err
			}
			defer stopNames()
			events, stopEvents, err := startKubeEvents(kubeEvents, cfg.Names, cfg.Node, log)
			if err != nil {
				return err
			}
			defer stopEvents()
			if events != nil {
				cfg.Sinks = append(cfg.Sinks, events)
				if m != nil {
					if err := m.Register(events.Collector()); err != nil {
						return err
					}
				}
			}
			if timingsFile != "" {
				f, err := os.Create(timingsFile)
				if err != nil {
					return fmt.Errorf("--timings-file: %w", err)
				}
				defer f.Close()
				cfg.Timings = f
			}
			stats, err := agent.Run(ctx, cfg, out, log)
			if err != nil {
				return err
			}
			log.Info("stopped", zap.Any("stats", stats))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Node, "node-name", os.Getenv("NODE_NAME"), "node name in every event (default: $NODE_NAME, else the host name)")
	f.StringVar(&cfg.ReadyFile, "ready-file", "", "write this file once every probe is attached; removed on exit")
	f.StringVar(&metricsAddr, "metrics-addr", defaultMetricsAddr, "serve /healthz (alive), /readyz (every probe attached) and Prometheus /metrics on this [HOST]:PORT; empty turns the listener off")
	f.DurationVar(&seriesTTL, "metrics-series-ttl", metrics.DefaultSeriesTTL, "drop a pod's metric series once it had no event for this long, so deleted pods' series go (0 keeps every series)")
	f.Uint32Var(&ringBufSize, "ringbuf-size", probe.DefaultRingBufSize, "BPF ring buffer size in bytes (a power of two, at least a page)")
	f.IntVar(&cfg.QueueSize, "queue-size", 1024, "events held between decoding and enrichment, and again between enrichment and output, before new ones are dropped and counted")
	f.DurationVar(&cfg.StatsInterval, "stats-interval", 10*time.Second, "how often to check for lost events and log any")
	f.StringVar(&outputFmt, "output", "json", "event format on stdout: json (one object per line, for log pipelines) or pretty (an incident card per event, for terminals)")
	f.StringVar(&logLevel, "log-level", "info", "stderr log level: debug, info, warn, error")
	f.StringVar(&tier, "tier", "", "force an attach tier on every hook that has it: fentry, kprobe or tracepoint (default: the best this kernel allows, per hook)")
	switchVar(f, &cfg.AllocFailures, "alloc-failures", true, "trace page allocation failures (alloc_failure events); off (or false) leaves the allocator unhooked, which on tracepoint-only kernels saves the one program that runs on every page allocation")
	f.Uint32Var(&cfg.AllocMinOrder, "alloc-min-order", 1, "report allocation failures of this order and above; lower ones are counted")
	f.IntVar(&cfg.OOMScoreAdj, "oom-score-adj", agent.DefaultOOMScoreAdj, "lower the agent's own oom_score_adj to this at start, so a global OOM kills it last (-1000 to 0; 0 leaves it as inherited; needs CAP_SYS_RESOURCE)")
	switchVar(f, &cfg.AllocNoWarn, "alloc-nowarn", false, "report __GFP_NOWARN allocation failures too (default: count them only)")
	cfg.AllocLimits = probe.DefaultAllocLimits
	f.Float64Var(&cfg.AllocLimits.KeyRate, "alloc-rate", cfg.AllocLimits.KeyRate, "alloc_failure lines a second per memory cgroup, order and gfp, after --alloc-burst; the kernel counts the rest and an alloc_failures_folded line reports them (0: a line for every failure)")
	f.Uint32Var(&cfg.AllocLimits.KeyBurst, "alloc-burst", cfg.AllocLimits.KeyBurst, "alloc_failure lines in a row per memory cgroup, order and gfp before --alloc-rate applies")
	f.Float64Var(&cfg.AllocLimits.TotalRate, "alloc-rate-total", cfg.AllocLimits.TotalRate, "alloc_failure lines a second in all, after --alloc-burst-total, however many cgroups fail (0: no bound but --alloc-rate)")
	f.Uint32Var(&cfg.AllocLimits.TotalBurst, "alloc-burst-total", cfg.AllocLimits.TotalBurst, "alloc_failure lines in a row in all before --alloc-rate-total applies")
	f.DurationVar(&cfg.AllocFoldInterval, "alloc-fold-interval", time.Second, "how often to report the failures folded since the last report, one alloc_failures_folded line per cgroup, order and gfp")
	names = addNameFlags(f)
	f.StringVar(&streamOpts.Path, "socket", stream.DefaultPath, "serve 'oomtrace trace' sessions on this Unix socket (root only; its directory is made 0700 when missing); empty turns it off")
	f.IntVar(&streamOpts.HistorySize, "stream-history", stream.DefaultHistorySize, "events held for a trace session's --since")
	f.DurationVar(&streamOpts.HistoryAge, "stream-history-age", stream.DefaultHistoryAge, "hold events for a trace session's --since no longer than this")
	f.IntVar(&streamOpts.SessionBuffer, "stream-session-buffer", stream.DefaultSessionBuffer, "events a trace session may have waiting before its new ones are dropped and counted (a session that reads slowly delays nothing else)")
	switchVar(f, &kubeEvents, "kube-events", true, "post a Kubernetes Event on the Pod for each OOM kill (reason OOMKilled, or OOMKilledProcess when the container's main process lives on) and on the Node for node-wide OOMs, a storm of kills folded into one Event with a count; only when the Kubernetes API is used (--kube-api); needs create and patch on events")
	// The latency benchmark's stage times (internal/hosttest); not for users.
	f.StringVar(&timingsFile, "timings-file", "", "write each event's stage times, one JSON line per event, to this file")
	f.MarkHidden("timings-file")
	return cmd
}

// defaultMemoryLimit is the Go runtime's soft memory limit for the agent
// unless GOMEMLIMIT is set (docs/benchmarks.md, footprint).
const defaultMemoryLimit = 24 << 20

func nodeName() string {
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "unknown"
}

// newLogger logs for people, on stderr, as JSON so log pipelines can read
// it too; stdout carries only events.
func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	cfg.DisableStacktrace = true
	cfg.Sampling = nil
	return cfg.Build(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return escapingCore{c} }))
}

// checkStreamFlags says what is wrong with the stream's flags.
func checkStreamFlags(o stream.Options) error {
	if o.Path != "" && !strings.HasPrefix(o.Path, "/") {
		return fmt.Errorf("--socket %q: want an absolute path, e.g. %s, or empty for none", o.Path, stream.DefaultPath)
	}
	if o.HistorySize < 1 {
		return fmt.Errorf("--stream-history %d: want 1 or more events", o.HistorySize)
	}
	if o.HistoryAge <= 0 {
		return fmt.Errorf("--stream-history-age %s: want a positive duration, e.g. 15m", o.HistoryAge)
	}
	if o.SessionBuffer < 1 {
		return fmt.Errorf("--stream-session-buffer %d: want 1 or more events", o.SessionBuffer)
	}
	return nil
}
