package e2e

import (
	"fmt"
	"maps"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmesh/segmesh/test/harness"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the samples of a Prometheus text exposition (comments
// skipped). Label values may hold escaped quotes and backslashes.
func parseMetrics(text string) ([]sample, error) {
	var out []sample
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", i+1, line, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, fmt.Errorf("no metric name")
	}
	s.name, line = line[:end], line[end:]
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq <= 0 {
				return s, fmt.Errorf("bad label")
			}
			name := line[:eq]
			line = line[eq+2:]
			var val strings.Builder
			closed := false
			for i := 0; i < len(line); i++ {
				c := line[i]
				if c == '\\' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(line[i])
					}
					continue
				}
				if c == '"' {
					line, closed = line[i+1:], true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return s, fmt.Errorf("unterminated label value")
			}
			s.labels[name] = val.String()
		}
	}
	fields := strings.Fields(line)
	if len(fields) < 1 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	s.value = v
	return s, nil
}

// metricValue returns the value of the sample with exactly these labels.
func metricValue(samples []sample, name string, labels map[string]string) (float64, bool) {
	if labels == nil {
		labels = map[string]string{}
	}
	for _, s := range samples {
		if s.name == name && maps.Equal(s.labels, labels) {
			return s.value, true
		}
	}
	return 0, false
}

// scrape fetches /metrics of n (metrics_listen inside n's namespace).
func scrape(t *testing.T, n *harness.Node) (string, []sample) {
	t.Helper()
	text, err := httpGet(n.Namespace, "http://"+metricsListen+"/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", n.Name, err)
	}
	samples, err := parseMetrics(text)
	if err != nil {
		t.Fatalf("scrape %s: %v\n%s", n.Name, err, text)
	}
	return text, samples
}

// promtoolCheck runs `promtool check metrics` on a scrape and fails the test
// on any problem it reports.
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	promtool := requireTool(t, "promtool")
	stdout, stderr, code, err := runCmd(30*time.Second, func(c *exec.Cmd) { c.Stdin = strings.NewReader(text) },
		promtool, "check", "metrics")
	if err != nil {
		t.Fatalf("promtool: %v", err)
	}
	if code != 0 || strings.TrimSpace(stdout+stderr) != "" {
		t.Errorf("promtool check metrics: exit %d\n%s%s\nmetrics:\n%s", code, stdout, stderr, text)
		return
	}
	t.Logf("promtool check metrics: clean (%d bytes, %d lines)", len(text), strings.Count(text, "\n"))
}
