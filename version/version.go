// Package version holds the build's version, stamped by the Makefile.
package version

// Version is set with -ldflags "-X github.com/connetd/connetd/version.Version=…".
var Version = "dev"
