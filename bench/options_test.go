package main

import (
	"io"
	"testing"
)

// TestParseOptions_BackupRows checks that the backup rows can be chosen
// and that their sizes follow --quick unless given.
func TestParseOptions_BackupRows(t *testing.T) {
	tests := []struct {
		args            []string
		seamsNodes, s3N int
	}{
		{[]string{"--rows=backup,restore-backup,backup-s3"}, 1000000, 100000},
		{[]string{"--quick", "--rows=backup,restore-backup,backup-s3"}, 10000, 10000},
		{[]string{"--rows=backup-s3", "--s3-nodes=5000", "--seams-nodes=2000"}, 2000, 5000},
	}
	for _, tt := range tests {
		o, err := parseOptions(tt.args, io.Discard)
		if err != nil {
			t.Fatalf("parseOptions(%q): %v", tt.args, err)
		}
		if o.seamsNodes != tt.seamsNodes || o.s3Nodes != tt.s3N {
			t.Errorf("parseOptions(%q): seams-nodes %d, s3-nodes %d; want %d, %d", tt.args, o.seamsNodes, o.s3Nodes, tt.seamsNodes, tt.s3N)
		}
	}
	o, err := parseOptions([]string{"--rows=backup,restore-backup,backup-s3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"backup", "restore-backup", "backup-s3"} {
		if !o.rows[r] {
			t.Errorf("--rows=backup,restore-backup,backup-s3: row %q not chosen", r)
		}
	}
	if _, err := parseOptions([]string{"--s3-nodes=-1"}, io.Discard); err == nil {
		t.Errorf("parseOptions(--s3-nodes=-1) = nil error, want one")
	}
}
