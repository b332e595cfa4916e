package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"

	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/store"
)

// Verification is the result of Verify, recorded as JOB/ID/verify.json by
// WriteVerification and attached to the manifest by List.
type Verification struct {
	// Time is when the verification ran.
	Time time.Time `json:"time"`
	// OK tells whether every check passed; Error says what failed if not.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Root is true when the content root was recomputed (the data was
	// readable) — whether or not it matched.
	Root bool `json:"root"`
	// Nodes is the number of live nodes of the rebuilt state when Root is
	// true, else 0.
	Nodes uint64 `json:"nodes"`
}

// Verify checks a chain (Chain, ChainAt, Latest): that every file of every
// backup in it exists with its manifest's size and SHA-256, and, where the
// data is readable (unencrypted, or ids given), that the state it rebuilds
// to has the content root of the chain's last manifest. It reads every
// file once.
//
// A failed check is not an error: Verify returns a Verification with OK
// false and the failure in Error (a missing file, a checksum mismatch
// naming the file, a root mismatch). The error return is for failing to do
// the work: ctx ended, the target failed, an invalid chain, or
// identities given that match none of an encrypted backup's recipients
// (ErrNoIdentity: that says nothing about the backup; verify without
// identities to check its files).
func Verify(ctx context.Context, t target.Target, chain []Manifest, ids []age.Identity) (Verification, error) {
	v := Verification{Time: time.Now().UTC()}
	if err := checkChain(chain); err != nil {
		return v, err
	}
	readable := true
	for i := range chain {
		if chain[i].Encrypted && len(ids) == 0 {
			readable = false
		}
	}
	var err error
	if readable {
		err = verifyRoot(ctx, t, chain, ids, &v)
	} else {
		err = verifyFiles(ctx, t, chain)
	}
	switch {
	case err == nil:
		v.OK = true
	case errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound):
		v.Error = err.Error()
	default:
		return v, err
	}
	return v, nil
}

// verifyRoot rebuilds the chain's state, which checks every file, and
// compares its content root with the last manifest's.
func verifyRoot(ctx context.Context, t target.Target, chain []Manifest, ids []age.Identity, v *Verification) error {
	r := NewRoot()
	err := Rebuild(ctx, t, chain, ReadOptions{Identities: ids}, func(n store.Node) error {
		if n.Deleted {
			return nil
		}
		return r.Add(n.Path, n.Version, n.Origin, n.Seq)
	})
	if err != nil {
		return err
	}
	v.Root, v.Nodes = true, r.Len()
	last := &chain[len(chain)-1]
	if got := r.Sum(); got != last.Root {
		return fmt.Errorf("backup: %s: content root %s, manifest says %s: %w", last.Dir(), got, last.Root, ErrCorrupt)
	}
	return nil
}

// verifyFiles checks the size and checksum of every file, without
// decrypting.
func verifyFiles(ctx context.Context, t target.Target, chain []Manifest) error {
	for i := range chain {
		for _, f := range chain[i].Files {
			if err := checkFile(ctx, t, &chain[i], f); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteVerification records v as the last verification of backup m
// (JOB/ID/verify.json, replacing an earlier one). List attaches it.
func WriteVerification(ctx context.Context, t target.Target, m Manifest, v Verification) error {
	key := m.Key(verifyName)
	if err := t.Put(ctx, key, bytes.NewReader(marshalJSON(v))); err != nil {
		return fmt.Errorf("backup: store %s: %w", key, err)
	}
	return nil
}
