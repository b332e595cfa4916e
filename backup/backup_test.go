package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/replds/replds/backup"
	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/backup/target/targettest"
	"github.com/replds/replds/store"
)

// chainFixture is a full and two incrementals with overwrites and
// tombstones, and the state after each.
type chainFixture struct {
	full, inc1, inc2 []store.Node
	states           []state // after full, inc1, inc2
}

func newChainFixture() chainFixture {
	var f chainFixture
	for i := range 40 {
		f.full = append(f.full, node(fmt.Sprintf("/a/%03d", i), 10, strings.Repeat(fmt.Sprint(i), 20)))
	}
	f.full = append(f.full, node("/b/x", 10, "bx"), tomb("/b/y", 10), node("/c", 10, ""))
	f.inc1 = []store.Node{
		node("/a/005", 20, "five, rewritten"),
		tomb("/a/006", 20),
		node("/b/y", 20, "y is back"),
		node("/a/999", 20, "new"),
		tomb("/c", 20),
	}
	f.inc2 = []store.Node{
		node("/a/006", 30, "six again"),
		node("/a/005", 30, "five, third"),
		tomb("/b/x", 30),
		node("/0", 30, "first path"),
	}
	s := state{}
	for _, nodes := range [][]store.Node{f.full, f.inc1, f.inc2} {
		s.apply(nodes)
		f.states = append(f.states, s.clone())
	}
	return f
}

// writeChain writes the fixture's three backups to tg.
func (f chainFixture) writeChain(t testing.TB, tg target.Target, opts backup.WriterOptions) []backup.Manifest {
	t.Helper()
	opts.Kind, opts.Now = backup.KindFull, func() time.Time { return t0 }
	full := write(t, tg, opts, f.full, f.states[0].root(t))
	opts.Kind, opts.Parent, opts.Now = backup.KindIncremental, full.ID, func() time.Time { return t0.Add(time.Hour) }
	inc1 := write(t, tg, opts, f.inc1, f.states[1].root(t))
	opts.Parent, opts.Now = inc1.ID, func() time.Time { return t0.Add(2 * time.Hour) }
	inc2 := write(t, tg, opts, f.inc2, f.states[2].root(t))
	return []backup.Manifest{full, inc1, inc2}
}

func TestBackup_RoundTrip(t *testing.T) {
	t.Run("file", func(t *testing.T) { testRoundTrip(t, newDir(t)) })
	t.Run("s3", func(t *testing.T) {
		url := targettest.S3URL(t)
		tg, err := target.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		testRoundTrip(t, tg)
	})
}

func testRoundTrip(t *testing.T, tg target.Target) {
	ctx := context.Background()
	f := newChainFixture()
	written := f.writeChain(t, tg, backup.WriterOptions{FileBytes: 300, Runner: "s1", Exclude: []string{"/_replds/status"}})

	full := written[0]
	if len(full.Files) < 3 {
		t.Errorf("full has %d files, want several at FileBytes 300", len(full.Files))
	}
	var stored, nodes uint64
	for _, fl := range full.Files {
		stored += uint64(fl.Size)
		nodes += fl.Nodes
	}
	if full.Nodes != uint64(len(f.full)) || nodes != full.Nodes || full.Tombstones != 1 || full.Stored != stored || full.Encrypted {
		t.Errorf("full manifest: nodes %d (files %d), tombstones %d, stored %d (files %d), encrypted %v; want %d nodes, 1 tombstone",
			full.Nodes, nodes, full.Tombstones, full.Stored, stored, full.Encrypted, len(f.full))
	}
	var data uint64
	for _, n := range f.full {
		data += uint64(len(n.Data))
	}
	if full.Bytes != data {
		t.Errorf("full manifest: bytes %d, want %d", full.Bytes, data)
	}

	all, err := backup.List(ctx, tg, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("List = %d backups, want 3", len(all))
	}
	for i, m := range all {
		if m.ID != written[i].ID || m.Root != written[i].Root || m.Kind != written[i].Kind || m.Runner != "s1" || !slices.Equal(m.Exclude, []string{"/_replds/status"}) {
			t.Errorf("List[%d] = %+v, want %+v", i, m, written[i])
		}
	}
	if v, err := backup.ToVector(all[2].Vector); err != nil || v[7] != uint64(len(f.inc2)) {
		t.Errorf("ToVector(%v) = %v, %v", all[2].Vector, v, err)
	}

	for i, want := range f.states {
		chain, err := backup.Chain(all, written[i].ID)
		if err != nil || len(chain) != i+1 {
			t.Fatalf("Chain(%s) = %d backups, %v; want %d", written[i].ID, len(chain), err, i+1)
		}
		got, err := rebuild(t, tg, chain, backup.ReadOptions{})
		if err != nil {
			t.Fatalf("Rebuild(chain to %d): %v", i, err)
		}
		equalState(t, got, want)
	}

	chain, _ := backup.Latest(all)
	v, err := backup.Verify(ctx, tg, chain, nil)
	if err != nil || !v.OK || !v.Root {
		t.Fatalf("Verify = %+v, %v; want OK with the root checked", v, err)
	}
	live := 0
	for _, n := range f.states[2] {
		if !n.Deleted {
			live++
		}
	}
	if v.Nodes != uint64(live) {
		t.Errorf("Verify nodes = %d, want %d live", v.Nodes, live)
	}
	if err := backup.WriteVerification(ctx, tg, chain[2], v); err != nil {
		t.Fatal(err)
	}
	all, err = backup.List(ctx, tg, "")
	if err != nil {
		t.Fatal(err)
	}
	if all[2].Verified == nil || !all[2].Verified.OK || all[1].Verified != nil {
		t.Errorf("List after WriteVerification: verified = %v, %v; want the last one's only", all[2].Verified, all[1].Verified)
	}
}

func TestRebuild_Prefix(t *testing.T) {
	tg := newDir(t)
	f := newChainFixture()
	f.writeChain(t, tg, backup.WriterOptions{})
	all, err := backup.List(context.Background(), tg, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := backup.Latest(all)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"/b", "/a/005", "/a", "/zzz", "/"} {
		want := state{}
		for p, n := range f.states[2] {
			if prefix == "/" || p == prefix || strings.HasPrefix(p, prefix+"/") {
				want[p] = n
			}
		}
		got, err := rebuild(t, tg, chain, backup.ReadOptions{Prefix: prefix})
		if err != nil {
			t.Fatalf("Rebuild(prefix %s): %v", prefix, err)
		}
		equalState(t, got, want)
	}
	if _, err := rebuild(t, tg, chain, backup.ReadOptions{Prefix: "a/"}); err == nil {
		t.Error("Rebuild(prefix a/) succeeded, want an invalid prefix error")
	}
}

func TestBackup_Encryption(t *testing.T) {
	ctx := context.Background()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := age.GenerateX25519Identity()
	recipient := id.Recipient().String()
	tg := newDir(t)
	f := newChainFixture()
	written := f.writeChain(t, tg, backup.WriterOptions{Recipients: []string{recipient}, FileBytes: 500})

	fp := backup.Fingerprint(recipient)
	for _, m := range written {
		if !m.Encrypted || !slices.Equal(m.Recipients, []string{fp}) {
			t.Errorf("%s: encrypted %v, recipients %v; want [%s]", m.ID, m.Encrypted, m.Recipients, fp)
		}
		for _, fl := range m.Files {
			if !strings.HasSuffix(fl.Name, ".zst.age") {
				t.Errorf("file %s, want .zst.age", fl.Name)
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimPrefix(tg.String(), "file://"), written[1].Key(written[1].Files[0].Name)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "rewritten") || !strings.HasPrefix(string(raw), "age-encryption.org/v1") {
		t.Error("an encrypted node file is not an age file, or shows its data")
	}

	all, err := backup.List(ctx, tg, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := backup.Latest(all)
	got, err := rebuild(t, tg, chain, backup.ReadOptions{Identities: []age.Identity{other, id}})
	if err != nil {
		t.Fatalf("Rebuild with the identity: %v", err)
	}
	equalState(t, got, f.states[2])

	_, err = rebuild(t, tg, chain, backup.ReadOptions{})
	wantErr(t, "Rebuild without identity", err, backup.ErrNoIdentity)
	if !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "no identity was given") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Rebuild without identity: %q, want one line naming %s", err, fp)
	}
	_, err = rebuild(t, tg, chain, backup.ReadOptions{Identities: []age.Identity{other}})
	wantErr(t, "Rebuild with another identity", err, backup.ErrNoIdentity)
	if !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "none of the 1 identities") {
		t.Errorf("Rebuild with another identity: %q, want it to name %s and say none matched", err, fp)
	}

	// Without the key, Verify still checks every file.
	v, err := backup.Verify(ctx, tg, chain, nil)
	if err != nil || !v.OK || v.Root {
		t.Errorf("Verify without identity = %+v, %v; want OK without root", v, err)
	}
	v, err = backup.Verify(ctx, tg, chain, []age.Identity{id})
	if err != nil || !v.OK || !v.Root {
		t.Errorf("Verify with identity = %+v, %v; want OK with root", v, err)
	}
	_, err = backup.Verify(ctx, tg, chain, []age.Identity{other})
	wantErr(t, "Verify with another identity", err, backup.ErrNoIdentity)

	// The identity file the CLI reads.
	path := filepath.Join(t.TempDir(), "key.txt")
	os.WriteFile(path, []byte("# created: now\n"+id.String()+"\n"), 0o600)
	ids, err := backup.ParseIdentityFile(path)
	if err != nil || len(ids) != 1 {
		t.Fatalf("ParseIdentityFile = %v, %v", ids, err)
	}
	if _, err := rebuild(t, tg, chain, backup.ReadOptions{Identities: ids}); err != nil {
		t.Errorf("Rebuild with the parsed identity file: %v", err)
	}
	secret := strings.Replace(id.String(), "AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1QQ", 1)
	os.WriteFile(path, []byte(secret+"\n"), 0o600)
	if _, err := backup.ParseIdentityFile(path); err == nil || strings.Contains(err.Error(), secret[16:]) || !strings.Contains(err.Error(), path) {
		t.Errorf("ParseIdentityFile(bad key) = %v, want an error naming the file, not the key", err)
	}
}

func TestNewWriter_Invalid(t *testing.T) {
	tg := newDir(t)
	id, _ := age.GenerateX25519Identity()
	good := backup.WriterOptions{Job: "j", Kind: backup.KindFull, Prefix: "/"}
	tests := []struct {
		name string
		edit func(*backup.WriterOptions)
		want string
	}{
		{"job", func(o *backup.WriterOptions) { o.Job = "a/b" }, `job name "a/b"`},
		{"kind", func(o *backup.WriterOptions) { o.Kind = "diff" }, `kind "diff"`},
		{"full with parent", func(o *backup.WriterOptions) { o.Parent = backup.NewID(t0) }, "no parent"},
		{"incremental without parent", func(o *backup.WriterOptions) { o.Kind = backup.KindIncremental }, "incremental parent"},
		{"prefix", func(o *backup.WriterOptions) { o.Prefix = "a" }, "prefix"},
		{"exclude", func(o *backup.WriterOptions) { o.Exclude = []string{"/x/"} }, "exclude"},
		{"id", func(o *backup.WriterOptions) { o.ID = "yesterday" }, `backup id "yesterday"`},
		{"recipient", func(o *backup.WriterOptions) { o.Recipients = []string{id.Recipient().String(), "age1nope"} }, `recipient 2 "age1nope"`},
		{"secret key as recipient", func(o *backup.WriterOptions) { o.Recipients = []string{id.String()} }, "recipient 1 is a secret key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := good
			tt.edit(&opts)
			_, err := backup.NewWriter(context.Background(), tg, opts)
			wantErr(t, "NewWriter", err, backup.ErrInvalid)
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), id.String()) {
				t.Errorf("NewWriter error = %q, want it to contain %q (and no secret)", err, tt.want)
			}
		})
	}
	if len(keys(t, tg)) != 0 {
		t.Errorf("invalid options left objects: %v", keys(t, tg))
	}
}

func TestWriter_RefusesBadNodes(t *testing.T) {
	ctx := context.Background()
	tg := newDir(t)
	w, err := backup.NewWriter(ctx, tg, backup.WriterOptions{Job: "j", Kind: backup.KindFull, Prefix: "/p", Exclude: []string{"/p/skip"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(node("/p/b", 1, "b")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []store.Node{node("/p/a", 1, "a"), node("/p/b", 1, "b"), node("/q", 1, "q"), node("/p/skip/x", 1, "x"), node("p/c", 1, "")} {
		wantErr(t, fmt.Sprintf("Add(%s)", n.Path), w.Add(n), backup.ErrInvalid)
	}
	// Refused input changes nothing: the backup goes on.
	if err := w.Add(node("/p/c", 1, "c")); err != nil {
		t.Fatal(err)
	}
	s := state{}
	s.apply([]store.Node{node("/p/b", 1, "b"), node("/p/c", 1, "c")})
	m, err := w.Commit(ctx, nil, s.root(t), "")
	if err != nil || m.Nodes != 2 {
		t.Fatalf("Commit = %+v, %v; want 2 nodes", m, err)
	}
	if err := w.Add(node("/p/d", 1, "d")); err == nil {
		t.Error("Add after Commit succeeded")
	}
	if err := w.Abort(ctx); err == nil || len(keys(t, tg)) != 2 {
		t.Errorf("Abort after Commit = %v, objects %v; want a refusal that keeps the backup", err, keys(t, tg))
	}
}

func TestRebuild_FullOutOfOrder(t *testing.T) {
	ctx := context.Background()
	tg := newDir(t)
	// An incremental may hold any order; dressed up as a full, Rebuild
	// must refuse it.
	parent := backup.NewID(t0)
	m := write(t, tg, backup.WriterOptions{Kind: backup.KindIncremental, Parent: parent},
		[]store.Node{node("/b", 1, "b"), node("/a", 1, "a")}, state{}.root(t))
	m.Kind, m.Parent = backup.KindFull, ""
	got, err := rebuild(t, tg, []backup.Manifest{m}, backup.ReadOptions{})
	wantErr(t, "Rebuild of an unordered full", err, backup.ErrCorrupt)
	if !strings.Contains(err.Error(), "path order") || len(got) != 1 {
		t.Errorf("Rebuild = %d nodes, %v; want an order error after the first node", len(got), err)
	}
	v, err := backup.Verify(ctx, tg, []backup.Manifest{m}, nil)
	if err != nil || v.OK {
		t.Errorf("Verify of an unordered full = %+v, %v; want not OK", v, err)
	}
}

// nodeFile returns the path on disk of a backup's file in a Dir target.
func nodeFile(tg *target.Dir, m backup.Manifest, i int) string {
	return filepath.Join(strings.TrimPrefix(tg.String(), "file://"), filepath.FromSlash(m.Key(m.Files[i].Name)))
}

func flipByte(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off%len(b)] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerify_Corruption(t *testing.T) {
	ctx := context.Background()
	id, _ := age.GenerateX25519Identity()
	for _, tc := range []struct {
		name string
		opts backup.WriterOptions
		ids  []age.Identity
	}{
		{"plain", backup.WriterOptions{FileBytes: 200}, nil},
		{"encrypted, no key", backup.WriterOptions{FileBytes: 200, Recipients: []string{id.Recipient().String()}}, nil},
		{"encrypted, key", backup.WriterOptions{FileBytes: 200, Recipients: []string{id.Recipient().String()}}, []age.Identity{id}},
	} {
		for _, where := range []int{0, 30, -1} {
			t.Run(fmt.Sprintf("%s/byte %d", tc.name, where), func(t *testing.T) {
				tg := newDir(t)
				chain := newChainFixture().writeChain(t, tg, tc.opts)
				path := nodeFile(tg, chain[0], 1)
				fi, _ := os.Stat(path)
				off := where
				if off < 0 {
					off = int(fi.Size()) - 1
				}
				flipByte(t, path, off)
				v, err := backup.Verify(ctx, tg, chain, tc.ids)
				want := chain[0].Key(chain[0].Files[1].Name) + ": checksum mismatch"
				if err != nil || v.OK || !strings.Contains(v.Error, want) {
					t.Errorf("Verify = %+v, %v; want not OK with %q", v, err, want)
				}
				if tc.ids != nil || tc.opts.Recipients == nil {
					_, err := rebuild(t, tg, chain, backup.ReadOptions{Identities: tc.ids})
					wantErr(t, "Rebuild", err, backup.ErrCorrupt)
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Rebuild error = %q, want %q", err, want)
					}
				}
			})
		}
	}
	t.Run("truncated file", func(t *testing.T) {
		tg := newDir(t)
		chain := newChainFixture().writeChain(t, tg, backup.WriterOptions{})
		if err := os.Truncate(nodeFile(tg, chain[2], 0), 10); err != nil {
			t.Fatal(err)
		}
		v, err := backup.Verify(ctx, tg, chain, nil)
		want := chain[2].Files[0].Name + ": size 10, manifest says"
		if err != nil || v.OK || !strings.Contains(v.Error, want) {
			t.Errorf("Verify = %+v, %v; want not OK with %q", v, err, want)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		tg := newDir(t)
		chain := newChainFixture().writeChain(t, tg, backup.WriterOptions{})
		tg.Delete(ctx, chain[1].Key(chain[1].Files[0].Name))
		v, err := backup.Verify(ctx, tg, chain, nil)
		if err != nil || v.OK || !strings.Contains(v.Error, chain[1].Files[0].Name+": missing") {
			t.Errorf("Verify = %+v, %v; want not OK naming the missing file", v, err)
		}
	})
}

func TestVerify_RootMismatch(t *testing.T) {
	ctx := context.Background()
	tg := newDir(t)
	f := newChainFixture()
	wrong := state{}
	wrong.apply(f.full[1:])
	m := write(t, tg, backup.WriterOptions{Kind: backup.KindFull}, f.full, wrong.root(t))
	v, err := backup.Verify(ctx, tg, []backup.Manifest{m}, nil)
	if err != nil || v.OK || !v.Root || !strings.Contains(v.Error, "content root") {
		t.Errorf("Verify = %+v, %v; want a root mismatch", v, err)
	}
}

func TestWriter_Abort(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{0, 1, 10, 35} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			tg := newDir(t)
			w, err := backup.NewWriter(ctx, tg, backup.WriterOptions{Job: "j", Kind: backup.KindFull, Prefix: "/", FileBytes: 200})
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if err := w.Add(node(fmt.Sprintf("/n%03d", i), 1, "0123456789012345678901234567890123456789")); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Abort(ctx); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			if k := keys(t, tg); len(k) != 0 {
				t.Errorf("after Abort: %v, want nothing", k)
			}
			if _, err := w.Commit(ctx, nil, state{}.root(t), ""); err == nil {
				t.Error("Commit after Abort succeeded")
			}
		})
	}
}

func TestWriter_EmptyFull(t *testing.T) {
	ctx := context.Background()
	tg := newDir(t)
	m := write(t, tg, backup.WriterOptions{Kind: backup.KindFull, Prefix: "/nothing"}, nil, state{}.root(t))
	if len(m.Files) != 0 || m.Nodes != 0 {
		t.Errorf("empty full: %+v, want no files", m)
	}
	all, err := backup.List(ctx, tg, "")
	if err != nil || len(all) != 1 {
		t.Fatalf("List = %v, %v", all, err)
	}
	got, err := rebuild(t, tg, all, backup.ReadOptions{})
	if err != nil || len(got) != 0 {
		t.Errorf("Rebuild = %v, %v; want nothing", got, err)
	}
	if v, err := backup.Verify(ctx, tg, all, nil); err != nil || !v.OK || !v.Root {
		t.Errorf("Verify = %+v, %v", v, err)
	}
}

func TestWriter_Exists(t *testing.T) {
	ctx := context.Background()
	tg := newDir(t)
	opts := backup.WriterOptions{Job: "j", ID: backup.NewID(t0), Kind: backup.KindFull, Prefix: "/"}
	w1, err := backup.NewWriter(ctx, tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := backup.NewWriter(ctx, tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	root := state{}.root(t)
	if _, err := w1.Commit(ctx, nil, root, "first"); err != nil {
		t.Fatal(err)
	}
	_, err = w2.Commit(ctx, nil, root, "second")
	wantErr(t, "second Commit", err, backup.ErrExists)
	if err := w2.Abort(ctx); err == nil {
		t.Error("Abort after a lost commit race deleted nothing but said nothing either; want it to say the backup exists")
	}
	_, err = backup.NewWriter(ctx, tg, opts)
	wantErr(t, "NewWriter on a used ID", err, backup.ErrExists)
	all, _ := backup.List(ctx, tg, "j")
	if len(all) != 1 || all[0].Note != "first" {
		t.Errorf("List = %+v, want the first backup", all)
	}
}

func TestChain(t *testing.T) {
	all := retentionFixture(t, newDir(t))
	ids := func(chain []backup.Manifest) []string {
		var out []string
		for _, m := range chain {
			out = append(out, m.Note)
		}
		return out
	}
	day := func(d float64) time.Time { return t0.Add(time.Duration(d * 24 * float64(time.Hour))) }
	for _, tt := range []struct {
		at   time.Time
		want []string
	}{
		{day(1.5), []string{"A0", "A1"}},
		{day(2), []string{"A0", "A1", "A2"}},
		{day(10), []string{"B10"}},
		{day(10.9), []string{"B10"}},
		{day(29), []string{"C20"}},
		{day(100), []string{"E30", "E31"}},
	} {
		got, err := backup.ChainAt(all, tt.at)
		if err != nil || !slices.Equal(ids(got), tt.want) {
			t.Errorf("ChainAt(%s) = %v, %v; want %v", tt.at, ids(got), err, tt.want)
		}
	}
	_, err := backup.ChainAt(all, day(-1))
	wantErr(t, "ChainAt before the first backup", err, backup.ErrNotFound)
	_, err = backup.ChainAt(all, day(15))
	wantErr(t, "ChainAt an orphan", err, backup.ErrNotFound)
	if !strings.Contains(err.Error(), "parent") {
		t.Errorf("ChainAt an orphan: %q, want it to name the missing parent", err)
	}
	if got, err := backup.Latest(all); err != nil || !slices.Equal(ids(got), []string{"E30", "E31"}) {
		t.Errorf("Latest = %v, %v", ids(got), err)
	}
	_, err = backup.Latest(nil)
	wantErr(t, "Latest(nil)", err, backup.ErrNotFound)
	_, err = backup.Chain(all, "nope")
	wantErr(t, "Chain(nope)", err, backup.ErrNotFound)
}

func TestIDAndVector(t *testing.T) {
	id := backup.NewID(time.Date(2026, 12, 2, 17, 45, 1, 123456789, time.FixedZone("X", 3600)))
	if !strings.HasPrefix(id, "20261202T164501.123Z-") || len(id) != len("20261202T174501.123Z-3f9a") {
		t.Errorf("NewID = %q", id)
	}
	if at, err := backup.ParseID(id); err != nil || !at.Equal(time.Date(2026, 12, 2, 16, 45, 1, 123e6, time.UTC)) {
		t.Errorf("ParseID(%s) = %v, %v", id, at, err)
	}
	if backup.NewID(t0) >= backup.NewID(t0.Add(time.Millisecond)) {
		t.Error("IDs do not sort by time")
	}
	for _, bad := range []string{"", "20261202T174501.123Z", "20261202T174501Z-ab", "20261202T174501.123Z-XY", "../x-ab"} {
		if _, err := backup.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) succeeded", bad)
		}
	}
	v := store.Vector{1: 5, 0xfedcba9876543210: 9}
	m := backup.VectorOf(v)
	if m["0000000000000001"] != 5 || m["fedcba9876543210"] != 9 {
		t.Errorf("VectorOf = %v", m)
	}
	if back, err := backup.ToVector(m); err != nil || len(back) != 2 || back[0xfedcba9876543210] != 9 {
		t.Errorf("ToVector = %v, %v", back, err)
	}
	if _, err := backup.ToVector(map[string]uint64{"12": 1}); err == nil {
		t.Error("ToVector(short origin) succeeded")
	}
}

func TestRoot(t *testing.T) {
	sum := func(nodes ...[4]any) string {
		r := backup.NewRoot()
		for _, n := range nodes {
			if err := r.Add(n[0].(string), uint64(n[1].(int)), uint64(n[2].(int)), uint64(n[3].(int))); err != nil {
				t.Fatal(err)
			}
		}
		return r.Sum()
	}
	base := sum([4]any{"/a", 1, 2, 3}, [4]any{"/b", 4, 5, 6})
	if base != sum([4]any{"/a", 1, 2, 3}, [4]any{"/b", 4, 5, 6}) {
		t.Error("Root is not deterministic")
	}
	for i, other := range []string{
		sum([4]any{"/a", 1, 2, 3}),
		sum([4]any{"/a", 1, 2, 3}, [4]any{"/c", 4, 5, 6}),
		sum([4]any{"/a", 1, 2, 3}, [4]any{"/b", 9, 5, 6}),
		sum([4]any{"/a", 1, 2, 3}, [4]any{"/b", 4, 9, 6}),
		sum([4]any{"/a", 1, 2, 3}, [4]any{"/b", 4, 5, 9}),
		sum(),
	} {
		if other == base {
			t.Errorf("case %d: a different sequence has the same root", i)
		}
	}
	r := backup.NewRoot()
	r.Add("/b", 1, 1, 1)
	before := r.Sum()
	for _, p := range []string{"/b", "/a"} {
		wantErr(t, "Add("+p+") after /b", r.Add(p, 1, 1, 1), backup.ErrInvalid)
	}
	if r.Sum() != before || r.Len() != 1 {
		t.Error("a refused Add changed the root")
	}
}

// retentionFixture writes backups over 31 days into tg and lists them;
// each backup's Note is its name: chain letter and day.
//
//	A0 full, A1, A2 | B10 full, B11 | D15 (parent missing) | C20 full | E30 full, E31
func retentionFixture(t *testing.T, tg target.Target) []backup.Manifest {
	t.Helper()
	ctx := context.Background()
	root := state{}.root(t)
	ids := map[string]string{}
	for _, b := range []struct {
		name, parent string
		day          int
	}{
		{"A0", "", 0}, {"A1", "A0", 1}, {"A2", "A1", 2}, {"B10", "", 10}, {"B11", "B10", 11},
		{"D15", "missing", 15}, {"C20", "", 20}, {"E30", "", 30}, {"E31", "E30", 31},
	} {
		at := t0.Add(time.Duration(b.day) * 24 * time.Hour)
		opts := backup.WriterOptions{Job: "j", Kind: backup.KindFull, Prefix: "/", Now: func() time.Time { return at }}
		if b.parent != "" {
			opts.Kind, opts.Parent = backup.KindIncremental, ids[b.parent]
			if b.parent == "missing" {
				opts.Parent = backup.NewID(at.Add(-time.Hour))
			}
		}
		w, err := backup.NewWriter(ctx, tg, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Add(node("/x", uint64(b.day), b.name)); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(ctx, nil, root, b.name); err != nil {
			t.Fatal(err)
		}
		ids[b.name] = w.ID()
	}
	all, err := backup.List(ctx, tg, "j")
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func notes(all []backup.Manifest) []string {
	var out []string
	for _, m := range all {
		out = append(out, m.Note)
	}
	slices.Sort(out)
	return out
}

// deleteLog is a Dir target that records its deletes.
type deleteLog struct {
	*target.Dir
	deleted []string
}

func (d *deleteLog) Delete(ctx context.Context, key string) error {
	d.deleted = append(d.deleted, key)
	return d.Dir.Delete(ctx, key)
}

func TestRetain(t *testing.T) {
	ctx := context.Background()
	now := t0.Add(32 * 24 * time.Hour)
	day := 24 * time.Hour
	everything := []string{"A0", "A1", "A2", "B10", "B11", "C20", "D15", "E30", "E31"}
	for _, tt := range []struct {
		name string
		p    backup.Policy
		keep []string
	}{
		{"zero keeps all", backup.Policy{}, everything},
		{"fulls 1", backup.Policy{Fulls: 1}, []string{"E30", "E31"}},
		{"fulls 2", backup.Policy{Fulls: 2}, []string{"C20", "E30", "E31"}},
		{"fulls 3", backup.Policy{Fulls: 3}, []string{"B10", "B11", "C20", "E30", "E31"}},
		{"within 13d", backup.Policy{Within: 13 * day}, []string{"C20", "E30", "E31"}},
		{"within 17.5d keeps the orphan", backup.Policy{Within: 17*day + 12*time.Hour}, []string{"C20", "D15", "E30", "E31"}},
		{"within 22d keeps chain B whole", backup.Policy{Within: 22 * day}, []string{"B10", "B11", "C20", "D15", "E30", "E31"}},
		{"within 1h keeps the newest chain", backup.Policy{Within: time.Hour}, []string{"E30", "E31"}},
		{"union", backup.Policy{Fulls: 1, Within: 13 * day}, []string{"C20", "E30", "E31"}},
		{"union keeps all", backup.Policy{Fulls: 4, Within: 17*day + 12*time.Hour}, everything},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tg := &deleteLog{Dir: newDir(t)}
			before := retentionFixture(t, tg)
			deleted, err := backup.Retain(ctx, tg, "j", tt.p, now, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			after, err := backup.List(ctx, tg, "j")
			if err != nil {
				t.Fatal(err)
			}
			if got := notes(after); !slices.Equal(got, tt.keep) {
				t.Errorf("kept %v, want %v", got, tt.keep)
			}
			if len(deleted) != len(before)-len(tt.keep) {
				t.Errorf("Retain returned %d deleted, want %d", len(deleted), len(before)-len(tt.keep))
			}
			if inc, _ := backup.Incomplete(ctx, tg, "j"); len(inc) != 0 {
				t.Errorf("Retain left incomplete backups %v", inc)
			}
			// Each backup goes manifest first.
			seen := map[string]bool{}
			for _, key := range tg.deleted {
				dir := key[:strings.LastIndexByte(key, '/')]
				if !seen[dir] && !strings.HasSuffix(key, "/manifest.json") {
					t.Errorf("deleted %s before its manifest", key)
				}
				seen[dir] = true
			}
		})
	}
	if _, err := backup.Retain(ctx, newDir(t), "", backup.Policy{}, now, 0); err == nil {
		t.Error("Retain without a job succeeded")
	}
}

func TestRetain_Leftovers(t *testing.T) {
	ctx := context.Background()
	tg := newDir(t)
	now := time.Now()
	f := newChainFixture()
	f.writeChain(t, tg, backup.WriterOptions{})
	// A run that crashed before its manifest: files, no manifest.
	dir := "nightly/" + backup.NewID(now)
	for _, name := range []string{"nodes-000001.zst", "nodes-000002.zst"} {
		if err := tg.Put(ctx, dir+"/"+name, strings.NewReader("partial")); err != nil {
			t.Fatal(err)
		}
	}
	all, err := backup.List(ctx, tg, "nightly")
	if err != nil || len(all) != 3 {
		t.Fatalf("List = %d backups, %v; want the 3 complete ones", len(all), err)
	}
	inc, err := backup.Incomplete(ctx, tg, "")
	if err != nil || !slices.Equal(inc, []string{dir}) {
		t.Errorf("Incomplete = %v, %v; want [%s]", inc, err, dir)
	}
	deleted, err := backup.Retain(ctx, tg, "nightly", backup.Policy{Fulls: 1}, now.Add(30*time.Minute), time.Hour)
	if err != nil || len(deleted) != 0 {
		t.Errorf("Retain within grace deleted %v, %v; want nothing", deleted, err)
	}
	deleted, err = backup.Retain(ctx, tg, "nightly", backup.Policy{Fulls: 1}, now.Add(2*time.Hour), time.Hour)
	if err != nil || !slices.Equal(deleted, []string{dir}) {
		t.Errorf("Retain after grace deleted %v, %v; want [%s]", deleted, err, dir)
	}
	if inc, _ := backup.Incomplete(ctx, tg, "nightly"); len(inc) != 0 {
		t.Errorf("Incomplete after Retain = %v", inc)
	}
	if all, _ := backup.List(ctx, tg, "nightly"); len(all) != 3 {
		t.Errorf("Retain touched complete backups: %d left", len(all))
	}
}

func TestParseWithin(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "12h": 12 * time.Hour, "90m": 90 * time.Minute, "2w": 14 * 24 * time.Hour, "0d": 0,
	} {
		if got, err := backup.ParseWithin(in); err != nil || got != want {
			t.Errorf("ParseWithin(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "30", "30s", "-1d", "+1d", "1.5d", "1 d", "99999999999999999w"} {
		if _, err := backup.ParseWithin(bad); err == nil {
			t.Errorf("ParseWithin(%q) succeeded", bad)
		}
	}
}

func TestRebuild_CountMismatch(t *testing.T) {
	tg := newDir(t)
	chain := newChainFixture().writeChain(t, tg, backup.WriterOptions{})
	chain[1].Files[0].Nodes++
	_, err := rebuild(t, tg, chain, backup.ReadOptions{})
	wantErr(t, "Rebuild with a manifest counting one record more", err, backup.ErrCorrupt)
	if !strings.Contains(err.Error(), chain[1].Key(chain[1].Files[0].Name)) {
		t.Errorf("Rebuild error %q does not name the file", err)
	}
}

func TestVerify_Cancelled(t *testing.T) {
	tg := newDir(t)
	chain := newChainFixture().writeChain(t, tg, backup.WriterOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if v, err := backup.Verify(ctx, tg, chain, nil); err == nil {
		t.Errorf("Verify with a cancelled context = %+v, nil; want an error, not a verdict", v)
	}
}

func TestCommit_FileGone(t *testing.T) {
	ctx := context.Background()
	tg := newDir(t)
	w, err := backup.NewWriter(ctx, tg, backup.WriterOptions{Job: "j", Kind: backup.KindFull, Prefix: "/", FileBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := w.Add(node(fmt.Sprintf("/n%02d", i), 1, strings.Repeat("x", 50))); err != nil {
			t.Fatal(err)
		}
	}
	// Retain pruned the first file as a leftover while the run went on.
	if err := tg.Delete(ctx, "j/"+w.ID()+"/nodes-000001.zst"); err != nil {
		t.Fatal(err)
	}
	_, err = w.Commit(ctx, nil, state{}.root(t), "")
	wantErr(t, "Commit with a file gone", err, backup.ErrNotFound)
	if all, _ := backup.List(ctx, tg, "j"); len(all) != 0 {
		t.Errorf("a manifest was written: %+v", all)
	}
	if err := w.Abort(ctx); err != nil || len(keys(t, tg)) != 0 {
		t.Errorf("Abort = %v, left %v", err, keys(t, tg))
	}
}

func TestList_BadManifest(t *testing.T) {
	ctx := context.Background()
	good := newChainFixture()
	for name, content := range map[string]func(m backup.Manifest) string{
		"not JSON": func(backup.Manifest) string { return "{" },
		"other backup": func(m backup.Manifest) string {
			return fmt.Sprintf(`{"format":1,"job":"nightly","id":%q,"kind":"full"}`, backup.NewID(t0.Add(time.Hour)))
		},
		"future format": func(m backup.Manifest) string {
			return fmt.Sprintf(`{"format":99,"job":"nightly","id":%q,"kind":"full"}`, m.ID)
		},
	} {
		t.Run(name, func(t *testing.T) {
			tg := newDir(t)
			chain := good.writeChain(t, tg, backup.WriterOptions{})
			key := chain[1].Key("manifest.json")
			if err := tg.Put(ctx, key, strings.NewReader(content(chain[1]))); err != nil {
				t.Fatal(err)
			}
			_, err := backup.List(ctx, tg, "nightly")
			wantErr(t, "List", err, backup.ErrCorrupt)
			if !strings.Contains(err.Error(), key) {
				t.Errorf("List error %q does not name %s", err, key)
			}
		})
	}
	// Objects that are not backups are no concern of List.
	tg := newDir(t)
	good.writeChain(t, tg, backup.WriterOptions{})
	for _, key := range []string{"README", "nightly/notes.txt", "nightly/not-an-id/manifest.json", "a/b/c/d"} {
		tg.Put(ctx, key, strings.NewReader("x"))
	}
	if all, err := backup.List(ctx, tg, ""); err != nil || len(all) != 3 {
		t.Errorf("List with unrelated objects = %d backups, %v; want 3", len(all), err)
	}
}

// TestRebuild_SubtreeReadsOnlyItsFiles: with a prefix, Rebuild reads only
// the files whose path range meets the subtree: a corrupt file elsewhere
// does not stop it, while a whole rebuild fails on it.
func TestRebuild_SubtreeReadsOnlyItsFiles(t *testing.T) {
	tg := newDir(t)
	f := newChainFixture()
	written := f.writeChain(t, tg, backup.WriterOptions{FileBytes: 300})
	full := written[0]
	var corrupt string
	for _, fl := range full.Files {
		if fl.First == "" || fl.Last == "" || fl.First > fl.Last {
			t.Fatalf("file %s: first %q last %q", fl.Name, fl.First, fl.Last)
		}
		if fl.First > "/a/" && fl.Last < "/b" && corrupt == "" {
			corrupt = fl.Name // holds only /a nodes
		}
	}
	if corrupt == "" {
		t.Fatalf("no file holds only /a nodes: %+v", full.Files)
	}
	path := filepath.Join(strings.TrimPrefix(tg.String(), "file://"), full.Key(corrupt))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := rebuild(t, tg, written, backup.ReadOptions{Prefix: "/b"})
	if err != nil {
		t.Fatalf("Rebuild(/b) with a corrupt /a file: %v", err)
	}
	want := state{}
	for p, n := range f.states[2] {
		if p == "/b" || strings.HasPrefix(p, "/b/") {
			want[p] = n
		}
	}
	equalState(t, got, want)
	if _, err := rebuild(t, tg, written, backup.ReadOptions{}); err == nil {
		t.Error("Rebuild of everything read past a corrupt file")
	}
}
