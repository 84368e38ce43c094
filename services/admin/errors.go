package admin

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/strom-io/strom/catalog"
)

// connectError maps a catalog error to a Connect error once, at the handler
// edge. Users get the message of errors they caused; internal errors are
// logged and reported without detail.
func (s *Service) connectError(ctx context.Context, op string, err error) error {
	code := connect.CodeInternal
	switch {
	case errors.Is(err, catalog.ErrInvalid):
		code = connect.CodeInvalidArgument
	case errors.Is(err, catalog.ErrNotFound):
		code = connect.CodeNotFound
	case errors.Is(err, catalog.ErrAlreadyExists):
		code = connect.CodeAlreadyExists
	case errors.Is(err, catalog.ErrNotEmpty):
		code = connect.CodeFailedPrecondition
	case errors.Is(err, catalog.ErrUnavailable):
		code = connect.CodeUnavailable
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	}
	if code == connect.CodeInternal {
		s.logger.ErrorContext(ctx, "admin request failed", slog.String("op", op), slog.Any("err", err))
		return connect.NewError(code, errors.New(op+": internal error"))
	}
	if code == connect.CodeUnavailable {
		s.logger.WarnContext(ctx, "catalog unavailable", slog.String("op", op), slog.Any("err", err))
	}
	return connect.NewError(code, err)
}
