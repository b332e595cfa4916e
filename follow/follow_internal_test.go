package follow

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{status.Error(codes.InvalidArgument, "bad prefix"), true},
		{status.Error(codes.PermissionDenied, "no"), true},
		{status.Error(codes.Unauthenticated, "who"), true},
		{fmt.Errorf("watch: %w", status.Error(codes.PermissionDenied, "no")), true},
		{status.Error(codes.Unavailable, "shutting down"), false},
		{status.Error(codes.Internal, "oops"), false},
		{errStreamEnded, false},
		{errors.New("apply: no space left on device"), false},
		{context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := permanent(tt.err); got != tt.want {
			t.Errorf("permanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestBackoff_FullJitterWithinBounds(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MinBackoff, cfg.MaxBackoff = 100*time.Millisecond, time.Second
	r := &Follower{cfg: cfg}
	for n := 1; n <= 40; n++ {
		ceil := min(cfg.MinBackoff<<min(n-1, 20), cfg.MaxBackoff)
		lo, hi := ceil, time.Duration(0)
		for range 200 {
			d := r.backoff(n)
			if d < 0 || d >= ceil {
				t.Fatalf("backoff(%d) = %v, want in [0, %v)", n, d, ceil)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Full jitter: the whole range is used, from near zero (not
		// ceil/2 + jitter) to near the ceiling. Failing by chance takes
		// 200 draws all in one quarter: (3/4)^200.
		if lo >= ceil/4 || hi < ceil*3/4 {
			t.Errorf("backoff(%d) spans [%v, %v] of [0, %v): not full jitter", n, lo, hi, ceil)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	good := DefaultConfig()
	good.Prefix, good.Servers = "/app", []string{"a:1"}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	tests := map[string]func(*Config){
		"relative prefix": func(c *Config) { c.Prefix = "app" },
		"no server":       func(c *Config) { c.Servers = nil },
		"blank server":    func(c *Config) { c.Servers = []string{" "} },
		"backoff":         func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond },
		"once attempts":   func(c *Config) { c.Once, c.MaxAttempts = true, 0 },
		"idle timeout":    func(c *Config) { c.IdleTimeout = 0 },
	}
	for name, mod := range tests {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%s) = nil, want an error", name)
		}
	}
}
