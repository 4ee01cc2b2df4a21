// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"encoding/json"
	"syscall"
)

var sigUSR1 = syscall.SIGUSR1

// hog is one container of a test pod, running memhog.
type hog struct {
	name           string
	args           []string // memhog's
	request, limit string   // memory; empty: none
	mounts         map[string]string
}

// podSpec is a test pod: memhog containers on the host network (the
// cluster's network is loopback only), images imported, never pulled.
type podSpec struct {
	hogs []hog
	// requests and limits of the whole pod (spec.resources, the
	// PodLevelResources feature)
	podRequest, podLimit string
	memoryVolumes        []string // emptyDir volumes with medium: Memory
	restartPolicy        string   // empty: Always
}

func memory(request, limit string) map[string]any {
	r := map[string]any{}
	if request != "" {
		r["requests"] = map[string]string{"memory": request}
	}
	if limit != "" {
		r["limits"] = map[string]string{"memory": limit}
	}
	return r
}

func (s podSpec) spec(image string) map[string]any {
	var containers []map[string]any
	for _, h := range s.hogs {
		c := map[string]any{
			"name": h.name, "image": image, "imagePullPolicy": "Never",
			"command": []string{"/memhog"}, "args": h.args,
			"resources": memory(h.request, h.limit),
		}
		var mounts []map[string]string
		for vol, path := range h.mounts {
			mounts = append(mounts, map[string]string{"name": vol, "mountPath": path})
		}
		if mounts != nil {
			c["volumeMounts"] = mounts
		}
		containers = append(containers, c)
	}
	spec := map[string]any{
		"hostNetwork":                   true,
		"terminationGracePeriodSeconds": 1,
		"automountServiceAccountToken":  false,
		"enableServiceLinks":            false,
		"containers":                    containers,
	}
	if s.podRequest != "" || s.podLimit != "" {
		spec["resources"] = memory(s.podRequest, s.podLimit)
	}
	if s.restartPolicy != "" {
		spec["restartPolicy"] = s.restartPolicy
	}
	var volumes []map[string]any
	for _, v := range s.memoryVolumes {
		volumes = append(volumes, map[string]any{"name": v, "emptyDir": map[string]string{"medium": "Memory"}})
	}
	if volumes != nil {
		spec["volumes"] = volumes
	}
	return spec
}

// deployment is a one-replica Deployment of the pod, labelled app=name.
func deployment(ns, name, image string, s podSpec) string {
	labels := map[string]string{"app": name}
	return mustJSON(map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"replicas": 1,
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{"metadata": map[string]any{"labels": labels}, "spec": s.spec(image)},
		},
	})
}

// barePod is the pod with no controller, labelled app=name.
func barePod(ns, name, image string, s podSpec) string {
	return mustJSON(map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]string{"app": name}},
		"spec":     s.spec(image),
	})
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
