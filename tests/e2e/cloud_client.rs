//! The Pipecat Cloud client against a real HTTP server on loopback (the emulator): every
//! endpoint and every error class, and the key never in an error.

use std::time::Duration;

use pipecat_cloud_emulator::{self as emulator, ConfigUpdate, Fault, FaultBody};
use pipecat_operator::cloud::types::{
    AgentConfig, AutoScalingRequest, CreateAgentRequest, UpdateAgentRequest,
};
use pipecat_operator::cloud::{ApiKey, Client, ClientConfig, Error};

const KEY: &str = "pk_client_test_KEY_1234567890";

async fn setup() -> (emulator::Handle, Client, ApiKey) {
    let emu = emulator::start(emulator::Config {
        api_keys: vec![KEY.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    emu.admin()
        .create_secret_set(KEY, "bot-secrets", &[("A", "b")])
        .await
        .unwrap();
    let client = Client::new(ClientConfig {
        base_url: emu.base_url(),
        timeout: Duration::from_millis(1500),
    })
    .unwrap();
    (emu, client, ApiKey::new(KEY))
}

fn config(image: &str) -> AgentConfig {
    AgentConfig {
        image: Some(image.into()),
        node_type: Some("arm".into()),
        secret_set: Some("bot-secrets".into()),
        auto_scaling: Some(AutoScalingRequest {
            min_agents: 1,
            max_agents: 5,
        }),
        ..Default::default()
    }
}

fn create(name: &str, image: &str) -> CreateAgentRequest {
    CreateAgentRequest {
        service_name: name.into(),
        region: None,
        config: config(image),
    }
}

fn assert_no_key(e: &Error) {
    let text = format!("{e} {e:?}");
    assert!(!text.contains(KEY), "the key leaked: {text}");
}

#[tokio::test]
async fn every_endpoint_round_trips() {
    let (emu, client, key) = setup().await;
    let created = client
        .create_agent(&key, &create("bot-one", "acme/bot:1"))
        .await
        .unwrap();
    assert_eq!(created.name, "bot-one");
    assert!(created.desired_deployment().is_some());
    assert_eq!(
        created.manifest_spec().and_then(|s| s.image.as_deref()),
        Some("acme/bot:1")
    );

    let got = client.get_agent(&key, "bot-one").await.unwrap();
    assert_eq!(got.desired_deployment_id, created.desired_deployment_id);
    assert_eq!(got.auto_scaling.as_ref().unwrap().max_replicas, Some(5));
    assert!(
        !got.extra.is_empty() || got.created_at.is_some(),
        "lenient parse keeps fields"
    );

    let list = client.list_agents(&key).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "bot-one");

    let updated = client
        .update_agent(
            &key,
            "bot-one",
            &UpdateAgentRequest {
                config: config("acme/bot:2"),
                resets: Default::default(),
                force_redeploy: false,
            },
        )
        .await
        .unwrap();
    assert_ne!(updated.desired_deployment_id, created.desired_deployment_id);
    let unchanged = client
        .update_agent(
            &key,
            "bot-one",
            &UpdateAgentRequest {
                config: config("acme/bot:2"),
                resets: Default::default(),
                force_redeploy: false,
            },
        )
        .await
        .unwrap();
    assert!(
        unchanged.warning.is_some(),
        "an unchanged update answers with a warning"
    );
    assert_eq!(
        unchanged.desired_deployment_id,
        updated.desired_deployment_id
    );

    client.delete_agent(&key, "bot-one").await.unwrap();
    assert!(matches!(
        client.get_agent(&key, "bot-one").await,
        Err(Error::NotFound { .. })
    ));
    let counts = emu.admin().counts().await.unwrap();
    for op in [
        "create_agent",
        "get_agent",
        "list_agents",
        "update_agent",
        "delete_agent",
    ] {
        assert!(counts.operation(op) >= 1, "{op} not called");
    }
}

#[tokio::test]
async fn api_errors_are_classified() {
    let (emu, client, key) = setup().await;
    let admin = emu.admin();

    let e = client.get_agent(&key, "missing").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "NotFound");

    client
        .create_agent(&key, &create("bot-two", "acme/bot:1"))
        .await
        .unwrap();
    let e = client
        .create_agent(&key, &create("bot-two", "acme/bot:1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "AlreadyExists", "{e}");

    let e = client
        .create_agent(&key, &create("Bad_Name", "acme/bot:1"))
        .await
        .unwrap_err();
    match &e {
        Error::InvalidRequest {
            status,
            code,
            message,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(code, "GENERIC_BAD_REQUEST");
            assert!(!message.is_empty());
        }
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    assert!(!e.kind().is_retryable());

    let mut missing_set = create("bot-three", "acme/bot:1");
    missing_set.config.secret_set = Some("no-such-set".into());
    let e = client.create_agent(&key, &missing_set).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "NotFound", "{e}");

    let e = client
        .get_agent(&ApiKey::new("pk_wrong_key_000"), "bot-two")
        .await
        .unwrap_err();
    assert_eq!(e.kind().as_str(), "Unauthorized");
    assert!(!e.to_string().contains("pk_wrong_key_000"));

    admin
        .set_config(ConfigUpdate {
            secret_ready_delay_ms: Some(60_000),
            ..Default::default()
        })
        .await
        .unwrap();
    let put = reqwest::Client::new()
        .put(format!("{}/secrets/slow-set", emu.base_url()))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"secrets": [{"secretKey": "A", "secretValue": "b"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 202);
    let mut pending = create("bot-four", "acme/bot:1");
    pending.config.secret_set = Some("slow-set".into());
    let e = client.create_agent(&key, &pending).await.unwrap_err();
    assert_eq!(e.kind().as_str(), "Conflict", "{e}");
    assert!(e.kind().is_retryable());
}

#[tokio::test]
async fn transport_faults_are_classified() {
    let (emu, client, key) = setup().await;
    let admin = emu.admin();
    client
        .create_agent(&key, &create("bot-five", "acme/bot:1"))
        .await
        .unwrap();
    let path = "/v1/agents/bot-five";

    admin
        .inject_fault(Fault::status(path, 429).with_retry_after(7))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "RateLimited");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));

    for status in [500, 502, 503, 504] {
        admin
            .inject_fault(Fault::status(path, status))
            .await
            .unwrap();
        let e = client.get_agent(&key, "bot-five").await.unwrap_err();
        assert_eq!(e.kind().as_str(), "Transient", "{status}: {e}");
        assert!(e.to_string().contains(&status.to_string()), "{e}");
    }

    admin
        .inject_fault(Fault::drop_connection(path))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "Transient", "{e}");

    admin
        .inject_fault(Fault::delay(path, Duration::from_secs(3)))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "Transient");
    assert!(e.to_string().contains("timed out"), "{e}");

    admin
        .inject_fault(Fault::body(path, FaultBody::Malformed))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "MalformedResponse", "{e}");

    admin
        .inject_fault(Fault::body(path, FaultBody::NonJson))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "Transient");
    assert!(e.to_string().contains("non-JSON"), "{e}");

    // Wrong types in a 200 answer: an error, not a panic.
    admin
        .inject_fault(
            Fault::body(
                path,
                FaultBody::Custom(r#"{"name": 5, "ready": "yes"}"#.into()),
            )
            .with_status(200),
        )
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "MalformedResponse", "{e}");

    // A body echoing the key (a misbehaving proxy) never brings it into the error.
    admin
        .inject_fault(
            Fault::body(
                path,
                FaultBody::Custom(format!("{{\"error\": \"bad token {KEY}\"}}")),
            )
            .with_status(400),
        )
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "InvalidRequest");
    assert!(e.to_string().contains("[redacted]"), "{e}");
    assert_no_key(&e);

    // A key cut by the quoted prefix of a non-JSON body: no part of it survives.
    let body = format!("<html>{}Bearer {KEY} denied</html>", "x".repeat(105));
    admin
        .inject_fault(Fault::body(path, FaultBody::Custom(body)).with_status(502))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    let text = e.to_string();
    for window in KEY.as_bytes().windows(8) {
        let part = std::str::from_utf8(window).unwrap();
        assert!(!text.contains(part), "{part:?} of the key in: {text}");
    }

    // Remote error text is bounded (it reaches logs, events and conditions).
    let long = format!("{{\"error\": \"{}\"}}", "e".repeat(1024 * 1024));
    admin
        .inject_fault(Fault::body(path, FaultBody::Custom(long)).with_status(500))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert!(e.to_string().len() < 512, "{} bytes", e.to_string().len());

    // `{}` is not an agent.
    admin
        .inject_fault(Fault::body(path, FaultBody::Custom("{}".into())).with_status(200))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "MalformedResponse", "{e}");

    // A huge body is refused, not buffered without end.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(40 * 1024 * 1024));
    admin
        .inject_fault(Fault::body(path, FaultBody::Custom(huge)).with_status(200))
        .await
        .unwrap();
    let e = client.get_agent(&key, "bot-five").await.unwrap_err();
    assert_eq!(e.kind().as_str(), "MalformedResponse", "{e}");
    assert!(e.to_string().contains("larger than"), "{e}");

    // After the faults, everything works again.
    assert_eq!(
        client.get_agent(&key, "bot-five").await.unwrap().name,
        "bot-five"
    );
}

#[tokio::test]
async fn secret_set_endpoints_round_trip_and_never_quote_a_value() {
    use pipecat_operator::cloud::secret_sets::{PutSecretSetRequest, SecretEntry, SecretValue};
    const VALUE: &str = "sk-live-ROTATED-VALUE-0042";
    let (emu, client, key) = setup().await;
    let admin = emu.admin();
    let env = |value: &str| PutSecretSetRequest::Env {
        secrets: vec![
            SecretEntry {
                secret_key: "OPENAI_API_KEY".into(),
                secret_value: SecretValue::new(value),
            },
            SecretEntry {
                secret_key: "DEEPGRAM_API_KEY".into(),
                secret_value: SecretValue::new("dg-other-value"),
            },
        ],
        region: None,
    };
    let put = client
        .put_secret_set(&key, "agent-keys", &env(VALUE))
        .await
        .unwrap();
    assert_eq!(put.name, "agent-keys");
    // The contract's answer, {status: "OK", region}: accepted, in that region; the set's state
    // is only read with GET.
    assert_eq!(
        (put.region.as_deref(), put.status.as_deref()),
        (Some("us-west"), None)
    );
    admin
        .wait_secret_set_ready(KEY, "agent-keys", Duration::from_secs(5))
        .await
        .unwrap();
    let detail = client.get_secret_set(&key, "agent-keys").await.unwrap();
    assert_eq!(detail.keys, ["DEEPGRAM_API_KEY", "OPENAI_API_KEY"]);
    assert_eq!(
        detail.summary.and_then(|s| s.status).as_deref(),
        Some("ready")
    );
    let listed = client.list_secret_sets(&key).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s.name == "agent-keys" && s.kind.as_deref() == Some("secret")),
        "{listed:?}"
    );
    client
        .delete_secret(&key, "agent-keys", "DEEPGRAM_API_KEY")
        .await
        .unwrap();
    admin
        .wait_secret_set_ready(KEY, "agent-keys", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        client
            .get_secret_set(&key, "agent-keys")
            .await
            .unwrap()
            .keys,
        ["OPENAI_API_KEY"]
    );
    let missing = client
        .delete_secret(&key, "agent-keys", "DEEPGRAM_API_KEY")
        .await
        .unwrap_err();
    assert_eq!(missing.kind().as_str(), "NotFound");

    // A server that echoes the body (as sent, or JSON-escaped inside a message) never brings
    // a value into the error.
    let path = "/v1/secrets/agent-keys";
    for body in [
        format!(r#"{{"error": "invalid secretValue {VALUE}"}}"#),
        format!(r#"{{"error": "rejected body {{\"secretValue\": \"{VALUE}\"}}"}}"#),
        format!("<html>{}{VALUE}</html>", "x".repeat(110)),
    ] {
        admin
            .inject_fault(Fault::body(path, FaultBody::Custom(body)).with_status(400))
            .await
            .unwrap();
        let e = client
            .put_secret_set(&key, "agent-keys", &env(VALUE))
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains("ROTATED"), "a value leaked: {text}");
        assert_no_key(&e);
    }
    // The same echo on a 2xx that is not JSON (malformed) does not leak either.
    admin
        .inject_fault(Fault::body(path, FaultBody::Custom(format!("ok {VALUE}"))).with_status(202))
        .await
        .unwrap();
    if let Err(e) = client.put_secret_set(&key, "agent-keys", &env(VALUE)).await {
        assert!(!format!("{e} {e:?}").contains("ROTATED"), "{e}");
    }

    admin
        .wait_secret_set_ready(KEY, "agent-keys", Duration::from_secs(5))
        .await
        .unwrap();
    client.delete_secret_set(&key, "agent-keys").await.unwrap();
    let gone = client.get_secret_set(&key, "agent-keys").await.unwrap_err();
    assert_eq!(gone.kind().as_str(), "NotFound");
}
