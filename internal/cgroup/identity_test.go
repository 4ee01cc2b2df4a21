// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"reflect"
	"strings"
	"testing"
)

const (
	uid000 = "bc001ffa-68fc-11e9-92d7-5ef9efd9374c"                             // seed 000
	id000  = "a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672" // seed 000, the victim's
	uid002 = "f05bdc36-dd14-4537-9b91-57cc07df0932"                             // seed 002
	id002  = "052d52a163eb1ced8ddbd9968b31cb1d1ec74a2b389e18984737c3118fdd7a5e" // seed 002
	uid004 = "c00e47e7-5c66-4885-a929-607663ed3cd4"                             // seed 004 (reproduction)
	id004  = "45c3345632cb4d19698badde97941c43f6c3593f21d98a847049b5f03805b642" // seed 004
	uid    = "8f2d5e1a-3b4c-4d5e-8f90-a1b2c3d4e5f6"
	cid    = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	static = "6a5e9e0c7a14e5e7f7d8c0b1e5a2c3d4" // a static pod's UID: the manifest hash
)

func TestIdentify(t *testing.T) {
	pod := func(uid, qos string) *PodIdentity { return &PodIdentity{PodUID: uid, QOS: qos} }
	ctr := func(uid, qos, id, rt string) *PodIdentity {
		return &PodIdentity{PodUID: uid, QOS: qos, ContainerID: id, Runtime: rt}
	}
	underscored := "8f2d5e1a_3b4c_4d5e_8f90_a1b2c3d4e5f6"

	for _, tc := range []struct {
		name, path string
		want       *PodIdentity
	}{
		// cgroupfs driver (the same on cgroup v1 and v2)
		{"seed 000 container, cgroupfs burstable", "/kubepods/burstable/pod" + uid000 + "/" + id000, ctr(uid000, QOSBurstable, id000, "")},
		{"seed 000 pod level", "/kubepods/burstable/pod" + uid000, pod(uid000, QOSBurstable)},
		{"cgroupfs besteffort", "/kubepods/besteffort/pod" + uid + "/" + cid, ctr(uid, QOSBestEffort, cid, "")},
		{"cgroupfs guaranteed: no QoS level", "/kubepods/pod" + uid + "/" + cid, ctr(uid, QOSGuaranteed, cid, "")},
		{"cgroupfs guaranteed pod level", "/kubepods/pod" + uid, pod(uid, QOSGuaranteed)},
		{"cgroupfs cri-o", "/kubepods/burstable/pod" + uid + "/crio-" + cid, ctr(uid, QOSBurstable, cid, RuntimeCRIO)},
		{"cgroupfs nested cgroup inside a container", "/kubepods/burstable/pod" + uid + "/" + cid + "/init", ctr(uid, QOSBurstable, cid, "")},
		{"kind: cgroup root /kubelet", "/kubelet/kubepods/besteffort/pod" + uid + "/" + cid, ctr(uid, QOSBestEffort, cid, "")},
		{"docker-in-docker: outer container id is not the container", "/docker/" + id000 + "/kubepods/burstable/pod" + uid + "/" + cid, ctr(uid, QOSBurstable, cid, "")},
		{"static pod uid", "/kubepods/burstable/pod" + static + "/" + cid, ctr(static, QOSBurstable, cid, "")},
		// systemd driver
		{"seed 002 docker scope", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podf05bdc36_dd14_4537_9b91_57cc07df0932.slice/docker-" + id002 + ".scope", ctr(uid002, QOSBurstable, id002, RuntimeDocker)},
		{"seed 004 docker scope", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podc00e47e7_5c66_4885_a929_607663ed3cd4.slice/docker-" + id004 + ".scope", ctr(uid004, QOSBurstable, id004, RuntimeDocker)},
		{"seed 004 pod level", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod96bc17dc_f218_4e61_be05_c945fa8670f9.slice", pod("96bc17dc-f218-4e61-be05-c945fa8670f9", QOSBurstable)},
		{"systemd containerd", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + underscored + ".slice/cri-containerd-" + cid + ".scope", ctr(uid, QOSBestEffort, cid, RuntimeContainerd)},
		{"systemd guaranteed", "/kubepods.slice/kubepods-pod" + underscored + ".slice/cri-containerd-" + cid + ".scope", ctr(uid, QOSGuaranteed, cid, RuntimeContainerd)},
		{"systemd cri-o", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + underscored + ".slice/crio-" + cid + ".scope", ctr(uid, QOSBurstable, cid, RuntimeCRIO)},
		{"systemd cri-o conmon is pod level", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + underscored + ".slice/crio-conmon-" + cid + ".scope", pod(uid, QOSBurstable)},
		{"systemd nested cgroup root (kind)", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + underscored + ".slice/cri-containerd-" + cid + ".scope", ctr(uid, QOSBurstable, cid, RuntimeContainerd)},
		{"systemd static pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + static + ".slice/cri-containerd-" + cid + ".scope", ctr(static, QOSBurstable, cid, RuntimeContainerd)},
		{"driver mismatch: literal slice:runtime:id", "/system.slice/containerd.service/kubepods-burstable-pod" + underscored + ".slice:cri-containerd:" + cid, ctr(uid, QOSBurstable, cid, RuntimeContainerd)},
		{"pod sandbox (pause) container", "/kubepods/besteffort/pod" + uid + "/" + id000, ctr(uid, QOSBestEffort, id000, "")},
		// not Kubernetes: no identity, not a wrong one
		{"root", "/", nil},
		{"QoS root", "/kubepods", nil},
		{"QoS level", "/kubepods/burstable", nil},
		{"systemd QoS slice", "/kubepods.slice/kubepods-burstable.slice", nil},
		{"plain docker container", "/system.slice/docker-" + cid + ".scope", nil},
		{"plain docker cgroupfs", "/docker/" + cid, nil},
		{"podman", "/machine.slice/libpod-" + cid + ".scope", nil},
		{"user session", "/user.slice/user-0.slice/session-1.scope", nil},
		{"pod-like name outside kubepods", "/mykubepods/burstable/pod" + uid + "/" + cid, nil},
		{"pod dir with a non-uid", "/kubepods/burstable/podnotauid/" + cid, nil},
		{"pod dir directly under a QoS name without kubepods", "/burstable/pod" + uid, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Identify(tc.path)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Identify(%q)\n got  %+v\n want %+v", tc.path, got, tc.want)
			}
		})
	}
}

// FuzzIdentify covers the cgroup path parser, Identify and PodPath: an
// identity only from a well-formed pod uid and container ID, both
// parsers agreeing on which paths are a pod's, and the pod's path being
// whole levels of the path, naming the same pod.
func FuzzIdentify(f *testing.F) {
	for _, p := range []string{
		"/kubepods/burstable/pod" + uid + "/" + cid,
		"/kubepods/pod" + uid + "/" + cid + "/nested",
		"/kubepods.slice/kubepods-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/cri-containerd-" + cid + ".scope",
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice/crio-" + cid + ".scope",
		"/kubepods/besteffort/pod" + uid + "/crio-conmon-" + cid,
		"/kubepods/burstable/pod" + uid + "/\x1b[31m\n\xff",
		"//kubepods//pod" + uid + "//",
		"/system.slice/docker-" + cid + ".scope",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		id := Identify(path)
		pod := PodPath(path)
		if (id == nil) != (pod == "") {
			t.Fatalf("Identify(%q) = %+v but PodPath = %q", path, id, pod)
		}
		if id == nil {
			return
		}
		if !podUIDRE.MatchString(id.PodUID) {
			t.Errorf("Identify(%q): pod uid %q is not a pod uid", path, id.PodUID)
		}
		if id.ContainerID != "" && !idRE.MatchString(id.ContainerID) {
			t.Errorf("Identify(%q): container id %q is not 64 hex digits", path, id.ContainerID)
		}
		if id.QOS != QOSGuaranteed && id.QOS != QOSBurstable && id.QOS != QOSBestEffort {
			t.Errorf("Identify(%q): QoS class %q", path, id.QOS)
		}
		whole := "/" + strings.Trim(path, "/") + "/"
		if !strings.HasPrefix(whole, pod+"/") {
			t.Errorf("PodPath(%q) = %q: not whole levels of the path", path, pod)
		}
		if again := Identify(pod); again == nil || again.PodUID != id.PodUID || again.QOS != id.QOS {
			t.Errorf("PodPath(%q) = %q, identified as %+v; the path as %+v", path, pod, again, id)
		}
	})
}

func TestPodPath(t *testing.T) {
	for path, want := range map[string]string{
		"/kubepods/burstable/pod" + uid + "/" + cid:          "/kubepods/burstable/pod" + uid,
		"/kubepods/burstable/pod" + uid:                      "/kubepods/burstable/pod" + uid,
		"/kubepods/burstable/pod" + uid + "/" + cid + "/sub": "/kubepods/burstable/pod" + uid,
		"/kubepods/burstable":                                "",
		"/system.slice/docker-" + cid + ".scope":             "",
	} {
		if got := PodPath(path); got != want {
			t.Errorf("PodPath(%q) = %q, want %q", path, got, want)
		}
	}
}
