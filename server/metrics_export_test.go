package server

import "context"

// SyncRoundWith runs one digest sync round of s with the server at addr,
// recorded as the sync loop records its rounds, under peer's name. Tests
// use it where the loop's timing would race with what they measure.
func SyncRoundWith(ctx context.Context, s *Server, peer, addr string) error {
	c, err := s.peers.tr.peer(addr)
	if err != nil {
		return err
	}
	r := &syncRound{}
	_, err = s.syncWith(ctx, peer, c, r)
	s.metrics.syncDone(peer, r, err)
	if err == nil {
		s.setCaughtUp()
	}
	return err
}
