// SPDX-License-Identifier: Apache-2.0

// Package e2e holds the end-to-end tests: the agent as a DaemonSet on a real
// single-node Kubernetes cluster, its events read back with `kubectl logs`
// the way an operator reads them. They build only with the e2e tag and need
// the cluster `make e2e` brings up (scripts/e2e/run.sh), which runs them.
package e2e
