package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/connetd/connetd/config"
)

const checkUsage = `usage: connetd check [--config] FILE...

Reads, merges (in order) and validates the configuration files without
starting anything. Prints every problem as FILE:LINE: KEY: MESSAGE and
warnings about risky settings. Exit status 0 when the configuration is
usable (warnings alone do not fail it), 2 when it is not.`

// check is "connetd check": each argument is a file, after --config or not.
func check(args []string, stdout, stderr io.Writer) int {
	var paths []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help" || a == "-help":
			fmt.Fprintln(stdout, checkUsage)
			return 0
		case a == "--config" || a == "-config":
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "connetd check: --config needs a file")
				return 2
			}
			i++
			paths = append(paths, args[i])
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			_, p, _ := strings.Cut(a, "=")
			paths = append(paths, p)
		case strings.HasPrefix(a, "-") && a != "-":
			fmt.Fprintf(stderr, "connetd check: unknown flag %s\n%s\n", a, checkUsage)
			return 2
		default:
			paths = append(paths, a)
		}
	}
	if len(paths) == 0 {
		fmt.Fprintf(stderr, "connetd check: no configuration file given\n%s\n", checkUsage)
		return 2
	}
	warnings, problems := config.CheckFiles(paths...)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	for _, p := range problems {
		fmt.Fprintln(stderr, "error:", p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "connetd check: %s: %d %s\n", strings.Join(paths, ", "), len(problems), plural(len(problems), "problem", "problems"))
		return 2
	}
	fmt.Fprintf(stdout, "connetd check: %s: ok", strings.Join(paths, ", "))
	if len(warnings) > 0 {
		fmt.Fprintf(stdout, " (%d %s)", len(warnings), plural(len(warnings), "warning", "warnings"))
	}
	fmt.Fprintln(stdout)
	return 0
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
