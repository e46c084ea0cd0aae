//! End-to-end: a user's change never waits behind the operator's own resyncs. With a tiny API
//! budget and many ready agents, the start-up pass over them (background work) would take
//! far longer than one change; the emulator's journal shows the change's calls ahead of the
//! remaining refreshes and no refresh between them. Nor behind its own roll-out polls: with
//! roll-outs being polled faster than the budget allows, a change's read and update still go
//! back to back. Counts and order, never timings.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pipecat_cloud_emulator::{ConfigUpdate, JournalEntry};

use crate::support::operator::{Env, Operator, Options, is_ready};
use crate::support::reliability::{journal_seq, journal_since};

/// Ready agents: at 1 background request/s their refresh round lasts 40 s (20 s at 2/s), a
/// change needs 2 requests.
const AGENTS: usize = 40;

fn manifest(names: &[String]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "apiVersion: pipecat.daily.co/v1alpha1
kind: PipecatAgent
metadata: {{name: {n}}}
spec:
  image: dailyco/voice-starter:1
  secretSet: voice-starter-secrets
"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn gets_of_others<'a>(entries: &'a [JournalEntry], agent: &str) -> Vec<&'a JournalEntry> {
    entries
        .iter()
        .filter(|e| e.operation == "get_agent" && e.agent.as_deref() != Some(agent))
        .collect()
}

/// The default share: resyncs get half of 2 requests/s, the lanes keep the other half free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_goes_before_the_resync_backlog() {
    change_before_backlog("lanes", 0.5).await;
}

/// No share kept for changes (`--api-change-share=0`): resyncs pace themselves to the whole
/// budget (a 20 s period), and a spec change still reaches Pipecat Cloud ahead of the resync
/// backlog (at most the refreshes that had their token already before its read), with nothing
/// between its read and its update. That is the scheduling: the change is not queued behind
/// the resyncs. Which of two requests waiting for the same token the rate limiter serves first
/// would show here only in races of a few milliseconds; the unit tests of
/// `cloud/ratelimit.rs` prove that priority under paused time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_goes_before_the_resync_backlog_when_resyncs_use_the_whole_budget() {
    change_before_backlog("lanes-full", 0.0).await;
}

/// 40 ready agents, the operator restarted with 2 requests/s and `change_share`; a spec change
/// once the refreshes have begun.
async fn change_before_backlog(prefix: &str, change_share: f64) {
    // Create the fleet without a budget, so that the setup is quick.
    let mut env = Env::start(
        prefix,
        Options {
            extra_args: vec!["--api-rate-limit=0".into()],
            ..Options::default()
        },
    )
    .await;
    let names: Vec<String> = (0..AGENTS).map(|i| format!("lane-{i:02}")).collect();
    env.apply(&manifest(&names));
    for n in &names {
        env.wait_for(n, Duration::from_secs(120), "Ready=True", is_ready)
            .await;
    }

    // Restart with 2 requests/s: every agent is ready and caught up, so the whole start-up
    // pass is background work (40 s of it at the default share).
    env.operator.kill();
    let start = journal_seq(&env).await.unwrap();
    env.operator = Operator::start(
        env.cp,
        &env.ns,
        &env.emulator.base_url(),
        Duration::from_secs(1),
        &[
            "--api-rate-limit=2".to_string(),
            "--api-burst=2".to_string(),
            format!("--api-change-share={change_share}"),
        ],
    );

    // Once the refreshes have begun, change the spec of an agent not refreshed yet.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refreshed = loop {
        let seen: BTreeSet<String> = journal_since(&env, start)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.operation == "get_agent")
            .filter_map(|e| e.agent)
            .collect();
        if seen.len() >= 3 {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "no refresh started: {}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The restarted operator counts the ready agents from their status, before their refresh.
    assert_eq!(
        env.operator
            .metric("pipecat_operator_agents{ready=\"true\"}")
            .await,
        Some(AGENTS as f64),
        "{} agents refreshed so far",
        refreshed.len()
    );
    let changed = names
        .iter()
        .rev()
        .find(|n| !refreshed.contains(*n))
        .unwrap()
        .clone();
    let patched = journal_seq(&env).await.unwrap();
    let out = env.kubectl(&[
        "patch",
        "pipecatagent",
        &changed,
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"dailyco/voice-starter:2"}}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The update reaches Pipecat Cloud (with the old scheduling, after the whole backlog).
    let deadline = Instant::now() + Duration::from_secs(120);
    let journal = loop {
        let journal = journal_since(&env, patched).await.unwrap();
        if journal
            .iter()
            .any(|e| e.operation == "update_agent" && e.agent.as_deref() == Some(&changed))
        {
            break journal;
        }
        assert!(
            Instant::now() < deadline,
            "the change never reached Pipecat Cloud: {}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = journal
        .iter()
        .position(|e| e.agent.as_deref() == Some(&changed))
        .unwrap();
    let update = journal
        .iter()
        .position(|e| e.operation == "update_agent" && e.agent.as_deref() == Some(&changed))
        .unwrap();
    let order: Vec<String> = journal
        .iter()
        .map(|e| format!("{} {}", e.operation, e.agent.as_deref().unwrap_or("-")))
        .collect();

    // Before the change's first call: only refreshes that had their token when the change
    // arrived (the burst of 2) or raced the watch event (1), not the backlog.
    let before = gets_of_others(&journal[..first], &changed);
    assert!(
        before.len() <= 3,
        "{} refreshes went before the change of {changed}: {order:?}",
        before.len()
    );
    // Between its read and its update, nothing else: the second call of a change goes first.
    assert!(
        journal[first..update]
            .iter()
            .all(|e| e.agent.as_deref() == Some(&changed)),
        "background calls between the change's read and its update: {order:?}"
    );

    // The backlog had not drained: most agents are refreshed after the update.
    let update_seq = journal[update].seq;
    let deadline = Instant::now() + Duration::from_secs(120);
    let later = loop {
        let done: BTreeSet<String> = journal_since(&env, start)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.operation == "get_agent")
            .filter_map(|e| e.agent)
            .collect();
        if done.len() == AGENTS {
            break journal_since(&env, start).await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the resync round never finished: {}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let refreshed_after: BTreeSet<&str> = later
        .iter()
        .filter(|e| e.operation == "get_agent")
        .filter(|e| e.agent.as_deref() != Some(&changed))
        .fold(
            (BTreeSet::new(), BTreeSet::new()),
            |(mut seen, mut after), e| {
                let agent = e.agent.as_deref().unwrap();
                if seen.insert(agent) && e.seq > update_seq {
                    after.insert(agent);
                }
                (seen, after)
            },
        )
        .1;
    eprintln!(
        "{} refreshes before the change's first call, {} agents first refreshed after its update",
        before.len(),
        refreshed_after.len()
    );
    assert!(
        refreshed_after.len() >= AGENTS / 2,
        "only {} of {} agents were first refreshed after the change's update: the change waited for the backlog",
        refreshed_after.len(),
        AGENTS - 1
    );

    // The budget stretched the period: 40 agents at 2 x (1 - share) background requests/s.
    assert_eq!(
        env.operator
            .metric("pipecat_operator_resync_period_seconds ")
            .await,
        Some(AGENTS as f64 / (2.0 * (1.0 - change_share)))
    );
    assert!(
        env.operator
            .metric_sum("pipecat_operator_resyncs_total")
            .await
            >= (AGENTS - 1) as f64
    );
    let agent = env.wait_ready(&changed).await;
    assert_eq!(
        env.remote(&changed).await.unwrap()["deployment"]["manifest"]["spec"]["image"],
        "dailyco/voice-starter:2"
    );
    assert!(agent.status.unwrap().observed_at.is_some());
}

fn patch_image(env: &Env, name: &str, tag: u32) {
    let out = env.kubectl(&[
        "patch",
        "pipecatagent",
        name,
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"image":"dailyco/voice-starter:{tag}"}}}}"#),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The journal from `since` once it shows an update of `agent`.
async fn until_updated(env: &Env, agent: &str, since: u64) -> Vec<JournalEntry> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let journal = journal_since(env, since).await.unwrap();
        if journal
            .iter()
            .any(|e| e.operation == "update_agent" && e.agent.as_deref() == Some(agent))
        {
            return journal;
        }
        assert!(
            Instant::now() < deadline,
            "the change of {agent} never reached Pipecat Cloud: {}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Roll-outs that never finish, polled every 200 ms to 1 s (the suite's poll interval), ask
/// for more than the budget of 1 request/s; spec changes made meanwhile still go read, then
/// update, with no poll (or refresh) between them: the polls are follow-ups, served after
/// changes. With polls in the change lane, first come first served, a poll that reserved its
/// token while the change read took the slot before its update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_out_polls_wait_for_changes() {
    const ROLLING: usize = 2;
    const CHANGES: usize = 4;
    let mut env = Env::start(
        "lanes-polls",
        Options {
            extra_args: vec!["--api-rate-limit=0".into()],
            ..Options::default()
        },
    )
    .await;
    let rolling: Vec<String> = (0..ROLLING).map(|i| format!("rolling-{i}")).collect();
    let changed: Vec<String> = (0..CHANGES).map(|i| format!("changed-{i}")).collect();
    let all: Vec<String> = rolling.iter().chain(&changed).cloned().collect();
    env.apply(&manifest(&all));
    for n in &all {
        env.wait_for(n, Duration::from_secs(120), "Ready=True", is_ready)
            .await;
    }

    // From now on no deployment becomes ready during the test: every update starts a
    // roll-out the operator keeps polling.
    env.admin
        .set_config(ConfigUpdate {
            ready_delay_ms: Some(600_000),
            reconcile_delay_ms: Some(600_000),
            ..ConfigUpdate::default()
        })
        .await
        .unwrap();
    env.operator.kill();
    env.operator = Operator::start(
        env.cp,
        &env.ns,
        &env.emulator.base_url(),
        Duration::from_secs(1),
        &[
            "--api-rate-limit=1".to_string(),
            "--api-burst=1".to_string(),
        ],
    );

    // The roll-outs, each polled at least once.
    let start = journal_seq(&env).await.unwrap();
    for n in &rolling {
        patch_image(&env, n, 2);
    }
    for n in &rolling {
        until_updated(&env, n, start).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let journal = journal_since(&env, start).await.unwrap();
        let polled = rolling.iter().all(|n| {
            let mine = journal.iter().filter(|e| e.agent.as_deref() == Some(n));
            mine.skip_while(|e| e.operation != "update_agent")
                .any(|e| e.operation == "get_agent")
        });
        if polled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll-outs were not polled: {}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The changes, one after the other while the polls go on.
    let mut polls_before = 0;
    for n in &changed {
        let patched = journal_seq(&env).await.unwrap();
        patch_image(&env, n, 2);
        let journal = until_updated(&env, n, patched).await;
        let order: Vec<String> = journal
            .iter()
            .map(|e| format!("{} {}", e.operation, e.agent.as_deref().unwrap_or("-")))
            .collect();
        let update = journal
            .iter()
            .position(|e| e.operation == "update_agent" && e.agent.as_deref() == Some(n))
            .unwrap();
        // The read the update was planned from: the last one of the agent before it.
        let read = journal[..update]
            .iter()
            .rposition(|e| e.operation == "get_agent" && e.agent.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no read of {n} before its update: {order:?}"));
        assert_eq!(
            read + 1,
            update,
            "calls between the read and the update of {n}: {order:?}"
        );
        polls_before += journal[..read]
            .iter()
            .filter(|e| e.operation == "get_agent" && e.agent.as_deref() != Some(n))
            .count();
    }
    // The polls were due all along (two roll-outs polled at least once a second against a
    // budget of 1 request/s, and none finishes): once the changes are done they go on.
    let done = journal_seq(&env).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let journal = journal_since(&env, done).await.unwrap();
        let polled = rolling.iter().all(|n| {
            journal
                .iter()
                .any(|e| e.operation == "get_agent" && e.agent.as_deref() == Some(n))
        });
        if polled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll-outs are no longer polled: {}",
            env.operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let polls = journal_since(&env, start)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.seq < done && e.operation == "get_agent")
        .filter(|e| rolling.iter().any(|n| e.agent.as_deref() == Some(n)))
        .count();
    eprintln!(
        "{polls} polls of the rolling agents until the last change; {polls_before} reads of others between the patches and the changes' reads"
    );
}
