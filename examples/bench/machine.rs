//! What a run was measured on: the machine and the operator source.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The operator source measured: the commit, and the files under `src/` that differ from it
/// (the operator binary is built from the working tree).
pub fn source(operator_bin: &Path) -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let changed: Vec<String> =
        command_output("git", &["-C", root, "status", "--porcelain", "--", "src"])
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
    // hack/bench.sh records the commit it built the operator from.
    let built_from = std::env::var("PIPECAT_BENCH_SOURCE").ok();
    let built = std::fs::metadata(operator_bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string());
    json!({
        "commit": command_output("git", &["-C", root, "rev-parse", "--short", "HEAD"]),
        "uncommittedSrcChanges": changed,
        "operatorBinaryBuilt": built,
        "operatorBuiltFrom": built_from,
    })
}

pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let logical = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    json!({
        "cpuModel": field("model name"),
        "cpuMHz": field("cpu MHz"),
        "cacheSize": field("cache size"),
        "logicalCpus": logical,
        "nproc": command_output("nproc", &[]),
        "free": command_output("free", &["-h"]),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "loadAverageAtStart": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}
