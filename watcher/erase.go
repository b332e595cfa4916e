package watcher

import (
	"errors"
	"fmt"

	"github.com/replds/replds/boltcompact"
)

// noteFreed marks the state as holding freed node data if path has some
// in bucket (shadow or blocked) that the transaction is about to drop or
// replace.
func (t *stateTx) noteFreed(bucket []byte, path string) {
	if v := t.tx.Bucket(bucket).Get([]byte(path)); len(v) > 1 {
		*t.freed = true
	}
}

// erase compacts the state file if shadowed or blocked data was dropped
// or replaced since the last compaction: bbolt keeps a value in its freed
// page until the page is reused, and those leaves' data is the only node
// data the state holds (see boltcompact). The applier calls it at every
// bookmark once the batch is sealed, so deleted data leaves the state
// file at the bookmark that delivered the deletion. On failure the state goes on with its file, and
// the next sealed batch tries again.
func (s *state) erase() error {
	if !s.freed {
		return nil
	}
	db, _, err := boltcompact.Swap(s.db, s.path, boltcompact.Options{Open: s.opts})
	if db == nil {
		return fmt.Errorf("watcher: compact state: %w", err)
	}
	old := s.db
	s.db = db
	s.freed = false
	if cerr := old.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return fmt.Errorf("watcher: compact state: %w", err)
	}
	return nil
}
