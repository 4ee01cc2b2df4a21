// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/oomtrace/oomtrace/internal/health"
)

// defaultMetricsAddr is where kubelet's probes find the agent
// (deploy/kubernetes uses the same port).
const defaultMetricsAddr = ":9746"

// startHealth opens the --metrics-addr listener (nil when addr is empty)
// and reports not ready once ctx ends, so kubelet stops counting on the
// agent while it detaches. The returned stop closes the listener.
func startHealth(ctx context.Context, addr string, log *zap.Logger) (*health.Server, func(), error) {
	if addr == "" {
		log.Info("health listener off (--metrics-addr is empty)")
		return nil, func() {}, nil
	}
	srv, err := health.Listen(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	log.Info("health listener", zap.String("addr", srv.Addr().String()), zap.Strings("paths", []string{"/healthz", "/readyz", "/metrics"}))
	go func() {
		<-ctx.Done()
		srv.SetState(health.Stopping)
	}()
	stop := func() {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Close(c); err != nil {
			log.Warn("close health listener", zap.Error(err))
		}
	}
	return srv, stop, nil
}
