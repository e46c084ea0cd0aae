//! Reliability and security of the operator binary against the real control plane and the
//! Pipecat Cloud emulator: remote faults and bad input (`faults`), SIGKILL at chosen points
//! (`kill`), and credentials that never leak (`credential_leaks`). With
//! `PIPECAT_RELIABILITY_REPORT=DIR` every case records its row of docs/RELIABILITY.md
//! (`hack/reliability-report.sh`).
//!
//! One test binary: its tests share one control plane (`ControlPlane::get`) and run side by
//! side, each with namespaces, an emulator and operator processes of its own. The kube-apiserver
//! restart is the one scenario with a binary of its own (`tests/reliability_apiserver.rs`): it
//! restarts the control plane its binary's tests share.

#[path = "../support/mod.rs"]
mod support;

mod credential_leaks;
mod faults;
mod kill;
