// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/oomtrace/oomtrace/internal/bpf"
)

// copyRecord reads every record type exactly as binary.Decode does (what
// it replaced): the generated structs' memory is the C layout, byte for
// byte, with no padding of Go's own.
func TestCopyRecordMatchesBinaryDecode(t *testing.T) {
	check := func(name string, fresh func() any, copyInto func(raw []byte) any) {
		t.Helper()
		size := binary.Size(fresh())
		rng := rand.New(rand.NewPCG(1, uint64(size)))
		for i := 0; i < 20; i++ {
			raw := make([]byte, size)
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			want := fresh()
			if _, err := binary.Decode(raw, binary.NativeEndian, want); err != nil {
				t.Fatal(err)
			}
			if got := copyInto(raw); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: copyRecord differs from binary.Decode for the same %d bytes", name, size)
			}
		}
	}
	check("oom_kill", func() any { return new(bpf.OomtraceOomKillEvent) }, func(raw []byte) any {
		r := new(bpf.OomtraceOomKillEvent)
		copyRecord(r, raw)
		return r
	})
	check("memcg_oom", func() any { return new(bpf.OomtraceMemcgOomEvent) }, func(raw []byte) any {
		r := new(bpf.OomtraceMemcgOomEvent)
		copyRecord(r, raw)
		return r
	})
	check("alloc_failure", func() any { return new(bpf.OomtraceAllocFailureEvent) }, func(raw []byte) any {
		r := new(bpf.OomtraceAllocFailureEvent)
		copyRecord(r, raw)
		return r
	})
}
