//! The chart's alerts and dashboard, checked with Prometheus's own code: the PrometheusRule the
//! chart renders goes through `promtool check rules` and `promtool test rules` (promtool built
//! from its Go module by hack/promtool/build.sh, cached by version) with the unit tests of
//! tests/fixtures/alerts/; the Grafana dashboard must parse and query only metrics the operator
//! registers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use pipecat_operator::agents;
use pipecat_operator::cloud::{self, Operation};
use pipecat_operator::metrics::{AgentGauges, AgentMetricsConfig, Metrics};
use serde_json::Value;

use crate::support::helm::{Helm, chart_dir, full_values, of_kind, one, parse_manifest};

/// The release and namespace the unit tests' series are labelled for.
const RELEASE: &str = "op";
const NAMESPACE: &str = "ops";

/// Every alert of the chart.
const ALERTS: [&str; 11] = [
    "PipecatAgentsNotReady",
    "PipecatSecretSetsNotReady",
    "PipecatAgentDeploymentFailed",
    "PipecatOperatorNotReady",
    "PipecatAgentSyncFailing",
    "PipecatCloudApiErrors",
    "PipecatCloudRateLimited",
    "PipecatOperatorRateLimitSaturated",
    "PipecatOperatorNoLeader",
    "PipecatOperatorDown",
    "PipecatOperatorAbsent",
];

/// promtool, built once by hack/promtool/build.sh (cached by Prometheus version).
fn promtool_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/promtool/build.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run hack/promtool/build.sh");
        assert!(out.status.success(), "hack/promtool/build.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

fn promtool(args: &[&str]) -> Output {
    Command::new(promtool_bin())
        .args(args)
        .output()
        .expect("run promtool")
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The chart rendered for the test release with `extra` arguments.
fn render(extra: &[&str]) -> Vec<Value> {
    parse_manifest(&Helm::offline().template(RELEASE, NAMESPACE, extra))
}

/// The PrometheusRule of a rendering with the rules on.
fn prometheus_rule(extra: &[&str]) -> Value {
    let mut args = vec!["--set", "metrics.prometheusRule.enabled=true"];
    args.extend_from_slice(extra);
    one(&render(&args), "PrometheusRule").clone()
}

/// Every rule of a PrometheusRule.
fn rules(rule: &Value) -> Vec<&Value> {
    rule["spec"]["groups"]
        .as_array()
        .expect("spec.groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect()
}

/// A Prometheus rules file with the PrometheusRule's groups (what the Prometheus Operator
/// hands to Prometheus), in `dir`.
fn write_rules_file(rule: &Value, dir: &Path) -> PathBuf {
    let path = dir.join("rules.yaml");
    let file = serde_json::json!({ "groups": rule["spec"]["groups"] });
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    path
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alerts")
        .join(name)
}

/// Runs the unit tests of tests/fixtures/alerts/ against the rules of `rule`.
fn promtool_test(rule: &Value) -> Output {
    let dir = tempfile::tempdir().unwrap();
    write_rules_file(rule, dir.path());
    let test = dir.path().join("operator.test.yaml");
    std::fs::copy(fixture("operator.test.yaml"), &test).unwrap();
    promtool(&["test", "rules", test.to_str().unwrap()])
}

#[test]
fn no_rule_and_no_dashboard_by_default() {
    let objects = render(&[]);
    assert!(of_kind(&objects, "PrometheusRule").is_empty());
    assert!(of_kind(&objects, "ConfigMap").is_empty());
}

#[test]
fn rendered_rules_pass_promtool_check() {
    let full = full_values();
    for extra in [vec![], vec!["-f", full.to_str().unwrap()]] {
        let rule = prometheus_rule(&extra);
        let names: BTreeSet<&str> = rules(&rule)
            .iter()
            .map(|r| r["alert"].as_str().expect("alerting rules only"))
            .collect();
        assert_eq!(names, ALERTS.into_iter().collect(), "{extra:?}");
        let dir = tempfile::tempdir().unwrap();
        let file = write_rules_file(&rule, dir.path());
        let out = promtool(&["check", "rules", "--lint-fatal", file.to_str().unwrap()]);
        assert!(out.status.success(), "{extra:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 11 rules found"),
            "{}",
            describe(&out)
        );
    }
}

#[test]
fn alerts_fire_when_they_should_and_only_then() {
    // Every alert is tested both ways: at least one case where it fires, one where it must not.
    let tests: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(fixture("operator.test.yaml")).unwrap())
            .unwrap();
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap().iter())
        .collect();
    for alert in ALERTS {
        let of_alert = || cases.iter().filter(|c| c["alertname"] == alert);
        let fires = |c: &&&Value| !c["exp_alerts"].as_array().unwrap().is_empty();
        assert!(of_alert().any(|c| fires(&c)), "no case where {alert} fires");
        assert!(
            of_alert().any(|c| !fires(&c)),
            "no case where {alert} must not fire"
        );
    }

    let out = promtool_test(&prometheus_rule(&[]));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{}",
        describe(&out)
    );
}

#[test]
fn unit_tests_notice_a_changed_rule() {
    // The unit tests are sensitive to the rules: a longer `for` than they were written for, or
    // a selector that misses the operator's series, fails them.
    for (extra, failing) in [
        (
            ["--set", "metrics.prometheusRule.agentsNotReady.for=1h"],
            "PipecatAgentsNotReady",
        ),
        (
            ["--set", "metrics.prometheusRule.selector=job=\"elsewhere\""],
            "PipecatOperatorDown",
        ),
    ] {
        let out = promtool_test(&prometheus_rule(&extra));
        assert!(!out.status.success(), "{extra:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("FAILED") && stderr.contains(&format!("alertname: {failing},")),
            "{extra:?}: {}",
            describe(&out)
        );
    }
}

#[test]
fn rule_labels_durations_and_selector_follow_the_values() {
    let full = full_values();
    let values: Value = serde_saphyr::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap();
    let v = &values["metrics"]["prometheusRule"];
    let rule = prometheus_rule(&["-f", full.to_str().unwrap()]);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        v["labels"]["release"]
    );
    let settings = |alert: &str| match alert {
        "PipecatAgentsNotReady" => &v["agentsNotReady"],
        "PipecatSecretSetsNotReady" => &v["secretSetsNotReady"],
        "PipecatAgentSyncFailing" => &v["syncFailing"],
        "PipecatCloudApiErrors" => &v["apiErrors"],
        "PipecatCloudRateLimited" | "PipecatOperatorRateLimitSaturated" => &v["rateLimited"],
        "PipecatOperatorNoLeader" => &v["noLeader"],
        "PipecatAgentDeploymentFailed" => &v["deploymentFailed"],
        "PipecatOperatorNotReady" => &v["notReady"],
        "PipecatOperatorDown" | "PipecatOperatorAbsent" => &v["down"],
        other => panic!("unknown alert {other}"),
    };
    let selector = v["selector"].as_str().unwrap();
    for r in rules(&rule) {
        let alert = r["alert"].as_str().unwrap();
        let s = settings(alert);
        assert_eq!(r["for"], s["for"], "{alert}");
        assert_eq!(r["labels"]["severity"], s["severity"], "{alert}");
        assert_eq!(r["labels"]["team"], v["alertLabels"]["team"], "{alert}");
        let expr = r["expr"].as_str().unwrap();
        assert!(
            expr.contains(&format!("{{{selector}")),
            "{alert} does not select {selector}: {expr}"
        );
        assert!(
            !expr.contains("op-pipecat-operator-metrics"),
            "{alert} keeps the default selector: {expr}"
        );
    }
    let api_errors = rules(&rule)
        .into_iter()
        .find(|r| r["alert"] == "PipecatCloudApiErrors")
        .unwrap();
    let expr = api_errors["expr"].as_str().unwrap();
    assert!(
        expr.trim_end()
            .ends_with(&format!("> {}", v["apiErrors"]["ratio"])),
        "{expr}"
    );
    assert!(
        expr.contains(&format!("[{}]", v["rateInterval"].as_str().unwrap())),
        "{expr}"
    );
}

/// The operator's series names, from its own exposition after one of everything.
fn exposed_metric_names() -> BTreeSet<String> {
    let m = Metrics::with_agent_metrics(AgentMetricsConfig {
        enabled: true,
        limit: 10,
    });
    let took = Duration::from_millis(5);
    m.reconciled("created", took);
    m.reconcile_failed("Unauthorized", took);
    m.api_request(Operation::GetAgent, Ok(200), took);
    m.rate_limited(took);
    m.ready_changed(None, Some(false));
    m.secret_set_reconciled("created");
    m.secret_set_failed("Unauthorized");
    m.secret_set_ready_changed(None, Some(false));
    m.set_leader(true);
    m.failed_changed(false, true);
    m.set_operator_ready(true);
    m.agent_observed(
        "ns",
        "a",
        None,
        AgentGauges {
            active_sessions: Some(1),
            warm: Some(1),
            max: Some(2),
        },
    );
    m.encode()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.split(['{', ' '])
                .next()
                .expect("a series name")
                .to_string()
        })
        .collect()
}

/// The metric names a PromQL expression reads (the operator's, and `up`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| is_ident(c)) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        // Only the operator's own names and `up` are metrics here; a word preceded by `$` or
        // inside a label matcher (`up` never is) is not one of them.
        let preceded_by_dollar = start > 0 && rest.as_bytes()[start - 1] == b'$';
        if !preceded_by_dollar
            && (word.starts_with("pipecat_operator_")
                || (word == "up" && tail[end..].starts_with('{')))
        {
            names.insert(word.to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_rules_and_the_dashboard_read_only_metrics_the_operator_exposes() {
    let exposed = exposed_metric_names();
    assert!(
        exposed.contains("pipecat_operator_api_requests_total"),
        "{exposed:?}"
    );

    // The rules.
    let rule = prometheus_rule(&[]);
    for r in rules(&rule) {
        let expr = r["expr"].as_str().unwrap();
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in names.iter().filter(|n| *n != "up") {
            assert!(exposed.contains(name), "{name} (in {expr}) is not exposed");
        }
    }

    // The dashboard: the chart's ConfigMap holds the file as it is, and it parses.
    let file = std::fs::read_to_string(chart_dir().join("dashboards/pipecat-operator.json"))
        .expect("dashboards/pipecat-operator.json");
    let objects = render(&["--set", "metrics.grafanaDashboard.enabled=true"]);
    let cm = one(&objects, "ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["data"]["pipecat-operator.json"], file.trim_end());
    let dashboard: Value = serde_json::from_str(&file).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "pipecat-operator");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["definition"].as_str() {
            exprs.push(q.to_string());
        }
    }
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        used.extend(names);
    }
    for name in used.iter().filter(|n| *n != "up") {
        assert!(
            exposed.contains(name),
            "the dashboard reads {name}, not exposed"
        );
    }
    // Every metric of the operator (but the opt-in per-agent gauges) is on the dashboard.
    let base: BTreeSet<&String> = exposed
        .iter()
        .filter(|n| !n.starts_with("pipecat_operator_agent_"))
        .filter(|n| !n.ends_with("_sum") && !n.ends_with("_count"))
        .collect();
    for name in base {
        assert!(used.contains(name), "{name} is not on the dashboard");
    }
}

#[test]
fn the_label_values_the_rules_match_are_ones_the_operator_writes() {
    // status_class values of the API alerts.
    let m = Metrics::new();
    let took = Duration::from_millis(1);
    m.api_request(
        Operation::UpdateAgent,
        Err(&cloud::Error::RateLimited { retry_after: None }),
        took,
    );
    for (status, message) in [(Some(503), "unavailable"), (None, "timeout")] {
        m.api_request(
            Operation::GetAgent,
            Err(&cloud::Error::Transient {
                status,
                message: message.into(),
                retry_after: None,
            }),
            took,
        );
    }
    m.api_request(
        Operation::GetAgent,
        Err(&cloud::Error::Malformed {
            message: "bad".into(),
        }),
        took,
    );
    let text = m.encode();
    for class in ["429", "5xx", "error", "malformed"] {
        assert!(
            text.contains(&format!("status_class=\"{class}\"")),
            "{class}:\n{text}"
        );
    }
    // The reasons PipecatAgentSyncFailing leaves to other alerts.
    let cloud_error = |source| agents::Error::Cloud {
        action: "get",
        agent: "a".into(),
        source,
    };
    let reasons = [
        cloud_error(cloud::Error::RateLimited { retry_after: None }).reason(),
        cloud_error(cloud::Error::Transient {
            status: Some(503),
            message: "down".into(),
            retry_after: None,
        })
        .reason(),
        agents::Error::Kube {
            action: "patch status",
            source: kube::Error::ReadEvents(std::io::Error::other("reset")),
        }
        .reason(),
    ];
    let rule = prometheus_rule(&[]);
    let sync = rules(&rule)
        .into_iter()
        .find(|r| r["alert"] == "PipecatAgentSyncFailing")
        .unwrap();
    let expr = sync["expr"].as_str().unwrap();
    assert!(
        expr.contains(&format!("reason!~\"{}\"", reasons.join("|"))),
        "{expr}"
    );
    // ...and the unit tests label their series with reasons the operator writes.
    assert_eq!(
        reasons,
        ["RateLimited", "PipecatUnavailable", "KubernetesError"]
    );
}
