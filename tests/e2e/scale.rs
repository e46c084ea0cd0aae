//! The warm pool from Kubernetes' scaling tools, against the real control plane: the `scale`
//! subresource (`kubectl scale`, `kubectl get --subresource=scale`), a HorizontalPodAutoscaler
//! reading it through kube-controller-manager's HPA controller, and the per-agent gauges
//! (`--agent-metrics`) following the emulator's sessions.

use std::time::{Duration, Instant};

use pipecat_operator::crd::PipecatAgent;

use crate::support::operator::{API_KEY, Env, Options};

const AGENT: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: NAME}
spec:
  image: dailyco/voice-starter:latest
  secretSet: voice-starter-secrets
  autoScaling: {minAgents: MIN, maxAgents: MAX}
";

fn agent(name: &str, min: i32, max: i32) -> String {
    AGENT
        .replace("NAME", name)
        .replace("MIN", &min.to_string())
        .replace("MAX", &max.to_string())
}

fn options() -> Options {
    Options {
        extra_args: vec!["--agent-metrics=true".to_string()],
        ..Options::default()
    }
}

fn applied_min(a: &PipecatAgent) -> Option<i64> {
    a.status
        .as_ref()
        .and_then(|s| s.auto_scaling.as_ref())
        .and_then(|s| s.min_replicas)
}

/// `kubectl get pca NAME --subresource=scale -o json`.
fn scale(env: &Env, name: &str) -> serde_json::Value {
    let out = env.kubectl(&[
        "get",
        "pipecatagent",
        name,
        "--subresource=scale",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "kubectl get --subresource=scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a Scale object")
}

/// (spec.replicas, status.replicas) of a Scale (an absent `spec.replicas` is 0: omitempty).
fn replicas(s: &serde_json::Value) -> (i64, Option<i64>) {
    (
        s["spec"]["replicas"].as_i64().unwrap_or(0),
        s["status"]["replicas"].as_i64(),
    )
}

/// `kubectl scale pca NAME --replicas=N`: (success, stderr).
fn kubectl_scale(env: &Env, name: &str, replicas: i32) -> (bool, String) {
    let out = env.kubectl(&["scale", "pca", name, &format!("--replicas={replicas}")]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    env: &Env,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}\noperator log tail:\n{}",
            env.operator.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_sets_the_warm_pool_with_one_update_and_stops_at_max_agents() {
    let env = Env::start("scale", options()).await;
    env.apply(&agent("warm", 0, 3));
    env.wait_for(
        "warm",
        Duration::from_secs(60),
        "applied minReplicas=0",
        |a| crate::support::operator::is_ready(a) && applied_min(a) == Some(0),
    )
    .await;

    let s = scale(&env, "warm");
    assert_eq!(s["kind"], "Scale", "{s}");
    assert_eq!(replicas(&s), (0, Some(0)), "{s}");
    assert_eq!(
        s["status"]["selector"], "pipecat.daily.co/agent=warm",
        "{s}"
    );

    let updates = env.calls("update_agent").await;
    let (ok, err) = kubectl_scale(&env, "warm", 2);
    assert!(ok, "kubectl scale --replicas=2: {err}");
    let spec = env.agents().get("warm").await.unwrap().spec;
    assert_eq!(
        spec.auto_scaling
            .as_ref()
            .map(|a| (a.min_agents, a.max_agents)),
        Some((2, 3)),
        "the scale subresource sets minAgents only"
    );
    env.wait_for(
        "warm",
        Duration::from_secs(60),
        "applied minReplicas=2",
        |a| crate::support::operator::is_ready(a) && applied_min(a) == Some(2),
    )
    .await;
    let remote = env.remote("warm").await.expect("the remote agent");
    assert_eq!(remote["autoScaling"]["minReplicas"], 2, "{remote}");
    assert_eq!(remote["autoScaling"]["maxReplicas"], 3, "{remote}");

    // Two more resyncs (each reads the agent) send nothing more.
    let reads = env.calls("get_agent").await;
    wait_until(&env, "two resyncs", Duration::from_secs(30), || async {
        env.calls("get_agent").await >= reads + 2
    })
    .await;
    assert_eq!(
        env.calls("update_agent").await - updates,
        1,
        "one scale, one update"
    );
    let s = scale(&env, "warm");
    assert_eq!(replicas(&s), (2, Some(2)), "{s}");

    // Past maxAgents: rejected by the CRD's rule, with its message; nothing changes.
    let (ok, err) = kubectl_scale(&env, "warm", 4);
    assert!(!ok, "a scale above maxAgents must be rejected");
    assert!(
        err.contains("autoScaling.minAgents must not be greater than autoScaling.maxAgents"),
        "{err}"
    );
    let spec = env.agents().get("warm").await.unwrap().spec;
    assert_eq!(spec.auto_scaling.map(|a| a.min_agents), Some(2));
    // Down to zero (scale to zero) is allowed.
    let (ok, err) = kubectl_scale(&env, "warm", 0);
    assert!(ok, "kubectl scale --replicas=0: {err}");
    env.wait_for(
        "warm",
        Duration::from_secs(60),
        "applied minReplicas=0",
        |a| crate::support::operator::is_ready(a) && applied_min(a) == Some(0),
    )
    .await;
    assert_eq!(env.calls("update_agent").await - updates, 2);

    // Without spec.autoScaling there is no warm pool to scale: the apiserver serves no scale
    // (the replicas path does not exist), and a scale would write minAgents alone, which the
    // schema refuses (maxAgents is required); the spec is untouched.
    env.apply(
        "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: defaults}
spec:
  image: dailyco/voice-starter:latest
  secretSet: voice-starter-secrets
",
    );
    let out = env.kubectl(&[
        "get",
        "pca",
        "defaults",
        "--subresource=scale",
        "-o",
        "json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no scale without autoScaling");
    assert!(
        err.contains("\".spec.autoScaling.minAgents\" does not exist"),
        "{err}"
    );
    let (ok, err) = kubectl_scale(&env, "defaults", 1);
    assert!(!ok, "a scale without autoScaling must be rejected");
    assert!(
        err.contains("spec.autoScaling.maxAgents: Required value"),
        "{err}"
    );
    let spec = env.agents().get("defaults").await.unwrap().spec;
    assert_eq!(spec.auto_scaling, None);
}

fn series(metric: &str, ns: &str, name: &str) -> String {
    format!("pipecat_operator_agent_{metric}{{namespace=\"{ns}\",name=\"{name}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_agent_gauges_follow_sessions_and_leave_with_the_agent() {
    let env = Env::start("gauges", options()).await;
    env.apply(&agent("busy", 1, 3));
    env.wait_ready("busy").await;
    let (sessions, warm, max) = (
        series("active_sessions", &env.ns, "busy"),
        series("warm_agents", &env.ns, "busy"),
        series("max_agents", &env.ns, "busy"),
    );
    wait_until(
        &env,
        "gauges of a ready agent",
        Duration::from_secs(30),
        || async {
            env.operator.metric(&sessions).await == Some(0.0)
                && env.operator.metric(&warm).await == Some(1.0)
                && env.operator.metric(&max).await == Some(3.0)
        },
    )
    .await;

    // Two sessions started through the public endpoint: seen at the next resync.
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let start = http
            .post(format!("{}/public/busy/start", env.emulator.base_url()))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert!(start.status().is_success(), "{}", start.status());
    }
    wait_until(
        &env,
        "active_sessions=2",
        Duration::from_secs(30),
        || async { env.operator.metric(&sessions).await == Some(2.0) },
    )
    .await;
    let ended = env.admin.end_sessions(API_KEY, "busy").await.unwrap();
    assert_eq!(ended, 2);
    wait_until(
        &env,
        "active_sessions=0",
        Duration::from_secs(30),
        || async { env.operator.metric(&sessions).await == Some(0.0) },
    )
    .await;

    // Deleted: the agent's series go with it.
    assert!(env.kubectl(&["delete", "pca", "busy"]).status.success());
    env.wait_gone("busy", Duration::from_secs(60)).await;
    // Read from an answered scrape only: the error text of a dead endpoint lacks the series
    // too.
    wait_until(&env, "series removed", Duration::from_secs(30), || async {
        let (status, text) = env
            .operator
            .get(env.operator.metrics_port, "/metrics")
            .await;
        assert_eq!(
            status,
            200,
            "GET /metrics while the series go: {text}\n{}",
            env.operator.log_tail(20)
        );
        !text.contains("name=\"busy\"")
    })
    .await;
    let mut env = env;
    assert!(
        env.operator.running(),
        "the operator exited while removing the series:\n{}",
        env.operator.log_tail(20)
    );
    crate::support::reliability::check_operator_alive(&env)
        .await
        .expect("the operator is alive after removing the series");
    let (status, text) = env
        .operator
        .get(env.operator.metrics_port, "/metrics")
        .await;
    assert_eq!(status, 200, "GET /metrics after the removal: {text}");
    assert!(
        text.contains("pipecat_operator_agents"),
        "the scrape holds the operator's other series"
    );
}

const HPA: &str = "
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: NAME}
spec:
  scaleTargetRef: {apiVersion: pipecat.daily.co/v1alpha1, kind: PipecatAgent, name: NAME}
  minReplicas: 1
  maxReplicas: 4
  metrics:
    - type: External
      external:
        metric:
          name: pipecat_operator_agent_active_sessions
          selector: {matchLabels: {name: NAME}}
        target: {type: AverageValue, averageValue: '1'}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_finds_a_pipecat_agent_through_its_scale() {
    let env = Env::start("hpa", options()).await;
    env.apply(&agent("hpa-target", 2, 4));
    env.wait_for(
        "hpa-target",
        Duration::from_secs(60),
        "ready with status.selector",
        |a| {
            crate::support::operator::is_ready(a)
                && a.status.as_ref().and_then(|s| s.selector.as_deref())
                    == Some("pipecat.daily.co/agent=hpa-target")
        },
    )
    .await;
    env.apply(&HPA.replace("NAME", "hpa-target"));

    let hpa = || async {
        let out = env.kubectl(&["get", "hpa", "hpa-target", "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let condition = |h: &serde_json::Value, t: &str| -> Option<(String, String)> {
        h["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let found = loop {
        let h = hpa().await;
        if condition(&h, "AbleToScale").is_some() && condition(&h, "ScalingActive").is_some() {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "the HPA never reported on its target: {h}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // It read the scale (spec replicas 2) and its selector; only the metric is missing (no
    // metrics server in the test control plane).
    assert_eq!(
        condition(&found, "AbleToScale"),
        Some(("True".into(), "SucceededGetScale".into())),
        "{found}"
    );
    let active = condition(&found, "ScalingActive").unwrap();
    assert_eq!(active.0, "False", "{found}");
    assert_eq!(
        active.1, "FailedGetExternalMetric",
        "the scale's selector is accepted, only the metric is missing: {found}"
    );
    assert_eq!(found["status"]["currentReplicas"], 2, "{found}");
}
