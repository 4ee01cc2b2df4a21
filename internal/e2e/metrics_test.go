// SPDX-License-Identifier: Apache-2.0

//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oomtrace/oomtrace/internal/metrics/metricstest"
)

// A real Prometheus server scrapes the DaemonSet's pod: its query for a
// pod's OOM-kill counter returns exactly the kills the kernel counted in
// the pod's container, the non-PID-1 kills fire the example alert, and
// promtool accepts the agent's exposition.
func TestPrometheusCountsEveryKill(t *testing.T) {
	c := newCluster(t)
	target := c.metricsTarget(t)
	text, _ := scrapeAgent(t, target)
	metricstest.CheckMetrics(t, text)
	prom := startPrometheus(t, target)

	ns := c.namespace(t, "e2e-metrics")
	const kills = 3
	p := c.startRespawning(t, ns, "leaky")
	for i := 1; i <= kills; i++ {
		c.signalHog(t, p, "main")
		// The init starts a new child, which says it waits: the kill is done.
		c.waitLogN(t, p, "main", "waiting", i+1, eventTimeout)
	}
	kernel := oomKillCount(t, c.containerCgroup(t, p, "main"))
	if kernel != kills {
		t.Fatalf("the kernel counted %d OOM kills in container main, want %d", kernel, kills)
	}

	query := fmt.Sprintf(`sum(oomtrace_oom_kills_total{namespace=%q, pod=%q})`, ns, p.Metadata.Name)
	got := prom.waitValue(t, query, float64(kernel), 60*time.Second)
	t.Logf("%s = %v; the container's memory.oom_control says oom_kill %d", query, got, kernel)
	nonInit := fmt.Sprintf(`sum(oomtrace_oom_kills_non_init_total{namespace=%q, pod=%q, container="main"})`, ns, p.Metadata.Name)
	prom.waitValue(t, nonInit, float64(kernel), 30*time.Second)

	alert := prom.waitAlert(t, "OOMKillNonInitProcess", map[string]string{"namespace": ns, "pod": p.Metadata.Name, "container": "main"}, 60*time.Second)
	t.Logf("alert firing: %v", alert)

	// What an operator scraping the agent sees of this pod, and of losses.
	text, _ = scrapeAgent(t, target)
	var excerpt []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "oomtrace_") && (strings.Contains(line, p.Metadata.Name) || strings.HasPrefix(line, "oomtrace_events_")) {
			excerpt = append(excerpt, line)
		}
	}
	t.Logf("scraped:\n%s", strings.Join(excerpt, "\n"))
}

// metricsTarget is the DaemonSet pod's /metrics address: it runs on the
// host network, so the node's loopback reaches it, on the port its
// scrape annotation names.
func (c *cluster) metricsTarget(t *testing.T) string {
	t.Helper()
	port := c.must(t, "get", "daemonset", "-n", c.agentNS, c.agentDS, "-o",
		`jsonpath={.spec.template.metadata.annotations.prometheus\.io/port}`)
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatalf("daemonset %s/%s: annotation prometheus.io/port %q: %v", c.agentNS, c.agentDS, port, err)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

func scrapeAgent(t *testing.T, target string) (string, metricstest.Samples) {
	t.Helper()
	body := httpGet(t, "http://"+target+"/metrics")
	s, err := metricstest.Parse(body)
	if err != nil {
		t.Fatalf("parse the agent's exposition: %v", err)
	}
	return body, s
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", u, resp.StatusCode, err, b)
	}
	return string(b)
}

// oomKillCount is the kernel's count of OOM kills of processes in the
// cgroup dir: memory.oom_control's oom_kill on cgroup v1, memory.events'
// on v2.
func oomKillCount(t *testing.T, dir string) uint64 {
	t.Helper()
	for _, file := range []string{"memory.oom_control", "memory.events"} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					t.Fatalf("%s/%s: %q", dir, file, line)
				}
				return n
			}
		}
	}
	t.Fatalf("%s has neither memory.oom_control nor memory.events with oom_kill", dir)
	return 0
}

// prometheus is a Prometheus server of this test's own.
type prometheus struct {
	url string
}

// startPrometheus runs Debian's prometheus with its own configuration and
// data in a directory under the cluster's (which the harness removes
// however the tests end), scraping target every second and evaluating
// deploy/prometheus's rules. It is stopped and its directory removed when
// the test ends; it dies with the test binary.
func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found (Debian package prometheus; make deps installs it)")
	}
	rules, err := filepath.Abs("../../deploy/prometheus/oomtrace-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(os.Getenv("OOMTRACE_E2E_DIR"), "prometheus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: oomtrace
    honor_labels: true
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// Registered after the directory's removal: runs before it.
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "prometheus.log")); err == nil {
				t.Logf("prometheus log:\n%s", b)
			}
		}
	})

	p := &prometheus{url: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(p.url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited at start: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus not ready after 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return p
}

// query runs an instant query; ok is false when it returns no sample.
func (p *prometheus) query(t *testing.T, q string) (v float64, ok bool) {
	t.Helper()
	var resp struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal([]byte(httpGet(t, p.url+"/api/v1/query?query="+url.QueryEscape(q))), &resp); err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	if resp.Status != "success" || len(resp.Data.Result) == 0 {
		return 0, false
	}
	s, _ := resp.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("query %s: value %q", q, s)
	}
	return v, true
}

// waitValue waits for q to return want, and checks it still does a few
// scrapes later (a count that went past it would show then).
func (p *prometheus) waitValue(t *testing.T, q string, want float64, timeout time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got float64
	var ok bool
	for time.Now().Before(deadline) {
		if got, ok = p.query(t, q); ok && got == want {
			time.Sleep(3 * time.Second)
			if got, _ = p.query(t, q); got != want {
				t.Fatalf("%s = %v after it was %v", q, got, want)
			}
			return got
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s = %v (a sample: %v) after %v, want %v", q, got, ok, timeout, want)
	return 0
}

// waitAlert waits for the named alert to fire with labels including want.
func (p *prometheus) waitAlert(t *testing.T, name string, want map[string]string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		var resp struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string
					State  string
				}
			}
		}
		last = httpGet(t, p.url+"/api/v1/alerts")
		if err := json.Unmarshal([]byte(last), &resp); err != nil {
			t.Fatalf("alerts: %v", err)
		}
	alerts:
		for _, a := range resp.Data.Alerts {
			if a.Labels["alertname"] != name || a.State != "firing" {
				continue
			}
			for k, v := range want {
				if a.Labels[k] != v {
					continue alerts
				}
			}
			return a.Labels
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert %s %v not firing after %v; alerts: %s", name, want, timeout, last)
		}
		time.Sleep(time.Second)
	}
}
