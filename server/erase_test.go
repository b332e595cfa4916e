package server_test

import (
	"strings"
	"testing"

	"github.com/replds/replds/server"
)

func TestConfig_EraseInterval(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	if cfg.EraseInterval <= 0 {
		t.Errorf("default EraseInterval = %v, want a bound", cfg.EraseInterval)
	}
	cfg.EraseInterval = -1
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "--erase-interval") {
		t.Errorf("Validate() = %v, want an error naming --erase-interval", err)
	}
}
