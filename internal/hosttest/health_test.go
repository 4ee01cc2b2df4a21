// SPDX-License-Identifier: Apache-2.0

package hosttest

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// freeLocalAddr returns a loopback address whose port was free a moment ago.
func freeLocalAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// What kubelet's probes see of a real agent: /readyz turns 200 by the time
// the probes are attached (the ready file), /healthz answers, and the
// listener is gone once the agent has stopped.
func TestHealthEndpoints(t *testing.T) {
	requireTracing(t)
	addr := freeLocalAddr(t)
	a := startAgent(t, "--metrics-addr="+addr)
	c := http.Client{Timeout: 5 * time.Second}
	for path, want := range map[string]string{"/readyz": "ready\n", "/healthz": "ok\n"} {
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v; agent stderr:\n%s", path, err, a.stderr.String())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Errorf("GET %s: %d %q, want 200 %q", path, resp.StatusCode, body, want)
		}
	}
	a.stop(t)
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after the agent stopped", addr)
	} else if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("dial %s after stop: %v, want connection refused", addr, err)
	}
}
