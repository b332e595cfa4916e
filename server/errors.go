package server

import (
	"context"
	"errors"
	"log/slog"
	"path"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/replds/replds/cluster"
	"github.com/replds/replds/store"
)

// ErrPermission is returned when the caller's identity may not do what it
// asked. It never says whether the node exists. A job kind's validator
// (JobValidator) wraps it to refuse a spec its writer may not define.
var ErrPermission = errors.New("server: permission denied")

// errInvalidJob is returned for a client's write under nodepath.Jobs that
// is not a job definition of a registered kind, or whose spec the kind's
// validator refused.
var errInvalidJob = errors.New("server: invalid job")

// errorCodes maps the errors callers branch on to gRPC codes, first match
// wins. Anything else becomes Internal and is logged once with its detail.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{store.ErrNotFound, codes.NotFound},
	{store.ErrInvalidPath, codes.InvalidArgument},
	{store.ErrTooLarge, codes.InvalidArgument},
	{store.ErrInvalidNode, codes.InvalidArgument},
	{store.ErrConflict, codes.FailedPrecondition},
	{store.ErrIsDir, codes.FailedPrecondition},
	{store.ErrClockSkew, codes.Unavailable},
	{store.ErrClosed, codes.Unavailable},
	{ErrPermission, codes.PermissionDenied},
	{errInvalidJob, codes.InvalidArgument},
	{errEmptyMember, codes.InvalidArgument},
	{cluster.ErrMemberLive, codes.FailedPrecondition},
	{cluster.ErrMemberUnknown, codes.NotFound},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// toStatus converts err into a gRPC status error at the RPC boundary. A
// status error passes through unchanged.
func toStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return status.Error(e.code, err.Error())
		}
	}
	log.Error("internal error", "method", method, "err", err)
	return status.Error(codes.Internal, "internal error")
}

// errorInterceptor maps the errors of unary RPC handlers to gRPC status
// errors (toStatus), so that handlers return plain errors.
func (s *Server) errorInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		return nil, toStatus(s.log, path.Base(info.FullMethod), err)
	}
	return resp, nil
}

// streamErrorInterceptor is errorInterceptor for streaming RPCs.
func (s *Server) streamErrorInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return toStatus(s.log, path.Base(info.FullMethod), h(srv, ss))
}
