package admin

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/catalog"
)

// GetClusterStatus implements AdminService: the live members and every
// bucket's leader, read from the catalog (any frontend answers the same).
func (s *Service) GetClusterStatus(ctx context.Context, _ *connect.Request[stromv1.GetClusterStatusRequest]) (*connect.Response[stromv1.GetClusterStatusResponse], error) {
	members, err := s.store.ListMembers(ctx)
	if err != nil {
		return nil, s.connectError(ctx, "cluster status", err)
	}
	states, err := s.store.ListAllBuckets(ctx)
	if err != nil {
		return nil, s.connectError(ctx, "cluster status", err)
	}
	names, err := s.tableNames(ctx)
	if err != nil {
		return nil, s.connectError(ctx, "cluster status", err)
	}
	now := time.Now()
	led := map[string]int32{}
	resp := &stromv1.GetClusterStatusResponse{}
	for _, st := range states {
		name, ok := names[st.TableID]
		if !ok { // created after the table listing
			continue
		}
		live := st.Leader != "" && st.LeaseExpiry.After(now)
		if live {
			led[st.Leader]++
		}
		resp.Buckets = append(resp.Buckets, &stromv1.BucketLeadership{
			Database: name[0], Table: name[1], Bucket: bucketToProto(st), Live: live,
		})
	}
	slices.SortStableFunc(resp.Buckets, func(a, b *stromv1.BucketLeadership) int {
		return cmp.Or(cmp.Compare(a.GetDatabase(), b.GetDatabase()), cmp.Compare(a.GetTable(), b.GetTable()),
			cmp.Compare(a.GetBucket().GetPartition(), b.GetBucket().GetPartition()), cmp.Compare(a.GetBucket().GetBucket(), b.GetBucket().GetBucket()))
	})
	for _, m := range members {
		resp.Members = append(resp.Members, &stromv1.Member{
			Id: m.ID, ApiAddress: m.APIAddress, InternalAddress: m.Address, Roles: m.Roles,
			StartTime: timestamppb.New(m.Started), ExpireTime: timestamppb.New(m.Expiry), LeaderOf: led[m.ID],
		})
	}
	return connect.NewResponse(resp), nil
}

// tableNames maps every table id to its database and name.
func (s *Service) tableNames(ctx context.Context) (map[int64][2]string, error) {
	dbs, err := s.store.ListDatabases(ctx)
	if err != nil {
		return nil, err
	}
	out := map[int64][2]string{}
	for _, db := range dbs {
		tables, err := s.store.ListTables(ctx, db.Name)
		if err != nil {
			if isNotFound(err) { // dropped meanwhile
				continue
			}
			return nil, err
		}
		for _, t := range tables {
			out[t.ID] = [2]string{t.Database, t.Name}
		}
	}
	return out, nil
}

func isNotFound(err error) bool { return errors.Is(err, catalog.ErrNotFound) }
