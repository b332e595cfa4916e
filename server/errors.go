package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"replds/store"
)

// errPermission is returned when the caller's identity may not do what it
// asked. It never says whether the node exists.
var errPermission = errors.New("server: permission denied")

// errorCodes maps the errors callers branch on to gRPC codes. Anything else
// becomes Internal and is logged once with its detail.
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
	{errPermission, codes.PermissionDenied},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// toStatus converts err into a gRPC status error at the RPC boundary.
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
