package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/store"
)

func TestErrorInterceptor(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	info := &grpc.UnaryServerInfo{FullMethod: "/replds.v1.Replds/Store"}
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{fmt.Errorf("list /a: %w", store.ErrNotFound), codes.NotFound, "list /a: store: node not found"},
		{fmt.Errorf("%w: %q may not write /a", ErrPermission, "x"), codes.PermissionDenied, `server: permission denied: "x" may not write /a`},
		{status.Error(codes.Unavailable, "as is"), codes.Unavailable, "as is"},
		{errors.New("disk on fire"), codes.Internal, "internal error"},
	} {
		logs.Reset()
		_, err := s.errorInterceptor(context.Background(), nil, info, func(context.Context, any) (any, error) { return nil, tc.err })
		if st := status.Convert(err); st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("interceptor(%v) = %v, want %v %q", tc.err, err, tc.code, tc.msg)
		}
		serr := s.streamErrorInterceptor(nil, nil, &grpc.StreamServerInfo{FullMethod: info.FullMethod}, func(any, grpc.ServerStream) error { return tc.err })
		if status.Code(serr) != tc.code {
			t.Errorf("stream interceptor(%v) = %v, want %v", tc.err, serr, tc.code)
		}
		logged := strings.Count(logs.String(), "internal error")
		if want := map[bool]int{true: 2, false: 0}[tc.code == codes.Internal]; logged != want {
			t.Errorf("interceptors(%v) logged %d internal errors, want %d (one each): %s", tc.err, logged, want, logs.String())
		}
		if tc.code == codes.Internal && !strings.Contains(logs.String(), "method=Store") {
			t.Errorf("internal error log %q does not name the method", logs.String())
		}
	}
	if _, err := s.errorInterceptor(context.Background(), nil, info, func(context.Context, any) (any, error) { return 1, nil }); err != nil {
		t.Errorf("interceptor of a success = %v", err)
	}
}
