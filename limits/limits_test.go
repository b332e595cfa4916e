package limits_test

import (
	"testing"

	"github.com/replds/replds/limits"
)

func TestMaxMessage(t *testing.T) {
	tests := []struct{ node, batch, want int }{
		{limits.MaxNodeSize, limits.MaxBatchBytes, limits.MaxBatchBytes + limits.MessageOverhead},
		{100 << 20, 1 << 20, 100<<20 + limits.MessageOverhead},
	}
	for _, tt := range tests {
		if got := limits.MaxMessage(tt.node, tt.batch); got != tt.want {
			t.Errorf("MaxMessage(%d, %d) = %d, want %d", tt.node, tt.batch, got, tt.want)
		}
	}
}

// A resume token of MaxTokenOrigins entries (18 bytes each on the wire:
// two fixed64 fields and their tags, plus 2 bytes of entry framing) and a
// longest path fit in MaxRequest.
func TestMaxRequest_FitsLargestToken(t *testing.T) {
	if need := limits.MaxTokenOrigins*20 + 4096 + 64; need > limits.MaxRequest {
		t.Errorf("MaxRequest = %d, want at least %d for a full token", limits.MaxRequest, need)
	}
}
