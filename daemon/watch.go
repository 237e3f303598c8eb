package daemon

import (
	"context"
	"reflect"
)

// watch merges the role's change channels into the daemon's notification
// until ctx ends. A server has two (control's and the relay's), so the
// select is built at run time.
func (d *Daemon) watch(ctx context.Context) {
	chans := d.role.changes()
	for {
		cases := make([]reflect.SelectCase, 0, len(chans)+1)
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
		for _, ch := range chans {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			return
		}
		// New channels before notifying: a change after this point closes
		// one of them, and one before it is seen by whoever reads the
		// state after our notification.
		chans = d.role.changes()
		d.changed.Notify()
	}
}
