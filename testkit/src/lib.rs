//! Test harness shared by the integration tests, the demo and the benchmark: a real
//! kube-apiserver + etcd on loopback ([`controlplane`]). Not published.

pub mod controlplane;
