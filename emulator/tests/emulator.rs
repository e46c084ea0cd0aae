//! The Pipecat Cloud emulator over real HTTP on loopback: API shapes, validation, lifecycle,
//! secret sets, sessions, failure patterns, faults, auth, persistence and the binary.

use std::time::{Duration, Instant};

use pipecat_cloud_emulator::{
    self as emulator, AdminClient, Config, ConfigUpdate, Fault, FaultBody, Handle, JournalFilter,
    ResetOptions,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "pk_test_alpha";
const OTHER_KEY: &str = "pk_test_beta";

/// The response of the seed page (update-agent-endpoint.txt), used for its shape.
const SEED_RESPONSE: &str = r#"{
  "name": "voice-starter", "ready": true,
  "createdAt": "2025-04-19T01:20:27.564Z", "updatedAt": "2025-04-19T01:25:47.229Z",
  "activeDeploymentId": "19db578d-808c-420a-a047-87edde4410c1", "activeDeploymentReady": false,
  "autoScaling": {"concurrency": 1, "maxReplicas": 10, "minReplicas": 1, "scaleToZeroTime": "5m"},
  "activeSessionCount": 0,
  "deployment": {
    "id": "19db578d-808c-420a-a047-87edde4410c1",
    "manifest": {
      "apiVersion": "pipecatcloud.daily.co/v1", "kind": "PCService",
      "metadata": {"name": "voice-starter", "namespace": "tiny-ferret-maroon-123"},
      "spec": {
        "dailyNodeType": "arm", "clusterLocal": true, "image": "your-dockername/voice-starter:0.1",
        "autoScaling": {"concurrency": 1, "minReplicas": 1, "maxReplicas": 10},
        "envFromSecretNames": ["voice-starter-secrets"], "krispModels": {"enabled": false}
      }
    },
    "serviceId": "b59a68ee-61c8-4d99-9ceb-e99a3953bdac",
    "createdAt": "2025-04-19T01:25:47.225Z", "updatedAt": "2025-04-19T01:25:47.225Z"
  }
}"#;

fn seed_body() -> Value {
    json!({
        "image": "your-dockername/voice-starter:0.1",
        "nodeType": "arm",
        "imagePullSecretSet": "dockerhub-credentials",
        "secretSet": "voice-starter-secrets",
        "autoScaling": {"minAgents": 1, "maxAgents": 10},
        "enableKrisp": false
    })
}

async fn start_with(edit: impl FnOnce(&mut Config)) -> Handle {
    let mut config = Config {
        api_keys: vec![KEY.into(), OTHER_KEY.into()],
        ..Config::default()
    };
    edit(&mut config);
    emulator::start(config).await.expect("emulator starts")
}

/// A bare HTTP client of the emulated API.
struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    fn new(handle: &Handle, key: &str) -> Self {
        Self {
            base: handle.base_url(),
            key: key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn raw(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request reaches the emulator")
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.raw(method, path, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: body is not JSON ({e}): {text}"));
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn create(&self, name: &str, image: &str) -> Value {
        let (status, body) = self
            .post("/agents", json!({"serviceName": name, "image": image}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls the agent until `done` holds, failing after `timeout`.
    async fn wait_agent(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, agent) = self.get(&format!("/agents/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{agent}");
            if done(&agent) {
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "agent {name} never got there: {agent:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn complete(agent: &Value) -> bool {
    agent["ready"] == true && agent["reconciledDeploymentId"] == agent["desiredDeploymentId"]
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of `expected` is in `actual` with the same JSON type, recursively.
fn assert_shape(expected: &Value, actual: &Value, at: &str) {
    assert_eq!(
        json_type(expected),
        json_type(actual),
        "type of {at}: {actual}"
    );
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let inner = a
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}.{key} is missing from {actual:#}"));
                assert_shape(value, inner, &format!("{at}.{key}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(e), Some(a)) = (e.first(), a.first()) {
                assert_shape(e, a, &format!("{at}[0]"));
            }
        }
        _ => {}
    }
}

fn is_api_timestamp(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && s.parse::<jiff::Timestamp>().is_ok()
}

async fn seed_secret_sets(admin: &AdminClient, key: &str) {
    admin
        .create_secret_set(key, "voice-starter-secrets", &[("OPENAI_API_KEY", "sk-x")])
        .await
        .unwrap();
    admin
        .create_image_pull_secret_set(
            key,
            "dockerhub-credentials",
            "https://index.docker.io/v1/",
            "dXNlcjpwYXNz",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn seed_request_gets_the_seed_response_shape() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    seed_secret_sets(&handle.admin(), KEY).await;
    let seed: Value = serde_json::from_str(SEED_RESPONSE).unwrap();

    let mut create = seed_body();
    create["serviceName"] = json!("voice-starter");
    let (status, created) = api.post("/agents", create).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_shape(&seed, &created, "create");

    let mut update = seed_body();
    update["image"] = json!("your-dockername/voice-starter:0.2");
    let (status, updated) = api.post("/agents/voice-starter", update).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_shape(&seed, &updated, "update");
    let spec = &updated["deployment"]["manifest"]["spec"];
    assert_eq!(spec["image"], "your-dockername/voice-starter:0.2");
    assert_eq!(spec["envFromSecretNames"], json!(["voice-starter-secrets"]));
    assert_eq!(spec["imagePullSecretName"], "dockerhub-credentials");
    assert_eq!(
        spec["autoScaling"],
        json!({"concurrency": 1, "minReplicas": 1, "maxReplicas": 10})
    );
    assert_eq!(updated["autoScaling"]["scaleToZeroTime"], "5m");
    assert_eq!(
        updated["deployment"]["manifest"]["apiVersion"],
        "pipecatcloud.daily.co/v1"
    );
    assert_eq!(
        updated["deployment"]["manifest"]["metadata"]["name"],
        "voice-starter"
    );
    assert_eq!(updated["deployment"]["id"], updated["desiredDeploymentId"]);
    assert_eq!(
        updated["activeDeploymentId"],
        updated["desiredDeploymentId"]
    );
    assert_ne!(
        updated["desiredDeploymentId"],
        created["desiredDeploymentId"]
    );
    for field in ["createdAt", "updatedAt"] {
        assert!(
            is_api_timestamp(&updated[field]),
            "{field}: {}",
            updated[field]
        );
        assert!(is_api_timestamp(&updated["deployment"][field]));
    }
    // The newer fields are present too.
    assert_eq!(updated["region"], "us-west");
    assert_eq!(updated["agentProfile"], "agent-1x");
    assert_eq!(updated["maxSessionDuration"], 7200);
    assert_eq!(updated["krispViva"], json!({"audioFilter": null}));
    let kinds: Vec<&str> = updated["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Available", "Progressing", "Degraded"]);
    let revision = &updated["currentRevision"];
    assert_eq!(revision["deploymentID"], updated["desiredDeploymentId"]);
    for field in [
        "phase",
        "readyReplicas",
        "phaseStartedAt",
        "health",
        "hasInfrastructureIssue",
    ] {
        assert!(revision.get(field).is_some(), "currentRevision.{field}");
    }
    for field in [
        "ready",
        "state",
        "restartCount",
        "replicasStarted",
        "headline",
    ] {
        assert!(revision["health"].get(field).is_some(), "health.{field}");
    }
    // Typed string or integer, not nullable, in the contract: left out when there is none.
    for field in ["lastExitCode", "lastTerminationReason", "message"] {
        assert!(
            revision["health"].get(field).is_none(),
            "health.{field} of a starting revision: {}",
            revision["health"]
        );
    }
    // The contract's state, and the Kubernetes-like reason.
    assert_eq!(
        (&revision["health"]["state"], &revision["health"]["reason"]),
        (&json!("waiting"), &json!("ContainerCreating")),
        "{}",
        revision["health"]
    );
    assert_eq!(
        updated["previousRevision"]["deploymentID"],
        created["desiredDeploymentId"]
    );
    assert_eq!(updated["errors"], json!([]));
    handle.shutdown().await;
}

#[tokio::test]
async fn validation_errors_have_status_code_and_message() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    api.create("existing", "acme/bot:1").await;
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "/agents",
            json!({"image": "a/b:1"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "serviceName is required",
        ),
        (
            "/agents",
            json!({"serviceName": "Bad_Name", "image": "a/b:1"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "serviceName \"Bad_Name\" is invalid",
        ),
        (
            "/agents",
            json!({"serviceName": "a".repeat(55), "image": "a/b:1"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "is invalid",
        ),
        (
            "/agents",
            json!({"serviceName": "noimage"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "one of image or buildId is required",
        ),
        (
            "/agents",
            json!({"serviceName": "both", "image": "a/b:1", "buildId": "6f1f7c52-6e0c-4c6b-9d8e-1d2b3c4d5e6f"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "mutually exclusive",
        ),
        (
            "/agents",
            json!({"serviceName": "existing", "image": "a/b:1"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "Service already exists",
        ),
        (
            "/agents",
            json!({"serviceName": "nosecret", "image": "a/b:1", "secretSet": "missing"}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "secret set \"missing\" not found",
        ),
        (
            "/agents",
            json!({"serviceName": "nopull", "image": "a/b:1", "imagePullSecretSet": "missing"}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "imagePullSecretSet",
        ),
        (
            "/agents/existing",
            json!({"autoScaling": {"minAgents": 3, "maxAgents": 2}}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "autoScaling.minAgents (3) must not exceed autoScaling.maxAgents (2)",
        ),
        (
            "/agents/existing",
            json!({"autoScaling": {"maxAgents": 0}}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "autoScaling.maxAgents must be at least 1",
        ),
        (
            "/agents/existing",
            json!({"autoScaling": {"minAgents": -1}}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "autoScaling.minAgents must be 0 or more",
        ),
        (
            "/agents/existing",
            json!({"nodeType": "x86"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "the only node type is \"arm\"",
        ),
        (
            "/agents/existing",
            json!({"agentProfile": "agent-9x"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "expected one of agent-1x, agent-2x, agent-3x",
        ),
        (
            "/agents/existing",
            json!({"krispViva": {"audioFilter": "studio"}}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "expected \"tel\", \"pro\" or null",
        ),
        (
            "/agents/existing",
            json!({"maxSessionDuration": 30}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "between 60 and 14400 seconds, got 30",
        ),
        (
            "/agents/existing",
            json!({"maxSessionDuration": 20000}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "got 20000",
        ),
        (
            "/agents/existing",
            json!({"autoScaling": {"maxAgents": "ten"}}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "autoScaling.maxAgents must be an integer, got a string",
        ),
        (
            "/agents",
            json!({"serviceName": "elsewhere", "image": "a/b:1", "region": "mars-north"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "Invalid region or organization does not have access",
        ),
        (
            "/agents/existing",
            json!({"image": ["a"]}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "image must be a string, got an array",
        ),
        (
            "/agents/existing",
            json!({"region": "eu-central"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "region cannot be changed",
        ),
        (
            "/agents/existing",
            json!({"serviceName": "renamed"}),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "serviceName cannot be changed",
        ),
        (
            "/agents/existing",
            json!([1, 2]),
            StatusCode::BAD_REQUEST,
            "GENERIC_BAD_REQUEST",
            "must be a JSON object",
        ),
        (
            "/agents/missing",
            json!({"image": "a/b:2"}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Not found",
        ),
    ];
    for (path, body, status, code, message) in cases {
        let (got_status, got) = api.post(path, body.clone()).await;
        assert_eq!(got_status, status, "{path} {body}: {got}");
        assert_eq!(got["code"], code, "{path} {body}: {got}");
        let text = got["error"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{path} {body}: {text:?} lacks {message:?}"
        );
        assert_eq!(
            got.as_object().unwrap().len(),
            2,
            "only error and code: {got}"
        );
    }
    // Broken JSON text.
    let response = api
        .http
        .post(format!("{}/agents", api.base))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{\"serviceName\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("request body is not valid JSON")
    );
    // Nothing was created or changed by the rejected calls.
    let (_, list) = api.get("/agents").await;
    assert_eq!(list["services"].as_array().unwrap().len(), 1);
    let (_, agent) = api.get("/agents/existing").await;
    assert_eq!(
        agent["deployment"]["manifest"]["spec"]["image"],
        "acme/bot:1"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn lifecycle_reconciles_after_the_delay() {
    let handle = start_with(|c| {
        c.ready_delay = Duration::from_millis(200);
        c.reconcile_delay = Duration::from_millis(300);
    })
    .await;
    let api = Api::new(&handle, KEY);
    let started = Instant::now();
    let created = api.create("bot", "acme/bot:1").await;
    assert_eq!(created["ready"], false);
    assert_eq!(created["reconciledDeploymentId"], Value::Null);
    assert_eq!(created["available"], false);
    assert_eq!(created["currentRevision"]["phase"], "Creating");
    let progressing = &created["conditions"][1];
    assert_eq!(
        (progressing["type"].as_str(), progressing["status"].as_str()),
        (Some("Progressing"), Some("True"))
    );

    let done = api
        .wait_agent("bot", Duration::from_secs(5), complete)
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "reconciled too early"
    );
    assert_eq!(done["desiredDeploymentId"], created["desiredDeploymentId"]);
    assert_eq!(done["available"], true);
    assert_eq!(done["activeDeploymentReady"], true);
    assert_eq!(done["currentRevision"]["phase"], "Active");
    assert_eq!(done["currentRevision"]["health"]["state"], "running");
    handle.shutdown().await;
}

#[tokio::test]
async fn ready_after_an_update_describes_the_old_deployment_until_reconciled() {
    let handle = start_with(|c| {
        c.ready_delay = Duration::from_millis(100);
        c.reconcile_delay = Duration::from_millis(300);
    })
    .await;
    let api = Api::new(&handle, KEY);
    let first = api.create("bot", "acme/bot:1").await["desiredDeploymentId"].clone();
    api.wait_agent("bot", Duration::from_secs(5), complete)
        .await;

    let (status, updated) = api
        .post("/agents/bot", json!({"image": "acme/bot:2"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let second = updated["desiredDeploymentId"].clone();
    assert_ne!(second, first);
    assert_eq!(
        updated["ready"], true,
        "the documented trap: ready is the old deployment's"
    );
    assert_eq!(updated["reconciledDeploymentId"], first);
    assert_eq!(updated["activeDeploymentReady"], false);
    let (_, soon) = api.get("/agents/bot").await;
    assert_eq!(soon["ready"], true);
    assert_eq!(soon["reconciledDeploymentId"], first);

    let done = api
        .wait_agent("bot", Duration::from_secs(5), complete)
        .await;
    assert_eq!(done["reconciledDeploymentId"], second);
    assert_eq!(done["previousRevision"]["deploymentID"], first);
    assert_eq!(done["previousRevision"]["phase"], "Draining");
    handle.shutdown().await;
}

#[tokio::test]
async fn unchanged_update_warns_and_force_redeploy_makes_a_deployment() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    let created = api.create("bot", "acme/bot:1").await;
    let first = created["desiredDeploymentId"].clone();

    let (status, same) = api
        .post("/agents/bot", json!({"image": "acme/bot:1"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["desiredDeploymentId"], first);
    assert!(
        same["warning"].as_str().unwrap().contains("No changes"),
        "{same}"
    );
    assert_eq!(same["updatedAt"], created["updatedAt"]);

    let (_, forced) = api
        .post(
            "/agents/bot",
            json!({"image": "acme/bot:1", "forceRedeploy": true}),
        )
        .await;
    assert_ne!(forced["desiredDeploymentId"], first);
    assert!(forced.get("warning").is_none());

    let (_, scaled) = api
        .post(
            "/agents/bot",
            json!({"autoScaling": {"minAgents": 2, "maxAgents": 4}}),
        )
        .await;
    assert_ne!(
        scaled["desiredDeploymentId"], forced["desiredDeploymentId"],
        "a scaling change is a new deployment"
    );
    assert_eq!(scaled["autoScaling"]["minReplicas"], 2);
    assert_eq!(
        scaled["deployment"]["manifest"]["spec"]["image"], "acme/bot:1",
        "omitted fields are kept"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn list_get_and_delete() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    api.create("alpha", "acme/a:1").await;
    let (status, _) = api
        .post(
            "/agents",
            json!({"serviceName": "beta", "image": "acme/b:1", "region": "eu-central"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, list) = api.get("/agents").await;
    assert_eq!(status, StatusCode::OK);
    let services = list["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    let alpha = &services[0];
    assert_eq!(alpha["name"], "alpha");
    for field in [
        "id",
        "name",
        "region",
        "desiredDeploymentId",
        "activeDeploymentId",
        "reconciledDeploymentId",
        "organizationId",
        "createdAt",
        "updatedAt",
        "deletedAt",
    ] {
        assert!(
            alpha.get(field).is_some(),
            "list item lacks {field}: {alpha}"
        );
    }
    assert_eq!(alpha["deletedAt"], Value::Null);
    assert!(alpha.get("deployment").is_none());
    let (_, with) = api.get("/agents?includeActiveDeployment=true").await;
    assert_eq!(
        with["services"][0]["deployment"]["manifest"]["kind"],
        "PCService"
    );
    let (_, eu) = api.get("/agents?region=eu-central").await;
    let names: Vec<&str> = eu["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["beta"]);

    let (status, deleted) = api.call(Method::DELETE, "/agents/alpha", None).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"status": "OK"})));
    let (status, again) = api.call(Method::DELETE, "/agents/alpha", None).await;
    assert_eq!(
        (status, again),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "Not found", "code": "NOT_FOUND"})
        )
    );
    let (status, missing) = api.get("/agents/alpha").await;
    assert_eq!(
        (status, missing),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "Not found", "code": "NOT_FOUND"})
        )
    );
    let (_, list) = api.get("/agents").await;
    assert_eq!(list["services"].as_array().unwrap().len(), 1);
    // The name can be used again.
    api.create("alpha", "acme/a:2").await;
    handle.shutdown().await;
}

/// `latency` holds every API request back before it is handled (admin requests are never
/// held), and can be changed at run time.
#[tokio::test]
async fn latency_holds_requests_back_and_is_set_at_run_time() {
    let handle = start_with(|c| c.latency = Duration::from_secs(3600)).await;
    let admin = handle.admin();
    assert_eq!(admin.config().await.unwrap().latency_ms, 3_600_000);
    let api = Api::new(&handle, KEY);
    // A client that gives up long before the hour: the create is never handled.
    let given_up = api
        .http
        .post(format!("{}/agents", api.base))
        .bearer_auth(KEY)
        .json(&json!({"serviceName": "held", "image": "acme/a:1"}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(
        given_up.is_err(),
        "answered despite the latency: {given_up:?}"
    );
    let config = admin
        .set_config(ConfigUpdate {
            latency_ms: Some(0),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    assert_eq!(config.latency_ms, 0);
    let (status, missing) = api.get("/agents/held").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    api.create("held", "acme/a:1").await;
    handle.shutdown().await;
}

#[tokio::test]
async fn secret_sets_provision_asynchronously() {
    let handle = start_with(|c| c.secret_ready_delay = Duration::from_millis(300)).await;
    let api = Api::new(&handle, KEY);
    let put = |body: Value| api.call(Method::PUT, "/secrets/bot-secrets", Some(body));

    let (status, body) =
        put(json!({"secrets": [{"secretKey": "API_KEY", "secretValue": "s3cret-value"}]})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // The contract's answer: accepted, and where; the state is read with GET.
    assert_eq!(body, json!({"status": "OK", "region": "us-west"}));
    let (_, read) = api.get("/secrets/bot-secrets").await;
    assert_eq!(
        (&read["status"], &read["type"]),
        (&json!("pending"), &json!("secret"))
    );
    assert!(read.get("errorMessage").is_none(), "{read}");

    let (status, body) =
        put(json!({"secrets": [{"secretKey": "OTHER", "secretValue": "v"}]})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("CONFLICT"))
    );

    let (status, body) = api
        .post(
            "/agents",
            json!({"serviceName": "bot", "image": "a/b:1", "secretSet": "bot-secrets"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "binding a pending set: {body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("still provisioning")
    );

    handle
        .admin()
        .wait_secret_set_ready(KEY, "bot-secrets", Duration::from_secs(5))
        .await
        .unwrap();
    let (status, _) = put(json!({"secrets": [{"secretKey": "OTHER", "secretValue": "v2"}]})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    handle
        .admin()
        .wait_secret_set_ready(KEY, "bot-secrets", Duration::from_secs(5))
        .await
        .unwrap();
    let response = api.raw(Method::GET, "/secrets/bot-secrets", None).await;
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("s3cret-value"),
        "values never come back: {text}"
    );
    let detail: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        detail["secrets"],
        json!([{"fieldName": "API_KEY"}, {"fieldName": "OTHER"}])
    );

    let (status, _) = api
        .post(
            "/agents",
            json!({"serviceName": "bot", "image": "a/b:1", "secretSet": "bot-secrets"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Image-pull form, and a set of the wrong type.
    let (status, pull) = api
        .call(
            Method::PUT,
            "/secrets/registry",
            Some(json!({"isImagePullSecret": true, "host": "ghcr.io", "secretValue": "dXNlcjpwYXNz"})),
        )
        .await;
    assert_eq!(
        (status, pull["region"].as_str()),
        (StatusCode::ACCEPTED, Some("us-west"))
    );
    let (_, list) = api.get("/secrets").await;
    assert_eq!(list["sets"][1]["type"], "imagePullSecret");
    let sets: Vec<(&str, &str)> = list["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(sets, [("bot-secrets", "ready"), ("registry", "pending")]);

    let (status, _) = api
        .call(Method::DELETE, "/secrets/bot-secrets/API_KEY", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::DELETE, "/secrets/bot-secrets", None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "deleting a key re-provisions the set"
    );
    handle
        .admin()
        .wait_secret_set_ready(KEY, "bot-secrets", Duration::from_secs(5))
        .await
        .unwrap();
    let (status, _) = api.call(Method::DELETE, "/secrets/bot-secrets", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api.get("/secrets/bot-secrets").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, body) = api
        .call(Method::PUT, "/secrets/x", Some(json!({"secrets": []})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    handle.shutdown().await;
}

#[tokio::test]
async fn sessions_fill_the_pool_and_end_through_the_admin_api() {
    let handle = start_with(|c| c.public_keys = vec![("pk_public".into(), KEY.into())]).await;
    let api = Api::new(&handle, KEY);
    let admin = handle.admin();
    let (status, _) = api
        .post("/agents", json!({"serviceName": "bot", "image": "a/b:1", "autoScaling": {"minAgents": 0, "maxAgents": 2}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    api.wait_agent("bot", Duration::from_secs(5), complete)
        .await;

    let (status, first) = api
        .post("/public/bot/start", json!({"createDailyRoom": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first["sessionId"].as_str().unwrap().len() >= 32);
    assert!(first["dailyRoom"].as_str().unwrap().starts_with("https://"));
    let public = Api::new(&handle, "pk_public");
    let (status, _) = public.post("/public/bot/start", json!({})).await;
    assert_eq!(status, StatusCode::OK, "a public key starts sessions");
    let (status, full) = api.post("/public/bot/start", json!({})).await;
    assert_eq!(
        (status, full["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("429"))
    );
    assert!(full["error"].as_str().unwrap().contains("at capacity"));
    let (_, agent) = api.get("/agents/bot").await;
    assert_eq!(agent["activeSessionCount"], 2);
    let (status, _) = public.get("/agents/bot").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a public key cannot manage agents"
    );

    admin
        .end_session(KEY, first["sessionId"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(admin.sessions(KEY, "bot").await.unwrap().len(), 1);
    let (status, _) = api.post("/public/bot/start", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin.end_sessions(KEY, "bot").await.unwrap(), 2);
    let (_, agent) = api.get("/agents/bot").await;
    assert_eq!(agent["activeSessionCount"], 0);
    // The contract lists 200, 400 and 401 for starting a session.
    let (status, missing) = api.post("/public/nope/start", json!({})).await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("GENERIC_BAD_REQUEST"))
    );
    assert!(admin.end_session(KEY, "no-such-session").await.is_err());
    handle.shutdown().await;
}

#[tokio::test]
async fn crash_and_pull_failure_patterns() {
    let handle = start_with(|c| {
        c.crash_image_pattern = Some("*:crash*".into());
        c.ready_delay = Duration::from_millis(50);
        c.reconcile_delay = Duration::from_millis(50);
    })
    .await;
    let api = Api::new(&handle, KEY);
    let first = api.create("bot", "acme/bot:1").await["desiredDeploymentId"].clone();
    api.wait_agent("bot", Duration::from_secs(5), complete)
        .await;

    let (_, updated) = api
        .post("/agents/bot", json!({"image": "acme/bot:crash-1"}))
        .await;
    let failed = api
        .wait_agent("bot", Duration::from_secs(5), |a| {
            !a["errors"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(
        failed["desiredDeploymentId"],
        updated["desiredDeploymentId"]
    );
    assert_eq!(failed["ready"], false);
    assert_eq!(
        failed["available"], true,
        "traffic stays on the previous deployment"
    );
    assert_eq!(failed["reconciledDeploymentId"], first);
    let health = &failed["currentRevision"]["health"];
    assert_eq!(
        (&health["state"], &health["reason"]),
        (&json!("waiting"), &json!("CrashLoopBackOff"))
    );
    assert_eq!(health["lastExitCode"], 1);
    assert!(health["restartCount"].as_u64().unwrap() > 0);
    assert_eq!(failed["currentRevision"]["phase"], "Failed");
    let degraded = failed["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["status"], "True");
    assert!(!degraded["message"].as_str().unwrap().is_empty());
    assert_eq!(failed["errors"][0]["code"], "PCC_AGENT_CRASH_LOOP");

    // Runtime config: pull failures for a registry, applied to new deployments.
    let config = handle
        .admin()
        .set_config(ConfigUpdate {
            pull_fail_image_pattern: Some(Some("private.example.com/*".into())),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    assert_eq!(
        config.pull_fail_image_pattern.as_deref(),
        Some("private.example.com/*")
    );
    assert_eq!(config.crash_image_pattern.as_deref(), Some("*:crash*"));
    api.create("private", "private.example.com/team/bot:1")
        .await;
    let pulled = api
        .wait_agent("private", Duration::from_secs(5), |a| {
            !a["errors"].as_array().unwrap().is_empty()
        })
        .await;
    assert_eq!(pulled["errors"][0]["code"], "PCC_IMAGE_PULL_UNAUTHORIZED");
    assert!(
        pulled["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("private.example.com/team/bot:1")
    );
    assert_eq!(
        pulled["currentRevision"]["health"]["reason"],
        "ImagePullBackOff"
    );
    assert_eq!(
        (pulled["ready"].as_bool(), pulled["available"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(pulled["reconciledDeploymentId"], Value::Null);

    // A fixed image recovers.
    let (_, fixed) = api
        .post("/agents/bot", json!({"image": "acme/bot:2"}))
        .await;
    let done = api
        .wait_agent("bot", Duration::from_secs(5), complete)
        .await;
    assert_eq!(done["reconciledDeploymentId"], fixed["desiredDeploymentId"]);
    assert_eq!(done["errors"], json!([]));
    handle.shutdown().await;
}

#[tokio::test]
async fn status_faults_with_retry_after_respect_the_count() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    let admin = handle.admin();
    api.create("bot", "acme/bot:1").await;
    let active = admin
        .inject_fault(
            Fault::status("/v1/agents/*", 429)
                .with_retry_after(7)
                .with_count(2)
                .with_method("GET"),
        )
        .await
        .unwrap();
    assert_eq!(active.remaining, 2);
    assert_eq!(admin.faults().await.unwrap().len(), 1);

    let (status, list) = api.get("/agents").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the pattern does not match the list: {list}"
    );
    for _ in 0..2 {
        let response = api.raw(Method::GET, "/agents/bot", None).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "429");
    }
    let (status, _) = api.get("/agents/bot").await;
    assert_eq!(status, StatusCode::OK, "the count is used up");
    assert!(admin.faults().await.unwrap().is_empty());

    admin
        .inject_fault(Fault::status("/v1/**", 503).with_count(5))
        .await
        .unwrap();
    assert_eq!(admin.clear_faults().await.unwrap(), 1);
    let (status, _) = api.get("/agents/bot").await;
    assert_eq!(status, StatusCode::OK);
    let faulted = admin
        .journal(&JournalFilter {
            agent: Some("bot".into()),
            ..JournalFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.fault.as_deref() == Some("status"))
        .count();
    assert_eq!(faulted, 2);
    handle.shutdown().await;
}

#[tokio::test]
async fn delay_malformed_and_non_json_faults() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    let admin = handle.admin();
    api.create("bot", "acme/bot:1").await;

    admin
        .inject_fault(Fault::delay("/v1/agents/bot", Duration::from_millis(300)))
        .await
        .unwrap();
    let started = Instant::now();
    let (status, body) = api.get("/agents/bot").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        (status, body["name"].as_str()),
        (StatusCode::OK, Some("bot"))
    );

    admin
        .inject_fault(Fault::body("/v1/agents/bot", FaultBody::Malformed))
        .await
        .unwrap();
    let response = api.raw(Method::GET, "/agents/bot", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let text = response.text().await.unwrap();
    assert!(text.starts_with("{\"name\":\"bot\""), "{text}");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "truncated JSON: {text}"
    );

    admin
        .inject_fault(
            Fault::body("/v1/agents", FaultBody::Malformed)
                .with_status(500)
                .with_method("POST"),
        )
        .await
        .unwrap();
    let response = api
        .raw(
            Method::POST,
            "/agents",
            Some(json!({"serviceName": "never", "image": "a/b:1"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(serde_json::from_str::<Value>(&response.text().await.unwrap()).is_err());
    let (status, _) = api.get("/agents/never").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an error fault does not reach the API"
    );

    admin
        .inject_fault(Fault::body("/v1/**", FaultBody::NonJson))
        .await
        .unwrap();
    let response = api.raw(Method::GET, "/agents", None).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()["content-type"], "text/html");
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<h1>502 Bad Gateway</h1>")
    );

    admin
        .inject_fault(
            Fault::body("/v1/agents", FaultBody::Custom("{\"services\": 5}".into()))
                .with_status(200),
        )
        .await
        .unwrap();
    let (status, custom) = api.get("/agents").await;
    assert_eq!((status, custom), (StatusCode::OK, json!({"services": 5})));
    handle.shutdown().await;
}

#[tokio::test]
async fn drop_fault_closes_the_connection() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    let admin = handle.admin();
    api.create("bot", "acme/bot:1").await;
    admin
        .inject_fault(
            Fault::drop_connection("/v1/agents/bot").with_delay(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    let error = api
        .http
        .get(format!("{}/agents/bot", api.base))
        .bearer_auth(KEY)
        .send()
        .await
        .expect_err("the connection is dropped without an answer");
    assert!(error.status().is_none(), "no HTTP status: {error}");
    assert!(
        error.is_request() || error.is_connect() || error.is_body(),
        "{error:?}"
    );
    let (status, _) = api.get("/agents/bot").await;
    assert_eq!(status, StatusCode::OK, "the next request is answered");
    let counts = admin.counts().await.unwrap();
    assert_eq!(counts.by_status.get("dropped"), Some(&1));
    handle.shutdown().await;
}

#[tokio::test]
async fn auth_rejects_unknown_keys_and_separates_organizations() {
    let handle = start_with(|_| {}).await;
    let alpha = Api::new(&handle, KEY);
    let beta = Api::new(&handle, OTHER_KEY);
    alpha.create("bot", "acme/bot:1").await;

    let unauthorized = json!({"error": "Unauthorized", "code": "UNAUTHORIZED"});
    let wrong = Api::new(&handle, "pk_wrong");
    assert_eq!(
        wrong.get("/agents").await,
        (StatusCode::UNAUTHORIZED, unauthorized.clone())
    );
    let response = reqwest::get(format!("{}/agents", handle.base_url()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.json::<Value>().await.unwrap(), unauthorized);
    let (status, _) = wrong.post("/public/bot/start", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, list) = beta.get("/agents").await;
    assert_eq!((status, list), (StatusCode::OK, json!({"services": []})));
    let (status, _) = beta.get("/agents/bot").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    beta.create("bot", "other/bot:1").await;
    let (_, a) = alpha.get("/agents/bot").await;
    let (_, b) = beta.get("/agents/bot").await;
    assert_eq!(a["deployment"]["manifest"]["spec"]["image"], "acme/bot:1");
    assert_eq!(b["deployment"]["manifest"]["spec"]["image"], "other/bot:1");
    let (_, la) = alpha.get("/agents").await;
    let (_, lb) = beta.get("/agents").await;
    assert_ne!(
        la["services"][0]["organizationId"],
        lb["services"][0]["organizationId"]
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn journal_counts_reset_and_drift() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    let admin = handle.admin();
    let created = api.create("bot", "acme/bot:1").await;
    api.get("/agents/bot").await;
    api.get("/agents/missing").await;
    api.post("/agents/bot", json!({"image": "acme/bot:2"}))
        .await;

    let entries = admin.journal(&JournalFilter::default()).await.unwrap();
    let ops: Vec<&str> = entries.iter().map(|e| e.operation.as_str()).collect();
    assert_eq!(
        ops,
        ["create_agent", "get_agent", "get_agent", "update_agent"]
    );
    assert_eq!(
        entries[0].agent.as_deref(),
        Some("bot"),
        "create names its agent"
    );
    assert_eq!(entries[2].status, Some(404));
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    let since = admin
        .journal(&JournalFilter {
            since: Some(entries[1].seq),
            operation: Some("get_agent".into()),
            ..JournalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].path, "/v1/agents/missing");
    let counts = admin.counts().await.unwrap();
    assert_eq!(
        (
            counts.total,
            counts.operation("get_agent"),
            counts.status(404)
        ),
        (4, 2, 1)
    );

    // Drift: a dashboard edit makes a new deployment and is not journaled.
    let drifted = admin
        .drift(
            KEY,
            "bot",
            json!({"autoScaling": {"minAgents": 3, "maxAgents": 5}}),
        )
        .await
        .unwrap();
    assert_ne!(
        drifted["desiredDeploymentId"],
        created["desiredDeploymentId"]
    );
    let (_, agent) = api.get("/agents/bot").await;
    assert_eq!(agent["autoScaling"]["minReplicas"], 3);
    assert_eq!(
        agent["deployment"]["manifest"]["spec"]["image"],
        "acme/bot:2"
    );
    assert!(admin.drift(KEY, "missing", json!({})).await.is_err());
    assert!(admin.drift("pk_wrong", "bot", json!({})).await.is_err());

    admin
        .inject_fault(Fault::status("/v1/**", 500))
        .await
        .unwrap();
    admin.reset(ResetOptions::default()).await.unwrap();
    assert_eq!(admin.counts().await.unwrap().total, 0);
    assert_eq!(
        admin.faults().await.unwrap().len(),
        1,
        "faults stay unless asked"
    );
    admin
        .reset(ResetOptions {
            faults: true,
            state: true,
        })
        .await
        .unwrap();
    assert!(admin.faults().await.unwrap().is_empty());
    let (status, _) = api.get("/agents/bot").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "state was cleared");
    let entries = admin.journal(&JournalFilter::default()).await.unwrap();
    assert_eq!(entries[0].seq, 1, "seq restarts after a reset");
    handle.shutdown().await;
}

#[tokio::test]
async fn refused_create_is_journaled_with_its_agent() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    let admin = handle.admin();
    api.create("bot", "acme/bot:1").await;
    // A second create of the same name: refused, and the journal says which agent it was.
    let (status, body) = api
        .post(
            "/agents",
            json!({"serviceName": "bot", "image": "acme/bot:2"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A body that names no agent is refused without one.
    let (status, _) = api.post("/agents", json!({"image": "acme/bot:3"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let creates = admin
        .journal(&JournalFilter {
            operation: Some("create_agent".into()),
            ..JournalFilter::default()
        })
        .await
        .unwrap();
    let seen: Vec<(Option<u16>, Option<&str>)> = creates
        .iter()
        .map(|e| (e.status, e.agent.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(200), Some("bot")),
            (Some(400), Some("bot")),
            (Some(400), None)
        ]
    );
    let bot_only = admin
        .journal(&JournalFilter {
            agent: Some("bot".into()),
            operation: Some("create_agent".into()),
            ..JournalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        bot_only.len(),
        2,
        "the agent filter finds the refused create"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emulator-state.json");
    let config = |c: &mut Config| c.state_file = Some(path.clone());
    let handle = start_with(config).await;
    let api = Api::new(&handle, KEY);
    handle
        .admin()
        .create_secret_set(KEY, "bot-secrets", &[("API_KEY", "s3cret-value")])
        .await
        .unwrap();
    let (status, created) = api
        .post(
            "/agents",
            json!({"serviceName": "bot", "image": "acme/bot:1", "secretSet": "bot-secrets"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    Api::new(&handle, OTHER_KEY)
        .create("other", "acme/other:1")
        .await;
    handle.shutdown().await;

    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(
        !saved.contains(KEY) && !saved.contains("s3cret-value"),
        "no keys or secret values on disk"
    );

    let handle = start_with(config).await;
    let api = Api::new(&handle, KEY);
    let (status, agent) = api.get("/agents/bot").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent["desiredDeploymentId"], created["desiredDeploymentId"]);
    assert_eq!(agent["createdAt"], created["createdAt"]);
    assert_eq!(
        agent["reconciledDeploymentId"],
        created["desiredDeploymentId"]
    );
    let (_, sets) = api.get("/secrets").await;
    assert_eq!(sets["sets"][0]["name"], "bot-secrets");
    let (_, list) = api.get("/agents").await;
    assert_eq!(
        list["services"].as_array().unwrap().len(),
        1,
        "organizations stay apart"
    );

    // Changes are saved without a shutdown too (coalesced).
    api.call(Method::DELETE, "/agents/bot", None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&path).unwrap().contains("\"bot\"") {
        assert!(Instant::now() < deadline, "the delete was never saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown().await;
}

#[tokio::test]
async fn open_mode_accepts_any_key_as_its_own_organization() {
    let handle = emulator::start(Config::default()).await.unwrap();
    let a = Api::new(&handle, "anything");
    a.create("bot", "acme/bot:1").await;
    let (status, list) = Api::new(&handle, "something-else").get("/agents").await;
    assert_eq!((status, list), (StatusCode::OK, json!({"services": []})));
    let response = reqwest::get(format!("{}/agents", handle.base_url()))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a bearer token is still required"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn binary_prints_the_listening_line_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_pipecat-cloud-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            KEY,
            "--ready-delay",
            "0",
            "--reconcile-delay",
            "0",
        ])
        .env_remove("PIPECAT_EMULATOR_API_KEYS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim_end()
        .strip_prefix("pipecat-cloud-emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );

    let response = reqwest::Client::new()
        .get(format!("{url}/v1/agents"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"services": []})
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the binary ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "graceful exit: {status}");
}

#[tokio::test]
async fn secret_set_failures_profiles_and_journal() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    let admin = handle.admin();
    // Failed provisioning, switched on at runtime through the admin API.
    admin
        .set_config(ConfigUpdate {
            secret_fail_pattern: Some(Some("broken-*".into())),
            ..Default::default()
        })
        .await
        .unwrap();
    let body = json!({"secrets": [{"secretKey": "API_KEY", "secretValue": "v-1"}]});
    let (status, _) = api
        .call(Method::PUT, "/secrets/broken-set", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let e = admin
        .wait_secret_set_ready(KEY, "broken-set", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("emulated failure"), "{e}");
    let (_, set) = api.get("/secrets/broken-set").await;
    assert_eq!(set["status"], "failed");
    assert!(!set.to_string().contains("v-1"), "no value in {set}");
    // Cleared: the next change provisions.
    admin
        .set_config(ConfigUpdate {
            secret_fail_pattern: Some(None),
            ..Default::default()
        })
        .await
        .unwrap();
    api.call(Method::PUT, "/secrets/broken-set", Some(body))
        .await;
    admin
        .wait_secret_set_ready(KEY, "broken-set", Duration::from_secs(5))
        .await
        .unwrap();

    // The seed profile answers GET /secrets/{set} with what the CLI reads: field names only
    // (in the contract's shape).
    admin
        .set_config(ConfigUpdate {
            profile: Some(emulator::Profile::Seed),
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, bare) = api.get("/secrets/broken-set").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bare, json!({"secrets": [{"fieldName": "API_KEY"}]}));
    let (_, list) = api.get("/secrets").await;
    assert_eq!(
        list["sets"][0]["status"], "ready",
        "the state is in the list"
    );

    // The journal names the set of each secret set request, and filters by it.
    let entries = admin
        .journal(&emulator::JournalFilter {
            secret_set: Some("broken-set".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries
            .iter()
            .all(|e| e.secret_set.as_deref() == Some("broken-set"))
    );
    assert!(entries.iter().any(|e| e.operation == "put_secret_set"));
    handle.shutdown().await;
}

/// `(status, content type, body)` of a raw request.
async fn raw_answer(
    method: Method,
    url: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("request reaches the emulator");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{url}: {status} body is not JSON ({e}): {text}"));
    (status, content_type, value)
}

#[tokio::test]
async fn every_error_is_the_api_json_even_the_router_rejections() {
    let handle = start_with(|_| {}).await;
    let root = handle.root_url();
    for (method, path, status) in [
        // A repeated query parameter (axum's query rejection).
        (Method::GET, "/v1/agents?region=us-west&region=us-east", 400),
        (Method::GET, "/v1/secrets?region=a&region=b", 400),
        // A path segment that is not UTF-8 (axum's path rejection).
        (Method::GET, "/v1/agents/%FF", 400),
        (Method::GET, "/v1/no-such-route", 404),
        (Method::PATCH, "/v1/agents", 405),
        (Method::GET, "/_emulator/journal?limit=many", 400),
    ] {
        let (got, content_type, body) =
            raw_answer(method.clone(), &format!("{root}{path}"), Some(KEY), None).await;
        assert_eq!(got.as_u16(), status, "{method} {path}: {body}");
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type}"
        );
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty())
                && body["code"].as_str().is_some(),
            "{method} {path}: {body}"
        );
    }
    let (_, _, body) = raw_answer(
        Method::GET,
        &format!("{root}/v1/agents?region=a&region=b"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(body["code"], "GENERIC_BAD_REQUEST");
    assert!(body["error"].as_str().unwrap().contains("region"), "{body}");
    handle.shutdown().await;
}

#[tokio::test]
async fn regions_are_listed_and_enforced() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    let (status, body) = api.get("/regions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"regions": [
            {"code": "us-west", "display_name": "US West (Oregon)"},
            {"code": "us-east", "display_name": "US East (Virginia)"},
            {"code": "eu-central", "display_name": "Europe (Frankfurt)"},
            {"code": "ap-south", "display_name": "Asia Pacific (Mumbai)"},
        ]})
    );
    let (status, _, _) = raw_answer(
        Method::GET,
        &format!("{}/regions", handle.base_url()),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    handle.shutdown().await;

    let handle = start_with(|c| {
        c.regions = vec![emulator::Region::parse("eu-west=Europe (Ireland)").unwrap()];
    })
    .await;
    let api = Api::new(&handle, KEY);
    let (_, body) = api.get("/regions").await;
    assert_eq!(
        body,
        json!({"regions": [{"code": "eu-west", "display_name": "Europe (Ireland)"}]})
    );
    let refused = json!({"error": "Invalid region or organization does not have access",
                         "code": "GENERIC_BAD_REQUEST"});
    // The default region is not in this list.
    let (status, body) = api
        .post("/agents", json!({"serviceName": "bot", "image": "a/b:1"}))
        .await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &refused));
    let (status, body) = api
        .call(
            Method::PUT,
            "/secrets/bot-secrets",
            Some(json!({"secrets": [{"secretKey": "A", "secretValue": "v"}], "region": "us-west"})),
        )
        .await;
    assert_eq!((status, &body), (StatusCode::BAD_REQUEST, &refused));
    let (status, body) = api
        .call(
            Method::PUT,
            "/secrets/bot-secrets",
            Some(json!({"secrets": [{"secretKey": "A", "secretValue": "v"}], "region": "eu-west"})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::ACCEPTED,
            json!({"status": "OK", "region": "eu-west"})
        )
    );
    let (status, _) = api
        .post(
            "/agents",
            json!({"serviceName": "bot", "image": "a/b:1", "region": "eu-west"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    handle.shutdown().await;
}

#[tokio::test]
async fn enable_krisp_is_ignored_and_an_empty_set_name_detaches_the_set() {
    let handle = start_with(|_| {}).await;
    let api = Api::new(&handle, KEY);
    handle
        .admin()
        .create_secret_set(KEY, "bot-secrets", &[("A", "v")])
        .await
        .unwrap();
    let (status, created) = api
        .post(
            "/agents",
            json!({"serviceName": "bot", "image": "a/b:1", "secretSet": "bot-secrets",
                   "enableKrisp": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let spec = &created["deployment"]["manifest"]["spec"];
    assert_eq!(spec["krispModels"], json!({"enabled": false}), "{spec}");
    assert_eq!(spec["envFromSecretNames"], json!(["bot-secrets"]));
    // Neither stored nor honoured: no change, no new deployment.
    let (_, same) = api.post("/agents/bot", json!({"enableKrisp": false})).await;
    assert!(same["warning"].is_string(), "{same}");
    assert_eq!(same["desiredDeploymentId"], created["desiredDeploymentId"]);
    let stored = handle.admin().agent(KEY, "bot").await.unwrap().unwrap();
    assert!(
        !stored.to_string().contains("enableKrisp"),
        "stored: {stored}"
    );
    // An empty name detaches the set: a new deployment without it.
    let (status, detached) = api.post("/agents/bot", json!({"secretSet": ""})).await;
    assert_eq!(status, StatusCode::OK, "{detached}");
    assert!(detached.get("warning").is_none(), "{detached}");
    assert_eq!(
        detached["deployment"]["manifest"]["spec"]["envFromSecretNames"],
        json!([])
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn strict_mode_refuses_and_journals_contract_violations() {
    let handle = start_with(|c| {
        c.strict = true;
        c.public_keys = vec![("pk_public".into(), KEY.into())];
    })
    .await;
    let api = Api::new(&handle, KEY);
    let admin = handle.admin();
    assert!(admin.config().await.unwrap().strict);
    api.create("bot", "a/b:1").await;

    for (body, error) in [
        (
            json!({"secretSet": null}),
            "body.secretSet: null is not allowed (expected string; the contract does not mark it nullable)",
        ),
        (
            json!({"enableKrisp": true}),
            "body.enableKrisp: unknown field: the contract does not define it",
        ),
        (
            json!({"autoScaling": {"minAgents": 1, "maxReplicas": 3}}),
            "body.autoScaling.maxReplicas: unknown field: the contract does not define it",
        ),
    ] {
        let (status, answer) = api.post("/agents/bot", body.clone()).await;
        assert_eq!(
            (status, answer),
            (
                StatusCode::BAD_REQUEST,
                json!({"error": error, "code": "GENERIC_BAD_REQUEST"})
            ),
            "{body}"
        );
    }
    // Refused, so not carried out.
    let stored = admin.agent(KEY, "bot").await.unwrap().unwrap();
    assert_eq!(
        stored["deployment"]["manifest"]["spec"]["autoScaling"]["minReplicas"],
        0
    );
    // An unknown key is a 401 before anything is checked.
    let (status, _, _) = raw_answer(
        Method::POST,
        &format!("{}/agents/bot", handle.base_url()),
        Some("pk_unknown"),
        Some(r#"{"enableKrisp": true}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let counts = admin.counts().await.unwrap();
    assert_eq!(counts.violations, 3);
    let violations = admin.violations().await.unwrap();
    assert_eq!(violations.len(), 3);
    assert_eq!(
        violations[1].violation.as_deref(),
        Some("request: body.enableKrisp: unknown field: the contract does not define it")
    );
    assert_eq!(
        (violations[1].operation.as_str(), violations[1].status),
        ("update_agent", Some(400))
    );
    let filtered = admin
        .journal(&JournalFilter {
            violations: true,
            ..JournalFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered, violations);
    let report = handle.check_contract().unwrap_err().to_string();
    assert!(
        report.contains("3 contract violation") && report.contains("body.autoScaling.maxReplicas"),
        "{report}"
    );
    assert!(admin.check_contract().await.is_err());

    // Answers made by faults are exempt, and so are their requests.
    admin.reset(ResetOptions::default()).await.unwrap();
    admin
        .inject_fault(Fault::status("/v1/agents/*", 503))
        .await
        .unwrap();
    let (status, _) = api.post("/agents/bot", json!({"enableKrisp": true})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    handle.check_contract().unwrap();

    // Every profile answers a tour of the API as the contract says.
    for profile in [
        emulator::Profile::Full,
        emulator::Profile::Seed,
        emulator::Profile::Rewriting,
    ] {
        admin
            .reset(ResetOptions {
                faults: true,
                state: true,
            })
            .await
            .unwrap();
        admin
            .set_config(ConfigUpdate {
                profile: Some(profile),
                secret_ready_delay_ms: Some(0),
                ..ConfigUpdate::default()
            })
            .await
            .unwrap();
        let (status, _) = api
            .call(
                Method::PUT,
                "/secrets/bot-secrets",
                Some(json!({"secrets": [{"secretKey": "A", "secretValue": "v"}]})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, _) = api
            .call(
                Method::PUT,
                "/secrets/registry",
                Some(json!({"isImagePullSecret": true, "host": "https://ghcr.io",
                            "secretValue": "dXNlcjpw"})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        admin
            .wait_secret_set_ready(KEY, "registry", Duration::from_secs(5))
            .await
            .unwrap();
        let (status, body) = api
            .post(
                "/agents",
                json!({"serviceName": "bot", "image": "acme/bot:1", "region": "us-west",
                       "secretSet": "bot-secrets", "imagePullSecretSet": "registry",
                       "autoScaling": {"minAgents": 0, "maxAgents": 2},
                       "krispViva": {"audioFilter": "tel"}, "agentProfile": "agent-2x",
                       "maxSessionDuration": 600}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        api.wait_agent("bot", Duration::from_secs(5), |a| a["ready"] == true)
            .await;
        for path in [
            "/agents",
            "/agents?includeActiveDeployment=true&region=us-west",
            "/agents/bot",
            "/regions",
            "/secrets",
            "/secrets/bot-secrets",
        ] {
            let (status, body) = api.get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
        for body in [
            json!({"image": "acme/bot:2", "secretSet": ""}),
            json!({"krispViva": {"audioFilter": null}, "forceRedeploy": true}),
            json!({"maxSessionDuration": 600}),
        ] {
            let (status, answer) = api.post("/agents/bot", body).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
        let (status, _) = api.post("/agents/missing", json!({"image": "a/b:1"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = api
            .call(Method::DELETE, "/secrets/bot-secrets/A", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = raw_answer(
            Method::POST,
            &format!("{}/public/bot/start", handle.base_url()),
            Some("pk_public"),
            Some(r#"{"createDailyRoom": true}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = api.call(Method::DELETE, "/agents/bot", None).await;
        assert_eq!(status, StatusCode::OK);
        if let Err(e) = handle.check_contract() {
            panic!("profile {}: {e:#}", profile.as_str());
        }
    }

    // Off again: lenient, as without strict mode.
    admin
        .set_config(ConfigUpdate {
            strict: Some(false),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    api.create("lenient", "a/b:1").await;
    let (status, body) = api
        .post(
            "/agents/lenient",
            json!({"secretSet": null, "enableKrisp": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    handle.shutdown().await;
}
