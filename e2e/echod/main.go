// Command echod is the service the end-to-end tests put behind a
// destination: it echoes every byte and, when the client half-closes,
// finishes echoing and half-closes too. It runs as its own process so a
// test can hold ten thousand connections without ten thousand goroutines
// in the race-instrumented test binary.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: echod ADDR")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "echod:", err)
		os.Exit(1)
	}
	fmt.Println("listening", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echod:", err)
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			// Plain reads and writes: io.Copy between two TCP sockets would
			// splice through a pipe, two more descriptors per connection.
			buf := make([]byte, 16<<10)
			if _, err := io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf); err == nil {
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			}
		}()
	}
}
