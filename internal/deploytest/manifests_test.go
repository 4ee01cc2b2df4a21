// SPDX-License-Identifier: Apache-2.0

// Package deploytest checks the Kubernetes manifests in deploy/kubernetes:
// every file decodes strictly into the API types, and what kustomize
// builds from them is the DaemonSet deploy/README.md describes.
package deploytest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	ktypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	repoRoot  = "../.."
	baseDir   = repoRoot + "/deploy/kubernetes"
	readme    = repoRoot + "/deploy/README.md"
	imageName = "oomtrace/oomtrace"
)

// capabilities is what the agent's container is granted, each for a
// reason deploy/README.md gives.
var capabilities = []string{"BPF", "PERFMON", "SYSLOG", "SYS_PTRACE"}

// manifests is what one kustomize build (or one file) holds, decoded.
type manifests struct {
	namespaces   []corev1.Namespace
	accounts     []corev1.ServiceAccount
	roles        []rbacv1.ClusterRole
	bindings     []rbacv1.ClusterRoleBinding
	daemonSets   []appsv1.DaemonSet
	kinds        []string
	namespaceOf  map[string]string // kind/name → namespace
	clusterScope map[string]bool   // kind → has no namespace
}

// decodeStrict decodes one YAML document into v, refusing fields the type
// does not have (a misspelt field would otherwise be silently dropped, by
// this test and by the API server's non-strict paths alike).
func decodeStrict(doc []byte, v any) error {
	return yaml.UnmarshalStrict(doc, v)
}

// appendStrict decodes doc strictly into a new element of list.
func appendStrict[T any](doc []byte, list *[]T) error {
	var o T
	if err := decodeStrict(doc, &o); err != nil {
		return err
	}
	*list = append(*list, o)
	return nil
}

// splitDocs splits a YAML stream at its "---" lines.
func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(s, "")
}

// decodeAll decodes every document of a stream into the type its kind
// names; a kind the manifests are not expected to hold is an error.
func decodeAll(t *testing.T, name string, stream []byte) manifests {
	t.Helper()
	m := manifests{namespaceOf: map[string]string{}, clusterScope: map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}}
	for i, doc := range splitDocs(stream) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s document %d: %v", name, i, err)
		}
		var err error
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			err = appendStrict(doc, &m.namespaces)
		case "v1 ServiceAccount":
			err = appendStrict(doc, &m.accounts)
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			err = appendStrict(doc, &m.roles)
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			err = appendStrict(doc, &m.bindings)
		case "apps/v1 DaemonSet":
			err = appendStrict(doc, &m.daemonSets)
		default:
			t.Fatalf("%s document %d: unexpected %s %s: add it to this test, with what it must hold", name, i, head.APIVersion, head.Kind)
		}
		if err != nil {
			t.Fatalf("%s: %s %s does not decode strictly: %v", name, head.Kind, head.Metadata.Name, err)
		}
		m.kinds = append(m.kinds, head.Kind)
		m.namespaceOf[head.Kind+"/"+head.Metadata.Name] = head.Metadata.Namespace
	}
	return m
}

// build runs kustomize, as `kubectl apply -k` does, on dir.
func build(t *testing.T, dir string) manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, "kustomize build "+dir, out)
}

// agentContainer returns the DaemonSet and its one container.
func agentContainer(t *testing.T, m manifests) (appsv1.DaemonSet, corev1.Container) {
	t.Helper()
	if len(m.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want 1", len(m.daemonSets))
	}
	ds := m.daemonSets[0]
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("DaemonSet has %d containers, want 1", n)
	}
	return ds, ds.Spec.Template.Spec.Containers[0]
}

// Every file in deploy/kubernetes decodes strictly: the resources into
// the Kubernetes API types, the kustomizations into kustomize's.
func TestEveryFileDecodesStrictly(t *testing.T) {
	n := 0
	err := filepath.WalkDir(baseDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
			t.Errorf("%s: only YAML belongs in deploy/kubernetes", p)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		if filepath.Base(p) == "kustomization.yaml" {
			var k ktypes.Kustomization
			if err := decodeStrict(b, &k); err != nil {
				t.Errorf("%s does not decode strictly: %v", p, err)
			}
			if k.Kind != ktypes.KustomizationKind && k.Kind != ktypes.ComponentKind {
				t.Errorf("%s: kind %q, want Kustomization or Component", p, k.Kind)
			}
			return nil
		}
		decodeAll(t, p, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("decoded %d files, want the kustomization, namespace, RBAC, DaemonSet and component", n)
	}
}

// What kubectl apply -k installs: a namespace, the account and its
// role, the DaemonSet, each namespaced one in the oomtrace namespace.
func TestBuildHoldsTheInstall(t *testing.T) {
	m := build(t, baseDir)
	got := slices.Clone(m.kinds)
	sort.Strings(got)
	want := []string{"ClusterRole", "ClusterRoleBinding", "DaemonSet", "Namespace", "ServiceAccount"}
	if !slices.Equal(got, want) {
		t.Errorf("kustomize build holds %v, want %v", got, want)
	}
	for obj, ns := range m.namespaceOf {
		kind, _, _ := strings.Cut(obj, "/")
		if m.clusterScope[kind] {
			if ns != "" {
				t.Errorf("%s: namespace %q on a cluster-scoped object", obj, ns)
			}
		} else if ns != "oomtrace" {
			t.Errorf("%s: namespace %q, want oomtrace", obj, ns)
		}
	}
	if len(m.namespaces) == 1 && m.namespaces[0].Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Error("namespace oomtrace lacks pod-security.kubernetes.io/enforce: privileged: Pod Security admission would refuse hostPID, hostNetwork and host paths")
	}
}

// The container gets the documented capabilities and nothing else, no
// privileged mode, a read-only root, and the runtime's seccomp profile.
func TestSecurityContext(t *testing.T) {
	ds, c := agentContainer(t, build(t, baseDir))
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true: the agent needs only the capabilities listed in deploy/README.md")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true: the agent writes nothing")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser must be 0: the CRI socket is root's, mode 0660, and no capability overrides that")
	}
	if sc.Capabilities == nil {
		t.Fatal("no capabilities: want drop ALL and add the documented set")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	var added []string
	for _, a := range sc.Capabilities.Add {
		added = append(added, string(a))
	}
	if !slices.Equal(sortedCopy(added), sortedCopy(capabilities)) {
		t.Errorf("capabilities add %v, want %v", added, capabilities)
	}
	if documented := documentedCapabilities(t); !slices.Equal(sortedCopy(added), documented) {
		t.Errorf("capabilities add %v, but deploy/README.md's table of what each is for lists %v", sortedCopy(added), documented)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		if ps := ds.Spec.Template.Spec.SecurityContext; ps != nil {
			seccomp = ps.SeccompProfile
		}
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccomp profile %v, want RuntimeDefault (bpf() is allowed under it with CAP_BPF)", seccomp)
	}
}

// documentedCapabilities reads the capability table in deploy/README.md:
// rows that start with | `CAP_NAME` |.
func documentedCapabilities(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, m := range regexp.MustCompile("(?m)^\\| `CAP_([A-Z_]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		caps = append(caps, m[1])
	}
	sort.Strings(caps)
	return caps
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

// The pod shares the host's pid namespace and network, runs at
// system-node-critical, and says so in a comment where it is set.
func TestPodSettings(t *testing.T) {
	ds, c := agentContainer(t, build(t, baseDir))
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID: false: the agent must read /proc/<pid> by the host pids the kernel reports")
	}
	if !spec.HostNetwork {
		t.Error("hostNetwork: false")
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", spec.PriorityClassName)
	}
	if spec.TerminationGracePeriodSeconds == nil {
		t.Error("terminationGracePeriodSeconds not set")
	}
	if s := ds.Spec.UpdateStrategy; s.Type != appsv1.RollingUpdateDaemonSetStrategyType || s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable == nil {
		t.Errorf("updateStrategy %+v, want RollingUpdate with maxUnavailable", s)
	}
	raw, err := os.ReadFile(baseDir + "/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s*#.*\n\s*hostPID: true`).Match(raw) {
		t.Error("daemonset.yaml: hostPID: true without a comment above it saying why")
	}
	if doc, _ := os.ReadFile(readme); !bytes.Contains(doc, []byte("hostPID")) {
		t.Error("deploy/README.md does not explain hostPID")
	}

	var nodeName *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "NODE_NAME" {
			nodeName = &c.Env[i]
		}
	}
	if nodeName == nil || nodeName.ValueFrom == nil || nodeName.ValueFrom.FieldRef == nil || nodeName.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME %+v, want it from the downward API's spec.nodeName", nodeName)
	}

	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", r)
	}
	// The footprint benchmark's targets (docs/benchmarks.md): the agent
	// stays under 48 MiB in a storm, so the request covers it; the limit
	// leaves at least twice that (names, sessions), without asking a
	// node for far more than the agent uses; no CPU limit (throttling
	// would delay draining the ring buffer).
	const stormCeiling = 48 << 20
	if req := r.Requests.Memory().Value(); req < stormCeiling || req > 2*stormCeiling {
		t.Errorf("memory request %s: want the storm's ceiling, 48Mi, up to twice that", r.Requests.Memory())
	}
	if lim := r.Limits.Memory().Value(); lim < 2*r.Requests.Memory().Value() || lim > 8*stormCeiling {
		t.Errorf("memory limit %s: want twice the request or more, and at most 384Mi", r.Limits.Memory())
	}
	if cpu := r.Limits.Cpu(); !cpu.IsZero() {
		t.Errorf("CPU limit %s: want none (throttling would delay draining the ring buffer)", cpu)
	}
}

// Host directories are mounted read-only, and only the ones the agent
// reads: the cgroup tree at its own path, BTF, the CRI socket's directory.
func TestHostMounts(t *testing.T) {
	ds, c := agentContainer(t, build(t, baseDir))
	hostPaths := map[string]string{} // volume → host path
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	got := map[string]string{} // host path → mount path
	for _, vm := range c.VolumeMounts {
		hp, ok := hostPaths[vm.Name]
		if !ok {
			continue
		}
		got[hp] = vm.MountPath
		if !vm.ReadOnly {
			t.Errorf("host path %s is mounted read-write at %s", hp, vm.MountPath)
		}
	}
	want := map[string]string{
		"/sys/fs/cgroup":  "/sys/fs/cgroup", // the kernel's cgroup paths resolve under the same mount
		"/sys/kernel/btf": "/sys/kernel/btf",
		"/run/containerd": "/run/containerd",
	}
	if len(got) != len(want) {
		t.Errorf("host mounts %v, want %v", got, want)
	}
	for hp, mp := range want {
		if got[hp] != mp {
			t.Errorf("host path %s mounted at %q, want %q", hp, got[hp], mp)
		}
	}
}

// Kubelet's probes ask the agent's health listener: same port as
// --metrics-addr, /readyz for readiness, /healthz for liveness.
func TestProbesMatchTheHealthListener(t *testing.T) {
	_, c := agentContainer(t, build(t, baseDir))
	var addr string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
			addr = v
		}
	}
	if addr == "" {
		t.Fatalf("args %q lack --metrics-addr=[HOST]:PORT", c.Args)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("--metrics-addr=%s: %v", addr, err)
	}
	if host != "" && host != "0.0.0.0" {
		t.Errorf("--metrics-addr=%s: kubelet probes the node's address; listen on all of them", addr)
	}
	portOf := func(p intstr.IntOrString) string {
		if p.Type == intstr.String {
			for _, cp := range c.Ports {
				if cp.Name == p.StrVal {
					return strconv.Itoa(int(cp.ContainerPort))
				}
			}
			return "no port named " + p.StrVal
		}
		return strconv.Itoa(p.IntValue())
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe of %s", pr.name, pr.path)
			continue
		}
		if got := pr.probe.HTTPGet.Path; got != pr.path {
			t.Errorf("%s path %q, want %q", pr.name, got, pr.path)
		}
		if got := portOf(pr.probe.HTTPGet.Port); got != port {
			t.Errorf("%s port %s, want %s (--metrics-addr=%s)", pr.name, got, port, addr)
		}
	}
}

// Prometheus' pod discovery finds /metrics where the agent serves it.
func TestScrapeAnnotations(t *testing.T) {
	ds, c := agentContainer(t, build(t, baseDir))
	var port string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
			_, port, _ = net.SplitHostPort(v)
		}
	}
	want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": port, "prometheus.io/path": "/metrics"}
	for k, v := range want {
		if got := ds.Spec.Template.Annotations[k]; got != v {
			t.Errorf("pod annotation %s: %q, want %q", k, got, v)
		}
	}
}

// The account may read pods and write Events, nothing else: the RBAC
// rules are the documented list.
func TestRBAC(t *testing.T) {
	m := build(t, baseDir)
	if len(m.roles) != 1 || len(m.bindings) != 1 || len(m.accounts) != 1 {
		t.Fatalf("%d ClusterRoles, %d bindings, %d ServiceAccounts; want one each", len(m.roles), len(m.bindings), len(m.accounts))
	}
	var got []string
	for _, r := range m.roles[0].Rules {
		if len(r.NonResourceURLs) > 0 || len(r.ResourceNames) > 0 {
			t.Errorf("rule %+v: want plain resource rules", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					got = append(got, g+"/"+res+":"+v)
				}
			}
		}
	}
	sort.Strings(got)
	// Pods on this node, for names and owners: the informer lists and
	// watches; Events of OOM kills: made, then their count patched
	// (docs/events.md and deploy/README.md say the same).
	want := []string{"/events:create", "/events:patch", "/pods:list", "/pods:watch"}
	if !slices.Equal(got, want) {
		t.Errorf("ClusterRole grants %v, want %v", got, want)
	}
	b, sa := m.bindings[0], m.accounts[0]
	if b.RoleRef.Name != m.roles[0].Name || len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" ||
		b.Subjects[0].Name != sa.Name || b.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("binding %+v does not bind role %s to ServiceAccount %s/%s", b, m.roles[0].Name, sa.Namespace, sa.Name)
	}
	ds, _ := agentContainer(t, m)
	if ds.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("DaemonSet runs as ServiceAccount %q, want %q", ds.Spec.Template.Spec.ServiceAccountName, sa.Name)
	}
}

// The DaemonSet runs the image `make image` writes: the tag is the VERSION
// file's in both.
func TestImageTagMatchesMakeImage(t *testing.T) {
	vb, err := os.ReadFile(repoRoot + "/VERSION")
	if err != nil {
		t.Fatal(err)
	}
	want := imageName + ":" + strings.TrimSpace(string(vb))
	_, c := agentContainer(t, build(t, baseDir))
	if c.Image != want {
		t.Errorf("DaemonSet image %q, want %q (the VERSION file)", c.Image, want)
	}
	if c.ImagePullPolicy == corev1.PullAlways {
		t.Error("imagePullPolicy Always: the image is imported on the node, from no registry")
	}

	makePath, err := exec.LookPath("make")
	if err != nil {
		t.Skip("skipped: no make to ask which tag `make image` writes")
	}
	out, err := exec.Command(makePath, "-C", repoRoot, "-n", "image").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("-tag "+want+" ")) || !bytes.Contains(out, []byte("-o bin/oomtrace-image.tar ")) {
		t.Errorf("make -n image does not write bin/oomtrace-image.tar tagged %s:\n%s", want, out)
	}
}

// The sys-resource component adds CAP_SYS_RESOURCE and asks the agent for
// oom_score_adj -999, and changes nothing else of the container.
func TestSysResourceComponent(t *testing.T) {
	base, err := filepath.Abs(baseDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// kustomize takes relative paths only.
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	kust := "resources: [" + rel + "]\ncomponents: [" + rel + "/components/sys-resource]\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	_, c := agentContainer(t, build(t, dir))
	wantCaps := append(slices.Clone(capabilities), "SYS_RESOURCE")
	var added []string
	for _, a := range c.SecurityContext.Capabilities.Add {
		added = append(added, string(a))
	}
	if !slices.Equal(sortedCopy(added), sortedCopy(wantCaps)) {
		t.Errorf("with the component, capabilities add %v, want %v", added, wantCaps)
	}
	if last := c.Args[len(c.Args)-1]; last != "--oom-score-adj=-999" {
		t.Errorf("with the component, args %q: want --oom-score-adj=-999 last (the last one given wins)", c.Args)
	}
}
