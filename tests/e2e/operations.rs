//! Production operations against the real control plane: leader election and failover,
//! graceful shutdown, metrics, health probes and the client-side rate limit.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use pipecat_cloud_emulator::JournalFilter;

use crate::support::operator::{Env, Operator, Options};

const AGENT: &str = "
apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {name: NAME}
spec:
  image: IMAGE
  secretSet: voice-starter-secrets
  autoScaling: {minAgents: 0, maxAgents: 2}
";

fn agent(name: &str, image: &str) -> String {
    AGENT.replace("NAME", name).replace("IMAGE", image)
}

/// Leader-election flags with a lease of `lease` (renewed every 300 ms, given up after 2 s).
fn ha_args(ns: &str, lease: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--leader-election-namespace",
        ns,
        "--leader-election-id",
        "pipecat-operator-test",
        "--lease-duration",
        lease,
        "--renew-deadline",
        "2s",
        "--retry-period",
        "300ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn lease_holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.cp.client(), &env.ns);
    leases
        .get_opt("pipecat-operator-test")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let ns_probe = Env::start(
        "ha",
        Options {
            extra_args: vec![],
            ..Options::default()
        },
    )
    .await;
    // Replace the default single operator by two leader-electing instances.
    let mut env = ns_probe;
    env.operator.kill();
    let args = ha_args(&env.ns, "3s");
    let url = env.emulator.base_url();
    let mut a = Operator::start(env.cp, &env.ns, &url, Duration::from_secs(1), &args);
    let mut b = Operator::start(env.cp, &env.ns, &url, Duration::from_secs(1), &args);

    wait_until("a leader is elected", Duration::from_secs(20), || async {
        lease_holder(&env).await.is_some()
    })
    .await;
    // Both are ready: one leads, one stands by.
    for op in [&a, &b] {
        wait_until("/readyz", Duration::from_secs(20), || async {
            op.get(op.health_port, "/readyz").await.0 == 200
        })
        .await;
        assert_eq!(op.get(op.health_port, "/healthz").await.0, 200);
    }
    let holder = lease_holder(&env).await.unwrap();
    let (leader, standby) = if holder == a.identity {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(leader.metric("pipecat_operator_leader").await, Some(1.0));
    assert_eq!(standby.metric("pipecat_operator_leader").await, Some(0.0));
    assert!(
        standby
            .get(standby.health_port, "/readyz")
            .await
            .1
            .contains("standby")
    );

    env.apply(&agent("bot-a", "acme/bot:1"));
    env.wait_ready("bot-a").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // a few resyncs
    assert_eq!(
        env.calls("create_agent").await,
        1,
        "exactly one instance created the agent"
    );
    assert_eq!(env.calls("update_agent").await, 0);
    assert!(standby.log().contains("waiting for the leader lease"));
    assert!(
        !standby.log().contains("reconciled agent"),
        "the standby reconciled:\n{}",
        standby.log_tail(20)
    );
    assert_eq!(
        leader
            .metric("pipecat_operator_reconciles_total{result=\"created\"}")
            .await,
        Some(1.0)
    );
    // The standby does nothing at all: no reconcile of any outcome (unchanged ones log nothing
    // at info), no Pipecat request (reads included). The same sums over the leader show that
    // the series are there to be read.
    for (what, family) in [
        (
            "reconciles",
            "pipecat_operator_reconcile_duration_seconds_count",
        ),
        ("Pipecat requests", "pipecat_operator_api_requests_total"),
    ] {
        let led = leader.metric_sum(family).await;
        let stood_by = standby.metric_sum(family).await;
        assert!(led > 0.0, "the leader shows no {what} ({family})");
        assert_eq!(
            stood_by,
            0.0,
            "the standby made {stood_by} {what} ({family}):\n{}",
            standby.log_tail(20)
        );
    }

    // The leader dies without releasing; a change made meanwhile converges once the standby leads.
    leader.kill();
    env.apply(&agent("bot-a", "acme/bot:2"));
    let standby_id = standby.identity.clone();
    wait_until(
        "the standby takes the lease",
        Duration::from_secs(20),
        || {
            let id = standby_id.clone();
            let env = &env;
            async move { lease_holder(env).await.as_deref() == Some(id.as_str()) }
        },
    )
    .await;
    // How fast (about the 3 s lease) is a figure for a benchmark, not a test on a shared
    // machine: the wait above gives up after 20 s.
    wait_until(
        "the change made during failover is applied",
        Duration::from_secs(30),
        || async {
            env.remote("bot-a").await.unwrap()["deployment"]["manifest"]["spec"]["image"]
                == "acme/bot:2"
        },
    )
    .await;
    assert_eq!(env.calls("update_agent").await, 1);
    assert_eq!(env.calls("create_agent").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_and_releases_the_lease() {
    let mut env = Env::start("term", Options::default()).await;
    env.operator.kill();
    // A lease far longer than the waits below: a successor that leads within them did not
    // wait the lease out, so the lease was released (no figure to meet on a loaded machine).
    let mut args = ha_args(&env.ns, "60s");
    args.extend(["--shutdown-grace-period".to_string(), "30s".to_string()]);
    let url = env.emulator.base_url();
    let mut op = Operator::start(env.cp, &env.ns, &url, Duration::from_secs(1), &args);
    let id = op.identity.clone();
    wait_until("leader", Duration::from_secs(20), || {
        let id = id.clone();
        let env = &env;
        async move { lease_holder(env).await.as_deref() == Some(id.as_str()) }
    })
    .await;
    env.apply(&agent("bot-t", "acme/bot:1"));
    env.wait_ready("bot-t").await;

    op.terminate();
    // Within the 30 s grace period (idle, it exits at once; the figure belongs to a benchmark).
    let status = op
        .wait_exit(Duration::from_secs(30))
        .expect("exited within the grace period after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", op.log_tail(20));
    assert_eq!(lease_holder(&env).await, None, "the lease was released");
    assert!(op.log().contains("released the leader lease"));

    // A new instance takes over without waiting out the 60 s lease.
    let next = Operator::start(env.cp, &env.ns, &url, Duration::from_secs(1), &args);
    let next_id = next.identity.clone();
    wait_until("new leader", Duration::from_secs(30), || {
        let id = next_id.clone();
        let env = &env;
        async move { lease_holder(env).await.as_deref() == Some(id.as_str()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_scenario() {
    let env = Env::start("metrics", Options::default()).await;
    let op = &env.operator;
    wait_until(
        "/readyz after the watches sync",
        Duration::from_secs(20),
        || async { op.get(op.health_port, "/readyz").await.0 == 200 },
    )
    .await;
    env.apply(&agent("bot-m", "acme/bot:1"));
    env.wait_ready("bot-m").await;
    env.apply(&agent("bot-m", "acme/bot:2"));
    wait_until("update counted", Duration::from_secs(20), || async {
        op.metric("pipecat_operator_reconciles_total{result=\"updated\"}")
            .await
            == Some(1.0)
    })
    .await;
    env.wait_ready("bot-m").await;
    wait_until("ready gauge", Duration::from_secs(10), || async {
        op.metric("pipecat_operator_agents{ready=\"true\"}").await == Some(1.0)
    })
    .await;
    assert_eq!(
        op.metric("pipecat_operator_reconciles_total{result=\"created\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        op.metric(
            "pipecat_operator_api_requests_total{operation=\"create_agent\",status_class=\"2xx\"}"
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        op.metric(
            "pipecat_operator_api_requests_total{operation=\"update_agent\",status_class=\"2xx\"}"
        )
        .await,
        Some(1.0)
    );
    // Resyncs keep reading: the metric lies between two readings of the emulator's count.
    let before = env.calls("get_agent").await;
    // (the first GET answered 404: the agent did not exist yet)
    let gets = op
        .metric("pipecat_operator_api_requests_total{operation=\"get_agent\",status_class=\"2xx\"}")
        .await
        .unwrap() as u64
        + op.metric(
            "pipecat_operator_api_requests_total{operation=\"get_agent\",status_class=\"4xx\"}",
        )
        .await
        .unwrap() as u64;
    let after = env.calls("get_agent").await;
    assert!(
        before <= gets && gets <= after,
        "metric {gets}, emulator {before}..{after}"
    );
    assert!(
        op.metric("pipecat_operator_reconcile_duration_seconds_count")
            .await
            .unwrap()
            >= 3.0
    );
    assert_eq!(op.metric("pipecat_operator_leader").await, Some(1.0));

    // Errors are counted by reason.
    env.admin
        .inject_fault(pipecat_cloud_emulator::Fault {
            status: Some(503),
            count: 2,
            ..pipecat_cloud_emulator::Fault::new("/v1/agents/*")
        })
        .await
        .unwrap();
    env.apply(&agent("bot-m", "acme/bot:3"));
    wait_until("503s counted", Duration::from_secs(20), || async {
        op.metric("pipecat_operator_reconcile_errors_total{reason=\"PipecatUnavailable\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    env.wait_ready("bot-m").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_under_a_burst_of_changes() {
    let opts = Options {
        extra_args: [
            "--api-rate-limit",
            "5",
            "--api-burst",
            "2",
            "--concurrency",
            "8",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        resync: Duration::from_secs(60),
        ..Options::default()
    };
    let env = Env::start("ratelimit", opts).await;
    let manifests: String = (0..12)
        .map(|i| agent(&format!("bot-{i:02}"), "acme/bot:1"))
        .collect::<Vec<_>>()
        .join("---\n");
    env.apply(&manifests);
    for i in 0..12 {
        env.wait_for(
            &format!("bot-{i:02}"),
            Duration::from_secs(90),
            "Ready",
            crate::support::operator::is_ready,
        )
        .await;
    }
    let journal = env.admin.journal(&JournalFilter::default()).await.unwrap();
    let times: Vec<jiff::Timestamp> = journal
        .iter()
        .filter(|e| e.path.starts_with("/v1/agents"))
        .map(|e| e.timestamp.parse().unwrap())
        .collect();
    assert!(
        times.len() >= 36,
        "12 agents need a get, a create and a poll each: {}",
        times.len()
    );
    // In any one-second window: at most rate + burst requests (plus one for window edges).
    let mut worst = 0;
    for (i, start) in times.iter().enumerate() {
        let end = start
            .checked_add(jiff::SignedDuration::from_secs(1))
            .unwrap();
        let n = times[i..].iter().take_while(|t| **t < end).count();
        worst = worst.max(n);
    }
    // Requests are timed on arrival at the emulator, not when the limiter let them go: on a
    // loaded 2-core machine one can arrive a few hundred milliseconds late and bunch with the
    // next ones, so a window gets two requests of slack (one for its edges, one for that).
    assert!(
        worst <= 5 + 2 + 2,
        "{worst} requests within one second (limit 5/s, burst 2)"
    );
    // Over the whole run, late arrivals cannot add up: at most the rate times the span, plus
    // the burst and the same slack.
    let span = times
        .last()
        .unwrap()
        .duration_since(*times.first().unwrap())
        .as_secs_f64();
    assert!(
        times.len() as f64 <= 5.0 * span + 2.0 + 2.0,
        "{} requests in {span:.2}s (limit 5/s, burst 2)",
        times.len()
    );
    let waits = env
        .operator
        .metric("pipecat_operator_api_rate_limit_waits_total")
        .await
        .unwrap_or(0.0);
    assert!(waits > 0.0, "the burst had to wait");
}
