// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/probe"
)

// runCLI runs oomtrace in this process, as a user would call it.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// A mistake in how oomtrace is called exits 2 before anything is loaded,
// naming the input, what was expected, and where to get help.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"unknown flag", []string{"agent", "--bogus"},
			[]string{"unknown flag: --bogus", "Run 'oomtrace agent --help' for usage."}},
		{"unknown command", []string{"frobnicate"},
			[]string{`unknown command "frobnicate"`, "Run 'oomtrace --help' for usage."}},
		{"bad --tier", []string{"agent", "--tier", "perf"},
			[]string{`--tier: tier "perf": want fentry, kprobe or tracepoint`}},
		{"bad --tier to check", []string{"check", "--tier=fastest"},
			[]string{`--tier: tier "fastest": want fentry, kprobe or tracepoint`, "Run 'oomtrace check --help'"}},
		{"bad --output", []string{"agent", "--output", "xml"},
			[]string{`--output "xml": want json or pretty`}},
		{"ring buffer size not a power of two", []string{"agent", "--ringbuf-size", "1000"},
			[]string{"--ringbuf-size: ring buffer size 1000: want a power of two"}},
		{"ring buffer size not a number", []string{"agent", "--ringbuf-size=4M"},
			[]string{`invalid argument "4M" for "--ringbuf-size"`}},
		{"bad --log-level", []string{"agent", "--log-level", "loud"},
			[]string{`--log-level "loud": want debug, info, warn or error`}},
		{"--oom-score-adj above 0", []string{"agent", "--oom-score-adj", "500"},
			[]string{"--oom-score-adj 500: want -1000 to 0"}},
		{"--oom-score-adj below -1000", []string{"agent", "--oom-score-adj=-1001"},
			[]string{"--oom-score-adj -1001: want -1000 to 0"}},
		{"--queue-size 0", []string{"agent", "--queue-size", "0"},
			[]string{"--queue-size 0: want 1 or more events"}},
		{"--stats-interval 0", []string{"agent", "--stats-interval", "0s"},
			[]string{"--stats-interval 0s: want a positive duration"}},
		{"negative --metrics-series-ttl", []string{"agent", "--metrics-series-ttl=-1h"},
			[]string{"--metrics-series-ttl -1h0m0s: want 0 (keep every series) or a positive duration"}},
		{"--metrics-addr without a port", []string{"agent", "--metrics-addr", "9746"},
			[]string{`--metrics-addr "9746": want [HOST]:PORT, e.g. :9746`}},
		{"relative --cri-endpoint", []string{"agent", "--cri-endpoint", "containerd.sock"},
			[]string{`--cri-endpoint "containerd.sock": want auto, none, or the runtime's unix socket, e.g. /run/containerd/containerd.sock`}},
		{"tcp --cri-endpoint", []string{"agent", "--cri-endpoint=tcp://10.0.0.1:1234"},
			[]string{`--cri-endpoint "tcp://10.0.0.1:1234": want auto, none, or the runtime's unix socket`}},
		{"bad --kube-api", []string{"agent", "--kube-api", "on"},
			[]string{`--kube-api "on": want auto or off`}},
		{"--kubeconfig with --kube-api off", []string{"agent", "--kube-api=off", "--kubeconfig", "/etc/kubernetes/admin.conf"},
			[]string{"--kubeconfig /etc/kubernetes/admin.conf with --kube-api off: want one or the other"}},
		{"missing --kubeconfig", []string{"agent", "--kubeconfig", "/nonexistent/kubeconfig"},
			[]string{"--kubeconfig /nonexistent/kubeconfig: want a readable kubeconfig file: stat /nonexistent/kubeconfig: no such file or directory"}},
		{"--names-poll-interval 0", []string{"agent", "--names-poll-interval", "0s"},
			[]string{"--names-poll-interval 0s: want a positive duration, e.g. 3s"}},
		{"--names-poll-interval not a duration", []string{"agent", "--names-poll-interval", "3"},
			[]string{`invalid argument "3" for "--names-poll-interval"`}},
		{"extra argument to agent", []string{"agent", "now"},
			[]string{`oomtrace agent takes no arguments, got ["now"]`, "Run 'oomtrace agent --help'"}},
		{"extra argument to check", []string{"check", "--json", "all"},
			[]string{`oomtrace check takes no arguments, got ["all"]`}},
		{"extra argument to version", []string{"version", "--short"},
			[]string{"unknown flag: --short"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (usage); stderr:\n%s", code, exitUsage, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if !strings.HasPrefix(stderr, "oomtrace: ") || strings.Count(stderr, "\n") != 2 {
				t.Errorf("stderr %q: want the error, then where to get help: two lines", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q: want nothing (it carries only events and reports)", stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"agent", "check", "version", "CAP_BPF", "oomtrace check"}},
		{[]string{"agent", "--help"}, []string{
			"Examples:", "SIGTERM", "--ready-file", "--output", "pretty",
			"--tier", "fentry, kprobe or tracepoint", "--oom-score-adj", "(default -999)", "CAP_SYS_RESOURCE",
			"--ringbuf-size", "--alloc-failures", "--metrics-addr", `(default ":9746")`, "/readyz",
			"k8s.lookup_error", "--cri-endpoint", "auto (the first of containerd's, cri-o's", "or none", `(default "auto")`,
			"--kube-api", "auto (when in a cluster, or with --kubeconfig) or off", "--kubeconfig", "--names-poll-interval", "(default 3s)",
		}},
		{[]string{"check", "--help"}, []string{"--json", "--tier", "Exits 1 when OOM kills cannot be traced"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q: want 0 and nothing", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("help lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, stderr := runCLI(t, "version")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	// e.g. "oomtrace dev (go1.26.8, linux/amd64)"
	want := " (" + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	if !strings.HasPrefix(stdout, "oomtrace ") || !strings.HasSuffix(stdout, want) || strings.Count(stdout, "\n") != 1 {
		t.Errorf("version printed %q: want one line \"oomtrace <version>%s\"", stdout, strings.TrimSuffix(want, "\n"))
	}
}

// check's text report: what each tier and hook does here, and the
// conclusion; when the forced tier is refused, no empty hook table.
func TestPrintReport(t *testing.T) {
	hier := cgroup.Hierarchy{Version: 1, Mount: "/sys/fs/cgroup/memory", Mode: "hybrid"}
	r := probe.Report{
		Kernel:  "6.18.0",
		BTF:     probe.Support{OK: true, Detail: "/sys/kernel/btf/vmlinux"},
		RingBuf: probe.Support{OK: true},
		Tiers: map[string]probe.Support{
			"fentry":     {Detail: "kernel refuses fentry programs"},
			"kprobe":     {Detail: "no kprobes"},
			"tracepoint": {OK: true, Detail: "tp_btf"},
		},
		Hooks: []probe.HookReport{
			{Hook: "oom:mark_victim", Tier: "tracepoint", Detail: "tp_btf, full format (task, uid)"},
			{Hook: "page_alloc_failure", Tier: "tracepoint", Detail: "tp_btf kmem:mm_page_alloc", Skipped: []string{"kprobe: no kprobes"}},
		},
		CanTrace:   true,
		Conclusion: "OOM kills can be traced on this kernel",
	}
	var b bytes.Buffer
	printReport(&b, r, hier, nil)
	out := b.String()
	for _, w := range []string{
		"kernel          6.18.0\n",
		"tier fentry     no  kernel refuses fentry programs\n",
		"tier tracepoint yes tp_btf\n",
		"memory cgroup   yes v1 at /sys/fs/cgroup/memory (hybrid layout)\n",
		"oom:mark_victim            tracepoint  tp_btf, full format (task, uid)\n",
		"passed over: kprobe: no kprobes\n",
		"\nOOM kills can be traced on this kernel\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("report lacks %q:\n%s", w, out)
		}
	}
	// No program is a perf tracepoint: tracefs decides nothing.
	if strings.Contains(out, "tracefs") {
		t.Errorf("report speaks of tracefs:\n%s", out)
	}

	r.Hooks, r.CanTrace = nil, false
	r.Conclusion = "OOM kills cannot be traced on this kernel: --tier=fentry: oom_kill_process cannot use it on this kernel"
	b.Reset()
	printReport(&b, r, hier, errors.New("no memory cgroup"))
	if out := b.String(); strings.Contains(out, "HOOK") || !strings.Contains(out, "memory cgroup   no  no memory cgroup\n") {
		t.Errorf("refused report: want no hook table and the cgroup error:\n%s", out)
	}
}

// A health port another process holds stops the agent at start, saying
// which flag to change, before it loads anything (so no root is needed).
func TestMetricsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	code, stdout, stderr := runCLI(t, "agent", "--metrics-addr", addr)
	if code != exitFailure {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitFailure, stderr)
	}
	want := "oomtrace: --metrics-addr " + addr + ": listen tcp " + addr + ": bind: address already in use\n"
	if !strings.HasSuffix(stderr, want) {
		t.Errorf("stderr does not end in %q:\n%s", want, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q: want nothing", stdout)
	}
}
