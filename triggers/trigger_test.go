package triggers_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/replds/replds/triggers"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		want    triggers.Trigger
		wantErr string
	}{
		{
			name: "shell string with defaults",
			json: `{"path": "/certs", "command": "systemctl reload nginx"}`,
			want: triggers.Trigger{Path: "/certs", Argv: []string{"/bin/sh", "-c", "systemctl reload nginx"}, Timeout: triggers.DefaultTimeout},
		},
		{
			name: "argv, timeout and wait",
			json: `{"path": "/", "command": ["/usr/bin/true", "x"], "timeout": "5s", "wait": {"min": "1s", "max": "10s"}}`,
			want: triggers.Trigger{Path: "/", Argv: []string{"/usr/bin/true", "x"}, Timeout: 5 * time.Second, Wait: triggers.Wait{Min: time.Second, Max: 10 * time.Second}},
		},
		{
			name: "wait max defaults to ten times min",
			json: `{"path": "/a", "command": "x", "wait": {"min": "2s"}}`,
			want: triggers.Trigger{Path: "/a", Argv: []string{"/bin/sh", "-c", "x"}, Timeout: triggers.DefaultTimeout, Wait: triggers.Wait{Min: 2 * time.Second, Max: 20 * time.Second}},
		},
		{name: "not JSON", json: `path=/a`, wantErr: "invalid character"},
		{name: "unknown field", json: `{"path": "/a", "command": "x", "timeuot": "1s"}`, wantErr: "unknown field"},
		{name: "trailing data", json: `{"path": "/a", "command": "x"} {}`, wantErr: "trailing data"},
		{name: "missing path", json: `{"command": "x"}`, wantErr: `missing "path"`},
		{name: "bad path", json: `{"path": "/a/../b", "command": "x"}`, wantErr: `"path": invalid path "/a/../b": ".." segment`},
		{name: "relative path", json: `{"path": "a", "command": "x"}`, wantErr: "not absolute"},
		{name: "missing command", json: `{"path": "/a"}`, wantErr: `missing "command"`},
		{name: "blank command", json: `{"path": "/a", "command": "  "}`, wantErr: `empty "command"`},
		{name: "empty argv", json: `{"path": "/a", "command": []}`, wantErr: `empty "command"`},
		{name: "command of numbers", json: `{"path": "/a", "command": [1]}`, wantErr: "string or an array"},
		{name: "bad timeout", json: `{"path": "/a", "command": "x", "timeout": "soon"}`, wantErr: "timeout"},
		{name: "zero timeout", json: `{"path": "/a", "command": "x", "timeout": "0s"}`, wantErr: "must be positive"},
		{name: "wait without min", json: `{"path": "/a", "command": "x", "wait": {}}`, wantErr: `missing "wait.min"`},
		{name: "wait max below min", json: `{"path": "/a", "command": "x", "wait": {"min": "2s", "max": "1s"}}`, wantErr: "below wait.min"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := triggers.Parse("reload", []byte(tt.json))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%s) error = %v, want one containing %q", tt.json, err, tt.wantErr)
				}
				if !errors.Is(err, triggers.ErrMalformed) || !strings.Contains(err.Error(), `"reload"`) {
					t.Fatalf("Parse(%s) error = %v, want ErrMalformed naming the file", tt.json, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%s) error = %v", tt.json, err)
			}
			tt.want.Name = "reload"
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%s) = %+v, want %+v", tt.json, got, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoad_SkipsMalformedAndOtherNames(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b-web"), `{"path": "/web", "command": "true"}`)
	writeFile(t, filepath.Join(dir, "a-db"), `{"path": "/db", "command": "true"}`)
	writeFile(t, filepath.Join(dir, "f-tls.json"), `{"path": "/tls", "command": "true"}`)
	writeFile(t, filepath.Join(dir, "c-broken"), `{"path": "/x", "command": `)
	writeFile(t, filepath.Join(dir, "g-typo.json"), `{"path": "/x", "comand": "true"}`)
	for _, name := range []string{"d-web.bak", ".hidden", ".h.json", "f-tls.json~", "b-web~", "#b-web#", "a.b.json", "x.json.swp", ".json"} {
		writeFile(t, filepath.Join(dir, name), `not even JSON`)
	}
	if err := os.Mkdir(filepath.Join(dir, "e-subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	list, err := triggers.Load(dir)
	if err == nil || !errors.Is(err, triggers.ErrMalformed) {
		t.Fatalf("Load error = %v, want ErrMalformed", err)
	}
	for _, want := range []string{`"c-broken": truncated JSON`, `"g-typo.json": unknown field "comand"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error = %v, want it to say %s", err, want)
		}
	}
	for _, skipped := range []string{"d-web.bak", ".hidden", "e-subdir", "~", "#", "a.b.json", ".swp"} {
		if strings.Contains(err.Error(), skipped) {
			t.Errorf("Load error = %v, mentions %s, which is not a trigger file", err, skipped)
		}
	}
	var names []string
	for _, tr := range list {
		names = append(names, tr.Name)
	}
	if want := []string{"a-db", "b-web", "f-tls"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("Load names = %v, want %v (f-tls.json is trigger f-tls)", names, want)
	}
}

// TestLoad_NameAndNameJSON: web and web.json are one trigger (renaming the
// file keeps it); both at once is a malformed directory naming both, and
// neither loads.
func TestLoad_NameAndNameJSON(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "web"), `{"path": "/w", "command": "true"}`)
	writeFile(t, filepath.Join(dir, "db.json"), `{"path": "/d", "command": "true"}`)
	list, err := triggers.Load(dir)
	if err != nil || len(list) != 2 || list[0].Name != "db" || list[1].Name != "web" {
		t.Fatalf("Load = %+v, %v; want triggers db and web", list, err)
	}
	writeFile(t, filepath.Join(dir, "web.json"), `{"path": "/w", "command": "true"}`)
	list, err = triggers.Load(dir)
	if !errors.Is(err, triggers.ErrMalformed) || !strings.Contains(err.Error(), `"web" and "web.json"`) {
		t.Errorf("Load with web and web.json = %v, want ErrMalformed naming both", err)
	}
	if len(list) != 1 || list[0].Name != "db" {
		t.Errorf("Load with web and web.json = %+v, want only db", list)
	}
}

func TestSkip(t *testing.T) {
	for name, want := range map[string]string{
		"web":          "",
		"web.json":     "",
		"10-web.json":  "",
		".web.json":    "hidden file",
		".#web.json":   "hidden file",
		"web.json~":    "editor backup",
		"web~":         "editor backup",
		"#web.json#":   "editor backup",
		"web.bak":      "not named NAME or NAME.json",
		"web.json.bak": "not named NAME or NAME.json",
		"web.dpkg-old": "not named NAME or NAME.json",
		"a.b.json":     "not named NAME or NAME.json",
	} {
		if got := triggers.Skip(name); got != want {
			t.Errorf("Skip(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestLoad_MissingDir(t *testing.T) {
	if _, err := triggers.Load(filepath.Join(t.TempDir(), "nope")); err == nil || errors.Is(err, triggers.ErrMalformed) {
		t.Fatalf("Load(missing dir) error = %v, want a read error", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"path": "/certs", "command": "systemctl reload nginx"}`))
	f.Add([]byte(`{"path": "/", "command": ["/bin/true"], "timeout": "5s", "wait": {"min": "1s", "max": "10s"}}`))
	f.Add([]byte(`{"path": "/a/../b", "command": []}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := triggers.Parse("fuzz", data)
		if err != nil {
			if !errors.Is(err, triggers.ErrMalformed) {
				t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if tr.Path == "" || len(tr.Argv) == 0 || tr.Argv[0] == "" || tr.Timeout <= 0 {
			t.Fatalf("Parse(%q) = %+v: accepted an unusable trigger", data, tr)
		}
		if tr.Wait.Min < 0 || tr.Wait.Max < tr.Wait.Min {
			t.Fatalf("Parse(%q) = %+v: inconsistent wait", data, tr)
		}
	})
}
