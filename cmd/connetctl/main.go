// Command connetctl manages running connetd instances over D-Bus: it
// translates a command line into calls on org.connetd.Connetd1.<instance>
// and prints the answer as a table or, with --json, as JSON.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes scripts can rely on.
const (
	exitOK         = 0
	exitFailed     = 1 // the daemon refused or failed the operation
	exitUsage      = 2 // bad command line
	exitNotRunning = 3 // no such instance on the bus, or no bus
	exitDenied     = 4 // the caller may not do this
)

// cliError carries an exit code with a message.
type cliError struct {
	code int
	msg  string
}

func (e *cliError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &cliError{code: code, msg: fmt.Sprintf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// globals are the options every command takes.
type globals struct {
	instance string
	json     bool
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g, rest, err := parseGlobals(args)
	if err == nil && len(rest) > 0 && (rest[0] == "--help" || rest[0] == "-h") {
		rest[0] = "help"
	}
	if err == nil && len(rest) == 0 {
		err = fail(exitUsage, "no command given")
	}
	if err != nil {
		fmt.Fprintln(stderr, "connetctl:", err)
		fmt.Fprint(stderr, usage())
		return exitCode(err)
	}
	cmd := lookup(rest[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "connetctl: unknown command %q\n%s", rest[0], usage())
		return exitUsage
	}
	if wantsHelp(rest[1:]) || cmd.name == "help" {
		if cmd.name == "help" && len(rest) > 1 {
			if c := lookup(rest[1]); c != nil {
				cmd = c
			}
		}
		if cmd.name == "help" {
			fmt.Fprint(stdout, usage())
		} else {
			fmt.Fprint(stdout, cmd.help())
		}
		return exitOK
	}
	if err := cmd.run(&env{g: g, stdin: stdin, stdout: stdout, stderr: stderr}, rest[1:]); err != nil {
		fmt.Fprintln(stderr, "connetctl:", err)
		return exitCode(err)
	}
	return exitOK
}

func exitCode(err error) int {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitFailed
}

// parseGlobals takes --instance NAME and --json from anywhere before the
// command's own arguments.
func parseGlobals(args []string) (globals, []string, error) {
	var g globals
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--json":
			g.json = true
		case a == "--instance" || a == "-i":
			if i+1 >= len(args) {
				return g, nil, fail(exitUsage, "%s needs an instance name", a)
			}
			i++
			g.instance = args[i]
		case strings.HasPrefix(a, "--instance="):
			g.instance = strings.TrimPrefix(a, "--instance=")
		default:
			rest = append(rest, a)
		}
	}
	return g, rest, nil
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: connetctl [--instance NAME] [--json] COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-44s %s\n", c.name+" "+c.args, c.summary)
	}
	b.WriteString(`
--instance NAME  the connetd instance (default: the only one running, else "client")
--json           print JSON instead of tables
Exit codes: 0 ok, 1 operation failed, 2 usage, 3 instance not running, 4 access denied.
`)
	return b.String()
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--help" || a == "-h" {
			return true
		}
	}
	return false
}
