// Command etcd is the etcd server, built from the go.etcd.io/etcd/server/v3 release module.
// It is what the etcd repository's own main package does: hand the arguments to etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
