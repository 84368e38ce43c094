// Package admin serves strom.v1.AdminService: databases and tables in the
// catalog.
package admin

import (
	"cmp"
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
	"github.com/strom-io/strom/catalog"
	"github.com/strom-io/strom/services/rpcerr"
)

// Service implements AdminService on a catalog.Store. Every change is one
// catalog transaction, so nothing is ever half created.
type Service struct {
	store  catalog.Store
	logger *slog.Logger
}

var _ stromv1connect.AdminServiceHandler = (*Service)(nil)

// New returns an AdminService over store.
func New(store catalog.Store, logger *slog.Logger) *Service {
	return &Service{store: store, logger: logger}
}

// CreateDatabase implements AdminService.
func (s *Service) CreateDatabase(ctx context.Context, req *connect.Request[stromv1.CreateDatabaseRequest]) (*connect.Response[stromv1.CreateDatabaseResponse], error) {
	if err := rpcerr.Required("name", req.Msg.GetName()); err != nil {
		return nil, err
	}
	db, err := s.store.CreateDatabase(ctx, req.Msg.GetName())
	existed := errors.Is(err, catalog.ErrAlreadyExists) && req.Msg.GetIfNotExists()
	if existed {
		db, err = s.store.GetDatabase(ctx, req.Msg.GetName())
	}
	if err != nil {
		return nil, s.connectError(ctx, "create database", err)
	}
	return connect.NewResponse(&stromv1.CreateDatabaseResponse{Database: databaseToProto(db), Existed: existed}), nil
}

// ListDatabases implements AdminService.
func (s *Service) ListDatabases(ctx context.Context, _ *connect.Request[stromv1.ListDatabasesRequest]) (*connect.Response[stromv1.ListDatabasesResponse], error) {
	dbs, err := s.store.ListDatabases(ctx)
	if err != nil {
		return nil, s.connectError(ctx, "list databases", err)
	}
	resp := &stromv1.ListDatabasesResponse{Databases: make([]*stromv1.Database, 0, len(dbs))}
	for _, db := range dbs {
		resp.Databases = append(resp.Databases, databaseToProto(db))
	}
	return connect.NewResponse(resp), nil
}

// GetDatabase implements AdminService.
func (s *Service) GetDatabase(ctx context.Context, req *connect.Request[stromv1.GetDatabaseRequest]) (*connect.Response[stromv1.GetDatabaseResponse], error) {
	if err := rpcerr.Required("name", req.Msg.GetName()); err != nil {
		return nil, err
	}
	db, err := s.store.GetDatabase(ctx, req.Msg.GetName())
	if err != nil {
		return nil, s.connectError(ctx, "get database", err)
	}
	return connect.NewResponse(&stromv1.GetDatabaseResponse{Database: databaseToProto(db)}), nil
}

// DropDatabase implements AdminService.
func (s *Service) DropDatabase(ctx context.Context, req *connect.Request[stromv1.DropDatabaseRequest]) (*connect.Response[stromv1.DropDatabaseResponse], error) {
	if err := rpcerr.Required("name", req.Msg.GetName()); err != nil {
		return nil, err
	}
	err := s.store.DropDatabase(ctx, req.Msg.GetName(), req.Msg.GetCascade())
	if err != nil && !(errors.Is(err, catalog.ErrNotFound) && req.Msg.GetIfExists()) {
		return nil, s.connectError(ctx, "drop database", err)
	}
	return connect.NewResponse(&stromv1.DropDatabaseResponse{}), nil
}

// CreateTable implements AdminService.
func (s *Service) CreateTable(ctx context.Context, req *connect.Request[stromv1.CreateTableRequest]) (*connect.Response[stromv1.CreateTableResponse], error) {
	if err := cmp.Or(rpcerr.Required("database", req.Msg.GetDatabase()), rpcerr.Required("name", req.Msg.GetName())); err != nil {
		return nil, err
	}
	spec, err := tableSpecFromProto(req.Msg)
	if err != nil {
		return nil, s.connectError(ctx, "create table", err)
	}
	t, err := s.store.CreateTable(ctx, spec)
	existed := errors.Is(err, catalog.ErrAlreadyExists) && req.Msg.GetIfNotExists()
	if existed {
		t, err = s.store.GetTable(ctx, spec.Database, spec.Name)
	}
	if err != nil {
		return nil, s.connectError(ctx, "create table", err)
	}
	return connect.NewResponse(&stromv1.CreateTableResponse{Table: tableToProto(t), Existed: existed}), nil
}

// GetTable implements AdminService.
func (s *Service) GetTable(ctx context.Context, req *connect.Request[stromv1.GetTableRequest]) (*connect.Response[stromv1.GetTableResponse], error) {
	if err := cmp.Or(rpcerr.Required("database", req.Msg.GetDatabase()), rpcerr.Required("name", req.Msg.GetName())); err != nil {
		return nil, err
	}
	t, err := s.store.GetTable(ctx, req.Msg.GetDatabase(), req.Msg.GetName())
	if err != nil {
		return nil, s.connectError(ctx, "get table", err)
	}
	buckets, err := s.store.ListBuckets(ctx, t.ID)
	if err != nil {
		return nil, s.connectError(ctx, "get table", err)
	}
	resp := &stromv1.GetTableResponse{Table: tableToProto(t), Buckets: make([]*stromv1.Bucket, 0, len(buckets))}
	for _, b := range buckets {
		resp.Buckets = append(resp.Buckets, bucketToProto(b))
	}
	return connect.NewResponse(resp), nil
}

// ListTables implements AdminService.
func (s *Service) ListTables(ctx context.Context, req *connect.Request[stromv1.ListTablesRequest]) (*connect.Response[stromv1.ListTablesResponse], error) {
	if err := rpcerr.Required("database", req.Msg.GetDatabase()); err != nil {
		return nil, err
	}
	tables, err := s.store.ListTables(ctx, req.Msg.GetDatabase())
	if err != nil {
		return nil, s.connectError(ctx, "list tables", err)
	}
	resp := &stromv1.ListTablesResponse{Tables: make([]*stromv1.Table, 0, len(tables))}
	for _, t := range tables {
		resp.Tables = append(resp.Tables, tableToProto(t))
	}
	return connect.NewResponse(resp), nil
}

// DropTable implements AdminService.
func (s *Service) DropTable(ctx context.Context, req *connect.Request[stromv1.DropTableRequest]) (*connect.Response[stromv1.DropTableResponse], error) {
	if err := cmp.Or(rpcerr.Required("database", req.Msg.GetDatabase()), rpcerr.Required("name", req.Msg.GetName())); err != nil {
		return nil, err
	}
	err := s.store.DropTable(ctx, req.Msg.GetDatabase(), req.Msg.GetName())
	if err != nil && !(errors.Is(err, catalog.ErrNotFound) && req.Msg.GetIfExists()) {
		return nil, s.connectError(ctx, "drop table", err)
	}
	return connect.NewResponse(&stromv1.DropTableResponse{}), nil
}

// AlterTable implements AdminService.
func (s *Service) AlterTable(ctx context.Context, req *connect.Request[stromv1.AlterTableRequest]) (*connect.Response[stromv1.AlterTableResponse], error) {
	if err := cmp.Or(rpcerr.Required("database", req.Msg.GetDatabase()), rpcerr.Required("name", req.Msg.GetName())); err != nil {
		return nil, err
	}
	if len(req.Msg.GetAddColumns()) == 0 {
		return nil, s.connectError(ctx, "alter table", &catalog.ValidationError{Field: "add_columns", Reason: "no change requested: name at least one column to add"})
	}
	cols, err := columnsFromProto("add_columns", req.Msg.GetAddColumns())
	if err != nil {
		return nil, s.connectError(ctx, "alter table", err)
	}
	t, err := s.store.AddColumns(ctx, req.Msg.GetDatabase(), req.Msg.GetName(), cols)
	if err != nil {
		return nil, s.connectError(ctx, "alter table", err)
	}
	return connect.NewResponse(&stromv1.AlterTableResponse{Table: tableToProto(t)}), nil
}
