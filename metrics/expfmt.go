package metrics

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The exposition formats are written here rather than with client_golang:
// its registry, protobuf model and collectors cost a small router about
// 4 MiB of resident memory for the few dozen series a scrape has.

// kind is a metric family's type as the formats name it.
type kind string

const (
	gaugeKind     kind = "gauge"
	counterKind   kind = "counter"
	histogramKind kind = "histogram"
	summaryKind   kind = "summary"
)

// desc is one metric family: the series of a scrape are checked against it,
// so a collect function with a wrong label count fails its tests.
type desc struct {
	name, help string
	kind       kind
	labels     []string
}

func newDesc(name, help string, k kind, labels ...string) *desc {
	return &desc{name: name, help: help, kind: k, labels: labels}
}

// sample is one series: its label values in the order of desc.labels, and
// a value, or a histogram or summary for a family of that kind.
type sample struct {
	values  []string
	value   float64
	hist    *histogramValue
	summary *summaryValue
}

// summaryValue holds quantiles as (quantile, value) pairs.
type summaryValue struct {
	count     uint64
	sum       float64
	quantiles [][2]float64
}

// histogramValue holds cumulative bucket counts, as Prometheus wants them:
// cumulative[i] counts the observations up to bounds[i]; count covers all.
type histogramValue struct {
	count      uint64
	sum        float64
	bounds     []float64
	cumulative []uint64
}

// sink gathers the series of one scrape.
type sink struct {
	families map[string]*family
	// duplicates counts series dropped because one with the same name and
	// label values came first: client_golang failed the scrape for them,
	// here the first one wins and the rest of the scrape is kept.
	duplicates int
}

type family struct {
	desc    *desc
	samples []sample
	seen    map[string]bool
}

func newSink() *sink { return &sink{families: map[string]*family{}} }

func (s *sink) add(d *desc, k kind, smp sample) {
	if d.kind != k || len(smp.values) != len(d.labels) {
		// A programming error, as prometheus.MustNewConstMetric treated it.
		panic(fmt.Sprintf("metrics: %s is a %s with %d labels, got a %s with %d", d.name, d.kind, len(d.labels), k, len(smp.values)))
	}
	f := s.families[d.name]
	if f == nil {
		f = &family{desc: d, seen: map[string]bool{}}
		s.families[d.name] = f
	}
	key := strings.Join(smp.values, "\xff")
	if f.seen[key] {
		s.duplicates++
		return
	}
	f.seen[key] = true
	f.samples = append(f.samples, smp)
}

func gauge(s *sink, d *desc, v float64, labels ...string) {
	s.add(d, gaugeKind, sample{values: labels, value: v})
}

func counter(s *sink, d *desc, v int64, labels ...string) {
	s.add(d, counterKind, sample{values: labels, value: float64(v)})
}

// histogram takes the buckets as cumulative counts by upper bound, as
// prometheus.MustNewConstHistogram did; the +Inf bucket is count.
func histogram(s *sink, d *desc, count uint64, sum float64, bounds []float64, cumulative []uint64, labels ...string) {
	if len(bounds) != len(cumulative) {
		panic(fmt.Sprintf("metrics: %s has %d bounds and %d buckets", d.name, len(bounds), len(cumulative)))
	}
	s.add(d, histogramKind, sample{values: labels, hist: &histogramValue{count: count, sum: sum, bounds: bounds, cumulative: cumulative}})
}

// write writes the families sorted by name and, within a family, the
// series sorted by label values taken in label-name order, as
// client_golang's registry did; families without series are left out.
// openMetrics picks OpenMetrics 1.0.0 over the text format 0.0.4.
func (s *sink) write(w io.Writer, openMetrics bool) error {
	bw := bufio.NewWriter(w)
	for _, name := range slices.Sorted(maps.Keys(s.families)) {
		s.families[name].write(bw, openMetrics)
	}
	if openMetrics {
		bw.WriteString("# EOF\n")
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

func (f *family) write(w *bufio.Writer, om bool) {
	d := f.desc
	// Labels are written sorted by name, and series compared in that order.
	order := make([]int, len(d.labels))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(d.labels[a], d.labels[b]) })
	slices.SortStableFunc(f.samples, func(a, b sample) int {
		for _, i := range order {
			if c := strings.Compare(a.values[i], b.values[i]); c != 0 {
				return c
			}
		}
		return 0
	})

	familyName := d.name
	if om && d.kind == counterKind {
		// OpenMetrics names a counter family without the _total its
		// samples keep.
		familyName = strings.TrimSuffix(d.name, "_total")
	}
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", familyName, escape(d.help, om), familyName, d.kind)
	for _, smp := range f.samples {
		labels := make([]string, 0, len(order)+1)
		for _, i := range order {
			labels = append(labels, d.labels[i]+`="`+escape(smp.values[i], true)+`"`)
		}
		if q := smp.summary; q != nil {
			for _, qv := range q.quantiles {
				writeSample(w, d.name, append(labels, `quantile="`+formatFloat(qv[0], om)+`"`), formatFloat(qv[1], om))
			}
			writeSample(w, d.name+"_sum", labels, formatFloat(q.sum, om))
			writeSample(w, d.name+"_count", labels, formatCount(q.count, om))
			continue
		}
		if smp.hist == nil {
			writeSample(w, d.name, labels, formatFloat(smp.value, om))
			continue
		}
		h := smp.hist
		idx := make([]int, len(h.bounds))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(h.bounds[a], h.bounds[b]) })
		for _, i := range idx {
			if math.IsInf(h.bounds[i], +1) {
				continue // written below, from count
			}
			writeSample(w, d.name+"_bucket", append(labels, `le="`+formatFloat(h.bounds[i], om)+`"`), formatCount(h.cumulative[i], om))
		}
		writeSample(w, d.name+"_bucket", append(labels, `le="+Inf"`), formatCount(h.count, om))
		writeSample(w, d.name+"_sum", labels, formatFloat(h.sum, om))
		writeSample(w, d.name+"_count", labels, formatCount(h.count, om))
	}
}

func writeSample(w *bufio.Writer, name string, labels []string, value string) {
	w.WriteString(name)
	if len(labels) > 0 {
		w.WriteString("{" + strings.Join(labels, ",") + "}")
	}
	w.WriteString(" " + value + "\n")
}

// escape escapes a label value (quote true) or the text format's help
// (quote false, as the text format leaves quotes in help alone;
// OpenMetrics escapes them there too).
func escape(s string, quote bool) string {
	if !strings.ContainsAny(s, "\\\n\"") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '"' && quote:
			b.WriteString(`\"`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// formatFloat writes a value as client_golang did: shortest 'g' form, and
// in OpenMetrics a whole number gets ".0" so it reads as a float.
func formatFloat(f float64, om bool) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if om && !strings.ContainsAny(s, "e.") {
		s += ".0"
	}
	return s
}

// formatCount is a histogram count: a float in the text format, as
// client_golang wrote it (1e+06 for a million), an integer in OpenMetrics.
func formatCount(n uint64, om bool) string {
	if om {
		return strconv.FormatUint(n, 10)
	}
	return formatFloat(float64(n), false)
}
