// SPDX-License-Identifier: Apache-2.0

// Package eventtest validates output lines against the event JSON Schema,
// for the tests of every package that produces them.
package eventtest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/oomtrace/oomtrace/internal/event"
)

// Schema compiles the event schema, with format assertions on.
func Schema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(event.Schema))
	if err != nil {
		t.Fatalf("parse event schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "event.schema.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("add event schema: %v", err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile event schema: %v", err)
	}
	return s
}

// Validate checks one output line against the schema and decodes it.
func Validate(t testing.TB, s *jsonschema.Schema, line []byte) *event.Event {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, line)
	}
	if err := s.Validate(inst); err != nil {
		t.Fatalf("line does not match the event schema: %v\n%s", err, line)
	}
	var e event.Event
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("line has fields the Go types do not know: %v\n%s", err, line)
	}
	return &e
}
