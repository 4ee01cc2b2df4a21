// SPDX-License-Identifier: Apache-2.0

package kubeevents

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/oomtrace/oomtrace/internal/kube"
)

// restEvents writes Events through a REST client of the core group, the
// kind internal/kube's pod watch uses.
type restEvents struct {
	client *rest.RESTClient
}

// NewClient is a Client for the API that c reaches.
func NewClient(c *rest.Config) (Client, error) {
	client, _, err := kube.NewCoreClient(c)
	if err != nil {
		return nil, err
	}
	return &restEvents{client: client}, nil
}

func (r *restEvents) Create(ctx context.Context, namespace string, ev *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := r.client.Post().Namespace(namespace).Resource("events").Body(ev).Do(ctx).Into(out)
	return out, err
}

func (r *restEvents) Patch(ctx context.Context, namespace, name string, patch []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := r.client.Patch(types.StrategicMergePatchType).Namespace(namespace).Resource("events").Name(name).Body(patch).Do(ctx).Into(out)
	return out, err
}
