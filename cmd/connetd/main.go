// Command connetd runs one connetd role: server, control, relay or client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/godbus/dbus/v5"

	"github.com/connetd/connetd/config"
	"github.com/connetd/connetd/daemon"
	"github.com/connetd/connetd/dbusapi/service"
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
	if len(args) > 0 && args[0] == "check" {
		return check(args[1:], os.Stdout, os.Stderr)
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
	d, err := daemon.New(f, daemon.Options{Version: version.Version, Args: args})
	if err != nil {
		fmt.Fprintln(os.Stderr, "connetd:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// SIGHUP (systemctl reload) re-reads the configuration; a bad one is
	// logged and the running one stays.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = d.Reload()
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveDBus(ctx, d)
	}()
	if err := d.Run(ctx); err != nil {
		d.Logger().Error("connetd failed", "err", err)
		stop()
		return 1
	}
	stop()
	return 0
}

// serveDBus offers the management API on the system bus. Without a bus (a
// container, a test) connetd runs on without it.
func serveDBus(ctx context.Context, d *daemon.Daemon) {
	// Not dbus.WithContext(ctx): that closes the connection when ctx ends,
	// under the API's last sync; it is closed once Serve has returned.
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		d.Logger().Info("no system bus; the D-Bus management API is off", "err", err)
		return
	}
	defer conn.Close()
	if err := service.Serve(ctx, conn, d); err != nil {
		d.Logger().Warn("D-Bus management API unavailable", "err", err)
	}
}
