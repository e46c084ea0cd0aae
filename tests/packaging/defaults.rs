//! One home for each default: the operator's flags hold them; the Helm chart's values.yaml
//! repeats them for people to read, and this test fails the moment the two disagree.

use std::time::Duration;

use pipecat_operator::duration;
use pipecat_operator::operator::RunArgs;

fn values() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/pipecat-operator/values.yaml"
    ))
    .expect("the chart's values.yaml");
    serde_saphyr::from_str(&text).expect("values.yaml parses")
}

fn dur(v: &serde_json::Value) -> Duration {
    duration::parse(v.as_str().expect("a duration string")).expect("a valid duration")
}

#[test]
fn chart_values_repeat_the_operator_defaults() {
    let flags: RunArgs = pipecat_operator::flags::defaults();
    let v = values();
    let c = &v["controller"];
    assert_eq!(v["pipecat"]["apiUrl"], flags.api.base_url.as_str());
    assert_eq!(dur(&c["requestTimeout"]), flags.api.timeout);
    assert_eq!(
        v["pipecat"]["rateLimit"].as_f64(),
        Some(flags.api_rate_limit)
    );
    assert_eq!(
        v["pipecat"]["burst"].as_u64(),
        Some(u64::from(flags.api_burst))
    );
    assert_eq!(
        v["pipecat"]["changeShare"].as_f64(),
        Some(flags.api_change_share)
    );
    assert_eq!(dur(&c["pollInterval"]), flags.controller.poll_interval);
    assert_eq!(
        dur(&c["maxPollInterval"]),
        flags.controller.max_poll_interval
    );
    assert_eq!(dur(&c["resyncInterval"]), flags.controller.resync_interval);
    assert_eq!(dur(&c["backoffBase"]), flags.controller.backoff_base);
    assert_eq!(dur(&c["backoffCap"]), flags.controller.backoff_cap);
    assert_eq!(
        c["concurrency"].as_u64(),
        Some(u64::from(flags.controller.concurrency))
    );
    assert_eq!(dur(&c["shutdownGracePeriod"]), flags.shutdown_grace_period);
    assert_eq!(
        v["credentials"]["secretKey"],
        flags.controller.default_credentials.key.as_str()
    );
    assert_eq!(
        v["metrics"]["port"].as_u64(),
        Some(u64::from(flags.metrics_bind_address.port()))
    );
    assert_eq!(
        v["metrics"]["agents"]["enabled"].as_bool(),
        Some(flags.agent_metrics.enabled)
    );
    assert_eq!(
        v["metrics"]["agents"]["limit"].as_u64(),
        Some(flags.agent_metrics.limit as u64)
    );
    assert_eq!(
        v["health"]["port"].as_u64(),
        Some(u64::from(flags.health_probe_bind_address.port()))
    );
    let l = &v["leaderElection"];
    assert_eq!(dur(&l["leaseDuration"]), flags.leader.lease_duration);
    assert_eq!(dur(&l["renewDeadline"]), flags.leader.renew_deadline);
    assert_eq!(dur(&l["retryPeriod"]), flags.leader.retry_period);
}

#[test]
fn chart_passes_the_lease_timings_to_the_operator() {
    use crate::support::helm::{Helm, container_args, one, parse_manifest};
    let helm = Helm::offline();
    let args = |extra: &[&str]| {
        let manifest = helm.template("op", "ops", extra);
        container_args(one(&parse_manifest(&manifest), "Deployment"))
    };
    let flags: RunArgs = pipecat_operator::flags::defaults();
    // Leader election on: the values' timings, parsed back to the flags' defaults.
    let on = args(&["--set", "replicaCount=2"]);
    let value = |flag: &str| {
        let prefix = format!("--{flag}=");
        let arg = on
            .iter()
            .find_map(|a| a.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {on:?}"));
        duration::parse(arg).expect("a valid duration")
    };
    assert_eq!(value("lease-duration"), flags.leader.lease_duration);
    assert_eq!(value("renew-deadline"), flags.leader.renew_deadline);
    assert_eq!(value("retry-period"), flags.leader.retry_period);
    // Set through values.
    let custom = args(&[
        "--set",
        "leaderElection.enabled=true,leaderElection.leaseDuration=40s,leaderElection.renewDeadline=30s,leaderElection.retryPeriod=5s",
    ]);
    for arg in [
        "--lease-duration=40s",
        "--renew-deadline=30s",
        "--retry-period=5s",
    ] {
        assert!(custom.iter().any(|a| a == arg), "{arg} in {custom:?}");
    }
    // A single replica without leader election: no lease flags.
    let off = args(&[]);
    assert!(
        !off.iter().any(|a| a.starts_with("--lease-duration")),
        "{off:?}"
    );
}

#[test]
fn library_defaults_are_the_flag_defaults() {
    // `Default` reads the flags' defaults: no second copy of a number in the code.
    let flags: RunArgs = pipecat_operator::flags::defaults();
    let config = pipecat_operator::runtime::Config::default();
    assert_eq!(config.resync_interval, flags.controller.resync_interval);
    assert_eq!(config.resync_interval, Duration::from_secs(60));
    assert_eq!(config.concurrency, 16);
    let creds = pipecat_operator::runtime::credentials::DefaultCredentials::default();
    assert_eq!(creds.name, "pipecat-api-key");
    assert_eq!(creds.namespace, None);
    let client = pipecat_operator::cloud::ClientConfig::default();
    assert_eq!(client.timeout, Duration::from_secs(30));
}
