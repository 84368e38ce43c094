package auth_test

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/strom-io/strom/api/gen/strom/v1" // registers the public services
	"github.com/strom-io/strom/services/auth"
)

// publicProcedures lists every RPC of package strom.v1, from the
// registered descriptors, so that a new RPC cannot be forgotten.
func publicProcedures(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	protoregistry.GlobalFiles.RangeFilesByPackage("strom.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				out["/"+string(sd.FullName())+"/"+string(md.Name())] = md
			}
		}
		return true
	})
	if len(out) < 21 {
		t.Fatalf("found %d procedures of strom.v1, want at least 21", len(out))
	}
	return out
}

// TestEveryProcedureHasARule: each public RPC has a rule that reads the
// database from its request.
func TestEveryProcedureHasARule(t *testing.T) {
	clusterWide := map[string]bool{
		"/strom.v1.AdminService/CreateDatabase":   true,
		"/strom.v1.AdminService/ListDatabases":    true,
		"/strom.v1.AdminService/GetClusterStatus": true,
	}
	for proc, md := range publicProcedures(t) {
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			t.Fatal(err)
		}
		msg := mt.New()
		setDatabase(msg, "shop")
		db, scope, ok := auth.Requirement(proc, msg.Interface())
		switch {
		case !ok:
			t.Errorf("%s has no authorization rule: add it to rules in rules.go", proc)
		case scope < auth.ScopeRead:
			t.Errorf("%s needs %s, want read, write or admin", proc, scope)
		case clusterWide[proc] && db != "":
			t.Errorf("%s: database %q, want cluster-wide", proc, db)
		case !clusterWide[proc] && db != "shop":
			t.Errorf("%s: database %q, want the request's (shop)", proc, db)
		}
	}
	if _, _, ok := auth.Requirement("/strom.v1.AdminService/Nothing", nil); ok {
		t.Error("an unknown procedure has a rule")
	}
}

// setDatabase sets the database of a request: its database field, the
// name of a database request (CreateDatabase, GetDatabase, DropDatabase),
// or the database of an embedded request (Subscribe's fetch).
func setDatabase(m protoreflect.Message, db string) {
	fields := m.Descriptor().Fields()
	if f := fields.ByName("database"); f != nil && f.Kind() == protoreflect.StringKind {
		m.Set(f, protoreflect.ValueOfString(db))
		return
	}
	if f := fields.ByName("name"); f != nil && f.Kind() == protoreflect.StringKind && m.Descriptor().Name() != "CreateDatabaseRequest" {
		m.Set(f, protoreflect.ValueOfString(db))
		return
	}
	for i := range fields.Len() {
		if f := fields.Get(i); f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() {
			setDatabase(m.Mutable(f).Message(), db)
		}
	}
}
