//! The Argo CD health check (`deploy/argocd/health.lua`), run by a real Lua interpreter
//! (`lua5.1`: Argo CD's gopher-lua speaks Lua 5.1) the way Argo CD runs it: `obj` is the
//! resource as a table, the script returns `{status, message}`.
//!
//! `health_of_each_fixture` checks the committed fixtures (`deploy/argocd/testdata/`, listed
//! with their expected health in `health_test.yaml`, Argo CD's layout). The fixtures come from
//! real resources: `fixtures_are_what_the_operator_writes` drives the operator against the
//! emulator into each state, checks the health of the live objects and that each fixture holds
//! the same health-relevant fields (generations, deletion, conditions); with
//! `ARGOCD_FIXTURES=write` it rewrites the fixtures from the live objects instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use pipecat_cloud_emulator as emulator;
use serde_json::{Value, json};

use crate::support::operator::{Env, Options};

fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd")
}

/// The Lua interpreter: `$LUA`, else `lua5.1` (hack/test.sh installs it).
fn lua() -> String {
    std::env::var("LUA").unwrap_or_else(|_| "lua5.1".into())
}

/// A JSON value as a Lua table constructor. `null` becomes absent, as in Argo CD.
fn lua_literal(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\{}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Array(items) => {
            out.push('{');
            for item in items.iter().filter(|i| !i.is_null()) {
                lua_literal(item, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Object(map) => {
            out.push('{');
            for (k, item) in map.iter().filter(|(_, i)| !i.is_null()) {
                out.push('[');
                lua_literal(&Value::String(k.clone()), out);
                out.push_str("]=");
                lua_literal(item, out);
                out.push(',');
            }
            out.push('}');
        }
    }
}

/// `(status, message)` of the health check for `obj`.
fn health(obj: &Value) -> (String, String) {
    let mut script = String::from("obj = ");
    lua_literal(obj, &mut script);
    script.push_str(&format!(
        "\nlocal hs = assert(loadfile({:?}))()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        argocd_dir().join("health.lua").display().to_string()
    ));
    let mut child = Command::new(lua())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the Lua interpreter `{}` ({e}): install lua5.1 (hack/test.sh does)",
                lua()
            )
        });
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "health.lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

/// The fixtures and their expected health, from `health_test.yaml`.
fn expectations() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(argocd_dir().join("health_test.yaml")).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    doc["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| {
            (
                t["inputPath"].as_str().unwrap().to_string(),
                t["healthStatus"]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn fixture(input_path: &str) -> Value {
    let text = std::fs::read_to_string(argocd_dir().join(input_path))
        .unwrap_or_else(|e| panic!("{input_path}: {e}"));
    serde_saphyr::from_str(&text).unwrap()
}

/// The states the fixtures cover, file name first.
const STATES: &[(&str, &str)] = &[
    ("testdata/deploying.yaml", "Progressing"),
    ("testdata/ready.yaml", "Healthy"),
    ("testdata/crashloopbackoff.yaml", "Degraded"),
    ("testdata/credentials-not-found.yaml", "Degraded"),
    ("testdata/not-converging.yaml", "Degraded"),
    ("testdata/agent-exists.yaml", "Suspended"),
    ("testdata/spec-changed.yaml", "Progressing"),
    ("testdata/deleting.yaml", "Progressing"),
];

#[test]
fn health_test_yaml_lists_every_state() {
    let listed = expectations();
    let expected: Vec<(String, String)> = STATES
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn health_of_each_fixture() {
    for (path, want) in expectations() {
        let obj = fixture(&path);
        assert_eq!(obj["kind"], "PipecatAgent", "{path}");
        let (status, message) = health(&obj);
        assert_eq!(status, want, "{path}: {message}");
        assert!(!message.is_empty(), "{path}: a health message");
    }
}

#[test]
fn install_snippet_carries_the_same_lua() {
    let cm: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(argocd_dir().join("argocd-cm.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let embedded = cm["data"]["resource.customizations.health.pipecat.daily.co_PipecatAgent"]
        .as_str()
        .expect("the health key of argocd-cm");
    let lua = std::fs::read_to_string(argocd_dir().join("health.lua")).unwrap();
    assert_eq!(
        embedded.trim_end(),
        lua.trim_end(),
        "argocd-cm.yaml is stale: paste deploy/argocd/health.lua into it"
    );
}

/// The fields of an object the health check reads.
fn health_fields(obj: &Value) -> Value {
    let conditions: Vec<Value> = obj["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| json!([c["type"], c["status"], c["reason"]]))
                .collect()
        })
        .unwrap_or_default();
    let generation = obj["metadata"]["generation"].as_i64();
    let observed = obj["status"]["observedGeneration"].as_i64();
    json!({
        "deleting": !obj["metadata"]["deletionTimestamp"].is_null(),
        "observedCurrentGeneration": generation.is_some() && observed == generation,
        "conditions": conditions,
    })
}

/// The live object as a fixture: without server bookkeeping, in a fixed namespace.
fn as_fixture(obj: &Value) -> Value {
    let mut obj = obj.clone();
    let meta = obj["metadata"].as_object_mut().unwrap();
    for key in ["managedFields", "uid", "resourceVersion"] {
        meta.remove(key);
    }
    meta.insert("namespace".into(), json!("bots"));
    obj
}

async fn live(env: &Env, name: &str) -> Value {
    serde_json::to_value(env.agents().get(name).await.expect("get the agent")).unwrap()
}

fn agent_yaml(name: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  secretSet: voice-starter-secrets\n  autoScaling: {{minAgents: 0, maxAgents: 2}}\n{extra}"
    )
}

fn has_reason(a: &pipecat_operator::crd::PipecatAgent, type_: &str, reason: &str) -> bool {
    a.condition(type_)
        .is_some_and(|c| c.reason == reason && c.observed_generation == a.metadata.generation)
}

#[tokio::test]
async fn fixtures_are_what_the_operator_writes() {
    let env = Env::start(
        "argocd",
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
    .await;
    let wait = Duration::from_secs(60);
    let mut objects: Vec<(&str, Value)> = Vec::new();

    // Deploying, then Ready.
    env.apply(&agent_yaml("healthy", "example/voice:1", ""));
    env.wait_for("healthy", wait, "Ready=False Deploying", |a| {
        has_reason(a, "Ready", "Deploying")
    })
    .await;
    objects.push(("testdata/deploying.yaml", live(&env, "healthy").await));
    env.wait_ready("healthy").await;
    objects.push(("testdata/ready.yaml", live(&env, "healthy").await));

    // A crashing image.
    env.apply(&agent_yaml("crashing", "example/voice:crash-1", ""));
    env.wait_for("crashing", wait, "Ready=False CrashLoopBackOff", |a| {
        has_reason(a, "Ready", "CrashLoopBackOff")
    })
    .await;
    objects.push((
        "testdata/crashloopbackoff.yaml",
        live(&env, "crashing").await,
    ));

    // A Secret that does not exist.
    env.apply(&agent_yaml(
        "no-key",
        "example/voice:1",
        "  credentials: {secretRef: {name: missing-secret}}\n",
    ));
    env.wait_for("no-key", wait, "Ready=False CredentialsNotFound", |a| {
        has_reason(a, "Ready", "CredentialsNotFound")
    })
    .await;
    objects.push((
        "testdata/credentials-not-found.yaml",
        live(&env, "no-key").await,
    ));

    // NotConverging: the emulator has no mode that refuses a spec, so this one is a Ready
    // object given the status the operator writes then (Synced=False NotConverging and the
    // fields Pipecat Cloud kept), patched in through the status subresource.
    env.apply(&agent_yaml("refused", "example/voice:1", ""));
    env.wait_ready("refused").await;
    let mut status = live(&env, "refused").await["status"].clone();
    for c in status["conditions"].as_array_mut().unwrap() {
        if c["type"] == "Synced" {
            c["status"] = json!("False");
            c["reason"] = json!("NotConverging");
            c["message"] = json!(
                "Pipecat Cloud kept autoScaling.maxAgents=1 (spec: 2); not resending this spec"
            );
        }
    }
    status["nonConvergence"] = json!({
        "configHash": status["appliedConfigHash"],
        "fields": [{"field": "autoScaling.maxAgents", "remote": "1"}],
    });
    env.agents()
        .patch_status(
            "refused",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("status patch");
    let refused = live(&env, "refused").await;
    assert_eq!(refused["status"]["conditions"], status["conditions"]);
    objects.push(("testdata/not-converging.yaml", refused));

    // An agent of that name already exists in Pipecat Cloud: left alone until `adopt: true`.
    let resp = reqwest::Client::new()
        .post(format!("{}/agents", env.emulator.base_url()))
        .bearer_auth(crate::support::operator::API_KEY)
        .json(
            &json!({"serviceName": "elsewhere", "image": "example/voice:1",
                      "secretSet": "voice-starter-secrets"}),
        )
        .send()
        .await
        .expect("emulator answers");
    assert!(
        resp.status().is_success(),
        "create elsewhere: {}",
        resp.status()
    );
    env.apply(&agent_yaml("elsewhere", "example/voice:1", ""));
    env.wait_for("elsewhere", wait, "Synced=False AgentExists", |a| {
        has_reason(a, "Synced", "AgentExists")
    })
    .await;
    objects.push(("testdata/agent-exists.yaml", live(&env, "elsewhere").await));

    // Right after a spec change: the new generation is not observed yet. The operator is
    // stopped so the moment lasts.
    env.operator.terminate();
    env.apply(&agent_yaml("healthy", "example/voice:2", ""));
    let changed = live(&env, "healthy").await;
    assert_ne!(
        changed["metadata"]["generation"],
        changed["status"]["observedGeneration"]
    );
    objects.push(("testdata/spec-changed.yaml", changed));

    // Being deleted: a finalizer of the test's holds the object after the operator's is gone.
    env.agents()
        .patch(
            "crashing",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["pipecat.daily.co/cleanup", "example.com/hold"]}})),
        )
        .await
        .expect("add a finalizer");
    env.agents()
        .delete("crashing", &DeleteParams::default())
        .await
        .expect("delete");
    objects.push(("testdata/deleting.yaml", live(&env, "crashing").await));

    let write = std::env::var("ARGOCD_FIXTURES").as_deref() == Ok("write");
    let expected: std::collections::BTreeMap<&str, &str> = STATES.iter().copied().collect();
    for (path, obj) in &objects {
        let (status, message) = health(obj);
        assert_eq!(status, expected[path], "live object for {path}: {message}");
        if write {
            let text = serde_saphyr::to_string(&as_fixture(obj))
                .unwrap()
                .replace(&env.ns, "bots");
            std::fs::write(argocd_dir().join(path), text).unwrap();
        } else {
            assert_eq!(
                health_fields(&fixture(path)),
                health_fields(obj),
                "{path} no longer matches what the operator writes: regenerate with ARGOCD_FIXTURES=write cargo test --test packaging argocd::"
            );
        }
    }
    assert_eq!(objects.len(), STATES.len());

    // Let the deletion finish.
    env.agents()
        .patch(
            "crashing",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("drop the finalizers");
}
