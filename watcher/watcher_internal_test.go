package watcher

import (
	"strings"
	"testing"
)

func TestConfig_Validate(t *testing.T) {
	good := DefaultConfig()
	good.Dir, good.Follow.Prefix, good.Follow.Servers = "/srv/mirror", "/app", []string{"a:1"}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	if got := good.stateFile(); got != "/srv/mirror.replds-state" {
		t.Fatalf("default state file = %q", got)
	}
	tests := map[string]func(*Config){
		"no dir":            func(c *Config) { c.Dir = "" },
		"dir is root":       func(c *Config) { c.Dir = "/" },
		"file mode bits":    func(c *Config) { c.FileMode = 0o4600 },
		"unreadable files":  func(c *Config) { c.FileMode = 0o200 },
		"dir mode":          func(c *Config) { c.DirMode = 0o500 },
		"state inside":      func(c *Config) { c.StateFile = "/srv/mirror/state" },
		"state is the dir":  func(c *Config) { c.StateFile = "/srv/mirror" },
		"state deep inside": func(c *Config) { c.StateFile = "/srv/mirror/a/../b/state" },
		"owner unchanged":   func(c *Config) { c.Owner = &Owner{UID: -1, GID: -1} },
		"owner bad uid":     func(c *Config) { c.Owner = &Owner{UID: -2, GID: 0} },
	}
	for name, mod := range tests {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%s) = nil, want an error", name)
		}
	}
	// The follower's part is follow.Config.Validate's to check.
	c := good
	c.Follow.Servers = nil
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "follow: config: no server") {
		t.Errorf("Validate(no server) = %v, want the follower's error", err)
	}
	c = good
	c.StateFile = "/srv/mirror-state/x" // a sibling whose name starts alike
	if err := c.Validate(); err != nil {
		t.Errorf("Validate(sibling state) = %v", err)
	}
}

func TestConfig_OwnerNeedsRoot(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dir, cfg.Follow.Prefix, cfg.Follow.Servers = "/srv/mirror", "/app", []string{"a:1"}
	cfg.Owner = &Owner{UID: 33, GID: -1}
	old := geteuid
	t.Cleanup(func() { geteuid = old })
	geteuid = func() int { return 0 }
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate(owner) as root = %v", err)
	}
	geteuid = func() int { return 1000 }
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "needs root") || !strings.Contains(err.Error(), "1000") {
		t.Fatalf("Validate(owner) as uid 1000 = %v, want an error saying root is needed", err)
	}
}
