// SPDX-License-Identifier: Apache-2.0

package event

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of one output line. Tests
// validate real output against it; docs/events.md explains each field.
//
//go:embed schema.json
var Schema []byte
