package metrics

import (
	"math"
	"strings"
	"testing"
)

func written(t *testing.T, s *sink, om bool) string {
	t.Helper()
	var b strings.Builder
	if err := s.write(&b, om); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Families come out sorted by name, series by label values taken in
// label-name order (app before zone, though zone is declared
// first), labels written sorted by name;
// values and help are escaped as the text format wants.
func TestWriteSortsAndEscapes(t *testing.T) {
	d := newDesc("b_things", "Help with \\ and \"quotes\"\nand a newline.", gaugeKind, "zone", "app")
	s := newSink()
	gauge(s, d, 1, "z2", "a")
	gauge(s, d, 2, "z1", "b")
	gauge(s, d, 3, "z1", "a\\\"\n")
	gauge(s, newDesc("a_first", "First.", gaugeKind), math.Inf(-1))
	counter(s, newDesc("c_total", "Count.", counterKind), 1e6)
	gauge(s, newDesc("d_special", "Special.", gaugeKind, "v"), math.NaN(), "nan")
	gauge(s, newDesc("d_special", "Special.", gaugeKind, "v"), math.Inf(1), "inf")
	gauge(s, newDesc("d_special", "Special.", gaugeKind, "v"), -0.5, "neg")
	want := `# HELP a_first First.
# TYPE a_first gauge
a_first -Inf
# HELP b_things Help with \\ and "quotes"\nand a newline.
# TYPE b_things gauge
b_things{app="a",zone="z2"} 1
b_things{app="a\\\"\n",zone="z1"} 3
b_things{app="b",zone="z1"} 2
# HELP c_total Count.
# TYPE c_total counter
c_total 1e+06
# HELP d_special Special.
# TYPE d_special gauge
d_special{v="inf"} +Inf
d_special{v="nan"} NaN
d_special{v="neg"} -0.5
`
	if got := written(t, s, false); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// A histogram's buckets are given cumulative, in any order of bounds; the
// +Inf bucket is the count, also when a +Inf bound is given.
func TestWriteHistogram(t *testing.T) {
	d := newDesc("h_seconds", "H.", histogramKind, "peer")
	s := newSink()
	histogram(s, d, 7, 12.5, []float64{2, 0.5, math.Inf(1)}, []uint64{4, 1, 6}, "p")
	want := `# HELP h_seconds H.
# TYPE h_seconds histogram
h_seconds_bucket{peer="p",le="0.5"} 1
h_seconds_bucket{peer="p",le="2"} 4
h_seconds_bucket{peer="p",le="+Inf"} 7
h_seconds_sum{peer="p"} 12.5
h_seconds_count{peer="p"} 7
`
	if got := written(t, s, false); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// OpenMetrics names a counter's family without _total, writes whole
// floats with ".0", escapes quotes in help, and ends with # EOF.
func TestWriteOpenMetrics(t *testing.T) {
	s := newSink()
	counter(s, newDesc("c_total", `Say "hi".`, counterKind), 3)
	histogram(s, newDesc("h", "H.", histogramKind), 2, 3, []float64{1}, []uint64{1})
	s.add(newDesc("q", "Q.", summaryKind), summaryKind, sample{summary: &summaryValue{count: 2, sum: 0.5, quantiles: [][2]float64{{0, 0.1}, {1, 0.4}}}})
	want := `# HELP c Say \"hi\".
# TYPE c counter
c_total 3.0
# HELP h H.
# TYPE h histogram
h_bucket{le="1.0"} 1
h_bucket{le="+Inf"} 2
h_sum 3.0
h_count 2
# HELP q Q.
# TYPE q summary
q{quantile="0.0"} 0.1
q{quantile="1.0"} 0.4
q_sum 0.5
q_count 2
# EOF
`
	if got := written(t, s, true); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// A family without series is left out, as client_golang's registry did;
// an empty scrape is empty (OpenMetrics: just # EOF).
func TestWriteEmpty(t *testing.T) {
	s := newSink()
	if got := written(t, s, false); got != "" {
		t.Errorf("text: %q", got)
	}
	if got := written(t, s, true); got != "# EOF\n" {
		t.Errorf("OpenMetrics: %q", got)
	}
}

// A series given twice is written once, with the first value: a scrape
// with a duplicate would fail Prometheus's parser as a whole.
func TestWriteDropsDuplicates(t *testing.T) {
	d := newDesc("g", "G.", gaugeKind, "a")
	s := newSink()
	gauge(s, d, 1, "x")
	gauge(s, d, 2, "x")
	gauge(s, d, 3, "y")
	if got, want := written(t, s, false), "# HELP g G.\n# TYPE g gauge\ng{a=\"x\"} 1\ng{a=\"y\"} 3\n"; got != want || s.duplicates != 1 {
		t.Errorf("got %d duplicates and:\n%s\nwant:\n%s", s.duplicates, got, want)
	}
}

// A wrong label count or kind is a programming error, and panics as
// client_golang's MustNewConstMetric did, so tests catch it.
func TestAddPanicsOnMismatch(t *testing.T) {
	for name, f := range map[string]func(*sink){
		"labels": func(s *sink) { gauge(s, newDesc("g", "G.", gaugeKind, "a"), 1) },
		"kind":   func(s *sink) { counter(s, newDesc("g", "G.", gaugeKind), 1) },
		"bounds": func(s *sink) { histogram(s, newDesc("h", "H.", histogramKind), 1, 1, []float64{1}, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f(newSink())
		}()
	}
}
