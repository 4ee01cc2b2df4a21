// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestSwitchFlagTakesOnOffAndBool(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{nil, true},
		{[]string{"--alloc-failures=off"}, false},
		{[]string{"--alloc-failures=OFF"}, false},
		{[]string{"--alloc-failures=false"}, false},
		{[]string{"--alloc-failures=0"}, false},
		{[]string{"--alloc-failures=off", "--alloc-failures"}, true},
		{[]string{"--alloc-failures=false", "--alloc-failures=on"}, true},
	} {
		f := pflag.NewFlagSet("agent", pflag.ContinueOnError)
		var v bool
		switchVar(f, &v, "alloc-failures", true, "")
		if err := f.Parse(c.args); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if v != c.want {
			t.Errorf("%v: %v, want %v", c.args, v, c.want)
		}
	}
	f := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	var v bool
	switchVar(f, &v, "alloc-failures", true, "")
	err := f.Parse([]string{"--alloc-failures=maybe"})
	if err == nil || !strings.Contains(err.Error(), `"maybe": want on, off, true or false`) || !strings.Contains(err.Error(), "alloc-failures") {
		t.Errorf("--alloc-failures=maybe: error %v, want one naming the flag and the accepted values", err)
	}
}
