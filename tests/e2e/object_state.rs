//! Every way a resource can leave is forgotten, and counted under its real outcome: the
//! operator's per-object memory and the `pipecat_operator_agents` gauge follow deletions with
//! `Delete` and `Orphan`, a finalizer stripped by hand, and a resource leaving the label
//! selector. Runs the operator binary against the real control plane and the emulator.

use std::time::{Duration, Instant};

use crate::support::operator::{Env, Options};

const AGENT: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata:
  name: NAME
  labels: {team: voice}
spec:
  image: acme/bot:1
  secretSet: voice-starter-secrets
  autoScaling: {minAgents: 0, maxAgents: 2}
  deletionPolicy: POLICY
";

fn agent(name: &str, policy: &str) -> String {
    AGENT.replace("NAME", name).replace("POLICY", policy)
}

async fn wait_metric(env: &Env, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = env.operator.metric(series).await.unwrap_or(0.0);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {got}, expected {want}\n{}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departed_resources_leave_the_gauges_and_orphans_are_counted_as_orphaned() {
    let env = Env::start(
        "departed",
        Options {
            extra_args: vec!["--label-selector".into(), "team=voice".into()],
            ..Options::default()
        },
    )
    .await;
    const READY: &str = "pipecat_operator_agents{ready=\"true\"}";
    for (name, policy) in [
        ("bot-delete", "Delete"),
        ("bot-orphan", "Orphan"),
        ("bot-relabel", "Delete"),
        ("bot-stripped", "Delete"),
    ] {
        env.apply(&agent(name, policy));
    }
    for name in ["bot-delete", "bot-orphan", "bot-relabel", "bot-stripped"] {
        env.wait_ready(name).await;
    }
    wait_metric(&env, READY, 4.0).await;

    // Delete policy: the remote agent is deleted, counted as deleted.
    env.kubectl(&["delete", "pipecatagent", "bot-delete", "--wait=false"]);
    env.wait_gone("bot-delete", Duration::from_secs(30)).await;
    assert!(env.remote("bot-delete").await.is_none());
    wait_metric(&env, READY, 3.0).await;
    wait_metric(
        &env,
        "pipecat_operator_reconciles_total{result=\"deleted\"}",
        1.0,
    )
    .await;

    // Orphan policy: the remote agent stays, counted as orphaned (not as deleted).
    env.kubectl(&["delete", "pipecatagent", "bot-orphan", "--wait=false"]);
    env.wait_gone("bot-orphan", Duration::from_secs(30)).await;
    assert!(
        env.remote("bot-orphan").await.is_some(),
        "Orphan keeps the agent"
    );
    wait_metric(&env, READY, 2.0).await;
    wait_metric(
        &env,
        "pipecat_operator_reconciles_total{result=\"orphaned\"}",
        1.0,
    )
    .await;
    assert_eq!(
        env.operator
            .metric("pipecat_operator_reconciles_total{result=\"deleted\"}")
            .await,
        Some(1.0),
        "the orphaned agent was not counted as deleted"
    );

    // Leaving the label selector: no longer this operator's, no longer counted.
    let out = env.kubectl(&[
        "label",
        "pipecatagent",
        "bot-relabel",
        "team=other",
        "--overwrite",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_metric(&env, READY, 1.0).await;

    // A finalizer stripped by hand, then the resource deleted: no cleanup ran, but the operator
    // forgets it all the same.
    let out = env.kubectl(&[
        "patch",
        "pipecatagent",
        "bot-stripped",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.kubectl(&["delete", "pipecatagent", "bot-stripped", "--wait=false"]);
    env.wait_gone("bot-stripped", Duration::from_secs(30)).await;
    wait_metric(&env, READY, 0.0).await;
    assert_eq!(
        env.operator
            .metric("pipecat_operator_agents{ready=\"false\"}")
            .await
            .unwrap_or(0.0),
        0.0
    );
    assert!(
        env.remote("bot-stripped").await.is_some(),
        "without the finalizer no cleanup ran: the remote agent is left, as the user chose"
    );
}
