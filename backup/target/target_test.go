package target_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/replds/replds/backup/target"
	"github.com/replds/replds/backup/target/targettest"
)

func TestDir(t *testing.T) {
	targettest.Run(t, func(t *testing.T) target.Target {
		d, err := target.OpenDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// A crashed Put leaves a temp file behind; List never shows it.
func TestDir_TempFilesHidden(t *testing.T) {
	root := t.TempDir()
	d, err := target.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ".tmp-123"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var keys []string
	d.List(context.Background(), "", func(in target.Info) error { keys = append(keys, in.Key); return nil })
	if len(keys) != 0 {
		t.Errorf("List = %q, want no temp file", keys)
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tg, err := target.Open(ctx, "file://"+dir)
	if err != nil || tg.String() != "file://"+dir {
		t.Fatalf("Open(file://%s) = %v, %v", dir, tg, err)
	}
	for url, want := range map[string]string{
		"":                                 "want a URL",
		"/tmp/x":                           "want a URL",
		"ftp://h/x":                        `unknown scheme "ftp"`,
		"file://host/x":                    "local path",
		"file:///x?y=1":                    "no parameters",
		"s3://key:secret@bucket/p":         "credentials do not belong",
		"s3:///p":                          "no bucket",
		"s3://b/p?color=red":               `unknown parameter "color"`,
		"s3://b/p?endpoint=localhost:9000": "want http(s)://host:port",
		"file://relative":                  "local path",
	} {
		_, err := target.Open(ctx, url)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error repeats the secret: %v", url, err)
		}
	}
}

func TestS3(t *testing.T) {
	targettest.Run(t, func(t *testing.T) target.Target {
		url := targettest.S3URL(t)
		tg, err := target.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tg.String(), "secret") {
			t.Errorf("String() = %q shows a secret", tg.String())
		}
		return tg
	})
}
