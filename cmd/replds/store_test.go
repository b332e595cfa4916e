package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repldspb "github.com/replds/replds/proto"
	"github.com/replds/replds/server/servertest"
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

// TestCollectWrites_Symlinks: a tree of symlinks (certbot's live/
// directory) is uploaded as cp -L copies it; loops, broken links and links
// to special files stop the upload naming the link.
func TestCollectWrites_Symlinks(t *testing.T) {
	symlink := func(t *testing.T, target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	mkfifo := func(t *testing.T, p string) {
		t.Helper()
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, root string) // makes root/tree
		noFollow bool
		want     string // the writes, or the error's text (a regexp)
		wantErr  bool
	}{
		{name: "certbot live directory", setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"archive/example.com/cert1.pem": "C1", "archive/example.com/privkey1.pem": "K1"})
			os.MkdirAll(filepath.Join(root, "tree"), 0o755)
			symlink(t, "../archive/example.com/cert1.pem", filepath.Join(root, "tree/cert.pem"))
			symlink(t, "../archive/example.com/privkey1.pem", filepath.Join(root, "tree/privkey.pem"))
			writeFiles(t, root, map[string]string{"tree/README": "r"})
		}, want: "/r/README=r /r/cert.pem=C1 /r/privkey.pem=K1"},
		{name: "symlinked directory", setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"other/a": "A", "tree/b": "B"})
			symlink(t, "../other", filepath.Join(root, "tree/sub"))
		}, want: "/r/b=B /r/sub/a=A"},
		{name: "link to an ancestor", setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"tree/d/f": "F"})
			symlink(t, "..", filepath.Join(root, "tree/d/up"))
		}, wantErr: true, want: `tree/d/up: a symlink loop \(it leads back`},
		{name: "links to each other", setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"tree/f": "F"})
			symlink(t, "b", filepath.Join(root, "tree/a"))
			symlink(t, "a", filepath.Join(root, "tree/b"))
		}, wantErr: true, want: `tree/a: a symlink loop$`},
		{name: "broken link", setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"tree/f": "F"})
			symlink(t, "nowhere", filepath.Join(root, "tree/x"))
		}, wantErr: true, want: `tree/x: a broken symlink`},
		{name: "link to a FIFO", setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"tree/f": "F"})
			mkfifo(t, filepath.Join(root, "fifo"))
			symlink(t, "../fifo", filepath.Join(root, "tree/p"))
		}, wantErr: true, want: `tree/p: a symlink to a FIFO, not a regular file`},
		{name: "FIFO", setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"tree/f": "F"})
			mkfifo(t, filepath.Join(root, "tree/p"))
		}, wantErr: true, want: `tree/p: a FIFO, not a regular file`},
		{name: "no-follow", noFollow: true, setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"tree/f": "F"})
			symlink(t, "f", filepath.Join(root, "tree/g"))
		}, wantErr: true, want: `tree/g: a symlink \(--no-follow`},
		{name: "no-follow, no links", noFollow: true, setup: func(t *testing.T, root string) {
			writeFiles(t, root, map[string]string{"tree/f": "F", "tree/d/e": "E"})
		}, want: "/r/d/e=E /r/f=F"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(t, root)
			writes, err := collectWrites(filepath.Join(root, "tree"), "/r", tc.noFollow)
			if tc.wantErr {
				if err == nil || !regexp.MustCompile(tc.want).MatchString(err.Error()) {
					t.Fatalf("collectWrites = %v, want an error matching %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range writes {
				got = append(got, w.Path+"="+string(w.Data))
			}
			slices.Sort(got)
			if strings.Join(got, " ") != tc.want {
				t.Errorf("collectWrites = %v, want %s", got, tc.want)
			}
		})
	}
}

// TestE2E_StoreSymlinkedTree stores a certbot-like live directory and says
// what it stored where.
func TestE2E_StoreSymlinkedTree(t *testing.T) {
	c := servertest.NewCluster(t, 1)
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"archive/cert1.pem": "cert", "archive/privkey1.pem": "key"})
	live := filepath.Join(root, "live")
	os.MkdirAll(live, 0o755)
	for _, name := range []string{"cert", "privkey"} {
		if err := os.Symlink("../archive/"+name+"1.pem", filepath.Join(live, name+".pem")); err != nil {
			t.Fatal(err)
		}
	}
	_, errOut, code := run(t, nil, "store", "--server="+c.Addr(0), live, "/tls/example")
	if code != 0 {
		t.Fatalf("store: exit %d: %s", code, errOut)
	}
	if want := "stored 2 files (7 B) under /tls/example on " + c.Addr(0) + "\n"; errOut != want {
		t.Errorf("store said %q, want %q", errOut, want)
	}
	if got := mustRun(t, "cat", "--server="+c.Addr(0), "/tls/example/privkey.pem"); got != "key" {
		t.Errorf("privkey.pem = %q", got)
	}
	_, errOut, code = run(t, strings.NewReader("x"), "store", "-q", "--server="+c.Addr(0), "-", "/one")
	if code != 0 || errOut != "" {
		t.Errorf("store -q: exit %d, said %q; want silence", code, errOut)
	}
	_, errOut, code = run(t, nil, "store", "--no-follow", "--server="+c.Addr(0), live, "/tls/other")
	checkFailure(t, errOut, code, exitFailure, "cert.pem: a symlink (--no-follow uploads none)")
}
