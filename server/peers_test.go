package server

import (
	"context"
	"errors"
	"testing"

	"github.com/replds/replds/store"
)

// TestPushSession_NewIncarnation: a new incarnation wakes an idle pusher
// (store.Written) and ends its session (errNewIncarnation), and the
// session's pages stay on its own origin meanwhile: the new origin's seqs
// are never sent after the old origin's cursor.
func TestPushSession_NewIncarnation(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t)
	if _, err := st.Write(ctx, []store.Write{{Path: "/old", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	old := st.Origin()
	ps := &pushSession{st: st, origin: old, cursor: st.Vector()[old]}

	written := st.Written()
	if _, _, err := st.Reincarnate(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-written:
	default:
		t.Fatal("Reincarnate did not wake the waiters of Written: an idle pusher stays on the old origin")
	}
	for i := range 3 {
		if _, err := st.Write(ctx, []store.Write{{Path: "/new", Data: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if msg, _, _, err := pushPage(st, ps.origin, ps.cursor); err != nil || msg != nil {
		t.Errorf("pushPage(old origin, cursor %d) = %v, %v; want nothing", ps.cursor, msg, err)
	}
	if _, _, err := ps.sendNext(); !errors.Is(err, errNewIncarnation) {
		t.Errorf("sendNext after a new incarnation = %v, want errNewIncarnation", err)
	}
}
