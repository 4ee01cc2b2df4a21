// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// labelPodTemplateHash is the label a Deployment's controller puts on
// each ReplicaSet's pods; the ReplicaSet's name is the Deployment's name,
// a dash, and the same hash.
const labelPodTemplateHash = "pod-template-hash"

// workloadOf is the pod's controller, a Deployment rather than its
// ReplicaSet where the pod's labels tell it (no read of the ReplicaSet,
// so no permission beyond pods). An owner not marked controller stands in
// for a missing controller. nil for a pod nothing owns, and for a static
// pod, whose mirror the node owns.
func workloadOf(p *corev1.Pod) *Workload {
	ref := metav1.GetControllerOf(p)
	if ref == nil && len(p.OwnerReferences) > 0 {
		ref = &p.OwnerReferences[0]
	}
	if ref == nil || ref.Kind == "Node" {
		return nil
	}
	if ref.Kind == "ReplicaSet" && strings.HasPrefix(ref.APIVersion, "apps/") {
		if hash := p.Labels[labelPodTemplateHash]; hash != "" {
			if deploy, ok := strings.CutSuffix(ref.Name, "-"+hash); ok && deploy != "" {
				return &Workload{Kind: "Deployment", Name: deploy}
			}
		}
	}
	return &Workload{Kind: ref.Kind, Name: ref.Name}
}
