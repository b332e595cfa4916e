package boltcompact_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/replds/replds/boltcompact"
)

var canary = []byte("CANARY-0c4e9b71-gone-after-swap")

func fileHas(t *testing.T, path string, b []byte) bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(raw, b)
}

// openWithCanary returns a database at a new path holding nested buckets
// with a sequence, and the canary, deleted.
func openWithCanary(t *testing.T) (*bolt.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("top"))
		if err != nil {
			return err
		}
		if err := b.SetSequence(42); err != nil {
			return err
		}
		nb, err := b.CreateBucket([]byte("nested"))
		if err != nil {
			return err
		}
		if err := nb.Put([]byte("k"), []byte("v")); err != nil {
			return err
		}
		return b.Put([]byte("secret"), bytes.Repeat(canary, 100))
	})
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("top")).Delete([]byte("secret")) })
	}
	if err != nil {
		t.Fatal(err)
	}
	if !fileHas(t, path, canary) {
		t.Fatalf("deleted canary not in the file: nothing to test")
	}
	return db, path
}

func TestSwap(t *testing.T) {
	src, path := openWithCanary(t)
	db, res, err := boltcompact.Swap(src, path, boltcompact.Options{})
	if err != nil {
		t.Fatalf("Swap() = %v", err)
	}
	defer db.Close()
	if fileHas(t, path, canary) {
		t.Errorf("canary in the file after Swap")
	}
	if res.Before == 0 || res.After == 0 {
		t.Errorf("Swap() sizes = %+v, want both set", res)
	}
	// Content and sequences survive, and the new database takes writes.
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("top"))
		if b == nil || b.Sequence() != 42 {
			return errors.New("bucket top or its sequence lost")
		}
		if v := b.Bucket([]byte("nested")).Get([]byte("k")); string(v) != "v" {
			return errors.New("nested value lost")
		}
		return b.Put([]byte("after"), []byte("x"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(boltcompact.TempPath(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("copy left beside the file: stat = %v", err)
	}
}

func TestSwap_FailureBeforeRename(t *testing.T) {
	for _, step := range []boltcompact.Step{boltcompact.StepCopied, boltcompact.StepSynced} {
		t.Run(step.String(), func(t *testing.T) {
			src, path := openWithCanary(t)
			injected := errors.New("injected")
			db, _, err := boltcompact.Swap(src, path, boltcompact.Options{Hook: func(s boltcompact.Step) error {
				if s == step {
					return injected
				}
				return nil
			}})
			if db != nil || !errors.Is(err, injected) {
				t.Fatalf("Swap() = %v, %v; want nil, %v", db, err, injected)
			}
			if _, err := os.Stat(boltcompact.TempPath(path)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("copy left beside the file: stat = %v", err)
			}
			// src is still the file at path.
			if err := src.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("top")).Put([]byte("after"), []byte("x")) }); err != nil {
				t.Fatal(err)
			}
		})
	}
}
