//! Reliability when kube-apiserver restarts under the running operator (issue 7, scenario 3).
//!
//! Alone in its test binary: it restarts the control plane shared by the binary's tests. While
//! the API server is down, an agent drifts remotely; right after it is back, a spec changes, an
//! agent is created and another deleted. The same operator process (no restart) must see all
//! of it: its watches recover, the drift is restored, and nothing is lost or duplicated.

mod support;

use std::time::{Duration, Instant};

use anyhow::ensure;
use kube::api::{DeleteParams, ListParams};
use serde_json::json;
use support::operator::{API_KEY, Env, Options};
use support::reliability::{
    Meta, Want, apply_api, assert_all_passed, check_created_once, check_operator_alive,
    check_remote_names, journal_seq, run_case, successful_updates, wait_converged,
};

const SUITE: &str = "reliability_apiserver";
const TEST: &str = "apiserver_restart_loses_no_change";
/// How long after the restart everything must have converged (the watches back off while the
/// API server is away).
const CONVERGE: Duration = Duration::from_secs(120);

/// Whether the API server answers a list within a second.
async fn apiserver_up(env: &Env) -> bool {
    let api = env.agents();
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            api.list(&ListParams::default().limit(1))
        )
        .await,
        Ok(Ok(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restart_loses_no_change() {
    let env = Env::start(
        "rel-apiserver",
        Options {
            resync: Duration::from_secs(2),
            ..Options::default()
        },
    )
    .await;
    let (drifted, changed, created, deleted) = ("r-drift", "r-change", "r-new", "r-delete");
    for name in [drifted, changed, deleted] {
        apply_api(&env, name, &Want::version(1)).await.unwrap();
    }
    for name in [drifted, changed, deleted] {
        wait_converged(&env, name, &Want::version(1), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("setup: {e:#}"));
    }
    let pid = env.operator.pid();
    let since = journal_seq(&env).await.unwrap();

    // Restart the API server; drift an agent while it is down.
    let cp = env.cp;
    let began = Instant::now();
    let restart = tokio::task::spawn_blocking(move || {
        cp.restart_apiserver();
        Instant::now()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while apiserver_up(&env).await {
        assert!(
            Instant::now() < deadline,
            "the API server still answers 30 s into its restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let down_after = began.elapsed();
    env.admin
        .drift(API_KEY, drifted, json!({"image": "someone/else:latest"}))
        .await
        .expect("drift");
    let drift_during_outage = !apiserver_up(&env).await;
    let back_at = restart.await.expect("restart_apiserver");
    let outage = back_at.duration_since(began);

    // Right after it is back: a spec change, a new agent, a deletion.
    apply_api(&env, changed, &Want::version(2)).await.unwrap();
    apply_api(&env, created, &Want::version(1)).await.unwrap();
    env.agents()
        .delete(deleted, &DeleteParams::default())
        .await
        .unwrap();

    let context = format!(
        "API server unreachable {:.1} s after SIGTERM, ready again {:.1} s after it",
        down_after.as_secs_f64(),
        outage.as_secs_f64()
    );
    let env = &env;
    let mut results = Vec::new();
    let converged_in = || {
        format!(
            "within {:.1} s of the API server being ready",
            back_at.elapsed().as_secs_f64().max(0.1)
        )
    };
    results.push(
        run_case(
            Meta::new(
                SUITE,
                TEST,
                "remote drift while kube-apiserver is down",
                "kube-apiserver restarted (SIGTERM, start, ready); image changed in Pipecat Cloud during the outage",
                "the drift is restored once the API server is back (same operator process)",
            ),
            async {
                ensure!(
                    drift_during_outage,
                    "the API server was back before the drift was made"
                );
                wait_converged(env, drifted, &Want::version(1), CONVERGE).await?;
                let updates = successful_updates(env, drifted, since).await?;
                ensure!(updates == 1, "{updates} updates restored the drift (expected 1)");
                Ok(format!(
                    "{context}; drift restored {}",
                    converged_in()
                ))
            },
        )
        .await,
    );
    results.push(
        run_case(
            Meta::new(
                SUITE,
                TEST,
                "spec change right after the restart",
                "kube-apiserver restarted; spec applied as soon as it is ready",
                "the watch resumes and the change is applied (one update)",
            ),
            async {
                wait_converged(env, changed, &Want::version(2), CONVERGE).await?;
                let updates = successful_updates(env, changed, since).await?;
                ensure!(updates == 1, "{updates} updates (expected 1)");
                Ok(format!("{context}; applied {}", converged_in()))
            },
        )
        .await,
    );
    results.push(
        run_case(
            Meta::new(
                SUITE,
                TEST,
                "agent created right after the restart",
                "kube-apiserver restarted; new PipecatAgent as soon as it is ready",
                "created once and Ready",
            ),
            async {
                wait_converged(env, created, &Want::version(1), CONVERGE).await?;
                check_created_once(env, created).await?;
                Ok(format!("{context}; created once, Ready {}", converged_in()))
            },
        )
        .await,
    );
    results.push(
        run_case(
            Meta::new(
                SUITE,
                TEST,
                "agent deleted right after the restart",
                "kube-apiserver restarted; PipecatAgent deleted as soon as it is ready",
                "the remote agent is deleted and the finalizer released",
            ),
            async {
                let deadline = Instant::now() + CONVERGE;
                while env.agents().get_opt(deleted).await?.is_some() {
                    ensure!(
                        Instant::now() < deadline,
                        "{deleted} still exists:\n{}",
                        env.operator.log_tail(15)
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                ensure!(
                    env.remote(deleted).await.is_none(),
                    "the remote agent was left behind"
                );
                Ok(format!("{context}; deleted {}", converged_in()))
            },
        )
        .await,
    );
    results.push(
        run_case(
            Meta::new(
                SUITE,
                TEST,
                "operator across the API server restart",
                "kube-apiserver restarted under it",
                "same process, alive, no duplicate agent, one create per agent",
            ),
            async {
                ensure!(
                    env.operator.pid() == pid,
                    "the operator process was replaced"
                );
                check_operator_alive(env).await?;
                check_remote_names(env, &[drifted, changed, created]).await?;
                for name in [drifted, changed, created, deleted] {
                    check_created_once(env, name).await?;
                }
                Ok("same pid, /healthz 200; 3 remote agents, each created once".to_string())
            },
        )
        .await,
    );
    assert_all_passed(&results);
}
