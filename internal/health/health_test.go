// SPDX-License-Identifier: Apache-2.0

package health

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + s.Addr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// What kubelet's probes see over the agent's life: alive throughout,
// ready only between attaching and shutting down.
func TestProbesOverTheAgentsLife(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		set       State
		wantReady int
		wantBody  string
	}{
		{Starting, http.StatusServiceUnavailable, "starting"},
		{Ready, http.StatusOK, "ready"},
		{Stopping, http.StatusServiceUnavailable, "stopping"},
	} {
		s.SetState(step.set)
		if code, body := get(t, s, "/healthz"); code != http.StatusOK {
			t.Errorf("%v: /healthz %d %q, want 200 (the process is alive)", step.set, code, body)
		}
		if code, body := get(t, s, "/readyz"); code != step.wantReady || !strings.HasPrefix(body, step.wantBody) {
			t.Errorf("%v: /readyz %d %q, want %d %q", step.set, code, body, step.wantReady, step.wantBody)
		}
	}
	if code, _ := get(t, s, "/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d, want 404", code)
	}

	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Close", addr)
	}
}

func TestListenErrors(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if _, err := Listen(s.Addr().String()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second listener on %s: %v, want address already in use", s.Addr(), err)
	}
	for _, bad := range []string{"9746", "localhost", "http://:9746"} {
		if err := CheckAddr(bad); err == nil || !strings.Contains(err.Error(), "want [HOST]:PORT") {
			t.Errorf("CheckAddr(%q) = %v, want an error asking for [HOST]:PORT", bad, err)
		}
	}
	for _, good := range []string{":9746", "127.0.0.1:0", "[::1]:9746"} {
		if err := CheckAddr(good); err != nil {
			t.Errorf("CheckAddr(%q): %v", good, err)
		}
	}
}
