package limits_test

import (
	"testing"

	"replds/limits"
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
