// Command connetd runs one connetd role: server, control, relay or client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/daemon"
	"github.com/connetd/connetd/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 1 && (args[0] == "version" || args[0] == "--version") {
		fmt.Println("connetd", version.Version)
		return 0
	}
	f, err := config.ParseCommandLine(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Println(err)
			return 0
		}
		fmt.Fprintln(os.Stderr, "connetd:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, f, daemon.Options{Version: version.Version}); err != nil {
		fmt.Fprintln(os.Stderr, "connetd:", err)
		return 1
	}
	return 0
}
