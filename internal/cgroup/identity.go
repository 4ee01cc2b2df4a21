// SPDX-License-Identifier: Apache-2.0

// Package cgroup knows how kubelet and container runtimes lay out cgroups:
// it turns a cgroup path into a pod identity, and finds and reads the
// memory cgroup hierarchy.
package cgroup

import (
	"regexp"
	"strings"
)

// QoS classes, as Kubernetes names them.
const (
	QOSGuaranteed = "Guaranteed"
	QOSBurstable  = "Burstable"
	QOSBestEffort = "BestEffort"
)

// Container runtimes, as oomtrace names them.
const (
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimeDocker     = "docker"
)

// PodIdentity is the pod, and the container within it, that a cgroup
// belongs to. ContainerID is empty for a pod-level cgroup; Runtime is empty
// where the path does not say (the cgroupfs driver names containers by bare
// ID whatever the runtime).
type PodIdentity struct {
	PodUID      string
	ContainerID string
	Runtime     string
	QOS         string
}

var (
	// systemd driver: [prefix-]kubepods[-burstable|-besteffort]-pod<uid>.slice,
	// the uid's dashes turned into underscores. A runc that was handed the
	// systemd form but uses cgroupfs leaves "<slice>:<runtime>:<id>" as a
	// literal directory name, seen on cgroup v2 nodes with mismatched drivers.
	systemdPodRE = regexp.MustCompile(`^(?:[a-z0-9_.-]+-)?kubepods(?:-(burstable|besteffort))?-pod([0-9a-fA-F_]+)\.slice(?::([a-z-]+):([0-9a-f]{64}))?$`)
	// systemd scope of a container: <runtime prefix>-<id>.scope.
	scopeRE  = regexp.MustCompile(`^(cri-containerd|docker|crio)-([0-9a-f]{64})\.scope$`)
	idRE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	crioIDRE = regexp.MustCompile(`^crio-([0-9a-f]{64})$`)
	// Pod UIDs: an RFC 4122 UUID, or for static pods the 32 hex digits of
	// the manifest's hash.
	podUIDRE = regexp.MustCompile(`^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$`)
)

var runtimeByPrefix = map[string]string{
	"cri-containerd": RuntimeContainerd,
	"docker":         RuntimeDocker,
	"crio":           RuntimeCRIO,
}

// Identify returns the pod identity of a cgroup path, or nil when the path
// is not a Kubernetes pod's. It reads no files: the path alone decides,
// because the cgroup may already be gone.
func Identify(path string) *PodIdentity {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, part := range parts {
		id := podFromComponent(parts[:i], part)
		if id == nil {
			continue
		}
		if id.ContainerID == "" && i+1 < len(parts) {
			id.ContainerID, id.Runtime = containerFromComponent(parts[i+1])
		}
		return id
	}
	return nil
}

// PodPath returns the path of the pod cgroup that path is in or is, or ""
// when path is not a pod's.
func PodPath(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, part := range parts {
		if podFromComponent(parts[:i], part) != nil {
			return "/" + strings.Join(parts[:i+1], "/")
		}
	}
	return ""
}

// podFromComponent recognises a pod cgroup's own name; ancestors are the
// components above it.
func podFromComponent(ancestors []string, name string) *PodIdentity {
	if m := systemdPodRE.FindStringSubmatch(name); m != nil {
		uid := strings.ToLower(strings.ReplaceAll(m[2], "_", "-"))
		if !podUIDRE.MatchString(uid) {
			return nil
		}
		id := &PodIdentity{PodUID: uid, QOS: qosFromName(m[1])}
		if m[4] != "" {
			id.ContainerID, id.Runtime = m[4], runtimeByPrefix[m[3]]
		}
		return id
	}
	// cgroupfs driver: .../kubepods[/burstable|/besteffort]/pod<uid>
	uid, ok := strings.CutPrefix(name, "pod")
	if !ok || !podUIDRE.MatchString(uid) || len(ancestors) == 0 {
		return nil
	}
	parent := ancestors[len(ancestors)-1]
	switch {
	case parent == "kubepods":
		return &PodIdentity{PodUID: uid, QOS: QOSGuaranteed}
	case (parent == "burstable" || parent == "besteffort") &&
		len(ancestors) >= 2 && ancestors[len(ancestors)-2] == "kubepods":
		return &PodIdentity{PodUID: uid, QOS: qosFromName(parent)}
	}
	return nil
}

func qosFromName(level string) string {
	switch level {
	case "burstable":
		return QOSBurstable
	case "besteffort":
		return QOSBestEffort
	}
	return QOSGuaranteed
}

// containerFromComponent reads the container ID and runtime from the name
// of a pod cgroup's child. cri-o's conmon scope is not a container.
func containerFromComponent(name string) (id, runtime string) {
	if m := scopeRE.FindStringSubmatch(name); m != nil {
		return m[2], runtimeByPrefix[m[1]]
	}
	if m := crioIDRE.FindStringSubmatch(name); m != nil {
		return m[1], RuntimeCRIO
	}
	if idRE.MatchString(name) {
		return name, ""
	}
	return "", ""
}
