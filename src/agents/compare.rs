//! Comparing: does the remote agent mean what the spec asks? Field by field and by meaning,
//! not by string: Pipecat Cloud may normalise what it stores (a Docker Hub image with or
//! without `docker.io/` and `library/` is the same image) and may leave out fields it has at
//! their default. Both the fields the spec sets and those it leaves out (which mean "Pipecat
//! Cloud's default", see [`Reset`]) are compared.

use crate::cloud::types::{Agent, AgentConfig, Reset, defaults};

/// Every spec field the comparison knows, by its name in the spec.
pub const FIELDS: [&str; 8] = [
    "image",
    "buildId",
    "autoScaling",
    "secretSet",
    "imagePullSecretSet",
    "agentProfile",
    "krispViva",
    "maxSessionDuration",
];

/// The static name of a spec field (for mismatches read back from a status).
pub fn field_name(name: &str) -> Option<&'static str> {
    FIELDS.iter().copied().find(|f| *f == name)
}

/// One field whose remote value is not what the spec means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The spec field.
    pub field: &'static str,
    /// What Pipecat Cloud reports (for messages).
    pub remote: String,
}

/// The result of a comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Fields whose remote value means something else than the spec.
    pub differ: Vec<Mismatch>,
    /// Fields the spec sets that the answer does not report (cannot be compared).
    pub unknown: Vec<&'static str>,
    /// Omitted fields an update must reset: those the remote holds away from their default,
    /// and those it does not report.
    pub resets: Vec<Reset>,
}

impl Comparison {
    /// The names of the differing fields.
    pub fn differing(&self) -> Vec<&'static str> {
        self.differ.iter().map(|m| m.field).collect()
    }
}

/// Compares the desired configuration (the fields the spec sets, and those it omits) with
/// what the agent reports.
pub fn compare(config: &AgentConfig, omitted: &[Reset], observed: &Agent) -> Comparison {
    let mut out = Comparison::default();
    let spec = observed.manifest_spec();
    let scaling = observed
        .auto_scaling
        .as_ref()
        .or_else(|| spec.and_then(|s| s.auto_scaling.as_ref()));
    let secret_sets = spec.map(|s| s.env_from_secret_names.clone().unwrap_or_default());
    let pull_secret = spec.map(|s| s.image_pull_secret_name.clone());

    let mut set = |field: &'static str, remote: Option<(bool, String)>| match remote {
        Some((true, _)) => {}
        Some((false, remote)) => out.differ.push(Mismatch { field, remote }),
        None => out.unknown.push(field),
    };
    if let Some(image) = &config.image {
        set(
            "image",
            spec.and_then(|s| s.image.as_ref())
                .map(|i| (same_image(i, image), i.clone())),
        );
    }
    if config.build_id.is_some() {
        // The response reports the build's image, not the build id.
        set("buildId", None);
    }
    if let Some(a) = &config.auto_scaling {
        set(
            "autoScaling",
            scaling
                .and_then(|o| Some((o.min_replicas?, o.max_replicas?)))
                .map(|(min, max)| {
                    (
                        (min, max) == (a.min_agents, a.max_agents),
                        format!("minAgents {min}, maxAgents {max}"),
                    )
                }),
        );
    }
    if let Some(want) = &config.secret_set {
        set(
            "secretSet",
            secret_sets
                .as_ref()
                .map(|names| (names.iter().any(|n| n == want), names.join(", "))),
        );
    }
    if let Some(want) = &config.image_pull_secret_set {
        set(
            "imagePullSecretSet",
            pull_secret.clone().flatten().map(|n| (&n == want, n)),
        );
    }
    if let Some(want) = &config.agent_profile {
        set(
            "agentProfile",
            observed
                .agent_profile
                .as_ref()
                .map(|p| (p == want, p.clone())),
        );
    }
    if let Some(want) = &config.krisp_viva {
        set(
            "krispViva",
            observed.krisp_viva.as_ref().map(|o| {
                (
                    o.audio_filter == want.audio_filter,
                    o.audio_filter.clone().unwrap_or_else(|| "null".into()),
                )
            }),
        );
    }
    if let Some(want) = config.max_session_duration {
        set(
            "maxSessionDuration",
            observed
                .max_session_duration
                .map(|m| (m == want, m.to_string())),
        );
    }

    // Omitted fields: `Some(remote)` when reported away from the default, `None` when at the
    // default, and unreported ones are reset without counting as a difference (but secret
    // sets: see below).
    for &reset in omitted {
        let reported: Option<Option<String>> = match reset {
            Reset::SecretSet => secret_sets
                .as_ref()
                .map(|names| (!names.is_empty()).then(|| names.join(", "))),
            Reset::ImagePullSecretSet => pull_secret.clone(),
            Reset::MinAgents => scaling
                .and_then(|s| s.min_replicas)
                .map(|m| (m != defaults::MIN_AGENTS).then(|| format!("minAgents {m}"))),
            Reset::KrispViva => observed.krisp_viva.as_ref().map(|k| k.audio_filter.clone()),
            Reset::AgentProfile => observed
                .agent_profile
                .as_ref()
                .map(|p| (p != defaults::AGENT_PROFILE).then(|| p.clone())),
            Reset::MaxSessionDuration => observed
                .max_session_duration
                .map(|m| (m != defaults::MAX_SESSION_DURATION).then(|| m.to_string())),
        };
        match reported {
            Some(None) => {}
            Some(Some(remote)) => {
                out.differ.push(Mismatch {
                    field: reset.field(),
                    remote,
                });
                out.resets.push(reset);
            }
            // A secret set the answer does not report is not detached blindly: the detaching
            // value (an empty name) is a guess the contract does not document, worth sending
            // only for a set the agent is seen to have.
            None if reset.detaches_a_set() => {}
            None => out.resets.push(reset),
        }
    }
    out
}

/// True when two image references name the same image: Docker Hub's registry
/// (`docker.io/`, `index.docker.io/`) and its `library/` namespace may be written or not, and a
/// missing tag means `latest`.
pub fn same_image(a: &str, b: &str) -> bool {
    canonical_image(a) == canonical_image(b)
}

/// `acme/bot:1` -> `docker.io/acme/bot:1`; `redis` -> `docker.io/library/redis:latest`;
/// `ghcr.io/acme/bot@sha256:...` unchanged.
pub fn canonical_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let (name, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    let hub = matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    );
    let registry = if hub { "docker.io" } else { registry };
    let path = if hub && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let mut out = format!("{registry}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::types::{
        AutoScalingRequest, Deployment, KrispModels, KrispVivaBody, Manifest, ManifestSpec,
        ObservedAutoScaling,
    };

    #[test]
    fn docker_hub_images_compare_by_meaning() {
        for (a, b) in [
            ("acme/bot:1", "docker.io/acme/bot:1"),
            ("acme/bot:1", "index.docker.io/acme/bot:1"),
            ("redis", "docker.io/library/redis:latest"),
            ("redis:7", "library/redis:7"),
            ("acme/bot", "acme/bot:latest"),
            ("ghcr.io/acme/bot:1", "ghcr.io/acme/bot:1"),
            ("localhost:5000/bot:1", "localhost:5000/bot:1"),
            ("acme/bot@sha256:abc", "docker.io/acme/bot@sha256:abc"),
        ] {
            assert!(same_image(a, b), "{a} ~ {b}");
        }
        for (a, b) in [
            ("acme/bot:1", "acme/bot:2"),
            ("acme/bot:1", "ghcr.io/acme/bot:1"),
            ("redis", "acme/redis"),
            ("localhost:5000/bot:1", "localhost:5001/bot:1"),
            ("acme/bot@sha256:abc", "acme/bot@sha256:abd"),
            (
                "registry.example.com/bot:1",
                "registry.example.com/library/bot:1",
            ),
        ] {
            assert!(!same_image(a, b), "{a} !~ {b}");
        }
    }

    fn observed(image: &str, min: i64, max: i64) -> Agent {
        let scaling = ObservedAutoScaling {
            min_replicas: Some(min),
            max_replicas: Some(max),
            ..Default::default()
        };
        Agent {
            name: "bot".into(),
            auto_scaling: Some(scaling.clone()),
            agent_profile: Some("agent-2x".into()),
            max_session_duration: Some(7200),
            krisp_viva: Some(KrispVivaBody { audio_filter: None }),
            deployment: Some(Deployment {
                manifest: Some(Manifest {
                    spec: Some(ManifestSpec {
                        image: Some(image.into()),
                        auto_scaling: Some(scaling),
                        env_from_secret_names: Some(vec!["env".into()]),
                        image_pull_secret_name: None,
                        krisp_models: Some(KrispModels {
                            enabled: Some(false),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn set_fields_compare_and_report_the_remote_value() {
        let config = AgentConfig {
            image: Some("acme/bot:1".into()),
            auto_scaling: Some(AutoScalingRequest {
                min_agents: 1,
                max_agents: 5,
            }),
            secret_set: Some("env".into()),
            agent_profile: Some("agent-2x".into()),
            ..Default::default()
        };
        let same = compare(&config, &[], &observed("docker.io/acme/bot:1", 1, 5));
        assert_eq!(same, Comparison::default());
        let c = compare(&config, &[], &observed("acme/bot:2", 1, 50));
        assert_eq!(c.differing(), ["image", "autoScaling"]);
        assert_eq!(c.differ[0].remote, "acme/bot:2");
        assert_eq!(c.differ[1].remote, "minAgents 1, maxAgents 50");
    }

    #[test]
    fn omitted_fields_mean_the_default_and_unreported_ones_but_sets_are_reset_blindly() {
        let config = AgentConfig {
            image: Some("acme/bot:1".into()),
            ..Default::default()
        };
        let c = compare(&config, &Reset::ALL, &observed("acme/bot:1", 2, 5));
        // Remote: a secret set bound, minAgents 2, agent-2x; no pull secret, krisp off,
        // no VIVA filter, the default duration.
        assert_eq!(c.differing(), ["secretSet", "autoScaling", "agentProfile"]);
        assert_eq!(c.differ[0].remote, "env");
        assert_eq!(
            c.resets,
            [Reset::SecretSet, Reset::MinAgents, Reset::AgentProfile]
        );
        // A sparse answer: nothing to compare, everything omitted is reset but the secret
        // sets, which are detached only when the agent is seen to have them.
        let bare = Agent {
            name: "bot".into(),
            ..Default::default()
        };
        let c = compare(&config, &Reset::ALL, &bare);
        assert!(c.differ.is_empty());
        assert_eq!(c.unknown, ["image"]);
        assert_eq!(
            c.resets,
            [
                Reset::MinAgents,
                Reset::KrispViva,
                Reset::AgentProfile,
                Reset::MaxSessionDuration
            ]
        );
    }
}
