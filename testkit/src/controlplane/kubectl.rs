//! Clients and kubectl runs for a kubeconfig, and the description of a finished command.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::lifetime::block_on;

/// A client for the kubeconfig at `path` (via `Kubeconfig::read_from` and
/// `Config::from_custom_kubeconfig`). Inside a tokio runtime the client belongs to that runtime;
/// outside one it is bound to the harness's own runtime.
pub fn client_from_kubeconfig(path: &Path) -> Client {
    let owned = path.to_path_buf();
    let config = block_on(async move {
        let kubeconfig = Kubeconfig::read_from(&owned)?;
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await
    })
    .unwrap_or_else(|e| panic!("loading kubeconfig {}: {e}", path.display()));
    let built = if tokio::runtime::Handle::try_current().is_ok() {
        Client::try_from(config)
    } else {
        block_on(async move { Client::try_from(config) })
    };
    built.unwrap_or_else(|e| panic!("building a client from {}: {e}", path.display()))
}

/// Runs kubectl with the given kubeconfig (e.g. one from [`ControlPlane::mint_user`]).
pub fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"))
}

/// Runs kubectl with the given kubeconfig, feeding `stdin`.
pub fn kubectl_stdin(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"));
    let mut pipe = child.stdin.take().expect("kubectl stdin");
    let input = stdin.to_owned();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("running kubectl: {e}"));
    let _ = writer.join();
    out
}

/// "exit status: stdout / stderr" of a finished command, for assertion messages.
pub fn describe_output(out: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn kubectl_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("kubectl");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/bin/kubectl")
}
