//! kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the readiness rules of Flux, kpt and
//! cli-utils' appliers, run as its own code (hack/kstatus/: a wrapper command built from the
//! module, go.sum committed) on live PipecatAgents the operator drives against the emulator.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use pipecat_cloud_emulator as emulator;
use pipecat_operator::crd::PipecatAgent;
use serde_json::Value;

use crate::support::operator::{Env, Options};

/// The kstatus wrapper, built once by hack/kstatus/build.sh (cached by version).
fn kstatus_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/kstatus/build.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run hack/kstatus/build.sh");
        assert!(out.status.success(), "hack/kstatus/build.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// kstatus's `(status, message)` for an object.
fn kstatus(obj: &Value) -> (String, String) {
    let mut child = Command::new(kstatus_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kstatus");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(obj.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kstatus failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        res["status"].as_str().unwrap().to_string(),
        res["message"].as_str().unwrap_or_default().to_string(),
    )
}

async fn kstatus_of(env: &Env, name: &str) -> (String, String, Value) {
    let obj = serde_json::to_value(env.agents().get(name).await.expect("get")).unwrap();
    let (status, message) = kstatus(&obj);
    (status, message, obj)
}

fn agent_yaml(name: &str, image: &str) -> String {
    format!(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  secretSet: voice-starter-secrets\n  autoScaling: {{minAgents: 0, maxAgents: 2}}\n"
    )
}

fn reason_is(a: &PipecatAgent, reason: &str) -> bool {
    a.condition("Ready")
        .is_some_and(|c| c.reason == reason && c.observed_generation == a.metadata.generation)
}

async fn env(prefix: &str) -> Env {
    Env::start(
        prefix,
        Options {
            emulator: emulator::Config {
                ready_delay: Duration::from_secs(3),
                reconcile_delay: Duration::from_secs(3),
                crash_image_pattern: Some("*:crash*".into()),
                ..emulator::Config::default()
            },
            ..Options::default()
        },
    )
    .await
}

#[tokio::test]
async fn in_progress_while_rolling_out_current_when_ready_in_progress_after_a_change() {
    let env = env("kstatus").await;
    let wait = Duration::from_secs(60);

    env.apply(&agent_yaml("bot", "example/voice:1"));
    env.wait_for("bot", wait, "Ready=False Deploying", |a| {
        reason_is(a, "Deploying")
    })
    .await;
    let (status, message, obj) = kstatus_of(&env, "bot").await;
    assert_eq!(status, "InProgress", "rolling out: {message}\n{obj:#}");

    env.wait_ready("bot").await;
    let (status, message, obj) = kstatus_of(&env, "bot").await;
    assert_eq!(status, "Current", "Ready: {message}\n{obj:#}");

    // Right after a spec change: kstatus must not report the old generation's readiness.
    env.apply(&agent_yaml("bot", "example/voice:2"));
    let (status, message, obj) = kstatus_of(&env, "bot").await;
    assert_eq!(
        status, "InProgress",
        "after a spec change: {message}\n{obj:#}"
    );
    // Until the operator has seen generation 2, the observedGeneration gap alone makes
    // kstatus say InProgress. Once the status is about generation 2 and says the new
    // deployment rolls out, InProgress comes from the conditions the operator wrote.
    let rolling = env
        .wait_for(
            "bot",
            wait,
            "generation 2 observed, Ready=False Deploying",
            |a| {
                a.metadata.generation == Some(2)
                    && a.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
                    && reason_is(a, "Deploying")
            },
        )
        .await;
    // kstatus of that very object (a second read could already show the roll-out done).
    let obj = serde_json::to_value(&rolling).unwrap();
    let (status, message) = kstatus(&obj);
    assert_eq!(
        status, "InProgress",
        "generation 2 rolling out: {message}\n{obj:#}"
    );

    env.wait_ready("bot").await;
    let (status, message, _) = kstatus_of(&env, "bot").await;
    assert_eq!(status, "Current", "the new spec Ready: {message}");
}

/// kstatus reports Failed from a `Stalled=True` condition, which the operator sets on a failed
/// deployment (so Flux stops waiting at once instead of at its timeout).
#[tokio::test]
async fn failed_on_a_failed_deployment() {
    let env = env("kstatus-failed").await;
    env.apply(&agent_yaml("crashing", "example/voice:crash-1"));
    env.wait_for(
        "crashing",
        Duration::from_secs(60),
        "Ready=False CrashLoopBackOff",
        |a| reason_is(a, "CrashLoopBackOff"),
    )
    .await;
    let (status, message, obj) = kstatus_of(&env, "crashing").await;
    assert_eq!(status, "Failed", "CrashLoopBackOff: {message}\n{obj:#}");
}
