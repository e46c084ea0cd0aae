//! Property tests of the agent pass (decide, assess, readiness, status) against a
//! model of Pipecat Cloud in each answer profile: `full` (every field), `seed` (only the seed
//! page's fields) and `rewriting` (normalises images, clamps scaling, leaves out fields at
//! their default), each also with answers lagging behind a new deployment (right after an
//! update, the previous deployment still shown as reconciled and ready, for up to 3 passes).
//! Random sequences of spec edits and removals must converge with a bounded number of updates
//! per edit; `Ready` must never be true while the deployment the operator asked for is not
//! rolled out and ready; `Synced` must never be true while the model's configuration means
//! something else than the spec. Secret set rotations mixed with spec edits, kills and failed
//! calls, driven through the pass's own order (`super::manage`), must reach the agent with one
//! forced redeploy each, never two.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::agents::assess;
use crate::agents::compare::canonical_image;
use crate::agents::execute::Effects;
use crate::agents::observe::last_applied;
use crate::agents::pass::Applied;
use crate::agents::pass::Outcome;
use crate::agents::plan::{self, Plan, UpdateReason};
use crate::agents::rotation::{self, ManagedSet, SetState};
use crate::agents::status::next_status;
use crate::cloud::types::{Agent, UpdateAgentRequest};
use crate::crd::{PipecatAgent, PipecatAgentSpec, PipecatAgentStatus, SecretRotation};
use crate::runtime::conditions::SYNCED;

/// Passes a deployment takes to roll out.
const ROLL_OUT: u32 = 2;
/// How far behind a new deployment the answers may lag, in passes (0: always current; from 1,
/// an answer right after an update still shows the previous deployment reconciled and ready).
const LAG: std::ops::Range<u32> = 0..4;
/// The rewriting server's own limit on `maxAgents`.
const MAX_LIMIT: i64 = 50;

#[derive(Clone, Copy, Debug)]
enum Profile {
    Full,
    Seed,
    Rewriting,
}

/// The agent configuration as the model stores it.
#[derive(Clone, Debug, PartialEq)]
struct Cfg {
    image: String,
    secret_set: Option<String>,
    pull: Option<String>,
    min: i64,
    max: i64,
    viva: Option<String>,
    profile: String,
    duration: i64,
}

impl Cfg {
    fn defaults() -> Self {
        Cfg {
            image: String::new(),
            secret_set: None,
            pull: None,
            min: 0,
            max: 10,
            viva: None,
            profile: "agent-1x".into(),
            duration: 7200,
        }
    }
}

/// A model Pipecat Cloud holding one agent: partial updates (an omitted field keeps its value,
/// `null` clears a secret set), one deployment per change, each rolled out after `ROLL_OUT`
/// passes.
struct Server {
    profile: Profile,
    cfg: Cfg,
    /// (id, created at) of each deployment, oldest first.
    deployments: Vec<(u32, u32)>,
    now: u32,
    updates: u32,
    /// Ready revisions of the two managed sets (`env-a`, `pull-a`) now.
    values: (i64, i64),
    /// The revisions each deployment got, in deployment order.
    deployed: Vec<(i64, i64)>,
    /// Updates that asked for `forceRedeploy`.
    forced: u32,
    /// Passes after a deployment that replaced another during which the answers still
    /// describe the previous one, as it stood (reconciled and ready when it was): the update's
    /// own answer from 1 on, the reads of the next passes from 2 on. 0: answers are current.
    lag: u32,
}

impl Server {
    fn new(profile: Profile) -> Self {
        Server {
            profile,
            cfg: Cfg::defaults(),
            deployments: Vec::new(),
            now: 0,
            updates: 0,
            values: (1, 1),
            deployed: Vec::new(),
            forced: 0,
            lag: 0,
        }
    }

    /// The same server whose answers lag `lag` passes behind a new deployment.
    fn lagging(self, lag: u32) -> Self {
        Server { lag, ..self }
    }

    fn apply(&mut self, body: &Value) -> bool {
        let before = self.cfg.clone();
        let c = &mut self.cfg;
        if let Some(image) = body["image"].as_str() {
            c.image = match self.profile {
                Profile::Rewriting if !image.contains('.') => format!("docker.io/{image}"),
                _ => image.to_string(),
            };
        }
        for (key, slot) in [
            ("secretSet", &mut c.secret_set),
            ("imagePullSecretSet", &mut c.pull),
        ] {
            match body.get(key) {
                // The contract types both as non-nullable strings: an empty one detaches.
                Some(Value::Null) => panic!("{key}: null is not a string: {body}"),
                Some(Value::String(s)) if s.is_empty() => *slot = None,
                Some(Value::String(s)) => *slot = Some(s.clone()),
                _ => {}
            }
        }
        if let Some(min) = body["autoScaling"]["minAgents"].as_i64() {
            c.min = min;
        }
        if let Some(max) = body["autoScaling"]["maxAgents"].as_i64() {
            c.max = match self.profile {
                Profile::Rewriting => max.min(MAX_LIMIT),
                _ => max,
            };
        }
        c.min = c.min.min(c.max);
        assert!(
            body.get("enableKrisp").is_none(),
            "enableKrisp is gone from the API: {body}"
        );
        if let Some(v) = body.get("krispViva") {
            c.viva = v["audioFilter"].as_str().map(str::to_string);
        }
        if let Some(p) = body["agentProfile"].as_str() {
            c.profile = p.to_string();
        }
        if let Some(d) = body["maxSessionDuration"].as_i64() {
            c.duration = d;
        }
        *c != before
    }

    fn deploy(&mut self) {
        let id = self.deployments.len() as u32 + 1;
        self.deployments.push((id, self.now));
        self.deployed.push(self.values);
    }

    fn create(&mut self, body: &Value) -> Agent {
        self.apply(body);
        self.deploy();
        self.answer(None)
    }

    fn update(&mut self, body: &Value) -> Agent {
        self.updates += 1;
        if body["forceRedeploy"] == true {
            self.forced += 1;
        }
        let changed = self.apply(body);
        if changed || body["forceRedeploy"] == true {
            self.deploy();
            self.answer(None)
        } else {
            self.answer(Some("nothing changed"))
        }
    }

    /// The newest deployment and the newest rolled-out one.
    fn ids(&self) -> (u32, Option<u32>) {
        let desired = self
            .deployments
            .last()
            .expect("an agent has a deployment")
            .0;
        let reconciled = self
            .deployments
            .iter()
            .rev()
            .find(|(_, at)| self.now >= at + ROLL_OUT)
            .map(|(id, _)| *id);
        (desired, reconciled)
    }

    /// The deployment ids an answer shows now: [`Server::ids`], or, within `lag` passes of
    /// a deployment that replaced another, those of the deployments before it (the previous
    /// one still desired, and reconciled and ready if it was rolled out).
    fn shown_ids(&self) -> (u32, Option<u32>) {
        match self.deployments.as_slice() {
            [.., (previous, _), (_, at)] if self.now < at + self.lag => {
                let reconciled = self.deployments[..self.deployments.len() - 1]
                    .iter()
                    .rev()
                    .find(|(_, at)| self.now >= at + ROLL_OUT)
                    .map(|(id, _)| *id);
                (*previous, reconciled)
            }
            _ => self.ids(),
        }
    }

    /// The agent as this profile answers it.
    fn answer(&self, warning: Option<&str>) -> Agent {
        let c = &self.cfg;
        let (desired, reconciled) = self.shown_ids();
        let desired_ready = reconciled == Some(desired);
        let manifest = json!({"spec": {
            "image": c.image,
            "autoScaling": {"minReplicas": c.min, "maxReplicas": c.max},
            "imagePullSecretName": c.pull,
            "envFromSecretNames": c.secret_set.iter().collect::<Vec<_>>(),
            "krispModels": {"enabled": false},
        }});
        let mut v = match self.profile {
            Profile::Seed => json!({
                "name": "bot",
                "ready": reconciled.is_some(),
                "activeDeploymentId": format!("d{desired}"),
                "activeDeploymentReady": desired_ready,
                "autoScaling": {"minReplicas": c.min, "maxReplicas": c.max},
                "activeSessionCount": 0,
                "deployment": {"id": format!("d{desired}"), "manifest": manifest},
            }),
            Profile::Full | Profile::Rewriting => json!({
                "name": "bot",
                "region": "us-west",
                "ready": desired_ready,
                "desiredDeploymentId": format!("d{desired}"),
                "activeDeploymentId": format!("d{desired}"),
                "reconciledDeploymentId": reconciled.map(|r| format!("d{r}")),
                "activeDeploymentReady": desired_ready,
                "autoScaling": {"minReplicas": c.min, "maxReplicas": c.max},
                "agentProfile": c.profile,
                "krispViva": {"audioFilter": c.viva},
                "maxSessionDuration": c.duration,
                "deployment": {"id": format!("d{desired}"), "manifest": manifest},
            }),
        };
        if let Profile::Rewriting = self.profile {
            let o = v.as_object_mut().unwrap();
            if c.profile == "agent-1x" {
                o.remove("agentProfile");
            }
            if c.duration == 7200 {
                o.remove("maxSessionDuration");
            }
            if c.viva.is_none() {
                o.remove("krispViva");
            }
        }
        if let Some(w) = warning {
            v["warning"] = json!(w);
        }
        serde_json::from_value(v).expect("the model's answer parses")
    }

    /// True when the model's configuration means what `spec` asks.
    fn means(&self, spec: &PipecatAgentSpec) -> bool {
        let c = &self.cfg;
        let d = plan::desired_from_spec("bot", spec).config;
        canonical_image(&c.image) == canonical_image(d.image.as_deref().unwrap_or_default())
            && c.secret_set == d.secret_set
            && c.pull == d.image_pull_secret_set
            && match d.auto_scaling {
                Some(a) => (c.min, c.max) == (a.min_agents, a.max_agents),
                None => c.min == 0,
            }
            && c.viva == d.krisp_viva.and_then(|k| k.audio_filter)
            && c.profile == d.agent_profile.unwrap_or_else(|| "agent-1x".into())
            && c.duration == d.max_session_duration.unwrap_or(7200)
    }

    /// True when the deployment `id` (or a later one) is rolled out.
    fn rolled_out(&self, id: u32) -> bool {
        self.ids().1.is_some_and(|r| r >= id)
    }
}

fn spec_strategy() -> impl Strategy<Value = PipecatAgentSpec> {
    (
        prop::sample::select(vec![
            "acme/bot:1",
            "acme/bot:2",
            "redis",
            "ghcr.io/acme/bot:1",
        ]),
        prop::option::of(prop::sample::select(vec!["env-a", "env-b"])),
        prop::option::of(prop::sample::select(vec!["pull-a", "pull-b"])),
        prop::option::of((0i64..3, 1i64..60)),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::option::of(prop::sample::select(vec!["tel", "pro"]))),
        prop::option::of(prop::sample::select(vec![
            "agent-1x", "agent-2x", "agent-3x",
        ])),
        prop::option::of(prop::sample::select(vec![600i64, 7200])),
    )
        .prop_map(
            |(image, secret, pull, scaling, krisp, viva, profile, duration)| {
                let mut s = json!({"image": image});
                if let Some(v) = secret {
                    s["secretSet"] = json!(v);
                }
                if let Some(v) = pull {
                    s["imagePullSecretSet"] = json!(v);
                }
                if let Some((min, max)) = scaling {
                    s["autoScaling"] = json!({"minAgents": min.min(max), "maxAgents": max});
                }
                if let Some(v) = krisp {
                    s["enableKrisp"] = json!(v);
                }
                if let Some(v) = viva {
                    s["krispViva"] = match v {
                        Some(f) => json!({"audioFilter": f}),
                        None => json!({}),
                    };
                }
                if let Some(v) = profile {
                    s["agentProfile"] = json!(v);
                }
                if let Some(v) = duration {
                    s["maxSessionDuration"] = json!(v);
                }
                serde_json::from_value(s).expect("a valid spec")
            },
        )
}

fn resource(spec: &PipecatAgentSpec, generation: i64) -> PipecatAgent {
    let mut a = PipecatAgent::new("bot", spec.clone());
    a.metadata.namespace = Some("ns".into());
    a.metadata.generation = Some(generation);
    a
}

fn synced(st: &PipecatAgentStatus) -> bool {
    st.conditions
        .iter()
        .any(|c| c.type_ == SYNCED && c.status == "True")
}

/// One reconcile pass against the model (the operator's pure steps in its order); returns the
/// new status.
fn pass(
    server: &mut Server,
    obj: &PipecatAgent,
    st: &PipecatAgentStatus,
    drift: &mut u32,
    asked: &mut Option<u32>,
) -> PipecatAgentStatus {
    let desired = plan::desired(obj);
    let last = last_applied(st, &desired.name, *drift);
    let observed = (!server.deployments.is_empty()).then(|| server.answer(None));
    let applied: Applied = match plan::plan(&desired, observed.as_ref(), &last) {
        Plan::Create(req) => {
            let answer = server.create(&serde_json::to_value(&req).unwrap());
            *asked = Some(server.ids().0);
            assess::created(desired, answer)
        }
        Plan::Update { request, reason } => {
            let before = server.ids().0;
            let answer = server.update(&serde_json::to_value(&request).unwrap());
            if server.ids().0 != before {
                *asked = Some(server.ids().0);
            }
            assess::updated(
                desired,
                observed.as_ref().unwrap(),
                answer,
                request.force_redeploy,
                reason,
                st.requested_deployment.clone(),
            )
        }
        Plan::Nothing => assess::kept(
            desired,
            observed.unwrap(),
            Outcome::Unchanged,
            st.requested_deployment.clone(),
            None,
        ),
        Plan::NotConverging(stuck) => assess::kept(
            desired,
            observed.unwrap(),
            Outcome::NotConverging,
            st.requested_deployment.clone(),
            Some(stuck),
        ),
        Plan::RegionMismatch { .. } => panic!("no region in these specs"),
    };
    match &applied.outcome {
        Outcome::Updated(UpdateReason::Drift(_)) => *drift += 1,
        Outcome::NotConverging => {}
        _ => *drift = 0,
    }
    let now = Time(jiff::Timestamp::from_second(i64::from(server.now)).unwrap());
    next_status(obj, st, &Ok(applied), &now)
}

fn run(profile: Profile, lag: u32, specs: Vec<PipecatAgentSpec>) -> Result<(), TestCaseError> {
    let mut server = Server::new(profile).lagging(lag);
    let mut st = PipecatAgentStatus::default();
    let (mut drift, mut asked) = (0, None);
    for (generation, spec) in specs.iter().enumerate() {
        let obj = resource(spec, generation as i64 + 1);
        let updates_before = server.updates;
        // Enough passes for a roll-out; every pass is checked.
        for _ in 0..(ROLL_OUT + 4) {
            st = pass(&mut server, &obj, &st, &mut drift, &mut asked);
            if st.ready {
                let id = asked.expect("something was asked for");
                prop_assert!(
                    server.rolled_out(id),
                    "Ready while deployment d{id} is not rolled out ({profile:?}, answers {lag} passes behind): {st:?}"
                );
            }
            if synced(&st) {
                prop_assert!(
                    server.means(spec),
                    "Synced while the remote differs ({profile:?}): {:?} vs {spec:?}",
                    server.cfg
                );
            }
            server.now += 1;
        }
        let updates = server.updates - updates_before;
        prop_assert!(updates <= 1, "{updates} updates for one edit ({profile:?})");
        // Settled: nothing more is sent, and the resource says whether the spec was taken.
        let settled = server.updates;
        let again = pass(&mut server, &obj, &st, &mut drift, &mut asked);
        prop_assert_eq!(
            server.updates,
            settled,
            "an update after settling ({:?})",
            profile
        );
        prop_assert_eq!(synced(&again), server.means(spec));
        prop_assert!(
            again.ready,
            "never Ready after the roll-out ({:?}): {:?}",
            profile,
            again
        );
        st = again;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn edits_converge_against_a_full_server(lag in LAG, specs in prop::collection::vec(spec_strategy(), 1..6)) {
        run(Profile::Full, lag, specs)?;
    }

    #[test]
    fn edits_converge_against_a_seed_server(lag in LAG, specs in prop::collection::vec(spec_strategy(), 1..6)) {
        run(Profile::Seed, lag, specs)?;
    }

    #[test]
    fn edits_converge_against_a_rewriting_server(lag in LAG, specs in prop::collection::vec(spec_strategy(), 1..6)) {
        run(Profile::Rewriting, lag, specs)?;
    }
}

/// What happens around one pass of the rotation model.
#[derive(Clone, Copy, Debug)]
enum Event {
    /// The env set (0) or the pull set (1) is rotated and ready again.
    Rotate(usize),
    /// The spec's image changes.
    Edit,
    /// A pass that completes.
    Pass,
    /// A pass whose update reaches Pipecat Cloud, then the operator is killed before it
    /// records the result (the announcement is in the stored status).
    KilledAfterCall,
    /// A pass whose update reaches Pipecat Cloud but whose answer is lost (an error in
    /// process; the next pass runs in the same process).
    LostAnswer,
    /// A pass whose update fails before reaching Pipecat Cloud.
    FailedCall,
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0usize..2).prop_map(Event::Rotate),
        Just(Event::Edit),
        Just(Event::Pass),
        Just(Event::Pass),
        Just(Event::KilledAfterCall),
        Just(Event::LostAnswer),
        Just(Event::FailedCall),
    ]
}

fn rotating_spec(image: &str, policy: SecretRotation) -> PipecatAgentSpec {
    let mut spec: PipecatAgentSpec = serde_json::from_value(json!({
        "image": image, "secretSet": "env-a", "imagePullSecretSet": "pull-a"
    }))
    .unwrap();
    spec.secret_rotation = policy;
    spec
}

/// The model as the world of one pass ([`Effects`]): the status announcing a redeploy
/// is stored; the update reaches the model or not, and its answer comes back or not, as
/// `event` says.
struct World<'a> {
    server: &'a mut Server,
    event: Event,
    /// The stored status (written before the update, as the announcement is).
    stored: PipecatAgentStatus,
    /// The process died after the update reached Pipecat Cloud.
    killed: bool,
}

/// A call that fails (before or after reaching Pipecat Cloud).
fn unavailable() -> crate::cloud::Error {
    crate::cloud::Error::Transient {
        status: Some(503),
        message: "unavailable".into(),
        retry_after: None,
    }
}

impl Effects for World<'_> {
    async fn announce(&mut self, st: &PipecatAgentStatus) -> Result<(), crate::agents::Error> {
        self.stored = st.clone();
        Ok(())
    }

    async fn update(
        &mut self,
        _name: &str,
        request: &UpdateAgentRequest,
    ) -> Result<Agent, crate::cloud::Error> {
        if let Event::FailedCall = self.event {
            return Err(unavailable());
        }
        let answer = self.server.update(&serde_json::to_value(request).unwrap());
        match self.event {
            Event::KilledAfterCall => {
                self.killed = true;
                Err(unavailable())
            }
            Event::LostAnswer => Err(unavailable()),
            _ => Ok(answer),
        }
    }
}

/// One pass with both sets managed and ready, through apply's own order
/// ([`super::manage`]: plan, rotations folded in, announcement stored, update sent, revisions
/// recorded), ending as `event` says; then the status the pass leaves (the stored one when the
/// process was killed).
fn rotation_pass(
    server: &mut Server,
    obj: &PipecatAgent,
    st: &PipecatAgentStatus,
    event: Event,
) -> PipecatAgentStatus {
    let now = Time(jiff::Timestamp::from_second(i64::from(server.now)).unwrap());
    let sets = [
        ManagedSet {
            name: "env-a".into(),
            resource: "ns/env-a".into(),
            state: SetState::Ready(server.values.0),
        },
        ManagedSet {
            name: "pull-a".into(),
            resource: "ns/pull-a".into(),
            state: SetState::Ready(server.values.1),
        },
    ];
    let desired = plan::desired(obj);
    let last = last_applied(st, &desired.name, 0);
    if server.deployments.is_empty() {
        let Plan::Create(req) = plan::plan(&desired, None, &last) else {
            panic!("a create")
        };
        let answer = server.create(&serde_json::to_value(&req).unwrap());
        let applied = assess::created(desired, answer).with_secret_sets(rotation::current(&sets));
        return next_status(obj, st, &Ok(applied), &now);
    }
    let observed = server.answer(None);
    let mut world = World {
        server,
        event,
        stored: st.clone(),
        killed: false,
    };
    let result = futures::executor::block_on(super::manage(
        &mut world, obj, st, &sets, desired, &last, observed,
    ));
    if world.killed {
        return world.stored;
    }
    next_status(obj, &world.stored, &result, &now)
}

/// Rotations, spec edits, kills and failed calls in any order: a forced redeploy is only ever
/// sent for a rotation not yet sent (never twice for one, across kills and lost answers),
/// at most one per rotation, none under `Ignore`; once calm, the agent's newest deployment
/// has the newest values (`Redeploy`) and nothing more is sent.
fn run_rotations(events: Vec<Event>, policy: SecretRotation) -> Result<(), TestCaseError> {
    let mut server = Server::new(Profile::Full);
    let images = ["acme/bot:1", "acme/bot:2"];
    let (mut image, mut generation) = (0, 1);
    let mut obj = resource(&rotating_spec(images[image], policy), generation);
    let mut st = rotation_pass(
        &mut server,
        &obj,
        &PipecatAgentStatus::default(),
        Event::Pass,
    );
    let (mut rotations, mut since_forced) = (0u32, 0u32);
    for event in events {
        match event {
            Event::Rotate(i) => {
                if i == 0 {
                    server.values.0 += 1;
                } else {
                    server.values.1 += 1;
                }
                rotations += 1;
                since_forced += 1;
            }
            Event::Edit => {
                image = 1 - image;
                generation += 1;
                obj = resource(&rotating_spec(images[image], policy), generation);
            }
            _ => {
                let forced = server.forced;
                st = rotation_pass(&mut server, &obj, &st, event);
                if server.forced > forced {
                    prop_assert!(
                        since_forced > 0,
                        "a second forced redeploy for the same rotation ({event:?}): {st:?}"
                    );
                    since_forced = 0;
                }
            }
        }
        server.now += 1;
    }
    prop_assert!(
        server.forced <= rotations,
        "{} forced redeploys for {rotations} rotations",
        server.forced
    );
    if policy == SecretRotation::Ignore {
        prop_assert_eq!(server.forced, 0);
    }
    for _ in 0..3 {
        st = rotation_pass(&mut server, &obj, &st, Event::Pass);
        server.now += 1;
    }
    let updates = server.updates;
    let again = rotation_pass(&mut server, &obj, &st, Event::Pass);
    prop_assert_eq!(server.updates, updates, "an update once calm: {:?}", again);
    prop_assert_eq!(again.pending_rotation, None);
    match policy {
        SecretRotation::RedeployIncludingImagePull => prop_assert_eq!(
            server.deployed.last().copied(),
            Some(server.values),
            "the agent's newest deployment lacks the newest values"
        ),
        // Image-pull rotations redeploy nothing: the newest env values, whatever the pull set's.
        SecretRotation::Redeploy => prop_assert_eq!(
            server.deployed.last().map(|d| d.0),
            Some(server.values.0),
            "the agent's newest deployment lacks the newest env values"
        ),
        SecretRotation::Ignore => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn each_rotation_is_redeployed_once_across_kills(events in prop::collection::vec(event_strategy(), 0..12)) {
        run_rotations(events, SecretRotation::Redeploy)?;
    }

    #[test]
    fn each_rotation_of_either_set_is_redeployed_once_when_asked(events in prop::collection::vec(event_strategy(), 0..12)) {
        run_rotations(events, SecretRotation::RedeployIncludingImagePull)?;
    }

    #[test]
    fn ignored_rotations_are_never_redeployed(events in prop::collection::vec(event_strategy(), 0..12)) {
        run_rotations(events, SecretRotation::Ignore)?;
    }
}
