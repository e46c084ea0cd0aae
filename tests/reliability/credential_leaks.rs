//! The API key never leaks (issue 7, scenario 5). The test operator runs at `RUST_LOG=debug`
//! with the recognisable key `support::operator::API_KEY`; scenarios go through the success path
//! and the error paths (a 401 whose body echoes the key, a wrong key, a Secret without the key,
//! malformed and non-JSON answers that echo the key, a failing delete that echoes it). Then
//! neither the key nor the wrong key may appear in the operator's log, the namespace's events,
//! the PipecatAgents (`-o json`, `describe`), or `/metrics`, in any form a value takes there
//! (`forms`: raw, base64 at any alignment, the `Debug` byte list of a k8s-openapi `ByteString`,
//! hex); and the echoed error texts must show `[redacted]` where the key was.
//!
//! The values of a Kubernetes Secret feeding a PipecatSecretSet never leak either (issue 14):
//! an env set and an image-pull set whose PUTs fail with error bodies that echo the values
//! (an env value, a registry password, its base64 `auth`), then a rotated value; none of them
//! (in any of those forms) may appear in the same places, nor in the PipecatSecretSets.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use pipecat_cloud_emulator::{Fault, FaultBody};
use pipecat_operator::crd::secret_set::PipecatSecretSet;
use serde_json::{Value, json};

use crate::support::controlplane::base64;
use crate::support::operator::{API_KEY, Env, Options};
use crate::support::reliability::{
    Meta, Want, apply_api, assert_all_passed, check_operator_alive, run_case, wait_agent,
    wait_converged, wait_event,
};

const SUITE: &str = "reliability::credential_leaks";
const TEST: &str = "the_api_key_never_leaks";
/// A wrong key, as recognisable as the right one (it must not leak either).
const WRONG_KEY: &str = "pk_test_WRONG_KEY_d41c8e";
/// A value of the Secret behind the env set.
const SET_VALUE: &str = "sk_live_SETVALUE_9b2e71f0";
/// The same key's value after a rotation.
const ROTATED_VALUE: &str = "sk_live_ROTATED_4c8d05aa";
/// The registry password of the image-pull set's dockerconfigjson.
const REGISTRY_PASSWORD: &str = "ghp_REGISTRYPASS_51ab3f77";
/// Every secret set value, with what it is.
const SET_VALUES: [(&str, &str); 3] = [
    ("the env set value", SET_VALUE),
    ("the rotated env set value", ROTATED_VALUE),
    ("the registry password", REGISTRY_PASSWORD),
];

async fn put_secret(env: &Env, name: &str, data: Value) -> anyhow::Result<()> {
    let secrets: kube::Api<Secret> = kube::Api::namespaced(env.cp.client(), &env.ns);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "stringData": data,
    }))?;
    secrets
        .patch(
            name,
            &PatchParams::apply("reliability-suite").force(),
            &Patch::Apply(&secret),
        )
        .await
        .with_context(|| format!("applying Secret {name}"))?;
    Ok(())
}

/// Applies an agent that reads its key from `secret`.
async fn apply_with_credentials(env: &Env, name: &str, secret: &str) -> anyhow::Result<()> {
    let mut obj = Want::version(1).object(name);
    obj["spec"]["credentials"] = json!({"secretRef": {"name": secret}});
    env.agents()
        .patch(
            name,
            &PatchParams::apply("reliability-suite").force(),
            &Patch::Apply(obj),
        )
        .await
        .with_context(|| format!("applying {name}"))?;
    Ok(())
}

/// Waits for `Synced=False reason`; returns its message. At that moment (before convergence
/// overwrites the conditions) the whole resource, status included, must hold no key material.
async fn wait_reason(env: &Env, name: &str, reason: &str) -> anyhow::Result<String> {
    let a = wait_agent(env, name, Duration::from_secs(30), reason, |a| {
        a.condition("Synced")
            .is_some_and(|c| c.status == "False" && c.reason == reason)
    })
    .await?;
    no_key_in(
        &format!("{name} at Synced=False {reason}"),
        &serde_json::to_string(&a)?,
    )?;
    Ok(a.condition("Synced")
        .map(|c| c.message.clone())
        .unwrap_or_default())
}

/// Fails when `text` holds either key (all but its last 4 characters) in any of its [`forms`].
fn no_key_in(place: &str, text: &str) -> anyhow::Result<()> {
    ensure!(!text.is_empty(), "{place} is empty: nothing was checked");
    if let Some(leak) = find_leak(text, &KEYS) {
        anyhow::bail!("{leak} in {place}");
    }
    Ok(())
}

/// An error path whose answer echoes the key: the condition shows `[redacted]` instead, and
/// neither the resource nor the event holds the key while the error is shown.
async fn echoed(env: &Env, name: &str, fault: Fault, reason: &str) -> anyhow::Result<String> {
    env.admin.inject_fault(fault).await?;
    apply_api(env, name, &Want::version(1)).await?;
    let message = wait_reason(env, name, reason).await?;
    ensure!(
        message.contains("[redacted]"),
        "the echoed key is not shown as [redacted]: {message}"
    );
    let event = wait_event(env, name, "Warning", reason, Duration::from_secs(20)).await?;
    no_key_in(&format!("the Warning {reason} event"), &event)?;
    env.admin.clear_faults().await?;
    wait_converged(env, name, &Want::version(1), Duration::from_secs(60)).await?;
    Ok(format!(
        "Synced=False {reason}: \"...{}\"; Warning event; converged after the fault",
        tail(&message, 90)
    ))
}

/// Bytes of an unreadable body the client quotes in its error.
const SNIPPET: usize = 120;
/// Leading characters of the key that count as a leak (all but the last 4).
const PARTIAL: usize = API_KEY.len() - 4;
/// The keys as far as they count as a leak (all but their last 4 characters: any form of the
/// whole key holds the form of this part).
const KEYS: [(&str, &str); 2] = [
    (
        "the key (all but its last 4 characters)",
        API_KEY.split_at(PARTIAL).0,
    ),
    (
        "the wrong key (all but its last 4 characters)",
        WRONG_KEY.split_at(WRONG_KEY.len() - 4).0,
    ),
];

/// `text` with any run of key material replaced, for messages and the report.
fn mask(text: &str) -> String {
    text.replace(&API_KEY[..PARTIAL], "<KEY...>")
        .replace(&WRONG_KEY[..PARTIAL.min(WRONG_KEY.len())], "<WRONG KEY...>")
}

/// The registry login `bot:<REGISTRY_PASSWORD>` as a dockerconfigjson `auth` (base64).
fn registry_auth() -> String {
    base64(format!("bot:{REGISTRY_PASSWORD}").as_bytes())
}

/// Fails when `text` holds a secret set value or the registry `auth`, in any of its [`forms`].
fn no_value_in(place: &str, text: &str) -> anyhow::Result<()> {
    ensure!(!text.is_empty(), "{place} is empty: nothing was checked");
    let mut secrets = SET_VALUES.to_vec();
    let auth = registry_auth();
    secrets.push(("the registry auth", &auth));
    if let Some(leak) = find_leak(text, &secrets) {
        anyhow::bail!("{leak} in {place}");
    }
    Ok(())
}

/// Every form a secret value can take in a text the operator writes, each with what it is:
/// - raw;
/// - base64 at each of the three alignments it can have inside a longer encoded text (a
///   dockerconfigjson's password sits at some offset of the base64 of the whole JSON),
///   trimmed of the edge characters that depend on its neighbours;
/// - the decimal byte list of `Debug` (k8s-openapi's `ByteString([112, 107, ...])`, a
///   `Vec<u8>`, serde's `[112,107,...]`) and of `{:x?}` (`[70, 6b, ...]`), compared without
///   whitespace so that `{:#?}`'s one byte per line matches too;
/// - hex, lower and upper case.
///
/// The second member says whether the form is compared with the text's whitespace removed.
fn forms(value: &str) -> Vec<(String, String, bool)> {
    let bytes = value.as_bytes();
    let mut out = vec![("raw".to_string(), value.to_string(), false)];
    for offset in 0..3 {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(bytes);
        let encoded = base64(&padded);
        // Character i holds bits 6i..6i+6 of the padded bytes: keep those of the value only.
        let start = (8 * offset).div_ceil(6);
        let end = 8 * (offset + bytes.len()) / 6;
        out.push((
            format!("base64 at offset {offset} (mod 3)"),
            encoded[start..end].to_string(),
            false,
        ));
    }
    let list = |f: &dyn Fn(&u8) -> String| bytes.iter().map(f).collect::<Vec<_>>().join(",");
    out.push((
        "Debug byte list (ByteString([..]))".into(),
        list(&|b| b.to_string()),
        true,
    ));
    out.push((
        "hex Debug byte list".into(),
        list(&|b| format!("{b:x}")),
        true,
    ));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".into(), hex.clone(), false));
    out.push(("HEX".into(), hex.to_uppercase(), false));
    out
}

/// The first of `secrets` (what, value) found in `text` in any of its [`forms`]: what it is,
/// in which form, and where (with any key material masked).
fn find_leak(text: &str, secrets: &[(&str, &str)]) -> Option<String> {
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    for (what, value) in secrets {
        for (form, needle, squeeze) in forms(value) {
            let haystack = if squeeze { &squeezed } else { text };
            if let Some(at) = haystack.find(needle.as_str()) {
                let mut start = at.saturating_sub(80);
                while !haystack.is_char_boundary(start) {
                    start -= 1;
                }
                let context: String = haystack[start..]
                    .chars()
                    .take(needle.len() + 160)
                    .collect::<String>()
                    .replace('\n', " ");
                return Some(format!("{what} ({form}): ...{}...", mask(&context)));
            }
        }
    }
    None
}

fn secret_sets(env: &Env) -> kube::Api<PipecatSecretSet> {
    kube::Api::namespaced(env.cp.client(), &env.ns)
}

/// Waits until the PipecatSecretSet's `Synced` condition is False with a message showing that
/// the echoed text was cut out (`[redacted]` where a value was, or the whole body `[withheld]`);
/// returns that message.
async fn wait_set_redacted(env: &Env, name: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(set) = secret_sets(env).get_opt(name).await?
            && let Some(c) = set.condition("Synced")
            && c.status == "False"
            && (c.message.contains("[redacted]") || c.message.contains("[withheld"))
        {
            no_value_in(
                &format!("PipecatSecretSet {name} at Synced=False {}", c.reason),
                &serde_json::to_string(&set)?,
            )?;
            return Ok(format!("{}: {}", c.reason, c.message));
        }
        ensure!(
            Instant::now() < deadline,
            "PipecatSecretSet {name} never showed an error with the echo cut out: {:?}",
            secret_sets(env)
                .get_opt(name)
                .await?
                .and_then(|s| s.status)
                .map(|s| s.conditions)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tail(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(n)..].iter().collect()
}

fn key_echo() -> String {
    format!("invalid API key {API_KEY} for this organization")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_leaks() {
    let env = Env::start("rel-secrets", Options::default()).await;
    let env = &env;
    let meta = |scenario: &str, fault: &str, expected: &str| {
        Meta::new(SUITE, TEST, scenario, fault, expected)
    };
    let mut results = Vec::new();

    results.push(
        run_case(
            meta(
                "success path",
                "none (create, then update)",
                "Ready; nothing secret logged even at debug level",
            ),
            async {
                apply_api(env, "s-ok", &Want::version(1)).await?;
                wait_converged(env, "s-ok", &Want::version(1), Duration::from_secs(60)).await?;
                apply_api(env, "s-ok", &Want::version(2)).await?;
                wait_converged(env, "s-ok", &Want::version(2), Duration::from_secs(60)).await?;
                Ok("created and updated, Ready".to_string())
            },
        )
        .await,
    );

    let body401 = json!({"error": key_echo(), "code": "UNAUTHORIZED"}).to_string();
    results.push(
        run_case(
            meta(
                "401 whose error body echoes the key",
                "HTTP 401 `{\"error\": \"invalid API key <KEY> ...\"}` on GET /v1/agents/s-401, until cleared",
                "Synced=False Unauthorized with the key shown as [redacted]; converges once cleared",
            ),
            echoed(
                env,
                "s-401",
                Fault::body("/v1/agents/s-401", FaultBody::Custom(body401))
                    .with_status(401)
                    .with_method("GET")
                    .with_count(1_000_000),
                "Unauthorized",
            ),
        )
        .await,
    );

    results.push(
        run_case(
            meta(
                "truncated JSON answer that echoes the key",
                "HTTP 200 `{\"name\": \"<KEY>...` (cut) on GET /v1/agents/s-malformed, until cleared",
                "Synced=False MalformedResponse with the key shown as [redacted]; converges",
            ),
            echoed(
                env,
                "s-malformed",
                Fault::body(
                    "/v1/agents/s-malformed",
                    FaultBody::Custom(format!("{{\"name\": \"{API_KEY}\", \"region\": ")),
                )
                .with_status(200)
                .with_method("GET")
                .with_count(1_000_000),
                "MalformedResponse",
            ),
        )
        .await,
    );

    // The client quotes the first 120 bytes of an unreadable body: a key cut by that limit
    // must not leave most of itself behind.
    let cut_body = format!(
        "{{\"name\": \"{}{API_KEY}\"",
        "a".repeat(SNIPPET - 10 - PARTIAL)
    );
    results.push(
        run_case(
            meta(
                "unreadable answer with the key cut by the quoted 120 bytes",
                "HTTP 200 `{\"name\": \"aaa...<KEY>` with the key across byte 120, on GET /v1/agents/s-cut, until cleared",
                "Synced=False MalformedResponse; no part of the key quoted",
            ),
            async {
                env.admin
                    .inject_fault(
                        Fault::body("/v1/agents/s-cut", FaultBody::Custom(cut_body))
                            .with_status(200)
                            .with_method("GET")
                            .with_count(1_000_000),
                    )
                    .await?;
                apply_api(env, "s-cut", &Want::version(1)).await?;
                let message = wait_reason(env, "s-cut", "MalformedResponse").await?;
                env.admin.clear_faults().await?;
                wait_converged(env, "s-cut", &Want::version(1), Duration::from_secs(60)).await?;
                ensure!(
                    !message.contains(&API_KEY[..PARTIAL]),
                    "the condition quotes {PARTIAL} of the key's {} characters (shown as <KEY...>): {}",
                    API_KEY.len(),
                    mask(&message)
                );
                Ok(format!("Synced=False MalformedResponse: \"...{}\"", tail(&message, 60)))
            },
        )
        .await,
    );

    results.push(
        run_case(
            meta(
                "proxy HTML page that echoes the key",
                "HTTP 502 `<html>... Bearer <KEY> ...</html>` on GET /v1/agents/s-proxy, until cleared",
                "Synced=False PipecatUnavailable with the key shown as [redacted]; converges",
            ),
            echoed(
                env,
                "s-proxy",
                Fault::body(
                    "/v1/agents/s-proxy",
                    FaultBody::Custom(format!(
                        "<html><body>upstream rejected Authorization: Bearer {API_KEY}</body></html>"
                    )),
                )
                .with_status(502)
                .with_method("GET")
                .with_count(1_000_000),
                "PipecatUnavailable",
            ),
        )
        .await,
    );

    results.push(
        run_case(
            meta(
                "wrong key in the credentials Secret",
                "spec.credentials names a Secret holding a wrong (recognisable) key",
                "Synced=False Unauthorized; converges when the Secret is fixed (no restart)",
            ),
            async {
                put_secret(env, "wrong-key", json!({"api-key": WRONG_KEY})).await?;
                apply_with_credentials(env, "s-wrong", "wrong-key").await?;
                let message = wait_reason(env, "s-wrong", "Unauthorized").await?;
                let event = wait_event(
                    env,
                    "s-wrong",
                    "Warning",
                    "Unauthorized",
                    Duration::from_secs(20),
                )
                .await?;
                no_key_in("the Warning Unauthorized event", &event)?;
                put_secret(env, "wrong-key", json!({"api-key": API_KEY})).await?;
                wait_converged(env, "s-wrong", &Want::version(1), Duration::from_secs(60)).await?;
                Ok(format!(
                    "Synced=False Unauthorized: \"{message}\"; converged after the Secret was fixed"
                ))
            },
        )
        .await,
    );

    results.push(
        run_case(
            meta(
                "credentials Secret without the key",
                "spec.credentials names a Secret with no `api-key` entry",
                "Synced=False CredentialsNotFound saying what to add; converges when the key is added",
            ),
            async {
                put_secret(env, "no-key", json!({"other": "x"})).await?;
                apply_with_credentials(env, "s-nokey", "no-key").await?;
                let message = wait_reason(env, "s-nokey", "CredentialsNotFound").await?;
                ensure!(
                    message.contains("api-key"),
                    "the message does not name the missing key: {message}"
                );
                put_secret(env, "no-key", json!({"other": "x", "api-key": API_KEY})).await?;
                wait_converged(env, "s-nokey", &Want::version(1), Duration::from_secs(60))
                    .await?;
                Ok(format!(
                    "Synced=False CredentialsNotFound: \"{message}\"; converged once the key was added"
                ))
            },
        )
        .await,
    );

    results.push(
        run_case(
            meta(
                "delete failing with the key in the error",
                "HTTP 500 `{\"error\": \"... <KEY> ...\"}` x2 on DELETE /v1/agents/s-ok",
                "Warning DeleteFailed with the key shown as [redacted]; deleted after the fault",
            ),
            async {
                let body = json!({"error": key_echo(), "code": "500"}).to_string();
                env.admin
                    .inject_fault(
                        Fault::body("/v1/agents/s-ok", FaultBody::Custom(body))
                            .with_status(500)
                            .with_method("DELETE")
                            .with_count(2),
                    )
                    .await?;
                env.agents()
                    .delete("s-ok", &DeleteParams::default())
                    .await?;
                let message = wait_event(
                    env,
                    "s-ok",
                    "Warning",
                    "DeleteFailed",
                    Duration::from_secs(20),
                )
                .await?;
                ensure!(
                    message.contains("[redacted]"),
                    "DeleteFailed does not show [redacted]: {message}"
                );
                no_key_in("the Warning DeleteFailed event", &message)?;
                if let Some(a) = env.agents().get_opt("s-ok").await? {
                    no_key_in("s-ok while its delete fails", &serde_json::to_string(&a)?)?;
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                while env.agents().get_opt("s-ok").await?.is_some() {
                    ensure!(Instant::now() < deadline, "s-ok still exists");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(format!("Warning DeleteFailed: \"{message}\"; deleted"))
            },
        )
        .await,
    );

    results.push(
        run_case(
            meta(
                "secret set values echoed in error bodies, then rotated",
                "HTTP 400 `{\"error\": \"invalid secretValue <VALUE> ...\"}` on PUT /v1/secrets/leak-env and HTTP 500 echoing the registry password and its base64 auth on PUT /v1/secrets/leak-registry, until cleared; then a value rotated",
                "both PipecatSecretSets Synced=False with the echo [redacted] or [withheld]; the agent waits (SecretSetNotReady) without any value; Ready once cleared; the rotated value leaks nowhere either",
            ),
            async {
                put_secret(env, "leak-values", json!({"OPENAI_API_KEY": SET_VALUE})).await?;
                let docker = json!({"auths": {"ghcr.io": {"username": "bot",
                    "password": REGISTRY_PASSWORD, "auth": registry_auth()}}});
                env.apply(
                    &json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "leak-registry-login"},
                        "type": "kubernetes.io/dockerconfigjson",
                        "stringData": {".dockerconfigjson": docker.to_string()}})
                    .to_string(),
                );
                let env_body = json!({"error": format!(
                    "invalid secretValue {SET_VALUE} for secretKey OPENAI_API_KEY"),
                    "code": "GENERIC_BAD_REQUEST"}).to_string();
                let pull_body = json!({"error": format!(
                    "registry rejected bot:{REGISTRY_PASSWORD} (auth {})", registry_auth()),
                    "code": "500"}).to_string();
                for (path, body, status) in [
                    ("/v1/secrets/leak-env", env_body, 400),
                    ("/v1/secrets/leak-registry", pull_body, 500),
                ] {
                    env.admin
                        .inject_fault(
                            Fault::body(path, FaultBody::Custom(body))
                                .with_status(status)
                                .with_method("PUT")
                                .with_count(1_000_000),
                        )
                        .await?;
                }
                let docs = [
                    json!({"apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
                        "metadata": {"name": "leak-env"},
                        "spec": {"secretRef": {"name": "leak-values"}}}),
                    json!({"apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatSecretSet",
                        "metadata": {"name": "leak-registry"},
                        "spec": {"type": "ImagePull", "secretRef": {"name": "leak-registry-login"}}}),
                    json!({"apiVersion": "pipecat.daily.co/v1alpha1", "kind": "PipecatAgent",
                        "metadata": {"name": "s-set"},
                        "spec": {"image": "acme/bot:1", "secretSet": "leak-env",
                            "imagePullSecretSet": "leak-registry"}}),
                ];
                for d in docs {
                    env.apply(&d.to_string());
                }
                let env_error = wait_set_redacted(env, "leak-env").await?;
                let pull_error = wait_set_redacted(env, "leak-registry").await?;
                let waiting = wait_agent(env, "s-set", Duration::from_secs(30), "SecretSetNotReady", |a| {
                    a.condition("Synced").is_some_and(|c| c.reason == "SecretSetNotReady")
                })
                .await?;
                no_value_in("s-set while it waits", &serde_json::to_string(&waiting)?)?;
                let events = env.kubectl(&["get", "events", "-o", "json"]);
                no_value_in("the events while the PUTs fail", &String::from_utf8_lossy(&events.stdout))?;
                env.admin.clear_faults().await?;
                wait_agent(env, "s-set", Duration::from_secs(60), "Ready", crate::support::operator::is_ready).await?;
                put_secret(env, "leak-values", json!({"OPENAI_API_KEY": ROTATED_VALUE})).await?;
                wait_agent(env, "s-set", Duration::from_secs(60), "the rotation recorded", |a| {
                    a.status.as_ref().is_some_and(|s| {
                        s.secret_set_revisions.iter().any(|r| r.name == "leak-env" && r.revision == 2)
                    }) && crate::support::operator::is_ready(a)
                })
                .await?;
                Ok(format!(
                    "leak-env Synced=False {}; leak-registry Synced=False {}; s-set waited, then Ready and redeployed for the rotation",
                    tail(&env_error, 80),
                    tail(&pull_error, 80)
                ))
            },
        )
        .await,
    );

    // Let the last events land, then look everywhere.
    tokio::time::sleep(Duration::from_secs(2)).await;
    results.push(
        run_case(
            meta(
                "no credential anywhere",
                "all of the above, at RUST_LOG=debug",
                "neither key (all but its last 4 characters) nor any secret set value nor the registry auth, in any form (raw, base64 at any alignment, Debug byte list, hex), in the log, events, PipecatAgents and PipecatSecretSets (-o json, describe), /metrics",
            ),
            async {
                let kubectl = |args: &[&str]| -> anyhow::Result<String> {
                    let out = env.kubectl(args);
                    ensure!(
                        out.status.success(),
                        "kubectl {args:?}: {}",
                        crate::support::controlplane::describe_output(&out)
                    );
                    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                };
                let op = &env.operator;
                let places = [
                    ("operator log", op.log()),
                    ("events", kubectl(&["get", "events", "-o", "json"])?),
                    ("PipecatAgents", kubectl(&["get", "pipecatagents", "-o", "json"])?),
                    ("describe", kubectl(&["describe", "pipecatagents"])?),
                    ("PipecatSecretSets", kubectl(&["get", "pipecatsecretsets", "-o", "json"])?),
                    ("describe pipecatsecretsets", kubectl(&["describe", "pipecatsecretsets"])?),
                    ("/metrics", op.get(op.metrics_port, "/metrics").await.1),
                    ("/readyz", op.get(op.health_port, "/readyz").await.1),
                ];
                let auth = registry_auth();
                let mut secrets = KEYS.to_vec();
                secrets.extend(SET_VALUES);
                secrets.push(("the registry auth", &auth));
                let mut leaks = Vec::new();
                for (place, text) in &places {
                    ensure!(!text.is_empty(), "{place} is empty: nothing was checked");
                    // Every secret, not just the first found.
                    for secret in &secrets {
                        if let Some(leak) = find_leak(text, std::slice::from_ref(secret)) {
                            leaks.push(format!("{leak} in the {place}"));
                        }
                    }
                }
                ensure!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));
                let log = op.log();
                ensure!(
                    log.lines().any(|l| l.contains("DEBUG")),
                    "the operator log has no debug lines: the check would miss debug logging"
                );
                check_operator_alive(env).await?;
                let sizes: Vec<String> = places
                    .iter()
                    .map(|(p, t)| format!("{p} {} KiB", t.len().div_ceil(1024)))
                    .collect();
                Ok(format!("no key found in: {}", sizes.join(", ")))
            },
        )
        .await,
    );
    assert_all_passed(&results);
}

/// Each form is found where a careless log line or a serialized Secret would put the value, and
/// none matches a text without it.
#[test]
fn every_form_of_a_value_is_found_where_it_hides() {
    let secrets = [("the registry password", REGISTRY_PASSWORD)];
    let docker = json!({"auths": {"ghcr.io": {"username": "bot",
        "password": REGISTRY_PASSWORD, "auth": registry_auth()}}})
    .to_string();
    // The password at each alignment inside the base64 of a longer text, as a dockerconfigjson
    // Secret serializes it.
    for pad in 0..3 {
        let text = base64(format!("{}{docker}", " ".repeat(pad)).as_bytes());
        let found = find_leak(&text, &secrets);
        assert!(found.is_some(), "missed at alignment {pad}: {text}");
    }
    // `debug!(?secret)` of the k8s-openapi Secret: `ByteString([112, 107, ...])`, compact or
    // pretty.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "registry-login"},
        "data": {".dockerconfigjson": base64(docker.as_bytes())},
    }))
    .unwrap();
    for text in [format!("{secret:?}"), format!("{secret:#?}")] {
        assert!(text.contains("ByteString("), "{text}");
        assert!(find_leak(&text, &secrets).is_some(), "missed in {text}");
    }
    // Hex, either case; the auth's base64 inside the base64 of the JSON.
    let hex: String = REGISTRY_PASSWORD
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(find_leak(&format!("x{hex}x"), &secrets).is_some());
    let auth = registry_auth();
    assert!(find_leak(&base64(docker.as_bytes()), &[("auth", &auth)]).is_some());
    // Nothing is found where the value is not.
    let clean = json!({"auths": {"ghcr.io": {"username": "bot", "password": "x"}}}).to_string();
    for text in [
        clean.clone(),
        base64(clean.as_bytes()),
        format!("{:?}", clean.as_bytes()),
    ] {
        assert_eq!(find_leak(&text, &secrets), None);
        assert_eq!(find_leak(&text, &KEYS), None);
    }
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(base64(b"pk_"), "cGtf");
    assert_eq!(base64(b"pk"), "cGs=");
    assert_eq!(base64(b"p"), "cA==");
}
