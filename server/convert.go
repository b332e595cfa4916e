package server

import "replds/wire"

// The protocol code's names for the wire conversions (package wire).
var (
	nodeToProto     = wire.NodeToProto
	nodesToProto    = wire.NodesToProto
	nodeFromProto   = wire.NodeFromProto
	vectorToProto   = wire.VectorToProto
	vectorFromProto = wire.VectorFromProto
)
