// SPDX-License-Identifier: Apache-2.0

package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// annotationMirror is on a static pod's mirror in the API: its value is
// the UID kubelet (and the cgroup path) knows the pod by, which differs
// from the mirror's own.
const annotationMirror = "kubernetes.io/config.mirror"

// apiSource keeps this node's pods from a watch on the Kubernetes API.
type apiSource struct {
	node   string
	store  *store
	synced chan struct{} // closed once the first list is in
	stop   context.CancelFunc
	done   sync.WaitGroup
	log    *zap.Logger

	changed func()

	mu      sync.Mutex
	lastErr error // the watch's last error; cleared when the API answers
}

// podClient lists and watches pods in every namespace: a REST client
// (restPods), or a fake clientset's in tests.
type podClient interface {
	List(ctx context.Context, o metav1.ListOptions) (*corev1.PodList, error)
	Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error)
}

// restPods lists and watches pods over a REST client that knows the core
// group alone. client-go's typed clients register every API group, which
// would add some 40 MB to the binary for one resource.
type restPods struct {
	client *rest.RESTClient
	params runtime.ParameterCodec
}

func newRESTPods(c *rest.Config) (*restPods, error) {
	client, scheme, err := NewCoreClient(c)
	if err != nil {
		return nil, err
	}
	return &restPods{client: client, params: runtime.NewParameterCodec(scheme)}, nil
}

// NewCoreClient is a REST client for the core API group (v1) alone, and
// the scheme it encodes with: small next to client-go's typed clientset,
// which registers every group.
func NewCoreClient(c *rest.Config) (*rest.RESTClient, *runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, nil, err
	}
	cfg := rest.CopyConfig(c)
	cfg.APIPath = "/api"
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	client, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	return client, scheme, nil
}

func (p *restPods) List(ctx context.Context, o metav1.ListOptions) (*corev1.PodList, error) {
	list := &corev1.PodList{}
	err := p.client.Get().Resource("pods").VersionedParams(&o, p.params).Do(ctx).Into(list)
	return list, err
}

func (p *restPods) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	o.Watch = true
	return p.client.Get().Resource("pods").VersionedParams(&o, p.params).Watch(ctx)
}

// newAPISource starts a watch on the pods of node. changed, if not nil,
// is called after each change is in the table, and after each error of
// the watch (for tests).
func newAPISource(client podClient, node string, now func() time.Time, log *zap.Logger, changed func()) *apiSource {
	s := &apiSource{node: node, store: newStore(now), synced: make(chan struct{}), log: log, changed: changed}
	onNode := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}
	// A list or watch that the API answers clears the last error.
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			onNode(&o)
			list, err := client.List(ctx, o)
			s.answered(err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			onNode(&o)
			w, err := client.Watch(ctx, o)
			s.answered(err)
			return w, err
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	// Only before the informer runs; they cannot fail then.
	_ = inf.SetTransform(trimPod)
	_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		// A watch the API ends (expired, closed) is routine: the
		// informer lists or watches again.
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			log.Debug("names: the Kubernetes API watch ended; watching again", zap.Error(err))
			return
		}
		if s.setErr(err) {
			log.Warn("names: the Kubernetes API watch failed; it is retried", zap.Error(err))
		}
		s.notify()
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.update(obj) },
		UpdateFunc: func(_, obj any) { s.update(obj) },
		DeleteFunc: s.delete,
	})
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		inf.RunWithContext(ctx)
	}()
	go func() {
		defer s.done.Done()
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			close(s.synced)
			log.Info("names: listed this node's pods from the Kubernetes API", zap.String("node", node), zap.Int("pods", s.store.count()))
		}
	}()
	return s
}

func (s *apiSource) name() string         { return "api" }
func (s *apiSource) namesWorkloads() bool { return true }
func (s *apiSource) lookup(podUID, containerID string) (*pod, *container) {
	return s.store.lookup(podUID, containerID)
}

// fresh: the watch keeps the table current, so it is fresh once the
// first list is in.
func (s *apiSource) fresh(time.Time) (<-chan struct{}, func() error) {
	return s.synced, s.err
}

// setErr records the watch's error (nil: it answers again), and says
// whether it is new after a time without one.
func (s *apiSource) setErr(err error) (first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first = s.lastErr == nil && err != nil
	s.lastErr = err
	return first
}

// answered clears the last error when a call succeeded.
func (s *apiSource) answered(err error) {
	if err == nil {
		s.setErr(nil)
	}
}

func (s *apiSource) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *apiSource) notFound(podUID, containerID string) string {
	if p, _ := s.store.lookup(podUID, ""); p == nil {
		return fmt.Sprintf("no pod %s on node %s", podUID, s.node)
	}
	return fmt.Sprintf("no container %s in the status of pod %s yet", short(containerID), podUID)
}

func (s *apiSource) close() {
	s.stop()
	s.done.Wait()
}

func (s *apiSource) update(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	uid := kubeletUID(p)
	ctrs := map[string]*container{}
	for id, name := range containerIDs(p) {
		ctrs[id] = &container{podUID: uid, name: name}
	}
	s.store.replacePod(uid, &pod{namespace: p.Namespace, name: p.Name, workload: workloadOf(p), workloadKnown: true}, ctrs)
	s.notify()
}

func (s *apiSource) notify() {
	if s.changed != nil {
		s.changed()
	}
}

func (s *apiSource) delete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if p, ok := obj.(*corev1.Pod); ok {
		s.store.podGone(kubeletUID(p))
	}
	s.notify()
}

// kubeletUID is the UID kubelet, the runtime's labels and the cgroup path
// know a pod by: its own, except for a static pod's mirror.
func kubeletUID(p *corev1.Pod) string {
	if m := p.Annotations[annotationMirror]; m != "" {
		return m
	}
	return string(p.UID)
}

// containerIDs maps the IDs of a pod's containers, and of their previous
// instances (a restarted container's OOM is the previous one's), to their
// names. Status gives IDs as runtime://id.
func containerIDs(p *corev1.Pod) map[string]string {
	ids := map[string]string{}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, st := range list {
			for _, id := range []string{st.ContainerID, terminatedID(st.LastTerminationState), terminatedID(st.State)} {
				if _, bare, ok := strings.Cut(id, "://"); ok && bare != "" {
					ids[bare] = st.Name
				}
			}
		}
	}
	return ids
}

func terminatedID(s corev1.ContainerState) string {
	if s.Terminated == nil {
		return ""
	}
	return s.Terminated.ContainerID
}

// trimPod keeps of a pod only what naming needs, so the informer's cache
// holds a few hundred bytes per pod rather than the whole object.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: its pod was trimmed when stored
	}
	t := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			OwnerReferences: p.OwnerReferences,
		},
	}
	if h, ok := p.Labels[labelPodTemplateHash]; ok {
		t.Labels = map[string]string{labelPodTemplateHash: h}
	}
	if m, ok := p.Annotations[annotationMirror]; ok {
		t.Annotations = map[string]string{annotationMirror: m}
	}
	for _, list := range []struct {
		from []corev1.ContainerStatus
		to   *[]corev1.ContainerStatus
	}{
		{p.Status.InitContainerStatuses, &t.Status.InitContainerStatuses},
		{p.Status.ContainerStatuses, &t.Status.ContainerStatuses},
		{p.Status.EphemeralContainerStatuses, &t.Status.EphemeralContainerStatuses},
	} {
		for _, st := range list.from {
			*list.to = append(*list.to, corev1.ContainerStatus{
				Name: st.Name, ContainerID: st.ContainerID,
				State:                trimState(st.State),
				LastTerminationState: trimState(st.LastTerminationState),
			})
		}
	}
	return t, nil
}

func trimState(s corev1.ContainerState) corev1.ContainerState {
	if s.Terminated == nil {
		return corev1.ContainerState{}
	}
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: s.Terminated.ContainerID}}
}
