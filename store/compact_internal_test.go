package store

import (
	"context"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/replds/replds/boltcompact"
)

// TestCompact_UnrecordedCommitCopiesAgain: a commit during the copy that
// the compaction was not told of makes it copy the file again rather than
// miss it.
func TestCompact_UnrecordedCommitCopiesAgain(t *testing.T) {
	s := openInternal(t)
	if _, err := s.Write(context.Background(), []Write{{Path: "/a", Data: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	db := s.db // the committer is idle: nothing swaps it now
	hook := func(st boltcompact.Step) error {
		if st != boltcompact.StepCopied {
			return nil
		}
		return db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists([]byte("unrecorded"))
			return err
		})
	}
	s.erase.hook.Store(&hook)
	st, err := s.Compact(context.Background())
	s.erase.hook.Store(nil)
	if err != nil {
		t.Fatalf("Compact() = %v", err)
	}
	if !st.FullCopy {
		t.Errorf("Compact() = %+v, want a full copy", st)
	}
	err = s.view(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("unrecorded")) == nil {
			t.Errorf("the unrecorded commit is missing from the new file")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
