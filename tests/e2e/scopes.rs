//! What one release watches: per scope, one watch of each kind it reads (PipecatAgents,
//! PipecatSecretSets, Secrets), shared by both controllers; and `--label-selector` shards
//! every reconciled kind, secret sets as well as agents. Runs the operator binary against the
//! real control plane and the emulator; the watches are counted from the operator's own
//! request log (the kube client logs every request it sends).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::operator::{Env, Operator, Options};

/// The watch requests in an operator log, per resource (`pipecatagents`, `secrets`, ...).
fn watches(log: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        if !(line.contains("requesting") && line.contains("http.method=GET")) {
            continue;
        }
        let Some(url) = line.split("http.url=").nth(1) else {
            continue;
        };
        let url = url.split_whitespace().next().unwrap_or_default();
        if !url.contains("watch=true") {
            continue;
        }
        let path = url.split('?').next().unwrap_or_default();
        let resource = path.rsplit('/').next().unwrap_or_default().to_string();
        *out.entry(resource).or_default() += 1;
    }
    out
}

fn secret_set(name: &str, shard: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-values}}\ntype: Opaque\nstringData: {{OPENAI_API_KEY: x}}\n---\napiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatSecretSet\nmetadata: {{name: {name}, labels: {{shard: {shard}}}}}\nspec:\n  secretRef: {{name: {name}-values}}\n"
    )
}

async fn wait_until(what: &str, env: &Env, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\noperator log tail:\n{}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each kind is watched once per scope: both controllers read the same watch of agents, of
/// secret sets and of Secrets (three watches, where each controller opening its own made six).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_watch_per_kind_per_scope_feeds_both_controllers() {
    let env = Env::start("watches", Options::default()).await;
    env.apply(&secret_set("team-set", "a"));
    env.apply(
        "apiVersion: pipecat.daily.co/v1alpha1\nkind: PipecatAgent\nmetadata: {name: bot}\nspec: {image: acme/bot:1}\n",
    );
    env.wait_ready("bot").await;
    wait_until("the secret set to be created", &env, async || {
        env.calls("put_secret_set").await >= 1
    })
    .await;
    let seen = watches(&env.operator.log());
    assert_eq!(
        seen,
        BTreeMap::from([
            ("pipecatagents".to_string(), 1),
            ("pipecatsecretsets".to_string(), 1),
            ("secrets".to_string(), 1),
        ]),
        "watch requests per resource, one scope (--namespace {})",
        env.ns
    );
}

/// Two releases sharding one namespace by label: each reconciles only the secret sets of its
/// shard. Before, both reconciled every set, and the one that lost the create race retried
/// `SetExists` forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_selector_shards_secret_sets_too() {
    let env = Env::start(
        "shards",
        Options {
            create_secret_sets: false,
            extra_args: vec!["--label-selector".into(), "shard=a".into()],
            ..Options::default()
        },
    )
    .await;
    let other = Operator::start(
        env.cp,
        &env.ns,
        &env.emulator.base_url(),
        Duration::from_secs(2),
        &["--label-selector".into(), "shard=b".into()],
    );
    env.apply(&secret_set("set-a", "a"));
    env.apply(&secret_set("set-b", "b"));
    for set in ["set-a", "set-b"] {
        wait_until(&format!("{set} to exist remotely"), &env, async || {
            env.admin
                .journal(&pipecat_cloud_journal(set))
                .await
                .is_ok_and(|j| !j.is_empty())
        })
        .await;
    }
    // Long enough for a second release's pass over a set of the other shard (its resync is
    // 2 s, its backoff after an error at most 3 s) to have shown up.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for (operator, mine, theirs) in [
        (&env.operator, "set-a", "set-b"),
        (&other, "set-b", "set-a"),
    ] {
        let log = operator.log();
        assert!(
            log.contains(mine),
            "the release of {mine}'s shard never reconciled it"
        );
        assert!(
            !log.contains(theirs),
            "a release reconciled {theirs}, a set of another shard:\n{}",
            operator.log_tail(30)
        );
    }
    for set in ["set-a", "set-b"] {
        let puts = env
            .admin
            .journal(&pipecat_cloud_journal(set))
            .await
            .expect("journal")
            .iter()
            .filter(|e| e.method == "PUT")
            .count();
        assert_eq!(puts, 1, "{set} written once, by its own shard");
    }
    drop(other);
}

fn pipecat_cloud_journal(set: &str) -> pipecat_cloud_emulator::JournalFilter {
    pipecat_cloud_emulator::JournalFilter {
        secret_set: Some(set.to_string()),
        ..Default::default()
    }
}
