package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"connectrpc.com/connect"
)

// RetryPolicy bounds the retries of retryable errors (Connect codes
// unavailable, resource_exhausted, deadline_exceeded and aborted). The wait
// before retry n (from 1) is a random duration in [d/2, d] with
// d = min(MaxBackoff, InitialBackoff·2^(n-1)) ("equal jitter"), so writers
// that fail together do not retry together. Zero fields take the defaults.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts including the first; default 30,
	// so that with MaxElapsed the default rides out a frontend failover
	// (bounded by the lease TTL, 10 s by default). 1 disables retries; a
	// negative value means no limit.
	MaxAttempts int
	// MaxElapsed bounds the time from the first attempt until the last retry
	// starts; default 2 minutes; a negative value means no limit.
	MaxElapsed time.Duration
	// InitialBackoff is the wait before the first retry; default 50 ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the wait between attempts; default 5 s.
	MaxBackoff time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 30
	}
	if p.MaxElapsed == 0 {
		p.MaxElapsed = 2 * time.Minute
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = 50 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Second
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	return p
}

// backoff returns the wait before retry n (n ≥ 1).
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.InitialBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// IsRetryable reports whether err is worth retrying unchanged: the Connect
// codes unavailable, resource_exhausted, deadline_exceeded and aborted, and
// transport failures that are not a server's answer (a connection reset or
// broken because the frontend died or a load balancer dropped it, which
// connect reports as canceled or unknown). A cancelled caller context is
// never retryable; retry loops check the caller's context first.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeResourceExhausted, connect.CodeDeadlineExceeded, connect.CodeAborted:
		return true
	case connect.CodeCanceled, connect.CodeUnknown:
		var ce *connect.Error
		return errors.As(err, &ce) && !connect.IsWireError(ce)
	}
	return false
}

// Retry calls fn until it succeeds, fails with an error that is not
// retryable (see IsRetryable), p is exhausted (zero fields take the
// defaults) or ctx ends. It returns the number of attempts made and the last
// error. It is the loop the Producer uses, for callers that send their own
// requests; such requests must be idempotent (a writer id and sequence).
func Retry(ctx context.Context, p RetryPolicy, fn func(ctx context.Context) error) (attempts int, err error) {
	return retry(ctx, p.withDefaults(), fn)
}

// retry is Retry with a policy that has its defaults.
func retry(ctx context.Context, p RetryPolicy, fn func(ctx context.Context) error) (int, error) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return attempt, nil
		}
		if ctx.Err() != nil {
			return attempt, errors.Join(ctx.Err(), err)
		}
		if !IsRetryable(err) ||
			(p.MaxAttempts > 0 && attempt >= p.MaxAttempts) {
			return attempt, err
		}
		wait := p.backoff(attempt)
		if p.MaxElapsed > 0 && time.Since(start)+wait > p.MaxElapsed {
			return attempt, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}
