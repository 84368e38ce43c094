module github.com/strom-io/strom/tiering

go 1.26

require github.com/strom-io/strom/catalog v0.0.0

require (
	go.etcd.io/bbolt v1.4.3 // indirect
	golang.org/x/sys v0.39.0 // indirect
)

replace github.com/strom-io/strom/catalog => ../catalog
