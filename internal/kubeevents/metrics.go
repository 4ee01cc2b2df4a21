// SPDX-License-Identifier: Apache-2.0

package kubeevents

import "github.com/prometheus/client_golang/prometheus"

// The recorder's totals as Prometheus counters (docs/metrics.md), read
// from Stats when scraped.
var (
	descKills = prometheus.NewDesc("oomtrace_kube_events_kills_total",
		"OOM kills that made or joined a Kubernetes Event (a node-wide OOM's kill in a pod counts for the Pod and the Node).", nil, nil)
	descFolded = prometheus.NewDesc("oomtrace_kube_events_folded_total",
		"OOM kills counted into a Kubernetes Event that an earlier kill made, instead of an Event of their own.", nil, nil)
	descWrites = prometheus.NewDesc("oomtrace_kube_events_api_writes_total",
		"Kubernetes Event writes the API accepted, by verb: create, patch.", []string{"verb"}, nil)
	descWriteErrors = prometheus.NewDesc("oomtrace_kube_events_api_errors_total",
		"Kubernetes Event writes that failed (refused, or no answer).", nil, nil)
	descLost = prometheus.NewDesc("oomtrace_kube_events_lost_total",
		"OOM kills in no Kubernetes Event, by stage: queue (the writer's queue was full: the API slow or down), write (their Event's writes failed or were refused, or too many Events at once).", []string{"stage"}, nil)
	descUnnamed = prometheus.NewDesc("oomtrace_kube_events_unnamed_total",
		"OOM kills in a pod whose name was not known (k8s.lookup_error): no Event on the Pod.", nil, nil)
)

// Collector exposes the recorder's totals.
func (r *Recorder) Collector() prometheus.Collector { return collector{r} }

type collector struct{ r *Recorder }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKills, descFolded, descWrites, descWriteErrors, descLost, descUnnamed} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descKills, s.Kills)
	counter(descFolded, s.Folded)
	counter(descWrites, s.Creates, "create")
	counter(descWrites, s.Patches, "patch")
	counter(descWriteErrors, s.WriteErrors)
	counter(descLost, s.QueueDrops, "queue")
	counter(descLost, s.Dropped, "write")
	counter(descUnnamed, s.Unnamed)
}
