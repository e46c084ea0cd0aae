//! End to end: the operator binary against a real kube-apiserver + etcd and the Pipecat Cloud
//! emulator, driven the way a user would (kubectl, the API), plus its Pipecat Cloud client
//! against the emulator over HTTP. One module per behaviour.
//!
//! One test binary: the tests that need a control plane share one (`ControlPlane::get`, started
//! by the first of them) and run side by side, each in namespaces of its own with an emulator
//! and an operator process of its own, so none depends on another's objects.

#[path = "../support/mod.rs"]
mod support;

mod cloud_client;
mod export;
mod lanes;
mod lifecycle;
mod namespace_deletion;
mod object_state;
mod operations;
mod ownership;
mod scale;
mod scopes;
mod secret_rotation;
mod secret_sets;
mod semantics;
mod validation;
mod writes;
