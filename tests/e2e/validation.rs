//! Invalid manifests are rejected by the real apiserver at `kubectl apply` time, with messages a
//! person can act on (OpenAPI schema + CEL rules of the generated CRD).

use crate::support::controlplane::{ControlPlane, describe_output, kubectl_stdin};

fn manifest(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata:\n  name: {name}\nspec:\n{spec}\n"
    )
}

/// (what is wrong, metadata.name, spec lines, a part of the expected error)
const REJECTED: &[(&str, &str, &str, &str)] = &[
    (
        "image and buildId",
        "both",
        "  image: a/b:1\n  buildId: 3f1c9a2e-1d2b-4c5d-8e9f-0a1b2c3d4e5f",
        "exactly one of spec.image or spec.buildId must be set",
    ),
    (
        "neither image nor buildId",
        "neither",
        "  secretSet: voice-secrets",
        "exactly one of spec.image or spec.buildId must be set",
    ),
    (
        "minAgents above maxAgents",
        "minmax",
        "  image: a/b:1\n  autoScaling: {minAgents: 5, maxAgents: 2}",
        "autoScaling.minAgents must not be greater than autoScaling.maxAgents",
    ),
    (
        "maxAgents zero",
        "maxzero",
        "  image: a/b:1\n  autoScaling: {minAgents: 0, maxAgents: 0}",
        "spec.autoScaling.maxAgents: Invalid value: 0: spec.autoScaling.maxAgents in body should be greater than or equal to 1",
    ),
    (
        "negative minAgents",
        "minneg",
        "  image: a/b:1\n  autoScaling: {minAgents: -1, maxAgents: 2}",
        "spec.autoScaling.minAgents in body should be greater than or equal to 0",
    ),
    (
        "maxAgents missing",
        "maxmissing",
        "  image: a/b:1\n  autoScaling: {minAgents: 1}",
        "spec.autoScaling.maxAgents: Required value",
    ),
    (
        "minAgents not a number",
        "mintype",
        "  image: a/b:1\n  autoScaling: {minAgents: one, maxAgents: 2}",
        "spec.autoScaling.minAgents in body must be of type integer",
    ),
    (
        "unknown node type",
        "nodetype",
        "  image: a/b:1\n  nodeType: x86",
        "spec.nodeType: Unsupported value: \"x86\": supported values: \"arm\"",
    ),
    (
        "unknown agent profile",
        "profile",
        "  image: a/b:1\n  agentProfile: agent-9x",
        "spec.agentProfile: Unsupported value: \"agent-9x\"",
    ),
    (
        "unknown Krisp VIVA filter",
        "viva",
        "  image: a/b:1\n  krispViva: {audioFilter: loud}",
        "spec.krispViva.audioFilter: Unsupported value: \"loud\"",
    ),
    (
        "enableKrisp not a boolean",
        "krisptype",
        "  image: a/b:1\n  enableKrisp: \"yes\"",
        "spec.enableKrisp in body must be of type boolean",
    ),
    (
        "session too short",
        "short",
        "  image: a/b:1\n  maxSessionDuration: 30",
        "spec.maxSessionDuration in body should be greater than or equal to 60",
    ),
    (
        "session too long",
        "long",
        "  image: a/b:1\n  maxSessionDuration: 20000",
        "spec.maxSessionDuration in body should be less than or equal to 14400",
    ),
    (
        "agent name with capitals and underscore",
        "badname",
        "  image: a/b:1\n  agentName: Voice_Bot",
        "spec.agentName in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])$'",
    ),
    (
        "agent name of one character",
        "onechar",
        "  image: a/b:1\n  agentName: a",
        "spec.agentName in body should be at least 2 chars long",
    ),
    (
        "agent name over 54 characters",
        "longname",
        "  image: a/b:1\n  agentName: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "spec.agentName: Too long: may not be more than 54",
    ),
    (
        "metadata.name not an agent name",
        "voice.starter",
        "  image: a/b:1",
        "metadata.name is not a valid Pipecat agent name",
    ),
    (
        "unknown deletion policy",
        "policy",
        "  image: a/b:1\n  deletionPolicy: Destroy",
        "spec.deletionPolicy: Unsupported value: \"Destroy\": supported values: \"Delete\", \"Orphan\"",
    ),
    (
        "credentials Secret in another namespace",
        "crossns",
        "  image: a/b:1\n  credentials:\n    secretRef: {name: pipecat-api-key, namespace: kube-system}",
        "unknown field \"spec.credentials.secretRef.namespace\"",
    ),
    (
        "credentials Secret name with a slash",
        "slash",
        "  image: a/b:1\n  credentials:\n    secretRef: {name: kube-system/pipecat-api-key}",
        "spec.credentials.secretRef.name in body should match",
    ),
    (
        "secret set name too short",
        "setshort",
        "  image: a/b:1\n  secretSet: ab",
        "spec.secretSet in body should be at least 3 chars long",
    ),
    (
        "buildId not a UUID",
        "buildid",
        "  buildId: build-42",
        "spec.buildId in body should match",
    ),
    (
        "empty image",
        "emptyimage",
        "  image: \"\"",
        "spec.image in body should be at least 1 chars long",
    ),
    (
        "unknown spec field",
        "unknown",
        "  image: a/b:1\n  replicas: 3",
        "unknown field \"spec.replicas\"",
    ),
    (
        "region with capitals",
        "region",
        "  image: a/b:1\n  region: US-West",
        "spec.region in body should match",
    ),
];

#[test]
fn invalid_manifests_are_rejected_with_readable_messages() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("invalid");
    // The control: the same helper's manifest with a valid spec is accepted (server-side dry
    // run), so the rejections below come from the rules, not from a broken manifest or CRD.
    let valid = manifest(
        "valid",
        "  image: a/b:1\n  autoScaling: {minAgents: 0, maxAgents: 1}",
    );
    let out = kubectl_stdin(
        cp.kubeconfig_path(),
        &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
        &valid,
    );
    assert!(
        out.status.success(),
        "a valid manifest was rejected:\n{valid}\n{}",
        describe_output(&out)
    );
    let mut failures = Vec::new();
    for (what, name, spec, expected) in REJECTED {
        let yaml = manifest(name, spec);
        let out = kubectl_stdin(
            cp.kubeconfig_path(),
            &["apply", "-n", &ns, "-f", "-"],
            &yaml,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{what}: accepted\n{yaml}"));
        } else if !stderr.contains(expected) {
            failures.push(format!("{what}: expected {expected:?} in:\n{stderr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n\n{}",
        failures.len(),
        REJECTED.len(),
        failures.join("\n\n")
    );
    // Nothing was stored.
    let out = cp.kubectl(&["get", "pipecatagents", "-n", &ns, "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
}

#[test]
fn agent_name_and_region_cannot_change_after_creation() {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let ns = cp.namespace("immutable");
    let apply =
        |yaml: &str| kubectl_stdin(cp.kubeconfig_path(), &["apply", "-n", &ns, "-f", "-"], yaml);

    let original = manifest("bot", "  image: a/b:1\n  region: us-west");
    let out = apply(&original);
    assert!(out.status.success(), "{}", describe_output(&out));

    for (what, spec, expected) in [
        (
            "region changed",
            "  image: a/b:1\n  region: eu-central",
            "spec.region is immutable once set",
        ),
        (
            "region removed",
            "  image: a/b:1",
            "spec.region is immutable once set",
        ),
        (
            "agentName set to another name",
            "  image: a/b:1\n  region: us-west\n  agentName: other-bot",
            "spec.agentName is immutable",
        ),
    ] {
        let out = apply(&manifest("bot", spec));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(
            stderr.contains(expected),
            "{what}: expected {expected:?} in:\n{stderr}"
        );
    }

    // Spelling out the default name and changing the image are fine.
    let out = apply(&manifest(
        "bot",
        "  image: a/b:2\n  region: us-west\n  agentName: bot",
    ));
    assert!(out.status.success(), "{}", describe_output(&out));
}

/// `kubectl explain PATH` once it answers: the CRD's schema reaches the OpenAPI document a
/// moment after it is Established (tried for 30 s).
fn explain(path: &str) -> std::process::Output {
    let cp = ControlPlane::get();
    cp.apply_crds();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = cp.kubectl(&["explain", path]);
        if out.status.success() || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn explain_reads_as_documentation() {
    let out = explain("pipecatagent.spec.autoScaling");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        text.contains("minAgents") && text.contains("maxAgents"),
        "{text}"
    );
    assert!(text.contains("scale to zero"), "{text}");
}

#[test]
fn enable_krisp_applies_with_a_warning_that_points_to_krisp_viva() {
    let cp = ControlPlane::get();
    cp.apply_crds(); // crds/ holds the warnings policy too
    let ns = cp.namespace("krisp");
    let apply = |name: &str, spec: &str| {
        kubectl_stdin(
            cp.kubeconfig_path(),
            &["apply", "-n", &ns, "-f", "-"],
            &manifest(name, spec),
        )
    };
    // The policy reaches the apiserver's admission a moment after it is created.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let out = loop {
        let out = apply("krisp", "  image: a/b:1\n  enableKrisp: true");
        assert!(
            out.status.success(),
            "a manifest with enableKrisp is still accepted: {}",
            describe_output(&out)
        );
        if String::from_utf8_lossy(&out.stderr).contains("Warning")
            || std::time::Instant::now() > deadline
        {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning:")
            && stderr.contains("spec.enableKrisp is ignored")
            && stderr.contains("krispViva"),
        "no warning for enableKrisp: {}",
        describe_output(&out)
    );
    // Stored as written: the warning rejects nothing.
    let got = cp.kubectl(&[
        "get",
        "-n",
        &ns,
        "pipecatagent/krisp",
        "-o",
        "jsonpath={.spec.enableKrisp}",
    ]);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "true");
    // A manifest without it applies with no warning at all.
    let out = apply("viva", "  image: a/b:1\n  krispViva: {audioFilter: tel}");
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Warning"),
        "{}",
        describe_output(&out)
    );
}

#[test]
fn explain_says_enable_krisp_is_ignored() {
    let out = explain("pipecatagent.spec.enableKrisp");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        text.contains("Ignored") && text.contains("krispViva"),
        "{text}"
    );
}
