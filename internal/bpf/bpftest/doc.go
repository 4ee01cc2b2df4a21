// SPDX-License-Identifier: Apache-2.0

// Package bpftest runs the BPF helpers of ../../../bpf on this kernel with
// BPF_PROG_TEST_RUN: the test programs in ../../../bpf/tests call the real
// helpers, and the tests here set up their inputs (the calling thread's
// cgroup, map state, arguments) and check what they saw. Generated and
// committed like ../ (`make generate`); only tests use it.
package bpftest

//go:generate go tool bpf2go -cc ${BPF_CLANG} -cflags ${BPF_CFLAGS} -target amd64,arm64 Helpers ../../../bpf/tests/helpers.bpf.c -- -I../../../headers -I../../../bpf
