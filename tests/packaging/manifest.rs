//! The package manifest tells the truth: the declared minimum Rust version is at least what
//! every locked dependency declares, so `cargo` refuses an older toolchain up front instead of
//! failing deep inside a dependency's build.

use std::process::Command;

fn version(v: &str) -> (u64, u64, u64) {
    let mut parts = v
        .split('.')
        .map(|p| p.parse::<u64>().expect("numeric version part"));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let root_id = meta["resolve"]["root"].as_str().expect("a root package");
    let packages = meta["packages"].as_array().unwrap();
    let root = packages.iter().find(|p| p["id"] == root_id).unwrap();
    let declared = root["rust_version"]
        .as_str()
        .expect("Cargo.toml declares rust-version");
    let mut needs: Vec<(String, &str)> = packages
        .iter()
        .filter(|p| p["id"] != root_id)
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            (version(v) > version(declared)).then(|| (p["name"].as_str().unwrap().to_string(), v))
        })
        .collect();
    needs.sort();
    assert!(
        needs.is_empty(),
        "rust-version = {declared} in Cargo.toml, but these dependencies need more: {needs:?}"
    );
}
