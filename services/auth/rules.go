package auth

import (
	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
	"github.com/strom-io/strom/api/gen/strom/v1/stromv1connect"
)

// rule is what one procedure needs: a scope on the database its request
// names. database returns "" for a cluster-wide request, which needs the
// scope on AllDatabases.
type rule struct {
	scope    Scope
	database func(msg any) string
}

// Reflection procedures: any valid token may list the services and their
// schemas.
const (
	reflectV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflectV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// rules maps every procedure the interceptor guards to its rule. A
// procedure without a rule is refused (fail closed); TestEveryProcedureHasARule
// keeps the table complete.
//
// Database lifecycle: creating and listing databases is cluster-wide
// (admin, read on "*"); getting and dropping one needs read, admin on it.
// Tables: DDL needs admin, GetTable and ListTables read. Writes need write,
// reads read. The cluster status lists every table's buckets, so it needs
// read on "*"; so does the lake status of every database (no database in
// the request), while the lake status of one database needs read on it.
var rules = map[string]rule{
	stromv1connect.AdminServiceCreateDatabaseProcedure:   {ScopeAdmin, clusterWide},
	stromv1connect.AdminServiceListDatabasesProcedure:    {ScopeRead, clusterWide},
	stromv1connect.AdminServiceGetDatabaseProcedure:      {ScopeRead, nameField},
	stromv1connect.AdminServiceDropDatabaseProcedure:     {ScopeAdmin, nameField},
	stromv1connect.AdminServiceCreateTableProcedure:      {ScopeAdmin, databaseField},
	stromv1connect.AdminServiceGetTableProcedure:         {ScopeRead, databaseField},
	stromv1connect.AdminServiceListTablesProcedure:       {ScopeRead, databaseField},
	stromv1connect.AdminServiceDropTableProcedure:        {ScopeAdmin, databaseField},
	stromv1connect.AdminServiceAlterTableProcedure:       {ScopeAdmin, databaseField},
	stromv1connect.AdminServiceGetClusterStatusProcedure: {ScopeRead, clusterWide},
	stromv1connect.AdminServiceGetLakeStatusProcedure:    {ScopeRead, databaseField},

	stromv1connect.WriteServiceAppendProcedure: {ScopeWrite, databaseField},
	stromv1connect.WriteServiceUpsertProcedure: {ScopeWrite, databaseField},
	stromv1connect.WriteServiceDeleteProcedure: {ScopeWrite, databaseField},

	stromv1connect.ReadServiceListOffsetsProcedure:  {ScopeRead, databaseField},
	stromv1connect.ReadServiceFetchProcedure:        {ScopeRead, databaseField},
	stromv1connect.ReadServiceSubscribeProcedure:    {ScopeRead, subscribeDatabase},
	stromv1connect.ReadServiceLookupProcedure:       {ScopeRead, databaseField},
	stromv1connect.ReadServicePrefixLookupProcedure: {ScopeRead, databaseField},
	stromv1connect.ReadServiceScanProcedure:         {ScopeRead, databaseField},
	stromv1connect.ReadServiceScanStreamProcedure:   {ScopeRead, scanStreamDatabase},
	stromv1connect.ReadServiceCountProcedure:        {ScopeRead, databaseField},

	reflectV1:      {ScopeAny, clusterWide},
	reflectV1Alpha: {ScopeAny, clusterWide},
}

func clusterWide(any) string { return "" }

// databaseField is the database field of most requests. A request that
// leaves it empty (invalid, except for GetLakeStatus) is judged as
// cluster-wide: only a grant on "*" lets it reach the handler.
func databaseField(msg any) string {
	if m, ok := msg.(interface{ GetDatabase() string }); ok {
		return m.GetDatabase()
	}
	return ""
}

// nameField is the name field of the database requests.
func nameField(msg any) string {
	if m, ok := msg.(interface{ GetName() string }); ok {
		return m.GetName()
	}
	return ""
}

func subscribeDatabase(msg any) string {
	if m, ok := msg.(*stromv1.SubscribeRequest); ok {
		return m.GetFetch().GetDatabase()
	}
	return ""
}

func scanStreamDatabase(msg any) string {
	if m, ok := msg.(*stromv1.ScanStreamRequest); ok {
		return m.GetScan().GetDatabase()
	}
	return ""
}

// Requirement returns what a call of procedure (e.g.
// "/strom.v1.ReadService/Fetch") with the request msg needs: a scope on a
// database ("" for cluster-wide). ok is false for a procedure without a
// rule, which the interceptor refuses.
func Requirement(procedure string, msg any) (database string, scope Scope, ok bool) {
	r, ok := rules[procedure]
	if !ok {
		return "", ScopeNone, false
	}
	return r.database(msg), r.scope, true
}
