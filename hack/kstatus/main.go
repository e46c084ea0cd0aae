// kstatus: prints what sigs.k8s.io/cli-utils' kstatus (the status library of Flux, kpt and
// `kubectl wait`-style tooling) computes for one object: reads the object as JSON on stdin,
// writes {"status": ..., "message": ...} as JSON on stdout. Built by hack/kstatus/build.sh;
// tests/packaging/kstatus.rs runs it on live PipecatAgents.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// Unstructured's own decoding: integers stay int64, as kstatus expects.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(in); err != nil {
		fail(err)
	}
	res, err := status.Compute(obj)
	if err != nil {
		fail(err)
	}
	out, _ := json.Marshal(map[string]string{"status": res.Status.String(), "message": res.Message})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
