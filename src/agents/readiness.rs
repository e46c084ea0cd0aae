//! Readiness: whether the deployment this spec asked for is live, from the remote agent alone.
//!
//! A pure function. It reads the deployment ids the API reports, the revision health and the
//! deployment errors, and names a failure the way Kubernetes users know it.

use crate::cloud::{self, types::Agent};
use crate::crd::RequestedDeployment;
use crate::runtime::conditions::CondState;

/// How far the agent's deployment is, from the agent alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The desired deployment is reconciled and ready.
    pub ready: bool,
    /// The `Ready` condition to show.
    pub condition: CondState,
    /// True when the deployment failed (no point polling fast).
    pub failed: bool,
}

/// Decides readiness of the deployment `requested` by this operator's last create or update
/// (`None`: it asked for none, e.g. an adopted agent that already matched).
///
/// The documented rule: complete when `reconciledDeploymentId == desiredDeploymentId` and
/// `ready`. A server that does not report both ids is read through `activeDeploymentId` and
/// `activeDeploymentReady`. Either way the deployment must be the one requested or a later one
/// (not the one it replaced: an answer naming that one describes the past). `ready` alone
/// (it can still describe the previous deployment right after an update) is trusted only when
/// nothing was requested.
pub fn readiness(agent: &Agent, requested: Option<&RequestedDeployment>) -> Readiness {
    let desired = agent.desired_deployment();
    let deployment = desired.unwrap_or("(unknown)");
    let error = agent.errors.as_ref().and_then(|e| e.first()).map(|e| {
        let code = e.code.as_deref().unwrap_or("DEPLOYMENT_FAILED");
        let message = e
            .message
            .as_deref()
            .map(|m| format!(": {}", detail_text(m)))
            .unwrap_or_default();
        (
            code,
            format!("{code}{message}{}", cloud::error_codes_link(code)),
        )
    });
    let revision = agent
        .current_revision
        .as_ref()
        .filter(|r| r.deployment_id.is_none() || r.deployment_id.as_deref() == desired);
    // Pipecat Cloud's own trouble: its own reason, which never blames the agent's code.
    if revision.and_then(|r| r.has_infrastructure_issue) == Some(true) {
        return Readiness {
            ready: false,
            condition: CondState::fail(
                INFRASTRUCTURE_ISSUE,
                format!(
                    "deployment {deployment}: Pipecat Cloud reports an infrastructure issue (on its side, not in the agent's code or image); nothing to change in the spec: the operator keeps checking, and Pipecat Cloud's status page or support can say more"
                ),
            ),
            failed: true,
        };
    }
    // Revision health names the failure the way Kubernetes users know it (CrashLoopBackOff,
    // ImagePullBackOff, OOMKilled); a deployment error code refines the message.
    let health = revision.and_then(|r| r.health.as_ref());
    let phase_failed = revision.and_then(|r| r.phase.as_deref()) == Some("Failed");
    if let Some(h) = health.filter(|h| h.ready != Some(true))
        && let Some(name) = failure_name(h, phase_failed)
    {
        let detail = error
            .as_ref()
            .map(|(_, m)| m.clone())
            .or_else(|| h.headline.as_deref().map(detail_text))
            .or_else(|| h.message.as_deref().map(detail_text))
            .unwrap_or_else(|| "the agent's containers are failing".into());
        let mut facts = Vec::new();
        if let Some(n) = h.restart_count.filter(|n| *n > 0) {
            facts.push(format!("{n} restarts"));
        }
        if let Some(code) = h.last_exit_code {
            facts.push(format!("last exit code {code}"));
        }
        if let Some(r) = h.last_termination_reason.as_deref().filter(|r| *r != name) {
            facts.push(format!("last termination: {r}"));
        }
        let facts = if facts.is_empty() {
            String::new()
        } else {
            format!(" ({})", facts.join(", "))
        };
        return Readiness {
            ready: false,
            condition: CondState::fail(
                &camel(name),
                format!("deployment {deployment}: {name}{facts}: {detail}"),
            ),
            failed: true,
        };
    }
    if let Some((code, message)) = error {
        return Readiness {
            ready: false,
            condition: CondState::fail(
                &reason_from_code(code),
                format!("deployment {deployment} failed: {message}"),
            ),
            failed: true,
        };
    }
    if phase_failed {
        return Readiness {
            ready: false,
            condition: CondState::fail(
                "DeploymentFailed",
                format!(
                    "deployment {deployment} failed (Pipecat Cloud reports its revision Failed)"
                ),
            ),
            failed: true,
        };
    }
    if let Some(c) = agent.condition("Degraded").filter(|c| c.status == "True") {
        return Readiness {
            ready: false,
            condition: CondState::fail(
                &c.reason
                    .as_deref()
                    .map(camel)
                    .unwrap_or_else(|| "Degraded".into()),
                c.message
                    .clone()
                    .unwrap_or_else(|| "Pipecat Cloud reports the agent degraded".into()),
            ),
            failed: true,
        };
    }

    let requested_or_later =
        |id: &str| requested.is_none_or(|r| r.id == id || r.replaces.as_deref() != Some(id));
    let ready = match (
        &agent.desired_deployment_id,
        &agent.reconciled_deployment_id,
    ) {
        (Some(d), Some(r)) => r == d && agent.ready == Some(true) && requested_or_later(d),
        _ => match agent.active_deployment_ready {
            Some(active_ready) => {
                active_ready
                    && agent
                        .desired_deployment()
                        .map_or(requested.is_none(), requested_or_later)
            }
            None => requested.is_none() && agent.ready == Some(true),
        },
    };
    let condition = if ready {
        CondState::ok(
            "DeploymentReady",
            format!(
                "deployment {} is ready to take sessions",
                desired.unwrap_or("(unknown)")
            ),
        )
    } else {
        let progress = match (&agent.reconciled_deployment_id, desired) {
            (Some(r), Some(d)) if r != d => {
                format!("; sessions are still served by deployment {r}")
            }
            _ => String::new(),
        };
        CondState::fail(
            "Deploying",
            format!(
                "deployment {} is rolling out{progress}",
                desired.unwrap_or("(pending)")
            ),
        )
    };
    Readiness {
        ready,
        condition,
        failed: false,
    }
}

/// `Ready=False` reason: Pipecat Cloud reports an infrastructure issue with the revision.
pub const INFRASTRUCTURE_ISSUE: &str = "InfrastructureIssue";

/// Longest part of a remote message (a Python traceback, often) kept in a condition: its end,
/// where the exception is.
const DETAIL_TAIL: usize = 600;

/// A failing revision's name for people: the health's reason (`CrashLoopBackOff`), an older
/// answer's state, the last termination reason (`OOMKilled`), or `Failed` when only the phase
/// says so. `None` while nothing fails.
fn failure_name(h: &crate::cloud::types::RevisionHealth, phase_failed: bool) -> Option<&str> {
    let reason = h.reason.as_deref().filter(|r| is_failure_state(r));
    let legacy = h.state.as_deref().filter(|s| is_failure_state(s));
    let terminated = h.last_termination_reason.as_deref().filter(|r| {
        is_failure_state(r) && (phase_failed || h.state.as_deref() == Some("terminated"))
    });
    reason
        .or(legacy)
        .or(terminated)
        .or(phase_failed.then_some("Failed"))
}

/// A remote text as a condition shows it: credentials redacted, and its end kept when long.
fn detail_text(text: &str) -> String {
    let text = crate::text::redact_credentials(text.trim());
    if text.len() <= DETAIL_TAIL {
        return text;
    }
    let mut cut = text.len() - DETAIL_TAIL;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    format!("...{}", &text[cut..])
}

fn is_failure_state(state: &str) -> bool {
    matches!(
        state,
        "CrashLoopBackOff"
            | "ImagePullBackOff"
            | "ErrImagePull"
            | "OOMKilled"
            | "Error"
            | "CreateContainerConfigError"
            | "CreateContainerError"
            | "InvalidImageName"
            | "Failed"
    )
}

/// `PCC_IMAGE_PULL_UNAUTHORIZED` -> `ImagePullUnauthorized`; `PCC-1004` -> `Pcc1004` (a reason
/// must start with a letter).
pub fn reason_from_code(code: &str) -> String {
    let trimmed = code
        .strip_prefix("PCC_")
        .or_else(|| code.strip_prefix("PCC-"))
        .unwrap_or(code);
    if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        return format!("Pcc{}", camel(trimmed));
    }
    camel(trimmed)
}

/// Turns `SOME_CODE`, `some-code` or `already CamelCase` into a CamelCase word.
fn camel(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().any(|c| c.is_ascii_lowercase())
    {
        return s.to_string();
    }
    let mut out = String::new();
    for part in s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    if out.is_empty() {
        "Unknown".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::types::{AgentCondition, DeploymentError, Revision, RevisionHealth};

    fn agent(desired: &str, reconciled: Option<&str>, ready: bool) -> Agent {
        Agent {
            name: "a".into(),
            desired_deployment_id: Some(desired.into()),
            active_deployment_id: Some(desired.into()),
            reconciled_deployment_id: reconciled.map(Into::into),
            ready: Some(ready),
            ..Default::default()
        }
    }

    #[test]
    fn ready_needs_the_desired_deployment_reconciled() {
        assert!(readiness(&agent("d1", Some("d1"), true), None).ready);
        // Right after create: nothing reconciled yet.
        let r = readiness(&agent("d1", None, false), None);
        assert!(!r.ready);
        assert_eq!(r.condition.reason, "Deploying");
    }

    #[test]
    fn a_reconciled_deployment_not_ready_yet_names_no_older_one() {
        let r = readiness(&agent("d1", Some("d1"), false), None);
        assert!(!r.ready && !r.failed);
        assert_eq!(r.condition.reason, "Deploying");
        assert!(
            !r.condition.message.contains("still served"),
            "{}",
            r.condition.message
        );
    }

    #[test]
    fn a_healthy_state_that_is_not_ready_yet_is_no_failure() {
        let mut a = agent("d2", Some("d1"), false);
        a.current_revision = Some(Revision {
            health: Some(RevisionHealth {
                ready: Some(false),
                state: Some("ContainerCreating".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let r = readiness(&a, None);
        assert!(!r.ready && !r.failed, "{r:?}");
        assert_eq!(r.condition.reason, "Deploying");
    }

    #[test]
    fn premature_ready_after_update_is_not_ready() {
        // `ready` still describes d1 while d2 rolls out: the GitHub Action's bug.
        let r = readiness(&agent("d2", Some("d1"), true), None);
        assert!(!r.ready);
        assert_eq!(r.condition.status, "False");
        assert!(
            r.condition
                .message
                .contains("still served by deployment d1"),
            "{:?}",
            r.condition
        );
    }

    #[test]
    fn older_responses_fall_back_to_deprecated_fields() {
        let old = Agent {
            active_deployment_id: Some("d1".into()),
            active_deployment_ready: Some(true),
            ready: Some(false),
            ..Default::default()
        };
        assert!(readiness(&old, None).ready);
        let old_not_ready = Agent {
            active_deployment_id: Some("d1".into()),
            active_deployment_ready: Some(false),
            ready: Some(true),
            ..Default::default()
        };
        assert!(!readiness(&old_not_ready, None).ready);
    }

    fn requested(id: &str, replaces: Option<&str>) -> RequestedDeployment {
        RequestedDeployment {
            id: id.into(),
            replaces: replaces.map(Into::into),
        }
    }

    /// The seed page's answer: no desired/reconciled ids; `activeDeploymentId` and
    /// `activeDeploymentReady` describe the newest deployment, `ready` whether sessions can
    /// be taken (possibly by the previous one).
    fn seed_answer(active: &str, active_ready: Option<bool>, ready: bool) -> Agent {
        Agent {
            active_deployment_id: Some(active.into()),
            active_deployment_ready: active_ready,
            ready: Some(ready),
            ..Default::default()
        }
    }

    #[test]
    fn after_a_change_ready_alone_never_counts() {
        let asked = requested("d2", Some("d1"));
        // The previous deployment still serves: `ready` is true, the new one is not ready.
        assert!(!readiness(&seed_answer("d2", Some(false), true), Some(&asked)).ready);
        // No activeDeploymentReady at all: `ready` alone is not trusted after a change...
        assert!(!readiness(&seed_answer("d2", None, true), Some(&asked)).ready);
        // ...but is when nothing was asked for.
        assert!(readiness(&seed_answer("d2", None, true), None).ready);
        assert!(readiness(&seed_answer("d2", Some(true), false), Some(&asked)).ready);
    }

    #[test]
    fn an_answer_that_names_the_replaced_deployment_describes_the_past() {
        let asked = requested("d2", Some("d1"));
        // A stale answer: still d1 everywhere, reconciled and ready.
        assert!(!readiness(&agent("d1", Some("d1"), true), Some(&asked)).ready);
        assert!(!readiness(&seed_answer("d1", Some(true), true), Some(&asked)).ready);
        // The requested one, or a later one (someone deployed again since), is fine.
        assert!(readiness(&agent("d2", Some("d2"), true), Some(&asked)).ready);
        assert!(readiness(&agent("d3", Some("d3"), true), Some(&asked)).ready);
    }

    #[test]
    fn a_server_without_reconciled_ids_is_read_through_the_active_fields() {
        let mut a = agent("d1", None, true);
        a.active_deployment_ready = Some(true);
        assert!(readiness(&a, Some(&requested("d1", None))).ready);
        a.active_deployment_ready = Some(false);
        assert!(!readiness(&a, Some(&requested("d1", None))).ready);
    }

    #[test]
    fn deployment_errors_become_the_reason() {
        let mut a = agent("d2", Some("d1"), false);
        a.errors = Some(vec![DeploymentError {
            code: Some("PCC_IMAGE_PULL_UNAUTHORIZED".into()),
            message: Some("pull access denied".into()),
        }]);
        let r = readiness(&a, None);
        assert!(!r.ready && r.failed);
        assert_eq!(r.condition.reason, "ImagePullUnauthorized");
        assert!(r.condition.message.contains("pull access denied"));
        assert!(r.condition.message.contains("d2"));
    }

    #[test]
    fn crashloop_health_is_reported() {
        let mut a = agent("d2", Some("d1"), false);
        a.current_revision = Some(Revision {
            deployment_id: Some("d2".into()),
            health: Some(RevisionHealth {
                ready: Some(false),
                state: Some("CrashLoopBackOff".into()),
                restart_count: Some(4),
                headline: Some("container exited with code 1".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let r = readiness(&a, None);
        assert_eq!(r.condition.reason, "CrashLoopBackOff");
        assert!(r.condition.message.contains("4 restarts"));
        // No restarts yet: none mentioned.
        if let Some(h) = a.current_revision.as_mut().and_then(|r| r.health.as_mut()) {
            h.restart_count = Some(0);
        }
        let r = readiness(&a, None);
        assert!(
            !r.condition.message.contains("restarts"),
            "{}",
            r.condition.message
        );
        assert!(r.condition.message.contains("exited with code 1"));
    }

    #[test]
    fn health_state_wins_and_the_error_code_refines_the_message() {
        let mut a = agent("d2", Some("d1"), false);
        a.errors = Some(vec![DeploymentError {
            code: Some("PCC_IMAGE_PULL_UNAUTHORIZED".into()),
            message: Some("pull access denied".into()),
        }]);
        a.current_revision = Some(Revision {
            health: Some(RevisionHealth {
                ready: Some(false),
                state: Some("ImagePullBackOff".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let r = readiness(&a, None);
        assert_eq!(r.condition.reason, "ImagePullBackOff");
        assert!(
            r.condition
                .message
                .contains("PCC_IMAGE_PULL_UNAUTHORIZED: pull access denied"),
            "{:?}",
            r.condition
        );
    }

    #[test]
    fn degraded_condition_is_reported() {
        let mut a = agent("d1", Some("d1"), true);
        a.conditions = Some(vec![AgentCondition {
            type_: "Degraded".into(),
            status: "True".into(),
            reason: Some("REPLICAS_FAILING".into()),
            message: Some("2 of 3 instances failing".into()),
        }]);
        let r = readiness(&a, None);
        assert!(!r.ready);
        assert_eq!(r.condition.reason, "ReplicasFailing");
    }

    #[test]
    fn reasons_are_camel_case() {
        assert_eq!(reason_from_code("PCC_IMAGE_NOT_FOUND"), "ImageNotFound");
        assert_eq!(camel("CrashLoopBackOff"), "CrashLoopBackOff");
        assert_eq!(camel("image-pull"), "ImagePull");
        assert_eq!(camel(""), "Unknown");
    }

    fn failing(health: RevisionHealth, phase: &str) -> Agent {
        let mut a = agent("d2", Some("d1"), true);
        a.current_revision = Some(Revision {
            deployment_id: Some("d2".into()),
            phase: Some(phase.into()),
            health: Some(health),
            ..Default::default()
        });
        a
    }

    #[test]
    fn a_crash_as_the_contract_reports_it_names_the_exit_and_the_traceback_end() {
        let traceback = format!(
            "Traceback (most recent call last):\n{}  File \"/app/bot.py\", line 9\nKeyError: 'OPENAI_API_KEY' (api_key=sk-live-0123456789abcdef)",
            "  frame\n".repeat(200)
        );
        let a = failing(
            RevisionHealth {
                ready: Some(false),
                state: Some("waiting".into()),
                reason: Some("CrashLoopBackOff".into()),
                restart_count: Some(4),
                last_exit_code: Some(1),
                last_termination_reason: Some("Error".into()),
                message: Some(traceback),
                ..Default::default()
            },
            "Failed",
        );
        let r = readiness(&a, None);
        assert!(r.failed && !r.ready);
        assert_eq!(r.condition.reason, "CrashLoopBackOff");
        let m = &r.condition.message;
        for part in [
            "deployment d2: CrashLoopBackOff",
            "4 restarts",
            "last exit code 1",
            "last termination: Error",
            "KeyError: 'OPENAI_API_KEY'",
        ] {
            assert!(m.contains(part), "{part:?} missing: {m}");
        }
        assert!(!m.contains("sk-live-0123456789abcdef"), "not redacted: {m}");
        assert!(
            m.len() < 900,
            "the traceback is cut to its end: {} bytes",
            m.len()
        );
        // The same health while running is no failure.
        let fine = failing(
            RevisionHealth {
                ready: Some(true),
                state: Some("running".into()),
                ..Default::default()
            },
            "Active",
        );
        assert!(!readiness(&fine, None).failed);
    }

    #[test]
    fn an_oom_kill_shows_as_its_termination_reason() {
        let a = failing(
            RevisionHealth {
                ready: Some(false),
                state: Some("terminated".into()),
                last_exit_code: Some(137),
                last_termination_reason: Some("OOMKilled".into()),
                ..Default::default()
            },
            "Validating",
        );
        let r = readiness(&a, None);
        assert!(r.failed);
        assert_eq!(r.condition.reason, "OOMKilled");
        assert!(
            r.condition.message.contains("last exit code 137"),
            "{}",
            r.condition.message
        );
    }

    #[test]
    fn an_infrastructure_issue_never_blames_the_agent() {
        let mut a = failing(
            RevisionHealth {
                ready: Some(false),
                state: Some("waiting".into()),
                reason: Some("CrashLoopBackOff".into()),
                ..Default::default()
            },
            "Failed",
        );
        a.current_revision
            .as_mut()
            .unwrap()
            .has_infrastructure_issue = Some(true);
        let r = readiness(&a, None);
        assert_eq!(r.condition.reason, INFRASTRUCTURE_ISSUE);
        assert!(
            r.condition.message.contains("not in the agent's code"),
            "{}",
            r.condition.message
        );
        // A revision of another deployment (the previous one) says nothing about this one.
        a.current_revision.as_mut().unwrap().deployment_id = Some("d0".into());
        assert_ne!(readiness(&a, None).condition.reason, INFRASTRUCTURE_ISSUE);
    }

    #[test]
    fn pcc_codes_name_the_reason_and_link_the_error_codes_page() {
        let mut a = agent("d2", Some("d1"), false);
        a.errors = Some(vec![DeploymentError {
            code: Some("PCC-1004".into()),
            message: Some("Billing credentials not set".into()),
        }]);
        let r = readiness(&a, None);
        assert!(r.failed);
        assert_eq!(r.condition.reason, "Pcc1004");
        assert!(
            r.condition
                .message
                .contains("PCC-1004: Billing credentials not set")
                && r.condition.message.contains(crate::cloud::ERROR_CODES_PAGE),
            "{}",
            r.condition.message
        );
        assert_eq!(reason_from_code("PCC_IMAGE_NOT_FOUND"), "ImageNotFound");
    }
}
