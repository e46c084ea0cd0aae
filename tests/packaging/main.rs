//! What ships, checked against the tools that consume it: the crate manifest, the defaults the
//! flags and the chart share, the CRDs, the Helm chart (lint, RBAC, install against the real
//! control plane), its alerts and dashboard, its Artifact Hub annotations, the container image
//! run with runc, the Argo CD health check and kstatus on live resources, and the layout of
//! `src/` (no import cycle, the runtime importing no kind). One module each.
//!
//! One test binary: the tests that need a control plane share one (`ControlPlane::get`) and run
//! side by side, each in namespaces (and Helm releases) of its own.

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod argocd;
mod artifacthub;
mod container;
mod crd;
mod defaults;
mod helm;
mod kstatus;
mod layout;
mod manifest;
