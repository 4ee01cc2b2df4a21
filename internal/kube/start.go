// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config chooses the sources.
type Config struct {
	// CRIEndpoint is the runtime's socket: a path (unix:// allowed),
	// "auto" (or empty) for the first of CRIEndpoints that exists, or
	// "none".
	CRIEndpoint string
	// KubeAPI is "auto" (use the API in a cluster or with a kubeconfig)
	// or "off".
	KubeAPI    string
	Kubeconfig string
	// Node names the node whose pods the API watch lists.
	Node         string
	PollInterval time.Duration
}

// CheckCRIEndpoint says what is wrong with a --cri-endpoint value.
func CheckCRIEndpoint(s string) error {
	switch s {
	case "", "auto", "none":
		return nil
	}
	if path := strings.TrimPrefix(s, "unix://"); filepath.IsAbs(path) {
		return nil
	}
	return fmt.Errorf("%q: want auto, none, or the runtime's unix socket, e.g. /run/containerd/containerd.sock", s)
}

// CheckKubeAPI says what is wrong with a --kube-api value.
func CheckKubeAPI(s string) error {
	if s == "auto" || s == "off" {
		return nil
	}
	return fmt.Errorf("%q: want auto or off", s)
}

// Start starts the sources cfg chooses, and logs which and why. It does
// not wait for them: each lists in the background, and a lookup meanwhile
// waits for that list at most the lookup timeout. nil when no source is
// chosen. An error only for a kubeconfig that cannot be used.
func Start(cfg Config, log *zap.Logger) (*Resolver, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	r := &Resolver{timeout: LookupTimeout}
	now := time.Now

	switch ep := cfg.CRIEndpoint; ep {
	case "none":
		log.Info("names: container runtime not used", zap.String("why", "--cri-endpoint none"))
	case "", "auto":
		// A socket found now is kept: a runtime that stops and comes back
		// is the same runtime. None found: looked for at every poll.
		path, err := detectSocket(CRIEndpoints)
		chosen := []zap.Field{zap.String("why", "auto-detected"), zap.String("endpoint", path), zap.Duration("poll", cfg.PollInterval)}
		if err != nil {
			chosen = []zap.Field{zap.String("why", "auto-detect: no socket yet, looking at every poll"), zap.Strings("paths", CRIEndpoints), zap.Duration("poll", cfg.PollInterval)}
		}
		log.Info("names: container runtime (CRI)", chosen...)
		r.sources = append(r.sources, newCRISource(path, cfg.PollInterval, now, log))
	default:
		// A socket missing now is the poll's to warn of, and to find later.
		path := strings.TrimPrefix(ep, "unix://")
		log.Info("names: container runtime (CRI)", zap.String("why", "--cri-endpoint"), zap.String("endpoint", path), zap.Duration("poll", cfg.PollInterval))
		r.sources = append(r.sources, newCRISource(path, cfg.PollInterval, now, log))
	}
	client, rc, err := apiClient(cfg, log)
	if err != nil {
		r.Close()
		return nil, err
	}
	if client != nil {
		r.sources = append(r.sources, newAPISource(client, cfg.Node, now, log, nil))
		r.restConfig = rc
	}
	if len(r.sources) == 0 {
		log.Warn("names: no source: events carry pod UIDs and container IDs only")
		return nil, nil
	}
	return r, nil
}

// apiClient is a client for the Kubernetes API when cfg asks for one and
// it can be had, and its config; it logs why it is used or not.
func apiClient(cfg Config, log *zap.Logger) (podClient, *rest.Config, error) {
	notUsed := "names: Kubernetes API not used"
	var rc *rest.Config
	var why string
	switch {
	case cfg.KubeAPI == "off":
		log.Info(notUsed, zap.String("why", "--kube-api off"))
		return nil, nil, nil
	case cfg.Kubeconfig != "":
		c, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, nil, fmt.Errorf("--kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		rc, why = c, "--kubeconfig "+cfg.Kubeconfig
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		c, err := rest.InClusterConfig()
		if err != nil {
			log.Warn(notUsed, zap.String("why", "in a cluster ($KUBERNETES_SERVICE_HOST set), but its service account cannot be used"), zap.Error(err))
			return nil, nil, nil
		}
		rc, why = c, "in a cluster ($KUBERNETES_SERVICE_HOST set)"
	default:
		log.Info(notUsed, zap.String("why", "not in a cluster ($KUBERNETES_SERVICE_HOST unset) and no --kubeconfig"))
		return nil, nil, nil
	}
	if cfg.Node == "" {
		log.Warn(notUsed, zap.String("why", "no node name to watch the pods of (--node-name, $NODE_NAME)"))
		return nil, nil, nil
	}
	logToZap(log)
	rc.UserAgent = "oomtrace"
	client, err := newRESTPods(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	log.Info("names: Kubernetes API: watching this node's pods (names, workloads)", zap.String("why", why), zap.String("node", cfg.Node))
	return client, rc, nil
}
