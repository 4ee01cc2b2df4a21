// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The sources chosen at start, and why, are logged.
func TestStartChoosesSources(t *testing.T) {
	rt := newFakeRuntime(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "true" {
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		w.Write([]byte(`{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"1"},"items":[]}`))
	}))
	defer api.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+api.URL+`"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	garbled := filepath.Join(t.TempDir(), "garbled")
	os.WriteFile(garbled, []byte("clusters: ["), 0o600)

	for _, tc := range []struct {
		name    string
		cfg     Config
		env     string // KUBERNETES_SERVICE_HOST
		sources []string
		logs    []string // "level message why"
		err     string
	}{
		{name: "both off", cfg: Config{CRIEndpoint: "none", KubeAPI: "off"},
			logs: []string{"info names: container runtime not used --cri-endpoint none", "info names: Kubernetes API not used --kube-api off", "warn names: no source: events carry pod UIDs and container IDs only"}},
		{name: "runtime given, not in a cluster", cfg: Config{CRIEndpoint: "unix://" + rt.path, KubeAPI: "auto", Node: "node-1"},
			sources: []string{"cri"},
			logs:    []string{"info names: container runtime (CRI) --cri-endpoint", "info names: Kubernetes API not used not in a cluster ($KUBERNETES_SERVICE_HOST unset) and no --kubeconfig"}},
		{name: "in a cluster without a service account", cfg: Config{CRIEndpoint: "none", KubeAPI: "auto", Node: "node-1"}, env: "10.96.0.1",
			logs: []string{"info names: container runtime not used --cri-endpoint none", "warn names: Kubernetes API not used in a cluster ($KUBERNETES_SERVICE_HOST set), but its service account cannot be used",
				"warn names: no source: events carry pod UIDs and container IDs only"}},
		{name: "kubeconfig", cfg: Config{CRIEndpoint: "none", KubeAPI: "auto", Kubeconfig: kubeconfig, Node: "node-1"},
			sources: []string{"api"},
			logs:    []string{"info names: container runtime not used --cri-endpoint none", "info names: Kubernetes API: watching this node's pods (names, workloads) --kubeconfig " + kubeconfig}},
		{name: "kubeconfig, no node name", cfg: Config{CRIEndpoint: "none", KubeAPI: "auto", Kubeconfig: kubeconfig},
			logs: []string{"info names: container runtime not used --cri-endpoint none", "warn names: Kubernetes API not used no node name to watch the pods of (--node-name, $NODE_NAME)",
				"warn names: no source: events carry pod UIDs and container IDs only"}},
		{name: "garbled kubeconfig", cfg: Config{CRIEndpoint: "none", KubeAPI: "auto", Kubeconfig: garbled, Node: "node-1"},
			err: "--kubeconfig " + garbled + ": "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBERNETES_SERVICE_HOST", tc.env)
			core, logs := observer.New(zapcore.InfoLevel)
			r, err := Start(tc.cfg, zap.New(core))
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			if r != nil {
				defer r.Close()
				for _, s := range r.sources {
					names = append(names, s.name())
				}
			}
			if strings.Join(names, ",") != strings.Join(tc.sources, ",") {
				t.Errorf("sources %q, want %q", names, tc.sources)
			}
			var got []string
			for _, e := range logs.FilterMessageSnippet("names: ").All() {
				if strings.Contains(e.Message, "listed") || strings.Contains(e.Message, "cannot be listed") {
					continue // the sources' own, in the background
				}
				why, _ := e.ContextMap()["why"].(string)
				got = append(got, strings.TrimSpace(e.Level.String()+" "+e.Message+" "+why))
			}
			if strings.Join(got, "\n") != strings.Join(tc.logs, "\n") {
				t.Errorf("logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.logs, "\n"))
			}
		})
	}
}
