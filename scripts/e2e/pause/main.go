// SPDX-License-Identifier: Apache-2.0

// Command pause is the end-to-end cluster's sandbox image: the process that
// holds a pod's namespaces. It sleeps, reaps the children it inherits (it
// is pid 1 when the pod shares its pid namespace) and exits on SIGTERM or
// SIGINT. Static, so the image needs nothing else.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
