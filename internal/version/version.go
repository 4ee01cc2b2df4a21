// SPDX-License-Identifier: Apache-2.0

// Package version is oomtrace's version, set at build time by the Makefile.
package version

// Version is overwritten with -ldflags "-X ...Version=...".
var Version = "dev"
