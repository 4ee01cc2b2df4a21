// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/kube"
)

// nameFlags are the agent's flags for naming pods and containers.
type nameFlags struct {
	cfg kube.Config
}

func addNameFlags(f *pflag.FlagSet) *nameFlags {
	n := &nameFlags{}
	f.StringVar(&n.cfg.CRIEndpoint, "cri-endpoint", "auto", "container runtime's CRI socket to name pods and containers by kubelet's labels: a path, auto (the first of containerd's, cri-o's, k3s's and cri-dockerd's usual sockets that exists), or none")
	f.StringVar(&n.cfg.KubeAPI, "kube-api", "auto", "name pods and their workloads (Deployment, StatefulSet, ...) from a watch on this node's pods in the Kubernetes API: auto (when in a cluster, or with --kubeconfig) or off")
	f.StringVar(&n.cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file for the Kubernetes API (default: the in-cluster service account)")
	f.DurationVar(&n.cfg.PollInterval, "names-poll-interval", kube.DefaultPollInterval, "how often to list the container runtime's pods and containers (a container not yet listed is looked up when it OOMs)")
	return n
}

// check says what is wrong in how the flags were given.
func (n *nameFlags) check() error {
	if err := kube.CheckCRIEndpoint(n.cfg.CRIEndpoint); err != nil {
		return fmt.Errorf("--cri-endpoint %w", err)
	}
	if err := kube.CheckKubeAPI(n.cfg.KubeAPI); err != nil {
		return fmt.Errorf("--kube-api %w", err)
	}
	if n.cfg.Kubeconfig != "" {
		if n.cfg.KubeAPI == "off" {
			return fmt.Errorf("--kubeconfig %s with --kube-api off: want one or the other", n.cfg.Kubeconfig)
		}
		if _, err := os.Stat(n.cfg.Kubeconfig); err != nil {
			return fmt.Errorf("--kubeconfig %s: want a readable kubeconfig file: %w", n.cfg.Kubeconfig, err)
		}
	}
	if n.cfg.PollInterval <= 0 {
		return fmt.Errorf("--names-poll-interval %s: want a positive duration, e.g. %s", n.cfg.PollInterval, kube.DefaultPollInterval)
	}
	return nil
}

// start starts the name sources for node; stop ends their goroutines.
// It does not wait for them to list.
func (n *nameFlags) start(node string, log *zap.Logger) (names agent.Namer, stop func(), err error) {
	cfg := n.cfg
	cfg.Node = node
	r, err := kube.Start(cfg, log)
	if err != nil || r == nil {
		return nil, func() {}, err
	}
	return r, r.Close, nil
}
