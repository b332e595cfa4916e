// Package targettest is the conformance suite every backup target passes.
package targettest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/replds/replds/backup/target"
)

// Opener returns an empty target for one test.
type Opener func(t *testing.T) target.Target

// Run runs the conformance suite against the targets open returns.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, target.Target)
	}{
		{"PutGetStat", testPutGetStat},
		{"Ranges", testRanges},
		{"Missing", testMissing},
		{"PutIfAbsent", testPutIfAbsent},
		{"List", testList},
		{"FailedPutLeavesNothing", testFailedPut},
		{"Large", testLarge},
		{"InvalidKeys", testInvalidKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func put(t *testing.T, tg target.Target, key, data string) {
	t.Helper()
	if err := tg.Put(context.Background(), key, strings.NewReader(data)); err != nil {
		t.Fatalf("Put(%s) error: %v", key, err)
	}
}

func get(t *testing.T, tg target.Target, key string, off, n int64) string {
	t.Helper()
	rc, err := tg.Get(context.Background(), key, off, n)
	if err != nil {
		t.Fatalf("Get(%s, %d, %d) error: %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%s) read: %v", key, err)
	}
	return string(b)
}

func testPutGetStat(t *testing.T, tg target.Target) {
	ctx := context.Background()
	put(t, tg, "job/1/manifest.json", "hello")
	if got := get(t, tg, "job/1/manifest.json", 0, -1); got != "hello" {
		t.Errorf("Get = %q, want hello", got)
	}
	put(t, tg, "job/1/manifest.json", "replaced")
	if got := get(t, tg, "job/1/manifest.json", 0, -1); got != "replaced" {
		t.Errorf("Get after a second Put = %q, want replaced", got)
	}
	info, err := tg.Stat(ctx, "job/1/manifest.json")
	if err != nil || info.Size != 8 || info.Key != "job/1/manifest.json" || info.ModTime.IsZero() {
		t.Errorf("Stat = %+v, %v; want size 8, its key and a time", info, err)
	}
	put(t, tg, "empty", "")
	if got := get(t, tg, "empty", 0, -1); got != "" {
		t.Errorf("Get(empty) = %q", got)
	}
	if info, err := tg.Stat(ctx, "empty"); err != nil || info.Size != 0 {
		t.Errorf("Stat(empty) = %+v, %v", info, err)
	}
	if tg.String() == "" {
		t.Errorf("String() is empty")
	}
}

func testRanges(t *testing.T, tg target.Target) {
	put(t, tg, "r", "0123456789")
	for _, tt := range []struct {
		off, n int64
		want   string
	}{
		{0, -1, "0123456789"}, {3, -1, "3456789"}, {0, 4, "0123"}, {4, 3, "456"}, {8, 10, "89"}, {2, 0, ""},
	} {
		if got := get(t, tg, "r", tt.off, tt.n); got != tt.want {
			t.Errorf("Get(r, %d, %d) = %q, want %q", tt.off, tt.n, got, tt.want)
		}
	}
}

func testMissing(t *testing.T, tg target.Target) {
	ctx := context.Background()
	if _, err := tg.Get(ctx, "nope/x", 0, -1); !errors.Is(err, target.ErrNotExist) {
		t.Errorf("Get(missing) = %v, want ErrNotExist", err)
	}
	if _, err := tg.Stat(ctx, "nope/x"); !errors.Is(err, target.ErrNotExist) {
		t.Errorf("Stat(missing) = %v, want ErrNotExist", err)
	}
	if err := tg.Delete(ctx, "nope/x"); err != nil {
		t.Errorf("Delete(missing) = %v, want nil", err)
	}
	put(t, tg, "a/b", "x")
	if err := tg.Delete(ctx, "a/b"); err != nil {
		t.Fatalf("Delete error: %v", err)
	}
	if _, err := tg.Stat(ctx, "a/b"); !errors.Is(err, target.ErrNotExist) {
		t.Errorf("Stat after Delete = %v, want ErrNotExist", err)
	}
	if _, err := tg.Stat(ctx, "a"); !errors.Is(err, target.ErrNotExist) {
		t.Errorf("Stat(a directory-like prefix) = %v, want ErrNotExist", err)
	}
}

func testPutIfAbsent(t *testing.T, tg target.Target) {
	ctx := context.Background()
	if err := tg.PutIfAbsent(ctx, "lock", strings.NewReader("first")); err != nil {
		t.Fatalf("PutIfAbsent(new) error: %v", err)
	}
	if err := tg.PutIfAbsent(ctx, "lock", strings.NewReader("second")); !errors.Is(err, target.ErrExists) {
		t.Errorf("PutIfAbsent(existing) = %v, want ErrExists", err)
	}
	if got := get(t, tg, "lock", 0, -1); got != "first" {
		t.Errorf("after a refused PutIfAbsent, Get = %q, want first", got)
	}
	// Of concurrent calls for one key, exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := tg.PutIfAbsent(ctx, "race", strings.NewReader(fmt.Sprint(i)))
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, target.ErrExists) {
				t.Errorf("PutIfAbsent(race) = %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d concurrent PutIfAbsent calls won, want 1", wins)
	}
}

func list(t *testing.T, tg target.Target, prefix string) []string {
	t.Helper()
	var keys []string
	err := tg.List(context.Background(), prefix, func(in target.Info) error {
		keys = append(keys, in.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q) error: %v", prefix, err)
	}
	return keys
}

func testList(t *testing.T, tg target.Target) {
	for _, k := range []string{"j/2/m", "j/10/m", "j/1/m", "j/1/a", "j/1.x", "jx/1", "k"} {
		put(t, tg, k, k)
	}
	for prefix, want := range map[string]string{
		"":      "j/1.x j/1/a j/1/m j/10/m j/2/m jx/1 k",
		"j/":    "j/1.x j/1/a j/1/m j/10/m j/2/m",
		"j/1":   "j/1.x j/1/a j/1/m j/10/m",
		"j/1/":  "j/1/a j/1/m",
		"j":     "j/1.x j/1/a j/1/m j/10/m j/2/m jx/1",
		"none/": "",
	} {
		if got := strings.Join(list(t, tg, prefix), " "); got != want {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := tg.List(context.Background(), "", func(target.Info) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("List with fn failing: %v after %d calls, want stop after 1", err, n)
	}
	// More keys than one page of a listing API.
	for i := range 1005 {
		put(t, tg, fmt.Sprintf("many/%04d", i), "")
	}
	if got := list(t, tg, "many/"); len(got) != 1005 || got[0] != "many/0000" || got[1004] != "many/1004" {
		t.Errorf("List(many/) = %d keys, want 1005 in order", len(got))
	}
}

// failingReader yields n bytes, then fails.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("source failed")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

func testFailedPut(t *testing.T, tg target.Target) {
	ctx := context.Background()
	for _, size := range []int{10, 20 << 20} { // one request, and a multipart upload
		key := fmt.Sprintf("fail/%d", size)
		if err := tg.Put(ctx, key, &failingReader{n: size}); err == nil {
			t.Fatalf("Put with a failing reader of %d bytes succeeded", size)
		}
		if _, err := tg.Stat(ctx, key); !errors.Is(err, target.ErrNotExist) {
			t.Errorf("after a failed Put of %d bytes, Stat = %v, want ErrNotExist", size, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := tg.Put(cctx, "cancelled", strings.NewReader("x")); err == nil {
		t.Errorf("Put with a cancelled context succeeded")
	}
	if got := list(t, tg, ""); len(got) != 0 {
		t.Errorf("after failed puts, List = %q, want nothing", got)
	}
}

func testLarge(t *testing.T, tg target.Target) {
	data := make([]byte, 20<<20+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	if err := tg.Put(context.Background(), "big", bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(20 MiB) error: %v", err)
	}
	if got := get(t, tg, "big", 0, -1); got != string(data) {
		t.Errorf("Get(big) = %d bytes, differs from the %d put", len(got), len(data))
	}
	if got := get(t, tg, "big", 9<<20, 100); got != string(data[9<<20:9<<20+100]) {
		t.Errorf("Get(big, 9 MiB, 100) differs")
	}
}

func testInvalidKeys(t *testing.T, tg target.Target) {
	ctx := context.Background()
	for _, k := range []string{"", "/a", "a/", "a//b", "a/../b", "./a", "a\x00b", `a\b`} {
		if err := tg.Put(ctx, k, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded, want an error", k)
		}
		if _, err := tg.Stat(ctx, k); err == nil || errors.Is(err, target.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want an invalid key error", k, err)
		}
	}
}
