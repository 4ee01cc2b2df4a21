// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeKubectl answers kubectl commands by their arguments (globals
// included) and records them.
type fakeKubectl struct {
	answers map[string]string // joined args -> stdout; "ERR:" prefix -> stderr and failure
	calls   []string
}

func (f *fakeKubectl) run(_ string, args []string) ([]byte, []byte, error) {
	key := strings.Join(args, " ")
	f.calls = append(f.calls, key)
	a, ok := f.answers[key]
	if !ok {
		return nil, []byte("unexpected call"), fmt.Errorf("unexpected kubectl %s", key)
	}
	if msg, isErr := strings.CutPrefix(a, "ERR:"); isErr {
		return nil, []byte(msg), errors.New("exit status 1")
	}
	return []byte(a), nil, nil
}

const (
	podJSON    = `{"metadata":{"name":"web","uid":"0b6c-uid"},"spec":{"nodeName":"node-a","containers":[{"name":"app"},{"name":"proxy"}]},"status":{"phase":"Running"}}`
	agentsJSON = `{"items":[{"metadata":{"name":"oomtrace-old"},"status":{"phase":"Failed"}},{"metadata":{"name":"oomtrace-x7k2p"},"status":{"phase":"Running"}}]}`
	getPod     = "get pod web --namespace=shop --output=json"
	getAgents  = "get pods --namespace=oomtrace --selector=app.kubernetes.io/name=oomtrace --field-selector=spec.nodeName=node-a --output=json"
)

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"trace", "--context", "prod", "-n", "shop", "web", "-c", "app",
		"--for", "90s", "--count=1", "--since", "5m", "--events", "oom_kill,memcg_oom", "-o", "json",
		"--kubeconfig=/k/config", "--as-group", "a", "--as-group", "b", "--insecure-skip-tls-verify", "-v", "6"})
	if err != nil {
		t.Fatal(err)
	}
	if o.pod != "web" || o.namespace != "shop" || o.container != "app" || o.output != "json" {
		t.Errorf("pod %q namespace %q container %q output %q", o.pod, o.namespace, o.container, o.output)
	}
	wantGlobals := []string{"--as-group=a", "--as-group=b", "--context=prod", "--insecure-skip-tls-verify=true", "--kubeconfig=/k/config", "--v=6"}
	if !slices.Equal(o.globals, wantGlobals) {
		t.Errorf("kubectl flags %q, want %q", o.globals, wantGlobals)
	}
	wantTrace := []string{"--count=1", "--events=oom_kill,memcg_oom", "--for=1m30s", "--since=5m0s"}
	if !slices.Equal(o.trace, wantTrace) {
		t.Errorf("session flags %q, want %q", o.trace, wantTrace)
	}
	if o.agentNamespace != "oomtrace" || o.agentSelector != "app.kubernetes.io/name=oomtrace" {
		t.Errorf("agent defaults: %q %q", o.agentNamespace, o.agentSelector)
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command given"},
		{[]string{"web"}, `unknown command "web"`},
		{[]string{"trace"}, "no pod given"},
		{[]string{"trace", "-n", "shop"}, "no pod given"},
		{[]string{"trace", "a", "b"}, "one pod at a time"},
		{[]string{"trace", "web", "--for", "ten"}, `invalid argument "ten"`},
		{[]string{"trace", "web", "--for", "-1s"}, "--for: want a positive value"},
		{[]string{"trace", "web", "-o", "yaml"}, `--output "yaml"`},
		{[]string{"trace", "web", "--socket", "/x"}, "unknown flag: --socket"},
		{[]string{"trace", "web", "--agent-selector="}, "must not be empty"},
	} {
		_, err := parseArgs(tc.args)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
	for _, args := range [][]string{{"--help"}, {"trace", "-h"}, {"trace", "web", "--help"}} {
		if _, err := parseArgs(args); !errors.Is(err, errHelp) {
			t.Errorf("%q: %v, want help", args, err)
		}
	}
}

// The commands run: the caller's kubectl flags on each, the pod looked up
// in its namespace, the agent on its node, the session with its UID.
func TestCommandLines(t *testing.T) {
	o, err := parseArgs([]string{"trace", "--context=prod", "-n", "shop", "web", "-c", "app", "--count", "1", "-o", "json"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKubectl{answers: map[string]string{
		"--context=prod " + getPod:    podJSON,
		"--context=prod " + getAgents: agentsJSON,
	}}
	k := &kubectl{path: "kubectl", globals: o.globals, run: f.run}
	tg, err := k.findTarget(o)
	if err != nil {
		t.Fatal(err)
	}
	if tg.agentPod != "oomtrace-x7k2p" || tg.podUID != "0b6c-uid" || tg.node != "node-a" {
		t.Errorf("target %+v", tg)
	}
	got := strings.Join(k.execArgs(o, tg), " ")
	want := "--context=prod exec --namespace=oomtrace oomtrace-x7k2p --stdin -- /oomtrace trace --pod-uid=0b6c-uid --end-on-stdin-eof --container=app --count=1 --output=json"
	if got != want {
		t.Errorf("exec command\n got kubectl %s\nwant kubectl %s", got, want)
	}
	o.tty, o.output = true, "table"
	if got := strings.Join(k.execArgs(o, tg), " "); !strings.Contains(got, " --stdin --tty -- ") || !strings.HasSuffix(got, "--output=table") ||
		strings.Contains(got, "--end-on-stdin-eof") {
		t.Errorf("with a terminal: kubectl %s", got)
	}
}

// Without -n the pod is looked for in the context's namespace.
func TestContextNamespace(t *testing.T) {
	o, _ := parseArgs([]string{"trace", "web"})
	view := "config view --minify --output=jsonpath={.contexts[0].context.namespace}"
	for ctxNS, want := range map[string]string{"shop": "shop", "": "default"} {
		f := &fakeKubectl{answers: map[string]string{view: ctxNS,
			"get pod web --namespace=" + want + " --output=json": `ERR:Error from server (NotFound): pods "web" not found`}}
		k := &kubectl{globals: o.globals, run: f.run}
		_, err := k.findTarget(o)
		if err == nil || err.Error() != fmt.Sprintf(`pod "web" not found in namespace %q`, want) {
			t.Errorf("context namespace %q: %v", ctxNS, err)
		}
	}
}

func TestTargetErrors(t *testing.T) {
	pending := `{"metadata":{"name":"web","uid":"u"},"spec":{},"status":{"phase":"Pending"}}`
	for _, tc := range []struct {
		name    string
		args    []string
		answers map[string]string
		want    string
		usage   bool
	}{
		{"not found", nil, map[string]string{getPod: `ERR:Error from server (NotFound): pods "web" not found`},
			`pod "web" not found in namespace "shop"`, true},
		{"not scheduled", nil, map[string]string{getPod: pending},
			"pod shop/web is not scheduled to a node yet (phase Pending)", true},
		{"no container", []string{"-c", "db"}, map[string]string{getPod: podJSON},
			`pod shop/web has no container "db" (it has: app, proxy)`, true},
		{"no agent", nil, map[string]string{getPod: podJSON, getAgents: `{"items":[]}`},
			"no oomtrace agent pod on node node-a (namespace oomtrace, selector app.kubernetes.io/name=oomtrace)", true},
		{"agent not running", nil, map[string]string{getPod: podJSON, getAgents: `{"items":[{"metadata":{"name":"oomtrace-q"},"status":{"phase":"Pending"}}]}`},
			"agent's pod on node node-a is not running: oomtrace-q (Pending)", true},
		{"other agent selector", []string{"--agent-namespace=mon", "--agent-selector=app=ot"}, map[string]string{getPod: podJSON,
			"get pods --namespace=mon --selector=app=ot --field-selector=spec.nodeName=node-a --output=json": `{"items":[]}`},
			"no oomtrace agent pod on node node-a (namespace mon, selector app=ot)", true},
		{"api down", nil, map[string]string{getPod: "ERR:The connection to the server localhost:8080 was refused"},
			"connection to the server localhost:8080 was refused", false},
	} {
		o, err := parseArgs(append([]string{"trace", "-n", "shop", "web"}, tc.args...))
		if err != nil {
			t.Fatal(err)
		}
		f := &fakeKubectl{answers: tc.answers}
		_, err = (&kubectl{globals: o.globals, run: f.run}).findTarget(o)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, &ue) != tc.usage {
			t.Errorf("%s: %v, want %q (usage error: %v)", tc.name, err, tc.want, tc.usage)
		}
	}
}

// The whole plugin against a kubectl stand-in script: the session's exit
// status comes back, and errors in the call exit 2.
func TestRunExitStatus(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "kubectl")
	// Answers the two lookups, then "runs" the session: prints its
	// arguments and exits 3.
	body := `#!/bin/sh
case "$*" in
*"get pod web "*) echo '` + podJSON + `' ;;
*"get pods "*) echo '` + agentsJSON + `' ;;
*" exec "*|exec*) echo "$*"; exit 3 ;;
*) echo "no such pod" >&2; echo 'Error from server (NotFound)' >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OOMTRACE_KUBECTL", script)
	var stdout, stderr bytes.Buffer
	code := run([]string{"trace", "-n", "shop", "web", "--for", "3s"}, strings.NewReader(""), &stdout, &stderr)
	if code != 3 {
		t.Errorf("exit status %d, want the session's 3; stderr: %s", code, stderr.String())
	}
	// stdout is no terminal: JSON, no TTY.
	if want := "exec --namespace=oomtrace oomtrace-x7k2p --stdin -- /oomtrace trace --pod-uid=0b6c-uid --end-on-stdin-eof --for=3s --output=json\n"; stdout.String() != want {
		t.Errorf("session ran as\n got %s\nwant %s", stdout.String(), want)
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"trace", "-n", "shop", "gone"}, strings.NewReader(""), &stdout, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `pod "gone" not found in namespace "shop"`) {
		t.Errorf("missing pod: exit %d, stderr %s", code, stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"--help"}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "kubectl oomtrace trace [-n NAMESPACE] POD") {
		t.Errorf("--help: exit %d, %s", code, stdout.String())
	}
}
