package servertest

import (
	"context"
	"time"

	repldspb "github.com/replds/replds/proto"
)

// Store writes writes through server i's public API in one Store call,
// failing the test on error.
func (c *Cluster) Store(i int, writes ...*repldspb.Write) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Client(i).Store(ctx, &repldspb.StoreRequest{Writes: writes}); err != nil {
		c.t.Fatalf("Store on server %d: %v", i, err)
	}
}

// Put returns the write of data at path, for Store.
func Put(path, data string) *repldspb.Write {
	return &repldspb.Write{Path: path, Data: []byte(data)}
}

// Delete returns the deletion of path, for Store.
func Delete(path string) *repldspb.Write {
	return &repldspb.Write{Path: path, Delete: true}
}
