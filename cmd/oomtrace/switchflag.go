// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// switchValue is a boolean flag that also takes on and off, the words
// operators use for features (--alloc-failures=off); a bare --flag is on.
type switchValue struct{ p *bool }

func (s switchValue) String() string {
	if s.p == nil {
		return "false"
	}
	return strconv.FormatBool(*s.p)
}

func (s switchValue) Set(v string) error {
	switch strings.ToLower(v) {
	case "on":
		*s.p = true
		return nil
	case "off":
		*s.p = false
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q: want on, off, true or false", v)
	}
	*s.p = b
	return nil
}

// Type is "bool" so that help prints the flag as a switch, without a value.
func (s switchValue) Type() string { return "bool" }

// switchVar defines a boolean flag that takes on/off as well as
// true/false.
func switchVar(f *pflag.FlagSet, p *bool, name string, value bool, usage string) {
	*p = value
	f.VarPF(switchValue{p}, name, "", usage).NoOptDefVal = "true"
}
