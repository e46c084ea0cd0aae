//! The control plane harness (real etcd + kube-apiserver), from the `testkit` workspace crate
//! that the tests, the demo and the benchmark share.

pub use testkit::controlplane::*;
