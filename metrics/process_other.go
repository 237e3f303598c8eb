//go:build !linux

package metrics

// collectProcess has no /proc to read outside Linux: no process_ families.
func collectProcess(*sink) error { return nil }
