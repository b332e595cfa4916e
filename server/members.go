package server

import (
	"context"
	"errors"

	"github.com/replds/replds/acl"
	repldspb "github.com/replds/replds/proto"
)

// membersPath is what ForgetMember authorizes against: forgetting members
// takes a rule naming it (or the whole reserved namespace).
const membersPath = "/_replds/members"

// ForgetMember stops listing a member that failed or left, before
// Config.ReapDeadAfter. A live member cannot be forgotten.
func (s *Server) ForgetMember(ctx context.Context, req *repldspb.ForgetMemberRequest) (*repldspb.ForgetMemberResponse, error) {
	if req.Name == "" {
		return nil, errEmptyMember
	}
	if err := s.authorize(ctx, acl.Write, membersPath); err != nil {
		return nil, err
	}
	if err := s.mem.Forget(req.Name); err != nil {
		return nil, err
	}
	s.log.Info("member forgotten", "member", req.Name, "identity", identity(ctx))
	return &repldspb.ForgetMemberResponse{}, nil
}

// errEmptyMember refuses a ForgetMember without a name.
var errEmptyMember = errors.New("server: forget member: empty name")
