package limits

// Default limits of a server and its store.
const (
	// MaxNodeSize bounds the data of one node.
	MaxNodeSize = 16 << 20
	// MaxBatch bounds the writes of one batch (one Store call).
	MaxBatch = 100000
	// MaxBatchBytes bounds the data of one batch.
	MaxBatchBytes = 64 << 20
	// MessageOverhead is the room a gRPC message needs beyond the node data
	// it carries (paths, metadata, framing).
	MessageOverhead = 4 << 20

	// MaxRequest bounds a request of a method that needs little: Get,
	// List, Watch (a prefix and a resume token of at most MaxTokenOrigins
	// entries, 18 bytes each) and Status.
	MaxRequest = 128 << 10
	// MaxTokenOrigins bounds the origins of a Watch resume token: a
	// cluster has had few incarnations (one per server, one more per
	// restore).
	MaxTokenOrigins = 4096
)

// MaxMessage returns the bound on one gRPC message for a server whose
// largest node is nodeSize bytes and largest batch batchBytes: the larger
// of the two plus MessageOverhead.
func MaxMessage(nodeSize, batchBytes int) int {
	return max(nodeSize, batchBytes) + MessageOverhead
}
