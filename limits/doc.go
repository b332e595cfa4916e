// Package limits holds the default size limits of replds in one place:
// what a server accepts in one node and one batch, and the gRPC message
// bound that follows from them. The store's and the server's default
// configurations and the command-line client all take them from here.
//
// It is a leaf: it imports only the standard library, so that clients use
// the servers' numbers without importing the store (and bbolt).
package limits
