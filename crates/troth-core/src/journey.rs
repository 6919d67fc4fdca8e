//! The journey map: stages → touchpoints, each owned by functions, with the events
//! that count as exposure of it, the promises made there, its surveys and its plays
//! (planned responses). Written in TOML (docs/journey-map.md) and checked here, with
//! every error located by line and named by field.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use toml::Spanned;

use crate::catalogue::{data_fields, is_catalogue_type, is_extension_type};
use crate::envelope::Channel;
use crate::timestamp::Timestamp;

/// A checked journey map.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyMap {
    pub key: String,
    pub name: String,
    pub version: u32,
    pub stages: Vec<Stage>,
    pub functions: Vec<Function>,
    pub touchpoints: Vec<Touchpoint>,
    /// Cases' service levels, by which `due_by` promises fall due; not part of the
    /// map's file but of troth's settings (`[service]`, docs/service.md).
    pub service: crate::case::ServiceLevels,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub key: String,
    pub name: String,
}

impl Stage {
    /// The stage in plain words, and the name it carries in the trade as a subtitle:
    /// "Second moment of truth: receive and use" → ("Receive and use", Some("Second
    /// moment of truth")). A name without a colon is already plain.
    pub fn plain_name(&self) -> (String, Option<&str>) {
        match self.name.split_once(':') {
            Some((term, plain)) if !plain.trim().is_empty() => {
                let plain = plain.trim();
                let mut chars = plain.chars();
                let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
                (first.unwrap_or_default() + chars.as_str(), Some(term.trim()))
            }
            _ => (self.name.clone(), None),
        }
    }
}

/// A function of the organisation that owns touchpoints (logistics, support, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub key: String,
    pub name: String,
    /// Where alerts for this function go, when plays alert it.
    pub webhook_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Touchpoint {
    pub key: String,
    pub name: String,
    pub stage: String,
    pub owners: Vec<String>,
    pub channels: Vec<Channel>,
    /// Event types that count as the customer meeting this touchpoint.
    pub exposure: Vec<String>,
    /// Touchpoints a customer may go on to (the paths and alternatives).
    pub next: Vec<String>,
    pub surveys: Vec<String>,
    /// Case categories about this touchpoint: a case in one of them counts here in
    /// first-contact resolution per touchpoint ([`crate::case::CaseTouchpoints`]).
    pub case_categories: Vec<String>,
    /// The kinds of entity accountable here (`carrier`, `team`, `store`, …; see
    /// [`crate::culprit::KINDS`]); empty: every kind the events name.
    pub accountable: Vec<String>,
    pub promises: Vec<Promise>,
    pub plays: Vec<Play>,
    /// What counts as good enough here; falling short is what ranks a weakest link.
    pub targets: Targets,
}

/// A touchpoint's targets, each a share between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Targets {
    /// Share of settled promises that must be kept.
    pub promises_kept: f64,
    /// Largest acceptable share of negative survey answers.
    pub negative_answers: f64,
    /// Largest acceptable share of failed outcomes (failed payments or attempts,
    /// lost parcels, items not found on the shelf, reopened cases, poor reviews).
    pub failures: f64,
}

/// Targets where a map sets none: common service levels of retail operations.
pub const DEFAULT_TARGETS: Targets = Targets {
    promises_kept: 0.95,
    negative_answers: 0.2,
    failures: 0.1,
};

/// What a promise is, how it comes due, and what keeps or breaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promise {
    pub key: String,
    /// The built-in kind it was based on, if any.
    pub kind: Option<String>,
    pub made_by: String,
    pub due: Due,
    /// A data field of `made_by` before which keeping events do not count.
    pub start_field: Option<String>,
    pub kept_by: Vec<String>,
    pub broken_by: Vec<String>,
    /// At risk this long before it is due, when not yet kept.
    pub at_risk_before_seconds: Option<u64>,
    /// Data values the making event must carry (`claim = "in_stock"`).
    pub made_when: Conditions,
    /// Data values a keeping event must carry, and a breaking one.
    pub kept_when: Conditions,
    pub broken_when: Conditions,
    /// What ties later events to the promise, when not the event's subject: the
    /// customer (`customer`) and data fields that making, keeping and breaking
    /// events all carry (`["customer", "store", "sku"]` for a stock claim).
    pub match_on: Vec<String>,
    /// When due with neither a keeping nor a breaking event, the promise lapses
    /// (is cancelled) rather than breaks: nobody put it to the test.
    pub lapses: bool,
}

/// Data fields and the values they must have, all of them. `null` (which only the
/// built-in kinds use: TOML has none) is met unless the field is `true`; a list is
/// met by any of its values.
pub type Conditions = Vec<(String, serde_json::Value)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// A date-time field of the making event's data.
    Field(String),
    /// This long after the making event.
    AfterSeconds(u64),
    /// A case's service level (of `case.opened`): this target, in the business
    /// hours of the team's calendar, for the case's category.
    ServiceLevel(ServiceTarget),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceTarget {
    FirstResponse,
    Resolution,
}

/// How a map's case promise falls due — the built-in `case_sla` kind, else the
/// first promise every `case.opened` makes — with the service levels it may need:
/// what a customer is told a case will be answered by.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseDue {
    due: Due,
    service: crate::case::ServiceLevels,
}

impl CaseDue {
    /// A fixed time after opening.
    pub fn after_seconds(seconds: u64) -> CaseDue {
        CaseDue {
            due: Due::AfterSeconds(seconds),
            service: Default::default(),
        }
    }

    /// When a case of `team` and `category` opened at `opened` is due; unknown
    /// names count by the default calendar and targets.
    pub fn at(&self, team: &str, category: &str, opened: Timestamp) -> Option<Timestamp> {
        match &self.due {
            Due::AfterSeconds(s) => Some(opened.plus_capped(i64::try_from(*s).ok()?.saturating_mul(1_000_000))),
            Due::ServiceLevel(target) => Some(self.service.due(*target, team, category, opened)),
            Due::Field(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    pub key: String,
    pub when: When,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    Event(String),
    PromiseBroken(String),
    PromiseAtRisk(String),
    /// An NPS answer of 0–6 to this survey.
    SurveyDetractor(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    NotifyCustomer { channel: String, template: String },
    OpenCase { team: String, category: String },
    AlertOwner { function: Option<String> },
}

/// One problem in a journey map file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyError {
    /// 1-based line of the offending value.
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// The promise kinds troth knows, with what each is made, kept and broken by.
pub const PROMISE_KINDS: &[&str] = &[
    "delivery_window",
    "delivery_date",
    "ready_by",
    "stock",
    "callback",
    "refund",
    "case_sla",
    "case_first_response",
];

/// The four moments of truth, the stages of a map that names none.
pub const DEFAULT_STAGES: &[(&str, &str)] = &[
    ("zmot", "Zero moment of truth: discover"),
    ("fmot", "First moment of truth: buy"),
    ("smot", "Second moment of truth: receive and use"),
    ("umot", "Ultimate moment of truth: share"),
];

/// Reads and checks a journey map; on failure, every problem found, in file order.
pub fn parse_journey(text: &str) -> Result<JourneyMap, Vec<JourneyError>> {
    let lines = LineIndex::new(text);
    let raw: RawMap = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| lines.line(s.start));
        vec![JourneyError {
            line,
            field: "journey".into(),
            message: e.message().to_owned(),
        }]
    })?;
    let mut check = Checker {
        lines: &lines,
        errors: Vec::new(),
    };
    let map = check.map(raw);
    let mut errors = check.errors;
    if errors.is_empty() {
        Ok(map)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

impl JourneyMap {
    /// How this map's case promise falls due, when it has one (see [`CaseDue`]).
    pub fn case_due(&self) -> Option<CaseDue> {
        let made: Vec<&Promise> = self
            .promises()
            .map(|(_, p)| p)
            .filter(|p| p.made_by == "case.opened" && p.made_when.is_empty() && !matches!(p.due, Due::Field(_)))
            .collect();
        let promise = made
            .iter()
            .find(|p| p.kind.as_deref() == Some("case_sla"))
            .or(made.first())?;
        Some(CaseDue {
            due: promise.due.clone(),
            service: self.service.clone(),
        })
    }

    pub fn touchpoint(&self, key: &str) -> Option<&Touchpoint> {
        self.touchpoints.iter().find(|t| t.key == key)
    }

    pub fn promises(&self) -> impl Iterator<Item = (&Touchpoint, &Promise)> {
        self.touchpoints
            .iter()
            .flat_map(|t| t.promises.iter().map(move |p| (t, p)))
    }
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    key: String,
    name: String,
    #[serde(default = "one")]
    version: u32,
    #[serde(default)]
    stages: Vec<RawStage>,
    #[serde(default)]
    functions: Vec<RawFunction>,
    #[serde(default)]
    touchpoints: Vec<RawTouchpoint>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    key: Spanned<String>,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    key: Spanned<String>,
    name: String,
    webhook_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTouchpoint {
    key: Spanned<String>,
    name: String,
    stage: Spanned<String>,
    owners: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    channels: Vec<Spanned<String>>,
    #[serde(default)]
    exposure: Vec<Spanned<String>>,
    #[serde(default)]
    next: Vec<Spanned<String>>,
    #[serde(default)]
    surveys: Vec<String>,
    #[serde(default)]
    case_categories: Vec<Spanned<String>>,
    #[serde(default)]
    accountable: Vec<Spanned<String>>,
    #[serde(default)]
    promises: Vec<RawPromise>,
    #[serde(default)]
    plays: Vec<RawPlay>,
    targets: Option<RawTargets>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargets {
    promises_kept: Option<Spanned<f64>>,
    negative_answers: Option<Spanned<f64>>,
    failures: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromise {
    key: Spanned<String>,
    kind: Option<Spanned<String>>,
    made_by: Option<Spanned<String>>,
    due_field: Option<Spanned<String>>,
    due_after_seconds: Option<u64>,
    /// `first_response` or `resolution`: a case's service level (`[service]`).
    due_by: Option<Spanned<String>>,
    start_field: Option<Spanned<String>>,
    kept_by: Option<Vec<Spanned<String>>>,
    broken_by: Option<Vec<Spanned<String>>>,
    at_risk_before_seconds: Option<u64>,
    made_when: Option<Spanned<toml::Table>>,
    kept_when: Option<Spanned<toml::Table>>,
    broken_when: Option<Spanned<toml::Table>>,
    match_on: Option<Vec<Spanned<String>>>,
    lapses: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlay {
    key: Spanned<String>,
    when: Spanned<RawWhen>,
    #[serde(rename = "do")]
    actions: Spanned<Vec<Spanned<Action>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    event: Option<Spanned<String>>,
    promise_broken: Option<Spanned<String>>,
    promise_at_risk: Option<Spanned<String>>,
    survey_detractor: Option<String>,
}

/// A built-in kind's defaults.
struct KindDefaults {
    made_by: &'static str,
    due: Option<Due>,
    start_field: Option<&'static str>,
    kept_by: &'static [&'static str],
    broken_by: &'static [&'static str],
    at_risk_before_seconds: Option<u64>,
    /// The usual service level: share of these promises that must be kept.
    kept_target: f64,
    made_when: &'static [(&'static str, Cond)],
    kept_when: &'static [(&'static str, Cond)],
    broken_when: &'static [(&'static str, Cond)],
    match_on: &'static [&'static str],
    lapses: bool,
}

/// A value a built-in kind's condition asks for.
#[derive(Clone, Copy)]
enum Cond {
    Text(&'static str),
    Flag(bool),
    /// Absent, null or false.
    NotTrue,
    /// Any of these texts.
    AnyOf(&'static [&'static str]),
}

impl Cond {
    fn value(self) -> serde_json::Value {
        match self {
            Cond::Text(t) => t.into(),
            Cond::Flag(b) => b.into(),
            Cond::NotTrue => serde_json::Value::Null,
            Cond::AnyOf(texts) => texts.iter().map(|t| serde_json::Value::from(*t)).collect(),
        }
    }
}

/// What a kind leaves as it is: no start, nothing breaks it but the clock, no
/// at-risk warning, no conditions, matched on the subject, broken when due.
const PLAIN: KindDefaults = KindDefaults {
    made_by: "",
    due: None,
    start_field: None,
    kept_by: &[],
    broken_by: &[],
    at_risk_before_seconds: None,
    kept_target: 0.95,
    made_when: &[],
    kept_when: &[],
    broken_when: &[],
    match_on: &[],
    lapses: false,
};

fn kind_defaults(kind: &str) -> Option<KindDefaults> {
    let defaults = match kind {
        "delivery_window" => KindDefaults {
            made_by: "shipment.window_set",
            due: Some(Due::Field("window_end".into())),
            start_field: Some("window_start"),
            kept_by: &["shipment.delivered"],
            broken_by: &["shipment.attempt_failed", "shipment.lost"],
            at_risk_before_seconds: Some(15 * 60),
            kept_target: 0.95,
            // A window troth re-issues from its estimate makes no promise, so it cannot
            // cancel the carrier's: a late driver still breaks the window given.
            made_when: &[("estimate", Cond::NotTrue)],
            ..PLAIN
        },
        "delivery_date" => KindDefaults {
            made_by: "order.placed",
            due: Some(Due::Field("promised_to".into())),
            kept_by: &["shipment.delivered"],
            broken_by: &["order.cancelled", "shipment.lost"],
            at_risk_before_seconds: Some(4 * 3600),
            kept_target: 0.95,
            // Only orders that ship: a pickup order's `promised_to` is its ready-by time.
            made_when: &[("delivery", Cond::AnyOf(&["home", "safe_place"]))],
            ..PLAIN
        },
        "ready_by" => KindDefaults {
            made_by: "order.placed",
            due: Some(Due::Field("promised_to".into())),
            kept_by: &["order.ready"],
            broken_by: &["order.cancelled"],
            at_risk_before_seconds: Some(3600),
            kept_target: 0.95,
            made_when: &[("delivery", Cond::Text("pickup"))],
            ..PLAIN
        },
        "stock" => KindDefaults {
            made_by: "availability.shown",
            due: Some(Due::AfterSeconds(2 * 24 * 3600)),
            kept_by: &["store.visited"],
            broken_by: &["store.visited"],
            kept_target: 0.98,
            made_when: &[("claim", Cond::Text("in_stock"))],
            kept_when: &[("found", Cond::Flag(true))],
            broken_when: &[("found", Cond::Flag(false))],
            match_on: &["customer", "store", "sku"],
            lapses: true,
            ..PLAIN
        },
        "callback" => KindDefaults {
            made_by: "callback.promised",
            due: Some(Due::Field("due".into())),
            kept_by: &["callback.made"],
            at_risk_before_seconds: Some(15 * 60),
            kept_target: 0.95,
            ..PLAIN
        },
        "refund" => KindDefaults {
            made_by: "refund.promised",
            due: Some(Due::Field("due".into())),
            kept_by: &["refund.issued"],
            at_risk_before_seconds: Some(24 * 3600),
            kept_target: 0.98,
            ..PLAIN
        },
        "case_sla" => KindDefaults {
            made_by: "case.opened",
            due: Some(Due::ServiceLevel(ServiceTarget::Resolution)),
            kept_by: &["case.resolved"],
            kept_target: 0.8,
            ..PLAIN
        },
        // What counts as a response is what `case::Case::first_response_at` counts.
        "case_first_response" => KindDefaults {
            made_by: "case.opened",
            due: Some(Due::ServiceLevel(ServiceTarget::FirstResponse)),
            kept_by: &["case.held", "callback.promised", "callback.made", "case.resolved"],
            kept_target: 0.9,
            ..PLAIN
        },
        _ => return None,
    };
    Some(defaults)
}

// ---- checking ----

/// Byte offset → line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

struct Checker<'a> {
    lines: &'a LineIndex,
    errors: Vec<JourneyError>,
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, field: String, message: impl Into<String>) {
        self.errors.push(JourneyError {
            line: self.lines.line(at.span().start),
            field,
            message: message.into(),
        });
    }

    fn event_type(&mut self, t: &Spanned<String>, field: String) {
        let name = t.get_ref();
        if !is_catalogue_type(name) && !is_extension_type(name) {
            self.error(
                t,
                field,
                format!("unknown event type {name:?} (not in the catalogue, and extension types start with \"x.\")"),
            );
        }
    }

    /// Records the key, or an error when it was seen before.
    /// The touchpoint's targets: those it sets, else the most lenient usual service
    /// level among its promises' kinds (their tallies are summed together), else [`DEFAULT_TARGETS`].
    fn targets(&mut self, raw: Option<&RawTargets>, promises: &[Promise], at: &str) -> Targets {
        let kept_default = promises
            .iter()
            .filter_map(|p| p.kind.as_deref().and_then(kind_defaults))
            .map(|k| k.kept_target)
            .reduce(f64::min)
            .unwrap_or(DEFAULT_TARGETS.promises_kept);
        let mut share = |value: Option<&Spanned<f64>>, name: &str, default: f64| match value {
            Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.error(v, format!("{at}.targets.{name}"), "must be a share between 0 and 1");
                default
            }
            None => default,
        };
        Targets {
            promises_kept: share(
                raw.and_then(|r| r.promises_kept.as_ref()),
                "promises_kept",
                kept_default,
            ),
            negative_answers: share(
                raw.and_then(|r| r.negative_answers.as_ref()),
                "negative_answers",
                DEFAULT_TARGETS.negative_answers,
            ),
            failures: share(
                raw.and_then(|r| r.failures.as_ref()),
                "failures",
                DEFAULT_TARGETS.failures,
            ),
        }
    }

    fn unique(&mut self, seen: &mut HashSet<String>, key: &Spanned<String>, field: String, what: &str) {
        if key.get_ref().is_empty() {
            self.error(key, field, format!("the {what} key must not be empty"));
        } else if !seen.insert(key.get_ref().clone()) {
            self.error(key, field, format!("duplicate {what} key {:?}", key.get_ref()));
        }
    }

    fn map(&mut self, raw: RawMap) -> JourneyMap {
        let stages: Vec<Stage> = if raw.stages.is_empty() {
            DEFAULT_STAGES
                .iter()
                .map(|(key, name)| Stage {
                    key: (*key).into(),
                    name: (*name).into(),
                })
                .collect()
        } else {
            let mut seen = HashSet::new();
            for (i, stage) in raw.stages.iter().enumerate() {
                self.unique(&mut seen, &stage.key, format!("stages[{i}].key"), "stage");
            }
            raw.stages
                .iter()
                .map(|s| Stage {
                    key: s.key.get_ref().clone(),
                    name: s.name.clone(),
                })
                .collect()
        };
        let mut seen = HashSet::new();
        for (i, function) in raw.functions.iter().enumerate() {
            self.unique(&mut seen, &function.key, format!("functions[{i}].key"), "function");
        }
        let functions: Vec<Function> = raw
            .functions
            .iter()
            .map(|f| Function {
                key: f.key.get_ref().clone(),
                name: f.name.clone(),
                webhook_url: f.webhook_url.clone(),
            })
            .collect();
        let stage_keys: HashSet<&str> = stages.iter().map(|s| s.key.as_str()).collect();
        let function_keys: HashSet<&str> = functions.iter().map(|f| f.key.as_str()).collect();
        let touchpoint_keys: HashSet<String> = raw.touchpoints.iter().map(|t| t.key.get_ref().clone()).collect();
        let promise_keys: HashSet<String> = raw
            .touchpoints
            .iter()
            .flat_map(|t| t.promises.iter().map(|p| p.key.get_ref().clone()))
            .collect();

        let mut seen_touchpoints = HashSet::new();
        let mut seen_promises = HashSet::new();
        // Each case category leads to one touchpoint.
        let mut category_at: HashMap<String, String> = HashMap::new();
        let mut touchpoints = Vec::new();
        for (i, t) in raw.touchpoints.iter().enumerate() {
            let at = format!("touchpoints[{i}]");
            self.unique(&mut seen_touchpoints, &t.key, format!("{at}.key"), "touchpoint");
            if !stage_keys.contains(t.stage.get_ref().as_str()) {
                let known = stages.iter().map(|s| s.key.as_str()).collect::<Vec<_>>().join(", ");
                self.error(
                    &t.stage,
                    format!("{at}.stage"),
                    format!("unknown stage {:?}; the stages are {known}", t.stage.get_ref()),
                );
            }
            if t.owners.get_ref().is_empty() {
                self.error(
                    &t.owners,
                    format!("{at}.owners"),
                    "a touchpoint needs at least one owner function",
                );
            }
            for (j, owner) in t.owners.get_ref().iter().enumerate() {
                if !function_keys.contains(owner.get_ref().as_str()) {
                    self.error(
                        owner,
                        format!("{at}.owners[{j}]"),
                        format!("unknown function {:?}; declare it under [[functions]]", owner.get_ref()),
                    );
                }
            }
            let mut channels = Vec::new();
            for (j, channel) in t.channels.iter().enumerate() {
                match Channel::parse(channel.get_ref()) {
                    Some(c) => channels.push(c),
                    None => self.error(
                        channel,
                        format!("{at}.channels[{j}]"),
                        format!("unknown channel {:?}", channel.get_ref()),
                    ),
                }
            }
            for (j, event_type) in t.exposure.iter().enumerate() {
                self.event_type(event_type, format!("{at}.exposure[{j}]"));
            }
            for (j, category) in t.case_categories.iter().enumerate() {
                let field = format!("{at}.case_categories[{j}]");
                if category.get_ref().is_empty() {
                    self.error(category, field, "a case category must not be empty");
                } else if let Some(other) = category_at.get(category.get_ref()) {
                    self.error(
                        category,
                        field,
                        format!(
                            "case category {:?} is already listed at touchpoint {other:?}: a category leads to one touchpoint",
                            category.get_ref()
                        ),
                    );
                } else {
                    category_at.insert(category.get_ref().clone(), t.key.get_ref().clone());
                }
            }
            for (j, kind) in t.accountable.iter().enumerate() {
                if !crate::culprit::KINDS.contains(&kind.get_ref().as_str()) {
                    self.error(
                        kind,
                        format!("{at}.accountable[{j}]"),
                        format!(
                            "unknown kind of entity {:?}; one of {}",
                            kind.get_ref(),
                            crate::culprit::KINDS.join(", ")
                        ),
                    );
                }
            }
            for (j, next) in t.next.iter().enumerate() {
                if !touchpoint_keys.contains(next.get_ref()) {
                    self.error(
                        next,
                        format!("{at}.next[{j}]"),
                        format!("unknown touchpoint {:?}", next.get_ref()),
                    );
                }
            }
            let mut promises = Vec::new();
            for (j, p) in t.promises.iter().enumerate() {
                let field = format!("{at}.promises[{j}]");
                self.unique(&mut seen_promises, &p.key, format!("{field}.key"), "promise");
                if let Some(promise) = self.promise(p, &field) {
                    promises.push(promise);
                }
            }
            let mut plays = Vec::new();
            let mut seen_plays = HashSet::new();
            for (j, play) in t.plays.iter().enumerate() {
                let field = format!("{at}.plays[{j}]");
                self.unique(&mut seen_plays, &play.key, format!("{field}.key"), "play");
                if let Some(play) = self.play(play, &field, &promise_keys, &function_keys) {
                    plays.push(play);
                }
            }
            let targets = self.targets(t.targets.as_ref(), &promises, &at);
            touchpoints.push(Touchpoint {
                key: t.key.get_ref().clone(),
                name: t.name.clone(),
                stage: t.stage.get_ref().clone(),
                owners: t.owners.get_ref().iter().map(|o| o.get_ref().clone()).collect(),
                channels,
                exposure: t.exposure.iter().map(|e| e.get_ref().clone()).collect(),
                next: t.next.iter().map(|n| n.get_ref().clone()).collect(),
                surveys: t.surveys.clone(),
                case_categories: t.case_categories.iter().map(|c| c.get_ref().clone()).collect(),
                accountable: t.accountable.iter().map(|k| k.get_ref().clone()).collect(),
                promises,
                plays,
                targets,
            });
        }
        self.cycles(&raw.touchpoints);
        JourneyMap {
            key: raw.key,
            name: raw.name,
            version: raw.version,
            stages,
            functions,
            touchpoints,
            service: Default::default(),
        }
    }

    fn promise(&mut self, p: &RawPromise, field: &str) -> Option<Promise> {
        let defaults = match &p.kind {
            Some(kind) => match kind_defaults(kind.get_ref()) {
                Some(defaults) => Some(defaults),
                None => {
                    let message = format!(
                        "unknown promise kind {:?}; the kinds are {}",
                        kind.get_ref(),
                        PROMISE_KINDS.join(", ")
                    );
                    self.error(kind, format!("{field}.kind"), message);
                    return None;
                }
            },
            None => None,
        };
        let made_by = match (&p.made_by, &defaults) {
            (Some(made_by), _) => {
                self.event_type(made_by, format!("{field}.made_by"));
                made_by.get_ref().clone()
            }
            (None, Some(d)) => d.made_by.to_owned(),
            (None, None) => {
                self.error(
                    &p.key,
                    format!("{field}.made_by"),
                    "is required (or set kind to a built-in promise kind)",
                );
                return None;
            }
        };
        let due_by = match p.due_by.as_ref().map(|d| d.get_ref().as_str()) {
            None => None,
            Some(_) if made_by != "case.opened" => {
                self.error(
                    &p.key,
                    format!("{field}.due_by"),
                    format!("is a case's service level: the promise must be made by case.opened, not {made_by}"),
                );
                return None;
            }
            Some("first_response") => Some(Due::ServiceLevel(ServiceTarget::FirstResponse)),
            Some("resolution") => Some(Due::ServiceLevel(ServiceTarget::Resolution)),
            Some(other) => {
                self.error(
                    &p.key,
                    format!("{field}.due_by"),
                    format!("must be first_response or resolution, not {other:?}"),
                );
                return None;
            }
        };
        let set = [p.due_field.is_some(), p.due_after_seconds.is_some(), due_by.is_some()];
        if set.iter().filter(|s| **s).count() > 1 {
            self.error(
                &p.key,
                format!("{field}.due_field"),
                "set one of due_field, due_after_seconds and due_by",
            );
            return None;
        }
        let due = match (
            &p.due_field,
            p.due_after_seconds,
            due_by.or_else(|| defaults.as_ref().and_then(|d| d.due.clone())),
        ) {
            (Some(_), Some(_), _) => return None,
            (Some(f), None, _) => {
                self.timestamp_field(&made_by, f, format!("{field}.due_field"));
                Due::Field(f.get_ref().clone())
            }
            (None, Some(seconds), _) => Due::AfterSeconds(seconds),
            (None, None, Some(due)) => due,
            (None, None, None) => {
                self.error(
                    &p.key,
                    format!("{field}.due_field"),
                    "the promise needs a due time: due_field, due_after_seconds or due_by",
                );
                return None;
            }
        };
        if let Some(start) = &p.start_field {
            self.timestamp_field(&made_by, start, format!("{field}.start_field"));
        }
        // Beyond a century a duration is a typo, and instants computed from it could leave the calendar.
        const MAX_SECONDS: u64 = (crate::timestamp::MAX_DURATION_US / 1_000_000) as u64;
        for (name, seconds) in [
            ("due_after_seconds", p.due_after_seconds),
            ("at_risk_before_seconds", p.at_risk_before_seconds),
        ] {
            if seconds.is_some_and(|s| s > MAX_SECONDS) {
                self.error(
                    &p.key,
                    format!("{field}.{name}"),
                    format!("must be at most {MAX_SECONDS} (100 years)"),
                );
            }
        }
        let mut events = |list: &Option<Vec<Spanned<String>>>, name: &str, default: &[&str]| -> Vec<String> {
            match list {
                Some(list) => {
                    for (k, t) in list.iter().enumerate() {
                        self.event_type(t, format!("{field}.{name}[{k}]"));
                    }
                    list.iter().map(|t| t.get_ref().clone()).collect()
                }
                None => default.iter().map(|s| (*s).to_owned()).collect(),
            }
        };
        let kept_by = events(&p.kept_by, "kept_by", defaults.as_ref().map_or(&[], |d| d.kept_by));
        let broken_by = events(
            &p.broken_by,
            "broken_by",
            defaults.as_ref().map_or(&[], |d| d.broken_by),
        );
        if kept_by.is_empty() {
            self.error(
                &p.key,
                format!("{field}.kept_by"),
                "list the event types that keep the promise",
            );
        }
        Some(Promise {
            key: p.key.get_ref().clone(),
            kind: p.kind.as_ref().map(|k| k.get_ref().clone()),
            due,
            start_field: p.start_field.as_ref().map(|s| s.get_ref().clone()).or_else(|| {
                defaults
                    .as_ref()
                    .and_then(|d| d.start_field.map(str::to_owned))
                    .filter(|_| p.made_by.is_none())
            }),
            at_risk_before_seconds: p
                .at_risk_before_seconds
                .or(defaults.as_ref().and_then(|d| d.at_risk_before_seconds)),
            made_when: self.conditions(
                &p.made_when,
                &[made_by.as_str()],
                field,
                "made_when",
                defaults.as_ref().map(|d| d.made_when),
            ),
            kept_when: self.conditions(
                &p.kept_when,
                &kept_by,
                field,
                "kept_when",
                defaults.as_ref().map(|d| d.kept_when),
            ),
            broken_when: self.conditions(
                &p.broken_when,
                &broken_by,
                field,
                "broken_when",
                defaults.as_ref().map(|d| d.broken_when),
            ),
            match_on: self.match_on(
                p,
                &made_by,
                &kept_by,
                &broken_by,
                field,
                defaults.as_ref().map(|d| d.match_on),
            ),
            lapses: p.lapses.or(defaults.as_ref().map(|d| d.lapses)).unwrap_or(false),
            made_by,
            kept_by,
            broken_by,
        })
    }

    /// `when` tables: each key a data field of every event type the condition
    /// applies to, each value a string, number or boolean to compare with.
    fn conditions<T: AsRef<str>>(
        &mut self,
        raw: &Option<Spanned<toml::Table>>,
        types: &[T],
        field: &str,
        name: &str,
        default: Option<&[(&str, Cond)]>,
    ) -> Conditions {
        let Some(table) = raw else {
            return default
                .unwrap_or(&[])
                .iter()
                .map(|(f, c)| ((*f).to_owned(), c.value()))
                .collect();
        };
        let mut out = Vec::new();
        for (key, value) in table.get_ref() {
            let json = match value {
                toml::Value::String(s) => serde_json::Value::from(s.clone()),
                toml::Value::Integer(i) => serde_json::Value::from(*i),
                toml::Value::Boolean(b) => serde_json::Value::from(*b),
                // Any of these values.
                toml::Value::Array(options) if options.iter().all(|o| o.is_str()) => options
                    .iter()
                    .filter_map(|o| o.as_str().map(serde_json::Value::from))
                    .collect(),
                _ => {
                    self.error(
                        table,
                        format!("{field}.{name}.{key}"),
                        "must be a string, an integer, a boolean or a list of strings (any of them)",
                    );
                    continue;
                }
            };
            for t in types {
                if let Some(fields) = data_fields(t.as_ref())
                    && !fields.iter().any(|(f, _)| f == key)
                {
                    self.error(
                        table,
                        format!("{field}.{name}.{key}"),
                        format!("{} has no data field {key:?}", t.as_ref()),
                    );
                }
            }
            out.push((key.clone(), json));
        }
        out
    }

    /// `match_on`: `customer` or data fields that the making, keeping and breaking
    /// event types all carry.
    fn match_on(
        &mut self,
        p: &RawPromise,
        made_by: &str,
        kept_by: &[String],
        broken_by: &[String],
        field: &str,
        default: Option<&[&str]>,
    ) -> Vec<String> {
        let Some(list) = &p.match_on else {
            return default.unwrap_or(&[]).iter().map(|s| (*s).to_owned()).collect();
        };
        for (k, name) in list.iter().enumerate() {
            if name.get_ref() == "customer" {
                continue;
            }
            for t in std::iter::once(made_by)
                .chain(kept_by.iter().map(String::as_str))
                .chain(broken_by.iter().map(String::as_str))
            {
                if let Some(fields) = data_fields(t)
                    && !fields.iter().any(|(f, _)| f == name.get_ref())
                {
                    self.error(
                        name,
                        format!("{field}.match_on[{k}]"),
                        format!("{t} has no data field {:?}", name.get_ref()),
                    );
                }
            }
        }
        list.iter().map(|n| n.get_ref().clone()).collect()
    }

    /// A due or start field must be a date-time field of the making event's data.
    fn timestamp_field(&mut self, made_by: &str, name: &Spanned<String>, field: String) {
        let Some(fields) = data_fields(made_by) else { return };
        match fields.iter().find(|(f, _)| f == name.get_ref()) {
            Some((_, ty)) if ty.contains("Timestamp") => {}
            Some(_) => self.error(
                name,
                field,
                format!("{made_by}'s {:?} is not a date-time", name.get_ref()),
            ),
            None => {
                let known = fields
                    .iter()
                    .filter(|(_, t)| t.contains("Timestamp"))
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>();
                let message = format!(
                    "{made_by} has no data field {:?}; its date-time fields are [{}]",
                    name.get_ref(),
                    known.join(", ")
                );
                self.error(name, field, message);
            }
        }
    }

    fn play(
        &mut self,
        play: &RawPlay,
        field: &str,
        promises: &HashSet<String>,
        functions: &HashSet<&str>,
    ) -> Option<Play> {
        let w = play.when.get_ref();
        let chosen = [
            w.event.is_some(),
            w.promise_broken.is_some(),
            w.promise_at_risk.is_some(),
            w.survey_detractor.is_some(),
        ];
        if chosen.iter().filter(|c| **c).count() != 1 {
            self.error(
                &play.when,
                format!("{field}.when"),
                "set exactly one of event, promise_broken, promise_at_risk, survey_detractor",
            );
            return None;
        }
        let mut promise = |key: &Spanned<String>, name: &str| {
            if !promises.contains(key.get_ref()) {
                self.error(
                    key,
                    format!("{field}.when.{name}"),
                    format!("unknown promise {:?}", key.get_ref()),
                );
            }
            key.get_ref().clone()
        };
        let when = if let Some(event) = &w.event {
            self.event_type(event, format!("{field}.when.event"));
            When::Event(event.get_ref().clone())
        } else if let Some(key) = &w.promise_broken {
            When::PromiseBroken(promise(key, "promise_broken"))
        } else if let Some(key) = &w.promise_at_risk {
            When::PromiseAtRisk(promise(key, "promise_at_risk"))
        } else {
            When::SurveyDetractor(w.survey_detractor.clone().unwrap_or_default())
        };
        if play.actions.get_ref().is_empty() {
            self.error(&play.actions, format!("{field}.do"), "a play needs at least one action");
        }
        for (k, action) in play.actions.get_ref().iter().enumerate() {
            match action.get_ref() {
                Action::NotifyCustomer { channel, .. } if Channel::parse(channel).is_none() => {
                    self.error(
                        action,
                        format!("{field}.do[{k}].channel"),
                        format!("unknown channel {channel:?}"),
                    );
                }
                Action::AlertOwner {
                    function: Some(function),
                } if !functions.contains(function.as_str()) => {
                    self.error(
                        action,
                        format!("{field}.do[{k}].function"),
                        format!("unknown function {function:?}"),
                    );
                }
                _ => {}
            }
        }
        Some(Play {
            key: play.key.get_ref().clone(),
            when,
            actions: play.actions.get_ref().iter().map(|a| a.get_ref().clone()).collect(),
        })
    }

    /// Paths between touchpoints (`next`) must not loop back.
    fn cycles(&mut self, touchpoints: &[RawTouchpoint]) {
        let index: HashMap<&str, usize> = touchpoints
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key.get_ref().as_str(), i))
            .collect();
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut state = vec![0u8; touchpoints.len()];
        let mut reported = HashSet::new();
        for start in 0..touchpoints.len() {
            let mut path = Vec::new();
            self.visit(start, touchpoints, &index, &mut state, &mut path, &mut reported);
        }
    }

    fn visit(
        &mut self,
        i: usize,
        touchpoints: &[RawTouchpoint],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
        reported: &mut HashSet<usize>,
    ) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        path.push(i);
        for (j, next) in touchpoints[i].next.iter().enumerate() {
            let Some(&n) = index.get(next.get_ref().as_str()) else {
                continue;
            };
            if state[n] == 1 {
                if reported.insert(i) {
                    let from = path.iter().position(|&p| p == n).unwrap_or(0);
                    let mut names: Vec<&str> = path[from..]
                        .iter()
                        .map(|&p| touchpoints[p].key.get_ref().as_str())
                        .collect();
                    names.push(touchpoints[n].key.get_ref());
                    self.error(
                        next,
                        format!("touchpoints[{i}].next[{j}]"),
                        format!("makes a cycle: {}", names.join(" → ")),
                    );
                }
            } else {
                self.visit(n, touchpoints, index, state, path, reported);
            }
        }
        path.pop();
        state[i] = 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `text` and compares the errors, one `LINE: field: message` each, with `expect`.
    fn check(text: &str, expect: &[&str]) {
        let got: Vec<String> = match parse_journey(text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|e| format!("{}: {}: {}", e.line, e.field, e.message))
                .collect(),
        };
        assert_eq!(got, expect, "for\n{text}");
    }

    const HEAD: &str = r#"key = "test"
name = "Test"
[[functions]]
key = "logistics"
name = "Logistics"
"#;

    #[test]
    fn stages_read_in_plain_words_with_the_trade_name_beneath() {
        let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
        let plain: Vec<(String, Option<&str>)> = map.stages.iter().map(Stage::plain_name).collect();
        assert_eq!(
            plain,
            [
                ("Discover".to_owned(), Some("Zero moment of truth")),
                ("Buy".to_owned(), Some("First moment of truth")),
                ("Receive and use".to_owned(), Some("Second moment of truth")),
                ("Share".to_owned(), Some("Ultimate moment of truth")),
            ]
        );
        let stage = |name: &str| Stage {
            key: "s".into(),
            name: name.into(),
        };
        assert_eq!(stage("Checkout").plain_name(), ("Checkout".to_owned(), None));
        assert_eq!(stage("Odd:").plain_name(), ("Odd:".to_owned(), None));
    }

    #[test]
    fn the_shipped_retail_map_is_valid() {
        let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
        assert_eq!(map.stages.len(), 4);
        let window = map.touchpoint("delivery_window").unwrap();
        assert_eq!(window.stage, "smot");
        let promise = &window.promises[0];
        assert_eq!(promise.made_by, "shipment.window_set");
        assert_eq!(promise.due, Due::Field("window_end".into()));
        assert_eq!(promise.start_field.as_deref(), Some("window_start"));
        for key in [
            "find",
            "stock",
            "pay",
            "order",
            "delivery_window",
            "tracking_page",
            "delivery",
            "use",
            "returns",
            "complaint",
            "callback",
            "refund",
            "review",
        ] {
            assert!(map.touchpoint(key).is_some(), "{key}");
        }
    }

    #[test]
    fn stages_default_to_the_moments_of_truth() {
        let map = parse_journey(&format!(
            "{HEAD}[[touchpoints]]\nkey = \"t\"\nname = \"T\"\nstage = \"umot\"\nowners = [\"logistics\"]\n"
        ))
        .unwrap();
        let keys: Vec<&str> = map.stages.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["zmot", "fmot", "smot", "umot"]);
    }

    #[test]
    fn errors_name_the_line_and_field() {
        check(
            &format!(
                r#"{HEAD}[[touchpoints]]
key = "window"
name = "Window"
stage = "smt"
owners = ["logistics", "drivers"]
channels = ["pigeon"]
exposure = ["shipment.window_set", "shipment.teleported"]
next = ["nowhere"]

[[touchpoints]]
key = "window"
name = "Again"
stage = "smot"
owners = ["logistics"]
"#
            ),
            &[
                r#"9: touchpoints[0].stage: unknown stage "smt"; the stages are zmot, fmot, smot, umot"#,
                r#"10: touchpoints[0].owners[1]: unknown function "drivers"; declare it under [[functions]]"#,
                r#"11: touchpoints[0].channels[0]: unknown channel "pigeon""#,
                r#"12: touchpoints[0].exposure[1]: unknown event type "shipment.teleported" (not in the catalogue, and extension types start with "x.")"#,
                r#"13: touchpoints[0].next[0]: unknown touchpoint "nowhere""#,
                r#"16: touchpoints[1].key: duplicate touchpoint key "window""#,
            ],
        );
    }

    #[test]
    fn a_case_category_leads_to_one_touchpoint() {
        let t = |key: &str, categories: &str| {
            format!(
                "[[touchpoints]]\nkey = \"{key}\"\nname = \"{key}\"\nstage = \"smot\"\nowners = [\"logistics\"]\ncase_categories = [{categories}]\n"
            )
        };
        let text = format!(
            "{HEAD}{}{}",
            t("delivery", r#""lost_parcel", "damaged""#),
            t("returns", r#""return", "damaged", """#)
        );
        check(
            &text,
            &[
                r#"17: touchpoints[1].case_categories[1]: case category "damaged" is already listed at touchpoint "delivery": a category leads to one touchpoint"#,
                "17: touchpoints[1].case_categories[2]: a case category must not be empty",
            ],
        );
        let map = parse_journey(&format!("{HEAD}{}", t("delivery", r#""lost_parcel""#))).unwrap();
        assert_eq!(map.touchpoints[0].case_categories, ["lost_parcel"]);
    }

    #[test]
    fn paths_must_not_loop() {
        let t = |key: &str, next: &str| {
            format!(
                "[[touchpoints]]\nkey = \"{key}\"\nname = \"{key}\"\nstage = \"smot\"\nowners = [\"logistics\"]\nnext = [{next}]\n"
            )
        };
        let text = format!("{HEAD}{}{}{}", t("a", "\"b\""), t("b", "\"c\""), t("c", "\"a\""));
        check(&text, &["23: touchpoints[2].next[0]: makes a cycle: a → b → c → a"]);
    }

    #[test]
    fn promises_and_plays_are_checked() {
        check(
            &format!(
                r#"{HEAD}[[touchpoints]]
key = "window"
name = "Window"
stage = "smot"
owners = ["logistics"]

[[touchpoints.promises]]
key = "w"
kind = "delivery_windows"

[[touchpoints.promises]]
key = "custom"
made_by = "shipment.window_set"
due_field = "driver"
kept_by = ["shipment.delivered"]

[[touchpoints.promises]]
key = "other"
made_by = "callback.promised"
due_field = "when"

[[touchpoints.plays]]
key = "p"
when = {{ promise_broken = "nope" }}
do = [{{ type = "alert_owner", function = "sales" }}]
"#
            ),
            &[
                r#"14: touchpoints[0].promises[0].kind: unknown promise kind "delivery_windows"; the kinds are delivery_window, delivery_date, ready_by, stock, callback, refund, case_sla, case_first_response"#,
                r#"19: touchpoints[0].promises[1].due_field: shipment.window_set's "driver" is not a date-time"#,
                r#"23: touchpoints[0].promises[2].kept_by: list the event types that keep the promise"#,
                r#"25: touchpoints[0].promises[2].due_field: callback.promised has no data field "when"; its date-time fields are [due]"#,
                r#"29: touchpoints[0].plays[0].when.promise_broken: unknown promise "nope""#,
                r#"30: touchpoints[0].plays[0].do[0].function: unknown function "sales""#,
            ],
        );
    }

    #[test]
    fn a_condition_may_list_the_values_it_accepts() {
        let map = |when: &str| {
            format!(
                r#"{HEAD}[[touchpoints]]
key = "order"
name = "Order"
stage = "fmot"
owners = ["logistics"]

[[touchpoints.promises]]
key = "d"
kind = "delivery_date"
made_when = {when}
"#
            )
        };
        let parsed = parse_journey(&map(r#"{ delivery = ["home", "pickup"] }"#)).unwrap();
        let (_, promise) = parsed.promises().next().unwrap();
        assert_eq!(
            promise.made_when,
            vec![("delivery".to_owned(), serde_json::json!(["home", "pickup"]))]
        );
        check(
            &map("{ delivery = [1, 2] }"),
            &[
                "15: touchpoints[0].promises[0].made_when.delivery: must be a string, an integer, a boolean or a list of strings (any of them)",
            ],
        );
        // The built-in default: orders that ship.
        let parsed = parse_journey(&map("{}").replace("made_when = {}\n", "")).unwrap();
        let (_, promise) = parsed.promises().next().unwrap();
        assert_eq!(
            promise.made_when,
            vec![("delivery".to_owned(), serde_json::json!(["home", "safe_place"]))]
        );
    }

    #[test]
    fn syntax_errors_have_a_line_too() {
        let errors = parse_journey("key = \"x\"\nname = \"X\"\n[[touchpoints]]\nkey = \n").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 4, "{errors:?}");
        let errors = parse_journey("key = \"x\"\nname = \"X\"\ncolour = \"red\"\n").unwrap_err();
        assert_eq!(
            (errors[0].line, errors[0].message.contains("colour")),
            (3, true),
            "{errors:?}"
        );
    }
}
