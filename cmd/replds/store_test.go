package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "replds/proto"
	"replds/server/servertest"
)

func TestSplitBatches(t *testing.T) {
	writes := make([]*repldspb.Write, 10)
	for i := range writes {
		writes[i] = &repldspb.Write{Path: fmt.Sprintf("/%d", i), Data: make([]byte, 100)}
	}
	for _, tc := range []struct {
		maxBytes, maxWrites int
		want                []int
	}{
		{1 << 20, 100, []int{10}},
		{1 << 20, 4, []int{4, 4, 2}},
		{250, 100, []int{2, 2, 2, 2, 2}},
		{10, 100, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}, // a write larger than the limit goes alone
	} {
		var got []int
		for _, b := range splitBatches(writes, tc.maxBytes, tc.maxWrites) {
			got = append(got, len(b))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("splitBatches(10 x 100 B, %d bytes, %d writes) = %v, want %v", tc.maxBytes, tc.maxWrites, got, tc.want)
		}
	}
}

// TestPlanBatches: a tree the server takes in one batch goes as one, to
// be stored atomically; a larger one goes in batches of splitBatchBytes.
func TestPlanBatches(t *testing.T) {
	mib := make([]byte, 1<<20)
	tree := func(n int) []*repldspb.Write {
		ws := make([]*repldspb.Write, n)
		for i := range ws {
			ws[i] = &repldspb.Write{Path: fmt.Sprintf("/t/%d", i), Data: mib}
		}
		return ws
	}
	if got := planBatches(tree(60)); len(got) != 1 || len(got[0]) != 60 {
		t.Errorf("planBatches(60 x 1 MiB) = %d batches, want 1 of 60 writes", len(got))
	}
	got := planBatches(tree(70))
	total := 0
	for i, b := range got {
		size := 0
		for _, w := range b {
			size += len(w.Data)
		}
		if size > splitBatchBytes {
			t.Errorf("planBatches(70 x 1 MiB): batch %d holds %d bytes, more than %d", i, size, splitBatchBytes)
		}
		total += len(b)
	}
	if total != 70 || len(got) < 70/(splitBatchBytes>>20) {
		t.Errorf("planBatches(70 x 1 MiB) = %d writes in %d batches, want 70 in batches of at most %d MiB", total, len(got), splitBatchBytes>>20)
	}
}

// TestStoreBatches: every batch reaches the server and is marked; when one
// fails, storeBatches returns the server's error, never marks that batch,
// and every batch it marked is really stored.
func TestStoreBatches(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	client := c.Client(0)
	ctx := context.Background()
	batch := func(dir string, n int) []*repldspb.Write {
		var ws []*repldspb.Write
		for i := range n {
			ws = append(ws, &repldspb.Write{Path: fmt.Sprintf("%s/%d", dir, i), Data: []byte(dir)})
		}
		return ws
	}
	stored := func(dir string) bool {
		_, err := client.Get(ctx, &repldspb.GetRequest{Path: dir + "/0"})
		return err == nil
	}

	var batches [][]*repldspb.Write
	for i := range 5 {
		batches = append(batches, batch(fmt.Sprintf("/ok/%d", i), 3))
	}
	marked := make([]bool, len(batches))
	if err := storeBatches(ctx, client, batches, marked); err != nil {
		t.Fatalf("storeBatches(5 batches) = %v", err)
	}
	for i := range batches {
		if !marked[i] || !stored(fmt.Sprintf("/ok/%d", i)) {
			t.Errorf("batch %d: marked %v, stored %v; want both", i, marked[i], stored(fmt.Sprintf("/ok/%d", i)))
		}
	}

	// /leaf is a leaf: a batch writing under it conflicts.
	if _, err := client.Store(ctx, &repldspb.StoreRequest{Writes: []*repldspb.Write{{Path: "/leaf", Data: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	// The conflicting batch goes last: with batchesInFlight (2) at once, it
	// is sent once three of the four before it were acknowledged, and at
	// most the fourth can be cut short by its failure.
	batches = [][]*repldspb.Write{batch("/b/0", 2), batch("/b/1", 2), batch("/b/2", 2), batch("/b/3", 2), batch("/leaf", 2)}
	marked = make([]bool, len(batches))
	err := storeBatches(ctx, client, batches, marked)
	if status.Code(err) != codes.FailedPrecondition && status.Code(err) != codes.InvalidArgument {
		t.Fatalf("storeBatches(with a conflicting batch) = %v, want the server's conflict error", err)
	}
	if marked[4] || stored("/leaf") {
		t.Errorf("conflicting batch: marked %v, stored %v; want neither", marked[4], stored("/leaf"))
	}
	if n := countTrue(marked[:4]); n < 3 {
		t.Errorf("%d of the 4 batches before the failing one marked, want at least 3", n)
	}
	for i, m := range marked {
		if m && !stored(fmt.Sprintf("/b/%d", i)) {
			t.Errorf("batch %d marked but not stored", i)
		}
	}
}

// TestReadFile: readFile returns what os.ReadFile does, for sizes around
// its buffer and many times larger, for a file larger than its size says,
// and refuses a symlink.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	buf := make([]byte, 4096)
	for _, n := range []int{0, 1, 4095, 4096, 4097, 3*4096 + 5, 16 * 4096, 40*4096 + 123} {
		p := filepath.Join(dir, fmt.Sprint(n))
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i * 7)
		}
		if err := os.WriteFile(p, want, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readFile(p, buf)
		if err != nil || !bytes.Equal(got, want) || got == nil {
			t.Errorf("readFile(%d bytes) = %d bytes (nil %v), %v; want the file's content", n, len(got), got == nil, err)
		}
	}
	// Files of /proc say they are empty: the slice sized by fstat grows.
	if want, err := os.ReadFile("/proc/self/cmdline"); err == nil && len(want) > 8 {
		got, err := readFile("/proc/self/cmdline", make([]byte, 8))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("readFile(/proc/self/cmdline) = %q, %v; want %q", got, err, want)
		}
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "1"), link); err != nil {
		t.Fatal(err)
	}
	if _, err := readFile(link, buf); err == nil || !strings.Contains(err.Error(), link) {
		t.Errorf("readFile(symlink) = %v, want an error naming it", err)
	}
}
