// SPDX-License-Identifier: Apache-2.0

package main

import (
	"go.uber.org/zap"
	"k8s.io/client-go/rest"

	"github.com/oomtrace/oomtrace/internal/agent"
	"github.com/oomtrace/oomtrace/internal/kubeevents"
)

// startKubeEvents starts the Kubernetes Event recorder when enabled and
// the names come from the Kubernetes API, on the same client config; nil
// otherwise. stop writes what is folded but not yet written.
func startKubeEvents(enabled bool, names agent.Namer, node string, log *zap.Logger) (*kubeevents.Recorder, func(), error) {
	if !enabled {
		log.Info("kubernetes events off", zap.String("why", "--kube-events=false"))
		return nil, func() {}, nil
	}
	var rc *rest.Config
	if api, ok := names.(interface{ RESTConfig() *rest.Config }); ok {
		rc = api.RESTConfig()
	}
	if rc == nil {
		log.Info("kubernetes events off", zap.String("why", "the Kubernetes API is not used (--kube-api, --kubeconfig)"))
		return nil, func() {}, nil
	}
	client, err := kubeevents.NewClient(rc)
	if err != nil {
		return nil, nil, err
	}
	rec := kubeevents.New(client, kubeevents.Config{Node: node}, log)
	log.Info("kubernetes events: an Event on the Pod for each OOM kill, on the Node for node-wide OOMs",
		zap.String("node", node), zap.Duration("patch_interval", kubeevents.DefaultPatchInterval),
		zap.Float64("qps", kubeevents.DefaultQPS), zap.Int("burst", kubeevents.DefaultBurst))
	return rec, rec.Close, nil
}
