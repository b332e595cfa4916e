// Package wire converts between the store's values (store.Node,
// store.Vector) and their protobuf messages (package repldspb), for every
// side of the protocol: the server's RPCs, the CLI, and jobs that follow
// another cluster's Watch stream. Conversions share data slices and check
// nothing; validation belongs to whoever receives the message.
package wire
