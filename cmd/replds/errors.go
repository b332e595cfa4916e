package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The exit codes of replds, one per kind of failure a script branches on
// (README, "Exit codes"). Every error a command returns maps to one of
// them through exitCode.
const (
	exitOK          = 0
	exitFailure     = 1 // anything not below
	exitUsage       = 2 // bad flags, arguments, paths or flag values
	exitNotFound    = 3 // no such node
	exitPermission  = 4 // permission denied (ACLs, reserved paths)
	exitUnavailable = 5 // no server answered: refused, timed out, TLS handshake failed
)

// exitError is an error with the exit code it ends replds with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExit gives err the exit code code.
func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// usageErrorf is a usage error (exit 2).
func usageErrorf(format string, args ...any) error {
	return withExit(exitUsage, fmt.Errorf(format, args...))
}

// exitCode returns the exit code for err: the one it carries, else 1.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitFailure
}

// codeExits maps the gRPC codes a server answers with to exit codes; any
// other code is exitFailure.
var codeExits = map[codes.Code]int{
	codes.InvalidArgument:  exitUsage,
	codes.NotFound:         exitNotFound,
	codes.PermissionDenied: exitPermission,
	codes.Unauthenticated:  exitPermission,
	codes.Unavailable:      exitUnavailable,
	codes.DeadlineExceeded: exitUnavailable,
}

// packagePrefix matches the package names that the servers' error texts
// start with ("store: node not found"): they mean nothing to a user.
var packagePrefix = regexp.MustCompile(`(^|: )(?:(?:store|server|nodepath|acl|wire|lww|limits|certs|watcher|follow|triggers|jobs): )+`)

// userMessage returns an error text without package prefixes.
func userMessage(msg string) string {
	return packagePrefix.ReplaceAllString(msg, "$1")
}

// cliError turns the error of a call to the server at addr into one
// readable line with its exit code. Errors that are not RPC errors pass
// through.
func cliError(addr string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	code, ok := codeExits[st.Code()]
	if !ok {
		code = exitFailure
	}
	msg := userMessage(st.Message())
	switch st.Code() {
	case codes.Unavailable:
		if strings.Contains(msg, "server preface") || strings.Contains(msg, "handshake") {
			msg += " (does the server require TLS? give --tls-cert, --tls-key and --tls-ca)"
		}
		err = fmt.Errorf("server %s unavailable: %s", addr, msg)
	case codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound:
		err = errors.New(msg)
	case codes.DeadlineExceeded:
		err = fmt.Errorf("server %s: no answer in time (--timeout)", addr)
	default:
		err = fmt.Errorf("server %s: %s: %s", addr, st.Code(), msg)
	}
	return withExit(code, err)
}

// localError gives an error found on this side before any call (a bad
// path, a missing file) its exit code and drops package prefixes.
func localError(err error, code int) error {
	if err == nil {
		return nil
	}
	return withExit(code, errors.New(userMessage(err.Error())))
}
