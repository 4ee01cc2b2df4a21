// SPDX-License-Identifier: Apache-2.0

package event_test

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/oomtrace/oomtrace/internal/event"
	"github.com/oomtrace/oomtrace/internal/event/eventtest"
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
	e.Victim.Cgroup, e.Trigger.Cgroup, e.Memcg.Path, e.Folded.Cgroup = "/a/b", "/a/b", "/a", "/a/b"
	e.K8s.PodUID, e.K8s.QOS, e.K8s.Runtime = "bc001ffa-68fc-11e9-92d7-5ef9efd9374c", "Burstable", "containerd"
	e.K8s.ContainerID = "a2ed67c63e828da3849bf9f506ae2b36b4dac5b402a57f2981c9bdc07b23e672"
	e.Victim.Comm, e.Trigger.Comm = "stress", "stress"
	e.OOM.Order, e.Alloc.Order = 3, 6
	e.Stack = []string{"oom_kill_process+0x219", "0xffffffffc0a01234"}
	for i := range e.Diagnosis {
		e.Diagnosis[i].Code = "pod_limit"
	}
	for i := range e.Tasks {
		e.Tasks[i].Comm = "stress"
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
