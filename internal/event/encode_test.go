// SPDX-License-Identifier: Apache-2.0

package event_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
	"github.com/oomtrace/oomtrace/internal/safetext/safetexttest"
)

// fill sets every field reachable from v to a non-zero value, so that a
// field the typed encoder forgets, or the schema does not list, fails the
// round trip.
func fill(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2026, 11, 22, 9, 0, 0, *n, time.UTC)))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			fill(t, v.Field(i), n)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := 0; i < 2; i++ {
			fill(t, v.Index(i), n)
		}
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	default:
		t.Fatalf("fill: no value for a %s", v.Type())
	}
}

// Every field of every type in the event reaches the line under its json
// name, and the schema knows every key written.
func TestEncodeLineEveryField(t *testing.T) {
	var e event.Event
	n := 0
	fill(t, reflect.ValueOf(&e).Elem(), &n)
	// Values the schema constrains.
	e.Event, e.Constraint, e.Alloc.Source = event.KindOOMKill, event.ConstraintMemcg, "warn_alloc"
	// Names with an invalid byte, so their _hex fields are written.
	e.Victim.Cgroup, e.Trigger.Cgroup, e.Memcg.Path, e.Folded.Cgroup = "/a/b\xff", "/a/b\xfe", "/a\xfd", "/a/b\xfc"
	e.K8s.PodUID, e.K8s.QOS, e.K8s.Runtime = "bc001ffa-68fc-11e9-92d7-5ef9efd9374c", "Burstable", "containerd"
	e.K8s.ContainerID = "a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672"
	e.Victim.Comm, e.Trigger.Comm = "stress\xff", "stress\xfe"
	e.OOM.Order, e.Alloc.Order = 3, 6
	e.Stack = []string{"oom_kill_process+0x219", "0xffffffffc0a01234"}
	for i := range e.Diagnosis {
		e.Diagnosis[i].Code = "pod_limit"
	}
	for i := range e.Tasks {
		e.Tasks[i].Comm = "stress\x80"
	}
	for i := range e.Buddy {
		e.Buddy[i].Zone = "Normal"
	}
	buf, err := event.EncodeLine(&e)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	line := buf.Bytes()
	if bytes.IndexByte(line, '\n') != len(line)-1 {
		t.Fatalf("not one line: %q", line)
	}
	got := eventtest.Validate(t, eventtest.Schema(t), bytes.TrimSpace(line))
	// What a reader gets: the text with U+FFFD, the bytes in hex.
	readable := func(name, hexName *string) {
		*hexName = hex.EncodeToString([]byte(*name))
		*name = string(bytes.Runes([]byte(*name)))
	}
	readable(&e.Victim.Comm, &e.Victim.CommHex)
	readable(&e.Victim.Cgroup, &e.Victim.CgroupHex)
	readable(&e.Trigger.Comm, &e.Trigger.CommHex)
	readable(&e.Trigger.Cgroup, &e.Trigger.CgroupHex)
	readable(&e.Memcg.Path, &e.Memcg.PathHex)
	readable(&e.Folded.Cgroup, &e.Folded.CgroupHex)
	for i := range e.Tasks {
		readable(&e.Tasks[i].Comm, &e.Tasks[i].CommHex)
	}
	if !reflect.DeepEqual(got, &e) {
		t.Errorf("round trip lost fields:\n got  %+v\n want %+v\n%s", got, &e, line)
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1 KiB"}, {1536, "1.5 KiB"},
		{128974848, "123 MiB"}, {3 << 30, "3 GiB"}, {1<<64 - 1, "16 EiB"},
	} {
		if got := event.FormatBytes(tc.in); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Lines sort as text: every time has nine digits of nanoseconds, in UTC.
func TestFormatTime(t *testing.T) {
	local := time.FixedZone("X", 3600)
	for in, want := range map[time.Time]string{
		time.Date(2026, 11, 22, 10, 57, 56, 0, local):   "2026-11-22T09:57:56.000000000Z",
		time.Date(2026, 11, 22, 9, 57, 56, 7, time.UTC): "2026-11-22T09:57:56.000000007Z",
	} {
		if got := event.FormatTime(in); got != want {
			t.Errorf("FormatTime(%v) = %q, want %q", in, got, want)
		}
	}
}

// A folded line as the agent writes it: the key and the counts, no task.
func TestEncodeFoldedLine(t *testing.T) {
	at := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	e := &event.Event{
		Event: event.KindAllocFailuresFolded, Time: at, Node: "node-1",
		Alloc:  &event.Alloc{Order: 9, GFPMask: 0x346cca, GFP: "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN", NoWarn: true, Node: -1, Source: "warn_alloc", CgroupID: 4242},
		Folded: &event.Folded{Count: 4981, Records: 2, Cgroup: "/kubepods/besteffort/pod1", Since: at.Add(-time.Second), Last: at.Add(-time.Millisecond)},
	}
	buf, err := event.EncodeLine(e)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	got := eventtest.Validate(t, eventtest.Schema(t), bytes.TrimSpace(buf.Bytes()))
	if !reflect.DeepEqual(got, e) {
		t.Errorf("round trip:\n got  %+v\n want %+v", got, e)
	}
	// A folded line without its count, or with a task, is not one.
	for _, bad := range []string{
		`{"time":"2026-11-22T09:00:00.000000000Z","event":"alloc_failures_folded","node":"n","alloc":{"order":9,"gfp_mask":1,"gfp":"x","nowarn":false,"memcg_charge":false,"node":-1,"source":"warn_alloc"}}`,
		`{"time":"2026-11-22T09:00:00.000000000Z","event":"alloc_failures_folded","node":"n","alloc":{"order":9,"gfp_mask":1,"gfp":"x","nowarn":false,"memcg_charge":false,"node":-1,"source":"warn_alloc"},"folded":{"count":1,"records":0,"since":"2026-11-22T09:00:00.000000000Z","last":"2026-11-22T09:00:00.000000000Z"},"trigger":{"pid":1,"comm":"x","cgroup":"/"}}`,
	} {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		if err := eventtest.Schema(t).Validate(inst); err == nil {
			t.Errorf("schema accepts %s", bad)
		}
	}
}

// hostileEvent is an OOM kill whose every name is s.
func hostileEvent(s string) *event.Event {
	return &event.Event{
		Time: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), Event: event.KindOOMKill, Node: s,
		Diagnosis: []event.Finding{{Code: "container_limit", Summary: "in " + s}},
		Victim:    &event.Victim{PID: 7, Comm: s, Cgroup: "/" + s},
		Trigger:   &event.Trigger{PID: 8, Comm: s, Cgroup: "/" + s},
		Memcg:     &event.Memcg{Path: "/" + s, StatError: s},
		K8s:       &event.K8s{Namespace: s, Pod: s, Container: s, PodUID: s, QOS: s, LookupError: s},
		Tasks:     []event.Task{{PID: 7, Comm: s}},
		Folded:    &event.Folded{Count: 1, Cgroup: "/" + s},
		Stack:     []string{s}, TmpfsMounts: []string{s},
	}
}

// checkHostileLine: a line of names chosen to break it is one line of
// valid JSON holding only printable ASCII and printable runes, no field
// more than the event's, and every name comes back: exactly when it is
// valid UTF-8, else as U+FFFD in the text and its exact bytes in hex.
func checkHostileLine(t *testing.T, s string) {
	t.Helper()
	e := hostileEvent(s)
	buf, err := event.EncodeLine(e)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	line := buf.Bytes()
	if bytes.IndexByte(line, '\n') != len(line)-1 {
		t.Fatalf("name %q: not one line: %q", s, line)
	}
	for i := 0; i < len(line)-1; {
		r, n := utf8.DecodeRune(line[i:])
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || !unicode.IsPrint(r) {
			t.Fatalf("name %q: raw %U at %d of the line %q", s, r, i, line)
		}
		i += n
	}
	var got event.Event
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("name %q: line is not an event: %v\n%s", s, err, line)
	}
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil || len(fields) != 12 {
		t.Fatalf("name %q: %d top-level fields (%v), want 12: %s", s, len(fields), err, line)
	}
	// One U+FFFD per invalid byte.
	text := string(bytes.Runes([]byte(s)))
	name := func(what, got, gotHex, want string) {
		t.Helper()
		wantText := string(bytes.Runes([]byte(want)))
		if got != wantText {
			t.Errorf("name %q: %s = %q, want %q", s, what, got, wantText)
		}
		wantHex := ""
		if !utf8.ValidString(want) {
			wantHex = hex.EncodeToString([]byte(want))
		}
		if gotHex != wantHex {
			t.Errorf("name %q: %s_hex = %q, want %q", s, what, gotHex, wantHex)
		}
		if b, _ := hex.DecodeString(gotHex); gotHex != "" && string(b) != want {
			t.Errorf("name %q: %s_hex decodes to %q", s, what, b)
		}
	}
	name("victim.comm", got.Victim.Comm, got.Victim.CommHex, s)
	name("victim.cgroup", got.Victim.Cgroup, got.Victim.CgroupHex, "/"+s)
	name("trigger.comm", got.Trigger.Comm, got.Trigger.CommHex, s)
	name("trigger.cgroup", got.Trigger.Cgroup, got.Trigger.CgroupHex, "/"+s)
	name("memcg.path", got.Memcg.Path, got.Memcg.PathHex, "/"+s)
	name("tasks[0].comm", got.Tasks[0].Comm, got.Tasks[0].CommHex, s)
	name("folded.cgroup", got.Folded.Cgroup, got.Folded.CgroupHex, "/"+s)
	for what, v := range map[string]string{
		"node": got.Node, "k8s.pod": got.K8s.Pod, "k8s.lookup_error": got.K8s.LookupError,
		"memcg.stat_error": got.Memcg.StatError, "stack[0]": got.Stack[0], "tmpfs_mounts[0]": got.TmpfsMounts[0],
	} {
		if v != text {
			t.Errorf("name %q: %s = %q, want %q", s, what, v, text)
		}
	}
}

func TestEncodeLineHostileNames(t *testing.T) {
	for _, s := range safetexttest.Names {
		checkHostileLine(t, s)
	}
}

// FuzzEncodeLine: whatever the names, the line stays one line of valid
// JSON, holds nothing raw for a terminal, and keeps every name.
func FuzzEncodeLine(f *testing.F) {
	for _, s := range safetexttest.Names {
		f.Add(s)
	}
	f.Fuzz(checkHostileLine)
}
