//! The chart's Artifact Hub annotations (Chart.yaml) agree with the project: the CRD they
//! announce is the generated one, the example is `examples/voice-starter.yaml` and passes the
//! CRD's CEL rules, the image is the operator's at the chart's appVersion, the license is the
//! crate's; and `helm lint` accepts the chart.

use pipecat_operator::crd::{self, PipecatAgent};
use serde_json::Value;

fn chart() -> Value {
    let text = std::fs::read_to_string(crate::support::helm::chart_dir().join("Chart.yaml"))
        .expect("Chart.yaml");
    serde_saphyr::from_str(&text).expect("Chart.yaml parses")
}

/// An annotation holding YAML, parsed.
fn annotation(chart: &Value, key: &str) -> Value {
    let text = chart["annotations"][format!("artifacthub.io/{key}")]
        .as_str()
        .unwrap_or_else(|| panic!("annotation artifacthub.io/{key}"));
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("artifacthub.io/{key}: {e}"))
}

#[test]
fn crds_annotation_names_the_generated_crd() {
    let chart = chart();
    let crd = serde_json::to_value(crd::crd()).unwrap();
    let listed = annotation(&chart, "crds");
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 1, "one CRD: {listed:?}");
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["storage"] == true)
        .unwrap();
    assert_eq!(listed[0]["kind"], crd["spec"]["names"]["kind"]);
    assert_eq!(listed[0]["name"], crd["metadata"]["name"]);
    assert_eq!(listed[0]["version"], version["name"]);
    assert_eq!(
        listed[0]["description"],
        version["schema"]["openAPIV3Schema"]["description"]
    );
}

#[test]
fn crds_example_is_the_repository_example() {
    let chart = chart();
    let examples = annotation(&chart, "crdsExamples");
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/voice-starter.yaml"
    ))
    .unwrap();
    let example: Value = serde_saphyr::from_str(&file).unwrap();
    assert_eq!(examples, Value::Array(vec![example.clone()]));
    let agent: PipecatAgent = serde_json::from_value(example).expect("a PipecatAgent");
    agent
        .validate_cel()
        .expect("the example passes the CRD's rules");
}

#[test]
fn image_license_and_changes() {
    let chart = chart();
    let app_version = chart["appVersion"].as_str().unwrap();
    let values: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(crate::support::helm::chart_dir().join("values.yaml")).unwrap(),
    )
    .unwrap();
    let images = annotation(&chart, "images");
    assert_eq!(
        images[0]["image"],
        format!(
            "{}:{app_version}",
            values["image"]["repository"].as_str().unwrap()
        )
    );
    assert_eq!(
        chart["annotations"]["artifacthub.io/license"],
        env!("CARGO_PKG_LICENSE")
    );
    assert_eq!(app_version, env!("CARGO_PKG_VERSION"));
    let changes = annotation(&chart, "changes");
    let kinds = [
        "added",
        "changed",
        "deprecated",
        "removed",
        "fixed",
        "security",
    ];
    for change in changes.as_array().expect("a list of changes") {
        assert!(
            kinds.contains(&change["kind"].as_str().unwrap_or_default()),
            "{change}"
        );
        assert!(
            change["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    for link in annotation(&chart, "links").as_array().expect("links") {
        assert!(link["url"].as_str().unwrap().starts_with("https://"));
    }
}

#[test]
fn helm_lint_accepts_the_chart() {
    let helm = crate::support::helm::Helm::offline();
    let chart = crate::support::helm::chart_dir();
    let out = helm.ok(&["lint", "--strict", chart.to_str().unwrap()]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn chart_and_app_versions_move_together() {
    let chart = chart();
    assert_eq!(
        chart["version"].as_str(),
        chart["appVersion"].as_str(),
        "the chart's version and appVersion move together (hack/release.sh)"
    );
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_release_step_moves_every_version() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = tempfile::tempdir().unwrap();
    let dir = copy.path();
    std::fs::create_dir_all(dir.join("charts/pipecat-operator")).unwrap();
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "CHANGELOG.md",
        "charts/pipecat-operator/Chart.yaml",
    ] {
        std::fs::copy(root.join(file), dir.join(file)).unwrap();
    }
    let out = std::process::Command::new(root.join("hack/release.sh"))
        .args(["9.8.7", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let chart: Value = serde_saphyr::from_str(&read("charts/pipecat-operator/Chart.yaml")).unwrap();
    assert_eq!(chart["version"], "9.8.7");
    assert_eq!(chart["appVersion"], "9.8.7");
    assert_eq!(
        annotation(&chart, "images")[0]["image"],
        "pipecat-operator:9.8.7"
    );
    let manifest: Value = toml_version(&read("Cargo.toml"));
    assert_eq!(manifest, "9.8.7");
    let lock = read("Cargo.lock");
    assert!(
        lock.contains("name = \"pipecat-operator\"\nversion = \"9.8.7\""),
        "Cargo.lock's own entry moved"
    );
    assert!(
        lock.contains("name = \"pipecat-cloud-emulator\"\nversion = \"9.8.7\""),
        "the emulator's entry in Cargo.lock moved with it"
    );
    let changelog = read("CHANGELOG.md");
    let unreleased = changelog.find("## [Unreleased]").unwrap();
    let released = changelog.find("## [9.8.7] - ").unwrap();
    assert!(
        unreleased < released,
        "a new empty Unreleased section opens above the release"
    );
    // Only the workspace's version moved, not a dependency's.
    assert_eq!(
        read("Cargo.toml").matches("9.8.7").count(),
        1,
        "one version line changed in Cargo.toml"
    );
}

/// The version of a Cargo.toml: its first `version = "..."` line (`[workspace.package]`'s in the
/// workspace's manifest, which the packages inherit).
fn toml_version(text: &str) -> Value {
    let line = text
        .lines()
        .find(|l| l.starts_with("version = \""))
        .expect("a version line");
    Value::String(
        line.trim_start_matches("version = \"")
            .trim_end_matches('"')
            .to_string(),
    )
}
