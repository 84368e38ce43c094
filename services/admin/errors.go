package admin

import (
	"context"

	"github.com/strom-io/strom/services/rpcerr"
)

// connectError maps err to a Connect error at the handler edge.
func (s *Service) connectError(ctx context.Context, op string, err error) error {
	return rpcerr.Connect(ctx, s.logger, op, err)
}
