package main

import (
	"fmt"
	"testing"

	repldspb "replds/proto"
)

func TestSplitBatches(t *testing.T) {
	writes := make([]*repldspb.Write, 10)
	for i := range writes {
		writes[i] = &repldspb.Write{Path: fmt.Sprintf("/%d", i), Data: make([]byte, 100)}
	}
	for _, tc := range []struct {
		maxBytes, maxWrites int
		want                []int
	}{
		{1 << 20, 100, []int{10}},
		{1 << 20, 4, []int{4, 4, 2}},
		{250, 100, []int{2, 2, 2, 2, 2}},
		{10, 100, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}, // a write larger than the limit goes alone
	} {
		var got []int
		for _, b := range splitBatches(writes, tc.maxBytes, tc.maxWrites) {
			got = append(got, len(b))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("splitBatches(10 x 100 B, %d bytes, %d writes) = %v, want %v", tc.maxBytes, tc.maxWrites, got, tc.want)
		}
	}
}
