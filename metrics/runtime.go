package metrics

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// The go_ families keep the names and help texts of client_golang's Go
// collector, so dashboards made for it still work. They are read from
// runtime/metrics, which, unlike runtime.ReadMemStats, does not stop the
// world; the GC pauses come from debug.ReadGCStats, as in client_golang.

// runtimeFamily is one go_ family: the sum of some runtime/metrics values.
type runtimeFamily struct {
	desc    *desc
	sources []string
}

var runtimeFamilies = []runtimeFamily{
	{newDesc("go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.", gaugeKind),
		[]string{"/gc/gogc:percent"}},
	{newDesc("go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.", gaugeKind),
		[]string{"/gc/gomemlimit:bytes"}},
	{newDesc("go_goroutines", "Number of goroutines that currently exist.", gaugeKind),
		[]string{"/sched/goroutines:goroutines"}},
	{newDesc("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", gaugeKind),
		[]string{"/memory/classes/heap/objects:bytes"}},
	{newDesc("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", counterKind),
		[]string{"/gc/heap/allocs:bytes"}},
	{newDesc("go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", gaugeKind),
		[]string{"/memory/classes/profiling/buckets:bytes"}},
	{newDesc("go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", counterKind),
		[]string{"/gc/heap/frees:objects", "/gc/heap/tiny/allocs:objects"}},
	{newDesc("go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", gaugeKind),
		[]string{"/memory/classes/metadata/other:bytes"}},
	{newDesc("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", gaugeKind),
		[]string{"/memory/classes/heap/objects:bytes"}},
	{newDesc("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", gaugeKind),
		[]string{"/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes"}},
	{newDesc("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", gaugeKind),
		[]string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}},
	{newDesc("go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", gaugeKind),
		[]string{"/gc/heap/objects:objects"}},
	{newDesc("go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", gaugeKind),
		[]string{"/memory/classes/heap/released:bytes"}},
	{newDesc("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", gaugeKind),
		[]string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes", "/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes"}},
	{newDesc("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", counterKind),
		[]string{"/gc/heap/allocs:objects", "/gc/heap/tiny/allocs:objects"}},
	{newDesc("go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", gaugeKind),
		[]string{"/memory/classes/metadata/mcache/inuse:bytes"}},
	{newDesc("go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", gaugeKind),
		[]string{"/memory/classes/metadata/mcache/inuse:bytes", "/memory/classes/metadata/mcache/free:bytes"}},
	{newDesc("go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", gaugeKind),
		[]string{"/memory/classes/metadata/mspan/inuse:bytes"}},
	{newDesc("go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", gaugeKind),
		[]string{"/memory/classes/metadata/mspan/inuse:bytes", "/memory/classes/metadata/mspan/free:bytes"}},
	{newDesc("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", gaugeKind),
		[]string{"/gc/heap/goal:bytes"}},
	{newDesc("go_memstats_other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", gaugeKind),
		[]string{"/memory/classes/other:bytes"}},
	{newDesc("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", gaugeKind),
		[]string{"/memory/classes/heap/stacks:bytes"}},
	{newDesc("go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", gaugeKind),
		[]string{"/memory/classes/heap/stacks:bytes", "/memory/classes/os-stacks:bytes"}},
	{newDesc("go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", gaugeKind),
		[]string{"/memory/classes/total:bytes"}},
	{newDesc("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.", gaugeKind),
		[]string{"/sched/gomaxprocs:threads"}},
}

var (
	goInfo    = newDesc("go_info", "Information about the Go environment.", gaugeKind, "version")
	goThreads = newDesc("go_threads", "Number of OS threads created.", gaugeKind)
	goGCPause = newDesc("go_gc_duration_seconds", "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", summaryKind)
	goLastGC  = newDesc("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", gaugeKind)
)

// collectRuntime adds the go_ families. A runtime/metrics name this Go
// does not know reads as KindBad and its family is left out, rather than
// reported as a wrong zero.
func collectRuntime(s *sink) {
	var samples []rtmetrics.Sample
	for _, f := range runtimeFamilies {
		for _, name := range f.sources {
			samples = append(samples, rtmetrics.Sample{Name: name})
		}
	}
	rtmetrics.Read(samples)
	i := 0
	for _, f := range runtimeFamilies {
		v, ok := 0.0, true
		for _, smp := range samples[i : i+len(f.sources)] {
			switch smp.Value.Kind() {
			case rtmetrics.KindUint64:
				v += float64(smp.Value.Uint64())
			case rtmetrics.KindFloat64:
				v += smp.Value.Float64()
			default:
				ok = false
			}
		}
		i += len(f.sources)
		if ok {
			s.add(f.desc, f.desc.kind, sample{value: v})
		}
	}
	gauge(s, goInfo, 1, runtime.Version())
	// Min, quartiles and max of the last pauses (up to 256 of them).
	gc := debug.GCStats{PauseQuantiles: make([]time.Duration, 5)}
	debug.ReadGCStats(&gc)
	pauses := &summaryValue{count: uint64(gc.NumGC), sum: gc.PauseTotal.Seconds()}
	for i, q := range gc.PauseQuantiles {
		pauses.quantiles = append(pauses.quantiles, [2]float64{float64(i) / 4, q.Seconds()})
	}
	s.add(goGCPause, summaryKind, sample{summary: pauses})
	lastGC := 0.0
	if !gc.LastGC.IsZero() {
		lastGC = float64(gc.LastGC.UnixNano()) / 1e9
	}
	gauge(s, goLastGC, lastGC)
	// As client_golang counts them: threads created, which is what the
	// runtime can tell without reading /proc.
	n, _ := runtime.ThreadCreateProfile(nil)
	gauge(s, goThreads, float64(n))
}
