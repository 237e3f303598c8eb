// Command connetctl manages running connetd instances. It talks to them over
// D-Bus, whose API is not built yet; until then it says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "connetctl: the D-Bus management API is not available in this build yet; use the status-addr JSON endpoint (curl http://127.0.0.1:19182/) to inspect a client")
	os.Exit(69) // EX_UNAVAILABLE
}
