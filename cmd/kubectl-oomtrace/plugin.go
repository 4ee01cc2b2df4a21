// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

const (
	defaultAgentNamespace = "oomtrace"
	defaultAgentSelector  = "app.kubernetes.io/name=oomtrace"
	// agentBinary is oomtrace's path in the agent's image.
	agentBinary = "/oomtrace"
)

const usage = `kubectl oomtrace trace: watch one pod's OOM events live, from anywhere kubectl works

Usage:
  kubectl oomtrace trace [-n NAMESPACE] POD [flags]

Finds POD (its UID and node), then the oomtrace agent's pod on that node,
and runs 'oomtrace trace --pod-uid UID' inside it (kubectl exec): the
session follows the agent's event stream, shows the pod's events as they
happen, and ends after --for, after --count events, or on Ctrl-C, with a
summary on stderr. Its exit status is the session's.

Examples:
  # the next kill of a pod, or give up after ten minutes
  kubectl oomtrace trace -n shop web-7c9d8f6b5-x2x4q --count 1 --for 10m

  # what happened to it in the last 15 minutes (the agent's history)
  kubectl oomtrace trace -n shop web-7c9d8f6b5-x2x4q --since 15m --for 1s

  # one container's kills and memcg OOMs as JSON lines, another cluster
  kubectl oomtrace trace --context prod -n shop web-7c9d8f6b5-x2x4q \
    -c app --events oom_kill,memcg_oom -o json

Session flags (passed to oomtrace trace):
  -c, --container NAME     only events of this container of the pod
      --events KINDS       only these kinds, comma-separated: oom_kill, memcg_oom, alloc_failure
      --comm NAME          only events whose victim or trigger has this command name
      --pid PID            only events whose victim or trigger has this host pid
      --min-order N        only alloc_failure events of this order or higher
      --for DURATION       end after this long, e.g. 10m (default: until Ctrl-C)
      --count N            end after this many events
      --since DURATION     first replay the pod's events the agent still holds from this last while, e.g. 5m
  -o, --output FORMAT      table, pretty or json (default: table when stdout is a terminal, else json)

Finding the agent:
      --agent-namespace NS       the agent DaemonSet's namespace (default "oomtrace")
      --agent-selector SELECTOR  the label selector of its pods (default "app.kubernetes.io/name=oomtrace")

kubectl's flags (passed to every kubectl command this runs):
  -n, --namespace NS  the pod's namespace (default: the context's)
      --kubeconfig, --context, --cluster, --user, -s/--server, --token,
      --as, --as-group, --as-uid, --certificate-authority,
      --client-certificate, --client-key, --tls-server-name,
      --insecure-skip-tls-verify, --request-timeout, --cache-dir,
      --username, --password, --disable-compression, -v/--v

A table needs a terminal: then the session runs with a TTY (kubectl exec
-t), and its summary comes on the same stream. Errors in the call (no pod,
a pod that does not exist or is not scheduled, no agent on its node) exit
with status 2.
`

// errHelp asks for the usage text.
var errHelp = errors.New("help requested")

// usageError marks errors in how the plugin was called or in what it was
// pointed at: exit status 2.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// options is what the command line asks for.
type options struct {
	pod            string
	namespace      string // empty: the kubeconfig context's
	agentNamespace string
	agentSelector  string
	container      string
	output         string
	// globals are kubectl's own flags, as --name=value, for every kubectl call.
	globals []string
	// trace are the session's flags, as --name=value, for oomtrace trace.
	trace []string
	tty   bool
}

// kubectlGlobals are kubectl's global flags with a value the plugin passes
// through; shorthand "" when there is none.
var kubectlGlobals = []struct{ name, short string }{
	{"kubeconfig", ""}, {"context", ""}, {"cluster", ""}, {"user", ""},
	{"server", "s"}, {"token", ""}, {"as", ""}, {"as-uid", ""},
	{"certificate-authority", ""}, {"client-certificate", ""}, {"client-key", ""},
	{"tls-server-name", ""}, {"request-timeout", ""}, {"cache-dir", ""},
	{"username", ""}, {"password", ""}, {"v", "v"},
}

// kubectlGlobalBools are kubectl's boolean global flags passed through.
var kubectlGlobalBools = []string{"insecure-skip-tls-verify", "disable-compression", "match-server-version"}

// parseArgs reads the plugin's arguments: kubectl hands a plugin every
// argument after its name as it was typed, flags included.
func parseArgs(args []string) (*options, error) {
	o := &options{}
	f := pflag.NewFlagSet("kubectl oomtrace", pflag.ContinueOnError)
	f.SetOutput(io.Discard)
	f.Usage = func() {}
	globals := map[string]*string{}
	for _, g := range kubectlGlobals {
		globals[g.name] = f.StringP(g.name, g.short, "", "")
	}
	bools := map[string]*bool{}
	for _, name := range kubectlGlobalBools {
		bools[name] = f.Bool(name, false, "")
	}
	asGroups := f.StringArray("as-group", nil, "")
	f.StringVarP(&o.namespace, "namespace", "n", "", "")
	f.StringVar(&o.agentNamespace, "agent-namespace", defaultAgentNamespace, "")
	f.StringVar(&o.agentSelector, "agent-selector", defaultAgentSelector, "")
	f.StringVarP(&o.container, "container", "c", "", "")
	f.StringVarP(&o.output, "output", "o", "", "")
	forDur := f.Duration("for", 0, "")
	since := f.Duration("since", 0, "")
	count := f.Int("count", 0, "")
	pid := f.Uint32("pid", 0, "")
	minOrder := f.Uint32("min-order", 0, "")
	comm := f.String("comm", "", "")
	events := f.StringSlice("events", nil, "")
	help := f.BoolP("help", "h", false, "")

	if err := f.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, errHelp
		}
		return nil, usageError{err}
	}
	if *help {
		return nil, errHelp
	}
	pos := f.Args()
	if len(pos) == 0 {
		return nil, usagef("no command given: want 'kubectl oomtrace trace [-n NAMESPACE] POD'")
	}
	if pos[0] != "trace" {
		return nil, usagef("unknown command %q: want 'kubectl oomtrace trace [-n NAMESPACE] POD'", pos[0])
	}
	switch len(pos) {
	case 1:
		return nil, usagef("no pod given: want 'kubectl oomtrace trace [-n NAMESPACE] POD'")
	case 2:
		o.pod = pos[1]
	default:
		return nil, usagef("one pod at a time: got %s", strings.Join(pos[1:], " "))
	}
	if o.output != "" && !slices.Contains([]string{"table", "pretty", "json"}, o.output) {
		return nil, usagef("--output %q: want table, pretty or json", o.output)
	}
	for _, d := range []struct {
		name string
		v    float64
	}{{"for", forDur.Seconds()}, {"since", since.Seconds()}, {"count", float64(*count)}} {
		if d.v < 0 {
			return nil, usagef("--%s: want a positive value", d.name)
		}
	}
	if o.agentNamespace == "" || o.agentSelector == "" {
		return nil, usagef("--agent-namespace and --agent-selector must not be empty")
	}

	// Only the flags given go on (in name order), so the commands run
	// ask for what the caller asked, no more.
	f.Visit(func(fl *pflag.Flag) {
		name := fl.Name
		switch {
		case globals[name] != nil:
			o.globals = append(o.globals, "--"+name+"="+*globals[name])
		case bools[name] != nil:
			o.globals = append(o.globals, "--"+name+"="+strconv.FormatBool(*bools[name]))
		case name == "as-group":
			for _, g := range *asGroups {
				o.globals = append(o.globals, "--as-group="+g)
			}
		case name == "for":
			o.trace = append(o.trace, "--for="+forDur.String())
		case name == "since":
			o.trace = append(o.trace, "--since="+since.String())
		case name == "count":
			o.trace = append(o.trace, "--count="+strconv.Itoa(*count))
		case name == "pid":
			o.trace = append(o.trace, "--pid="+strconv.FormatUint(uint64(*pid), 10))
		case name == "min-order":
			o.trace = append(o.trace, "--min-order="+strconv.FormatUint(uint64(*minOrder), 10))
		case name == "comm":
			o.trace = append(o.trace, "--comm="+*comm)
		case name == "events":
			o.trace = append(o.trace, "--events="+strings.Join(*events, ","))
		}
	})
	return o, nil
}

// kubectl runs the kubectl binary with the caller's global flags.
type kubectl struct {
	path    string
	globals []string
	run     func(path string, args []string) (stdout, stderr []byte, err error)
}

// get runs a kubectl command that prints JSON into v.
func (k *kubectl) get(v any, args ...string) error {
	full := append(slices.Clone(k.globals), args...)
	out, errOut, err := k.run(k.path, full)
	if err != nil {
		msg := strings.TrimSpace(string(errOut))
		if msg == "" {
			msg = err.Error()
		}
		return &kubectlError{args: full, msg: msg}
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("kubectl %s: %w", strings.Join(full, " "), err)
	}
	return nil
}

type kubectlError struct {
	args []string
	msg  string
}

func (e *kubectlError) Error() string {
	return fmt.Sprintf("kubectl %s: %s", strings.Join(e.args, " "), e.msg)
}

func (e *kubectlError) notFound() bool {
	return strings.Contains(e.msg, "NotFound") || strings.Contains(e.msg, "not found")
}

// target is where a session runs and what it watches.
type target struct {
	namespace, pod, podUID, node string
	agentPod                     string
}

type podObject struct {
	Metadata struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"metadata"`
	Spec struct {
		NodeName       string                  `json:"nodeName"`
		Containers     []struct{ Name string } `json:"containers"`
		InitContainers []struct{ Name string } `json:"initContainers"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

// findTarget finds the pod, its node, and the agent's pod on that node.
func (k *kubectl) findTarget(o *options) (*target, error) {
	t := &target{namespace: o.namespace, pod: o.pod}
	if t.namespace == "" {
		ns, err := k.contextNamespace()
		if err != nil {
			return nil, err
		}
		t.namespace = ns
	}
	var p podObject
	if err := k.get(&p, "get", "pod", o.pod, "--namespace="+t.namespace, "--output=json"); err != nil {
		var ke *kubectlError
		if errors.As(err, &ke) && ke.notFound() {
			return nil, usagef("pod %q not found in namespace %q", o.pod, t.namespace)
		}
		return nil, err
	}
	t.podUID, t.node = p.Metadata.UID, p.Spec.NodeName
	if t.node == "" {
		return nil, usagef("pod %s/%s is not scheduled to a node yet (phase %s): there is no node to trace on; try again once it is", t.namespace, t.pod, p.Status.Phase)
	}
	if o.container != "" {
		var names []string
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			names = append(names, c.Name)
		}
		if !slices.Contains(names, o.container) {
			return nil, usagef("pod %s/%s has no container %q (it has: %s)", t.namespace, t.pod, o.container, strings.Join(names, ", "))
		}
	}

	var agents struct{ Items []podObject }
	if err := k.get(&agents, "get", "pods", "--namespace="+o.agentNamespace, "--selector="+o.agentSelector,
		"--field-selector=spec.nodeName="+t.node, "--output=json"); err != nil {
		return nil, err
	}
	var notRunning []string
	for _, a := range agents.Items {
		if a.Status.Phase == "Running" {
			t.agentPod = a.Metadata.Name
			return t, nil
		}
		notRunning = append(notRunning, a.Metadata.Name+" ("+a.Status.Phase+")")
	}
	if len(notRunning) > 0 {
		return nil, usagef("the oomtrace agent's pod on node %s is not running: %s (namespace %s, selector %s)",
			t.node, strings.Join(notRunning, ", "), o.agentNamespace, o.agentSelector)
	}
	return nil, usagef("no oomtrace agent pod on node %s (namespace %s, selector %s): is the DaemonSet installed, and does it run on that node? (--agent-namespace, --agent-selector)",
		t.node, o.agentNamespace, o.agentSelector)
}

// contextNamespace is the namespace of the kubeconfig's current context,
// which kubectl uses when -n is not given.
func (k *kubectl) contextNamespace() (string, error) {
	full := append(slices.Clone(k.globals), "config", "view", "--minify", "--output=jsonpath={.contexts[0].context.namespace}")
	out, errOut, err := k.run(k.path, full)
	if err != nil {
		return "", &kubectlError{args: full, msg: strings.TrimSpace(string(errOut))}
	}
	if ns := string(bytes.TrimSpace(out)); ns != "" {
		return ns, nil
	}
	return "default", nil
}

// execArgs is the kubectl command line that runs the session.
func (k *kubectl) execArgs(o *options, t *target) []string {
	args := append(slices.Clone(k.globals), "exec", "--namespace="+o.agentNamespace, t.agentPod, "--stdin")
	if o.tty {
		args = append(args, "--tty")
	}
	args = append(args, "--", agentBinary, "trace", "--pod-uid="+t.podUID)
	if !o.tty {
		// Without a TTY, Ctrl-C ends kubectl but not the session in the
		// pod; its stdin, a pipe this process holds, closing ends it.
		args = append(args, "--end-on-stdin-eof")
	}
	if o.container != "" {
		args = append(args, "--container="+o.container)
	}
	args = append(args, o.trace...)
	return append(args, "--output="+o.output)
}
