package relay

// Why the relay dropped a frame: the Status and metrics label values.
const (
	DropUnknownSender   = "unknown_sender"    // from an address no current client has
	DropUnknownReceiver = "unknown_receiver"  // to an ID no current client has
	DropUnauthorized    = "unauthorized_pair" // the pair is not in control's table
	DropSendFailed      = "send_failed"       // the kernel refused the send
)

// The reasons the forwarding path counts itself (send failures are the
// socket's count), as indexes of Server.dropped.
const (
	dropUnknownSender = iota
	dropUnknownReceiver
	dropUnauthorized
	dropReasons
)

var dropNames = [dropReasons]string{DropUnknownSender, DropUnknownReceiver, DropUnauthorized}
