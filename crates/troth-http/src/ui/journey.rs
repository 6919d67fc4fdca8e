//! The journey pages: the heat map of stages × touchpoints, and one touchpoint's
//! drill-down (trend per day, owners, promises, the promises broken).
//!
//! Figures are rendered on the server so the pages work without script;
//! `journey.js` then keeps the heat map's figures current from the health JSON.
//! Its formatting mirrors [`percent`], [`whole`] and [`one_decimal`], and it reads
//! the colour thresholds from the page, so the two cannot disagree on a colour.

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::Value;
use troth_core::Timestamp;
use troth_core::health::Tally;
use troth_core::journey::{Due, JourneyMap, ServiceTarget, Touchpoint};
use troth_core::trend::{self, DayRange, Good, Verdict};
use troth_core::weakest::{EntityTallies, Judgement, Strictness};
use troth_store::{EventQuery, PromiseQuery, PromiseView, Store};

use super::html::{count, esc, page_with_script, url_segment};
use crate::ApiError;
use crate::extract::{invalid_param, unknown_param};
use crate::tracking::Zone;

type PageResult = Result<Option<String>, ApiError>;

const DAY_US: i64 = 86_400_000_000;
/// The range shown when none is asked for: this many days, ending on the last day with data.
pub const DEFAULT_DAYS: i64 = 7;
/// The longest range a page shows, so a drill-down's per-day reads stay few.
const MAX_DAYS: i64 = 92;
/// How often the heat map asks for new figures.
const REFRESH_SECONDS: u32 = 5;
/// Broken promises listed on a drill-down, the latest first.
const BROKEN_LISTED: usize = 50;

/// Whole UTC days, both ends included, counted since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days {
    pub first: i64,
    pub last: i64,
}

impl Days {
    /// From a page's `from`/`to` (`YYYY-MM-DD`, both included; empty means unset).
    /// Unset, `to` is the last day with data and `from` [`DEFAULT_DAYS`] before it.
    pub async fn from_params<S: Store>(store: &S, params: &[(String, String)]) -> Result<Days, ApiError> {
        let (mut first, mut last) = (None, None);
        for (name, value) in params {
            let day = match value.trim() {
                "" => None,
                text => Some(parse_day(name, text)?),
            };
            match name.as_str() {
                "from" => first = day,
                "to" => last = day,
                other => return Err(unknown_param(other, "from, to (dates, YYYY-MM-DD)")),
            }
        }
        let last = match last {
            Some(day) => day,
            None => last_day_with_data(store).await?,
        };
        let first = first.unwrap_or(last - (DEFAULT_DAYS - 1));
        if first > last {
            return Err(invalid_param(
                "from",
                format!("from ({}) is after to ({})", date(first), date(last)),
            ));
        }
        if last - first >= MAX_DAYS {
            return Err(invalid_param("from", format!("a page shows at most {MAX_DAYS} days")));
        }
        Ok(Days { first, last })
    }

    /// The same days as the page's query string.
    pub fn page_query(&self) -> String {
        format!("from={}&to={}", date(self.first), date(self.last))
    }

    fn iter(&self) -> impl Iterator<Item = i64> {
        self.first..=self.last
    }
}

pub(super) fn parse_day(name: &str, text: &str) -> Result<i64, ApiError> {
    Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z"))
        .filter(|_| text.len() == 10)
        .map(|t| t.micros().div_euclid(DAY_US))
        .ok_or_else(|| invalid_param(name, format!("{name} must be a date like 2026-11-23, not {text:?}")))
}

/// The day of the newest event stored, or today when there is none.
async fn last_day_with_data<S: Store>(store: &S) -> Result<i64, ApiError> {
    let newest = store
        .events(EventQuery {
            newest_first: true,
            limit: 1,
            ..Default::default()
        })
        .await?;
    let time = newest
        .events
        .first()
        .and_then(|e| serde_json::from_str::<Value>(&e.raw).ok())
        .and_then(|v| v["time"].as_str().and_then(Timestamp::parse_rfc3339))
        .unwrap_or_else(Timestamp::now);
    Ok(time.micros().div_euclid(DAY_US))
}

/// `20415` → `2025-11-23`.
pub fn date(day: i64) -> String {
    Timestamp(day * DAY_US).to_string()[..10].to_owned()
}

/// How a touchpoint is doing on its own figures: the worse of the share of settled
/// promises broken and the share of survey answers that were negative. The
/// drill-down's headline figure; the colour comes from [`level`].
fn worst_share(t: &Tally) -> Option<f64> {
    let settled = t.promises_kept + t.promises_broken;
    let broken = (settled > 0).then(|| t.promises_broken as f64 / settled as f64);
    let negative = (t.answers > 0).then(|| t.negative_answers as f64 / t.answers as f64);
    match (broken, negative) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The CSS class of a touchpoint's card: the weakest-link judgement
/// ([`troth_core::weakest::judge`]), so a card is red exactly when the ranking
/// scores it above zero, and never green while it is a weakest link.
fn level(t: &Touchpoint, tally: &Tally, entities: &[(String, Tally)], strictness: Strictness) -> &'static str {
    match troth_core::weakest::judge(t, tally, entities, strictness) {
        Judgement::Short => "h-bad",
        Judgement::Watch => "h-warn",
        Judgement::Meets => "h-good",
        Judgement::Unmeasured => "h-none",
    }
}

/// Rounds as JavaScript's `Math.round` does (half up), so both render the same text.
fn js_round(x: f64) -> f64 {
    (x + 0.5).floor()
}

pub(super) fn percent(share: Option<f64>) -> String {
    share.map_or("–".to_owned(), |x| format!("{} %", js_round(x * 100.0) as i64))
}

fn whole(x: Option<f64>) -> String {
    x.map_or("–".to_owned(), |x| (js_round(x) as i64).to_string())
}

pub(super) fn one_decimal(x: Option<f64>) -> String {
    x.map_or("–".to_owned(), |x| format!("{:.1}", js_round(x * 10.0) / 10.0))
}

fn negative_share(t: &Tally) -> Option<f64> {
    (t.answers > 0).then(|| t.negative_answers as f64 / t.answers as f64)
}

fn broken_share(t: &Tally) -> Option<f64> {
    t.promise_kept_rate().map(|kept| 1.0 - kept)
}

fn tally_of(tallies: &[(String, Tally)], touchpoint: &str) -> Tally {
    tallies
        .iter()
        .find(|(k, _)| k == touchpoint)
        .map(|(_, t)| *t)
        .unwrap_or_default()
}

/// The owners' names, as the map's functions call them.
pub(super) fn owner_names(map: &JourneyMap, t: &Touchpoint) -> String {
    t.owners
        .iter()
        .map(|key| {
            map.functions
                .iter()
                .find(|f| f.key == *key)
                .map_or(key.as_str(), |f| f.name.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn touchpoint_href(map: &JourneyMap, t: &Touchpoint, days: &Days) -> String {
    format!(
        "/ui/journeys/{}/touchpoints/{}?{}",
        url_segment(&map.key),
        url_segment(&t.key),
        days.page_query()
    )
}

/// The form that chooses the days shown; a plain GET, so it works without script.
pub(super) fn range_form(action: &str, days: &Days) -> String {
    format!(
        r#"<form class="range" method="get" action="{}"><label>from <input type="date" name="from" value="{}"></label>
<label>to <input type="date" name="to" value="{}"></label><button type="submit">Show</button>
<a href="{}">last {DEFAULT_DAYS} days of data</a></form>"#,
        esc(action),
        date(days.first),
        date(days.last),
        esc(action),
    )
}

/// The journey: its weakest links first, then the heat map (a column per stage, a
/// card per touchpoint coloured by the weakest-link judgement, each linking to its
/// drill-down), then the expectation chasm.
pub async fn journey<S: Store>(store: &S, zone: &Zone, map: &JourneyMap, params: &[(String, String)]) -> PageResult {
    let days = Days::from_params(store, params).await?;
    let self_path = format!("/ui/journeys/{}", url_segment(&map.key));
    let mut body = range_form(&self_path, &days);
    let _ = write!(
        body,
        r#"<p class="muted">{} to {} (UTC days), against the {} days before.</p>"#,
        date(days.first),
        date(days.last),
        days.last - days.first + 1,
    );
    // journey.js asks data-live-url for this part again and swaps what changed, so
    // the figures, colours and ranking stay current with one rendering, the server's.
    let _ = write!(
        body,
        r#"<div id="live" data-live-url="{self_path}/live?{}" data-refresh-seconds="{REFRESH_SECONDS}" data-timezone="{}" data-from="{}" data-to="{}">"#,
        esc(&days.page_query()),
        esc(zone.name()),
        date(days.first),
        date(days.last),
    );
    body.push_str(&live_sections(store, map, &days).await?);
    body.push_str(r#"</div><p id="refresh-status" class="muted" aria-live="polite">Figures as of page load.</p>"#);
    let tallies: HashMap<String, Tally> = store
        .health(Some(days.first), Some(days.last + 1))
        .await?
        .into_iter()
        .collect();
    let answers = store
        .survey_answers(Some(days.first * DAY_US), Some((days.last + 1) * DAY_US))
        .await?;
    body.push_str(&chasm_section(
        map,
        &troth_core::chasm::chasm(map, &answers, &tallies, 10),
    ));
    let (flow, truncated) =
        crate::journeys::map_against_data(store, map, Some(days.first), Some(days.last + 1)).await?;
    body.push_str(&flow_section(map, &flow, truncated));
    Ok(Some(page_with_script(
        &format!("Journey: {}", map.name),
        &body,
        "/assets/journey.js",
    )))
}

/// The part of the journey page journey.js keeps current, on its own.
pub async fn live<S: Store>(store: &S, map: &JourneyMap, params: &[(String, String)]) -> PageResult {
    let days = Days::from_params(store, params).await?;
    Ok(Some(live_sections(store, map, &days).await?))
}

/// The weakest links and the heat map, over `days` and against the days before.
async fn live_sections<S: Store>(store: &S, map: &JourneyMap, days: &Days) -> Result<String, ApiError> {
    let before = DayRange {
        first: days.first,
        last: days.last,
    }
    .previous();
    let now: HashMap<String, Tally> = store
        .health(Some(days.first), Some(days.last + 1))
        .await?
        .into_iter()
        .collect();
    let then: HashMap<String, Tally> = store
        .health(Some(before.first), Some(before.last + 1))
        .await?
        .into_iter()
        .collect();
    let entities = store.entity_health(Some(days.first), Some(days.last + 1)).await?;
    // The cards are judged as strictly as the ranking beside them.
    let strictness = Strictness::of_view(map, &now, &entities);
    let mut out = weakest_links_section(map, &now, &entities, days);
    out.push_str(&format!(
        r#"<h2 id="touchpoints">Every touchpoint</h2><div class="legend" aria-label="legend"><span><i class="swatch h-bad"></i>falls short of its targets (a weakest link)</span><span><i class="swatch h-warn"></i>over a target, too few cases to be sure</span><span><i class="swatch h-good"></i>meets its targets</span><span><i class="swatch h-none"></i>nothing measured</span>
<span><span class="small-sample">⚠</span> fewer than {} answers or settled promises: read with care</span> <span>▲▼ against the {} days before</span></div>"#,
        troth_core::trend::SMALL_SAMPLE,
        days.last - days.first + 1,
    ));
    let _ = write!(
        out,
        r#"<div id="heatmap" class="heatmap" style="--stages:{}">"#,
        map.stages.len().max(1),
    );
    let empty = Tally::default();
    for stage in &map.stages {
        let (plain, term) = stage.plain_name();
        let _ = write!(
            out,
            r#"<section class="stage" data-stage="{}"><h2>{}{}</h2>"#,
            esc(&stage.key),
            esc(&plain),
            term.map(|t| format!(r#"<span class="subtitle">{}</span>"#, esc(t)))
                .unwrap_or_default(),
        );
        for t in map.touchpoints.iter().filter(|t| t.stage == stage.key) {
            out.push_str(&cell(
                map,
                t,
                entities.get(&t.key).map_or(&[][..], Vec::as_slice),
                now.get(&t.key).unwrap_or(&empty),
                then.get(&t.key).unwrap_or(&empty),
                days,
                strictness,
            ));
        }
        out.push_str("</section>");
    }
    out.push_str("</div>");
    Ok(out)
}

/// Who is accountable at a touchpoint: each entity its events name, with its share
/// failing on each signal, culprits first and marked.
fn accountable_section(t: &Touchpoint, total: &Tally, entities: &[(String, Tally)], strictness: Strictness) -> String {
    if entities.is_empty() {
        return String::new();
    }
    let found = troth_core::culprit::culprits(
        total,
        entities,
        |signal| troth_core::weakest::allowed(t, signal),
        strictness.level,
    );
    let mut out = String::from(
        r#"<h2 id="accountable">Who is accountable</h2><p class="muted">Each carrier, driver, team, agent, store, SKU, supplier or payment method the events name here. A culprit (red) misses the target and fails credibly more than the rest, or alone carries the touchpoint’s shortfall; merely highest is not enough (method: docs/journey-map.md#culprits).</p><div class="scroll"><table id="entities"><thead><tr><th>entity</th><th>promises broken</th><th>negative answers</th><th>outcomes failed</th></tr></thead><tbody>"#,
    );
    let mut rows: Vec<&(String, Tally)> = entities.iter().collect();
    // Culprits first (worst first), then by how much each was measured.
    let rank = |entity: &str| found.iter().position(|c| c.entity == entity).unwrap_or(usize::MAX);
    rows.sort_by_key(|(entity, tally)| {
        let measured = tally.promises_kept + tally.promises_broken + tally.answers + tally.outcomes;
        (rank(entity), -measured, entity.clone())
    });
    for (entity, tally) in rows.into_iter().take(ENTITIES_SHOWN) {
        let culprit = found.iter().any(|c| &c.entity == entity);
        let cells: Vec<String> = troth_core::culprit::signal_counts(tally)
            .into_iter()
            .map(|(signal, failed, of)| {
                if of == 0 {
                    return "–".to_owned();
                }
                let named = found.iter().any(|c| &c.entity == entity && c.signal == signal);
                let text = format!("{} of {}", percent(Some(failed as f64 / of as f64)), count(of));
                if named {
                    format!("<strong>{text}</strong>")
                } else {
                    text
                }
            })
            .collect();
        let _ = write!(
            out,
            r#"<tr{}><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            if culprit { r#" class="bad""# } else { "" },
            esc(entity),
            if culprit { " · culprit" } else { "" },
            cells[0],
            cells[1],
            cells[2],
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// Entities listed on a touchpoint's page.
const ENTITIES_SHOWN: usize = 30;

/// Weakest links shown on the journey page.
const LINKS_SHOWN: usize = 6;

/// The touchpoints furthest below their targets, worst first, with their owners and
/// what failed (the ranking of `/api/v1/journeys/{key}/weakest-links`).
fn weakest_links_section(
    map: &JourneyMap,
    tallies: &HashMap<String, Tally>,
    entities: &EntityTallies,
    days: &Days,
) -> String {
    let links: Vec<_> = troth_core::weakest::weakest_links(map, tallies, entities, None)
        .into_iter()
        .filter(|l| l.score > 0.0)
        .take(LINKS_SHOWN)
        .collect();
    let mut out = String::from(
        r#"<section id="weakest-links"><h2>Weakest links</h2><p class="muted">The touchpoints furthest below their targets, weighed by how many customers met them (score: the shortfall × ln(1 + exposures)); their cards below are red.</p>"#,
    );
    if links.is_empty() {
        out.push_str(r#"<p class="muted">Every touchpoint with something measured meets its targets in these days.</p></section>"#);
        return out;
    }
    out.push_str(r#"<ol class="links">"#);
    for link in &links {
        let Some(t) = map.touchpoint(&link.touchpoint) else {
            continue;
        };
        let stage = map
            .stages
            .iter()
            .find(|s| s.key == t.stage)
            .map_or(t.stage.clone(), |s| s.plain_name().0);
        let _ = write!(
            out,
            r#"<li data-touchpoint="{key}"><a class="link-name" href="{href}">{name}</a> <span class="muted">· {stage} · owned by {owners} · score {score:.2}</span><br><span class="why">{why}</span></li>"#,
            key = esc(&t.key),
            href = esc(&touchpoint_href(map, t, days)),
            name = esc(&t.name),
            stage = esc(&stage),
            owners = esc(&owner_names(map, t)),
            score = link.score,
            why = esc(&link.why),
        );
    }
    out.push_str("</ol></section>");
    out
}

/// The chasm as bars on a satisfaction axis: per stage, what the stages before it
/// led customers to expect against what it delivered, a sentence saying where the
/// drop is, then the cohort it swallowed.
/// The map against the data: the paths customers took per stage, the drop-off
/// along each link of the map, moves it does not link, touchpoints nothing reached
/// and event types that count nowhere.
fn flow_section(map: &JourneyMap, flow: &troth_core::flow::MapAgainstData, truncated: bool) -> String {
    let name = |key: &str| map.touchpoint(key).map_or(key.to_owned(), |t| t.name.clone());
    let path = |keys: &[String]| keys.iter().map(|k| esc(&name(k))).collect::<Vec<_>>().join(" → ");
    let mut out = String::from(r#"<section id="flow"><h2>The map against the data</h2>"#);
    let _ = write!(
        out,
        r#"<p class="muted">How {} customers really moved through the touchpoints in these days: each customer's first visit to a touchpoint per day, in the order of the log.{}</p>"#,
        count(flow.customers as i64),
        if truncated {
            " Too many to read at once: some customers are left out; choose fewer days."
        } else {
            ""
        },
    );
    if flow.customers == 0 {
        out.push_str("<p>No customer met a touchpoint of this map in these days.</p>");
    }
    out.push_str(r#"<h3>Paths taken, per stage</h3><div class="scroll"><table class="wide" id="flow-paths"><thead><tr><th>Stage</th><th class="num">Customers</th><th class="num">Share</th><th>Path</th></tr></thead><tbody>"#);
    for stage in flow.stages.iter().filter(|s| !s.paths.is_empty()) {
        let plain = map
            .stages
            .iter()
            .find(|s| s.key == stage.stage)
            .map_or(stage.stage.clone(), |s| s.plain_name().0);
        for p in &stage.paths {
            let _ = write!(
                out,
                r#"<tr><td class="words">{}</td><td class="num">{}</td><td class="num">{}</td><td class="words">{}</td></tr>"#,
                esc(&plain),
                count(p.customers as i64),
                // A few customers of thousands are not "0 %".
                if p.share > 0.0 && p.share < 0.005 {
                    "< 1 %".to_owned()
                } else {
                    percent(Some(p.share))
                },
                path(&p.touchpoints),
            );
        }
    }
    out.push_str("</tbody></table></div>");
    out.push_str(r#"<h3>Where customers stop</h3><p class="muted">For each link of the map: of the customers who met the first touchpoint, how many met the next one afterwards.</p><div class="scroll"><table class="wide" id="flow-links"><thead><tr><th>From</th><th>To</th><th class="num">Reached</th><th class="num">Went on</th><th class="num">Drop-off</th></tr></thead><tbody>"#);
    for link in &flow.links {
        let _ = write!(
            out,
            r#"<tr><td class="words">{}</td><td class="words">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(&name(&link.from)),
            esc(&name(&link.to)),
            count(link.reached as i64),
            count(link.went_on as i64),
            percent(link.drop_off),
        );
    }
    out.push_str("</tbody></table></div>");
    if !flow.off_map.is_empty() {
        out.push_str(r#"<h3>Moves the map does not show</h3><p class="muted">Customers who went from one touchpoint straight to another on the same day, where the map has no link between them.</p><ul id="flow-off-map">"#);
        for t in &flow.off_map {
            let _ = write!(
                out,
                "<li>{} → {}: {} customers</li>",
                esc(&name(&t.from)),
                esc(&name(&t.to)),
                count(t.customers as i64)
            );
        }
        out.push_str("</ul>");
    }
    out.push_str(r#"<h3>Touchpoints no event reached</h3>"#);
    if flow.silent.is_empty() {
        out.push_str(r#"<p id="flow-silent">Every touchpoint of the map saw events in these days.</p>"#);
    } else {
        let _ = write!(
            out,
            r#"<p id="flow-silent">{}: nothing counted as their exposure arrived. Either customers do not pass there, or the events that say so are not sent.</p>"#,
            flow.silent.iter().map(|k| esc(&name(k))).collect::<Vec<_>>().join(", ")
        );
    }
    out.push_str(r#"<h3>Events that count at no touchpoint</h3>"#);
    if flow.unmapped.is_empty() {
        out.push_str(r#"<p id="flow-unmapped">Every event type stored counts at a touchpoint.</p>"#);
    } else {
        out.push_str(r#"<p class="muted">Stored since the store began, but no touchpoint lists them as exposure: operational events (positions, stock counts), or moments the map has yet to name.</p><ul id="flow-unmapped">"#);
        for u in &flow.unmapped {
            let _ = write!(
                out,
                "<li><code>{}</code>: {} events{}</li>",
                esc(&u.event_type),
                count(u.events as i64),
                if u.catalogue { "" } else { " (an extension type)" }
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
    out
}

fn chasm_section(map: &JourneyMap, chasm: &troth_core::chasm::Chasm) -> String {
    const LEFT: f64 = 60.0;
    const TOP: f64 = 10.0;
    const H: f64 = 150.0;
    const GROUP_W: f64 = 130.0;
    const BAR_W: f64 = 34.0;
    let plain = |key: &str| {
        map.stages
            .iter()
            .find(|s| s.key == key)
            .map_or(key.to_owned(), |s| s.plain_name().0)
    };
    let width = LEFT + GROUP_W * chasm.stages.len() as f64 + 10.0;
    let mut out = String::from(r#"<section id="chasm"><h2>Where expectations and experience part</h2>"#);
    let answers: i64 = chasm.stages.iter().map(|s| s.answers).sum();
    let sentence = match chasm.deepest() {
        Some(s) => format!(
            "Customers were let down most at {}: the stages before it led them to expect {} satisfaction, and it delivered {}{}.",
            plain(&s.stage),
            percent(s.expected),
            percent(s.delivered),
            if troth_core::trend::small_sample(s.answers) {
                format!(" (from only {} answers: read with care)", count(s.answers))
            } else {
                format!(" (from {} answers)", count(s.answers))
            },
        ),
        None if answers == 0 => "No survey answer or review in these days.".to_owned(),
        None => "No stage delivered less than the stages before it led customers to expect.".to_owned(),
    };
    let _ = write!(out, r#"<p id="chasm-sentence"><strong>{}</strong></p>"#, esc(&sentence));
    let _ = write!(
        out,
        r#"<div class="scroll"><svg class="chart chasm" viewBox="0 0 {width} {}" role="img" aria-label="expected and delivered satisfaction per stage">"#,
        TOP + H + 40.0
    );
    let y = |v: f64| TOP + H - v.clamp(0.0, 1.0) * H;
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{y:.1}" class="axis" text-anchor="end" dy=".35em">{} %</text>"##,
            width - 10.0,
            LEFT - 6.0,
            (tick * 100.0) as i64,
            y = y(tick),
        );
    }
    let _ = write!(
        out,
        r#"<text x="10" y="{:.1}" class="axis" transform="rotate(-90 10 {:.1})" text-anchor="middle" dy=".35em">satisfaction</text>"#,
        TOP + H / 2.0,
        TOP + H / 2.0
    );
    for (i, stage) in chasm.stages.iter().enumerate() {
        let x = LEFT + GROUP_W * i as f64 + 20.0;
        for (j, (value, class, label)) in [
            (stage.expected, "expected", "expected"),
            (stage.delivered, "delivered", "delivered"),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(v) = value {
                let bar_x = x + j as f64 * (BAR_W + 6.0);
                let _ = write!(
                    out,
                    r#"<rect class="{class}" x="{bar_x:.1}" y="{:.1}" width="{BAR_W}" height="{:.1}"><title>{label}: {}</title></rect><text x="{:.1}" y="{:.1}" class="value" text-anchor="middle">{}</text>"#,
                    y(v),
                    (TOP + H - y(v)).max(1.0),
                    percent(Some(v)),
                    bar_x + BAR_W / 2.0,
                    y(v) - 4.0,
                    percent(Some(v)),
                );
            }
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" class="axis stage" text-anchor="middle">{}</text>"#,
            x + BAR_W + 3.0,
            TOP + H + 18.0,
            esc(&plain(&stage.stage)),
        );
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" class="axis" text-anchor="middle">{} answers</text>"#,
            x + BAR_W + 3.0,
            TOP + H + 32.0,
            count(stage.answers),
        );
    }
    out.push_str(
        r#"</svg></div><p class="legend"><span><i class="swatch expected"></i>expected: the mean satisfaction of the answers at the stages before</span><span><i class="swatch delivered"></i>delivered: at this stage</span><span class="muted">Satisfaction: NPS ÷ 10, (CSAT − 1) ÷ 4, (CES − 1) ÷ 6 (CES 2.0, 7 best), (stars − 1) ÷ 4, as a share of the best.</span></p>"#,
    );
    let cohort = &chasm.cohort;
    let names = |keys: &[String]| keys.iter().map(|k| plain(k)).collect::<Vec<_>>().join(", ");
    let _ = write!(
        out,
        r#"<p id="chasm-cohort">{} of {} customers who answered both early ({}) and late ({}) were pleased early and let down late"#,
        count(cohort.count as i64),
        count(cohort.answered_both as i64),
        esc(&names(&cohort.early_stages)),
        esc(&names(&cohort.late_stages)),
    );
    if cohort.customers.is_empty() {
        out.push_str(".</p>");
    } else {
        out.push_str(": ");
        let links: Vec<String> = cohort
            .customers
            .iter()
            .map(|c| format!(r#"<a href="/ui/customers/{}">{}</a>"#, url_segment(c), esc(c)))
            .collect();
        out.push_str(&links.join(", "));
        out.push_str("</p>");
    }
    out.push_str("</section>");
    out
}

/// One heat-map card: its figures, each with its change against the days before
/// and a warning where it rests on few cases. `data-f` names a figure for tests and
/// tools; journey.js swaps whole cards.
fn cell(
    map: &JourneyMap,
    t: &Touchpoint,
    entities: &[(String, Tally)],
    tally: &Tally,
    before: &Tally,
    days: &Days,
    strictness: Strictness,
) -> String {
    let settled = tally.promises_kept + tally.promises_broken;
    let mut figures = format!(
        r#"<span class="fig"><b data-f="exposure">{}</b> exposures{}</span>"#,
        count(tally.exposure),
        chg(
            trend::count_change(tally.exposure, before.exposure, Good::Higher),
            " %",
            false
        ),
    );
    if !t.promises.is_empty() {
        let _ = write!(
            figures,
            r#"<span class="fig">promises kept <b data-f="kept_rate">{}</b> of <b data-f="settled">{}</b>{}{}</span>"#,
            percent(tally.promise_kept_rate()),
            count(settled),
            chg(
                trend::share_change(tally.promise_kept_rate(), before.promise_kept_rate(), Good::Higher),
                " pts",
                true
            ),
            flag(settled, None),
        );
    }
    if tally.outcomes > 0 {
        let _ = write!(
            figures,
            r#"<span class="fig">failed <b data-f="failure_rate">{}</b> of <b data-f="outcomes">{}</b> outcomes{}{}</span>"#,
            percent(tally.failure_rate()),
            count(tally.outcomes),
            chg(
                trend::share_change(tally.failure_rate(), before.failure_rate(), Good::Lower),
                " pts",
                true
            ),
            flag(tally.outcomes, None),
        );
    }
    let _ = write!(
        figures,
        r#"<span class="fig"><b data-f="answers">{}</b> {}, <b data-f="negative_rate">{}</b> negative{}{}</span>"#,
        count(tally.answers),
        if tally.answers == 1 { "answer" } else { "answers" },
        percent(negative_share(tally)),
        chg(
            trend::share_change(negative_share(tally), negative_share(before), Good::Lower),
            " pts",
            true
        ),
        flag(tally.answers, None),
    );
    if let Some(nps) = tally.nps() {
        let _ = write!(
            figures,
            r#"<span class="fig">NPS <b data-f="nps">{}</b>{}</span>"#,
            whole(Some(nps)),
            flag(tally.nps_answers, Some("answers")),
        );
    }
    if let Some(csat) = tally.csat() {
        let _ = write!(
            figures,
            r#"<span class="fig">CSAT <b data-f="csat">{}</b> of 5{}</span>"#,
            one_decimal(Some(csat)),
            flag(tally.csat_answers, Some("answers")),
        );
    }
    format!(
        r#"<a class="cell {level}" href="{href}" data-touchpoint="{key}"><strong>{name}</strong>
{figures}<span class="owners">{owners}</span></a>"#,
        level = level(t, tally, entities, strictness),
        href = esc(&touchpoint_href(map, t, days)),
        key = esc(&t.key),
        name = esc(&t.name),
        owners = esc(&owner_names(map, t)),
    )
}

/// A change against the days before, as a small arrow and size; coloured by whether
/// it is good news when `coloured` (volume is neither).
fn chg(change: Option<trend::Change>, unit: &str, coloured: bool) -> String {
    match change {
        Some(c) if c.verdict != Verdict::Same => {
            let class = match c.verdict {
                Verdict::Better if coloured => "good",
                Verdict::Worse if coloured => "bad",
                _ => "muted",
            };
            format!(
                r#" <span class="chg {class}" title="against the days before">{}</span>"#,
                esc(&super::overview::change_text(c, unit))
            )
        }
        _ => String::new(),
    }
}

/// The small-sample warning after a figure from `n` cases: `⚠ few`, or with `noun`
/// where the line does not already say how many (`NPS -40 ⚠ from 5 answers`).
fn flag(n: i64, noun: Option<&str>) -> String {
    if !trend::small_sample(n) {
        return String::new();
    }
    let text = match noun {
        Some(noun) => format!("⚠ from {} {noun}", count(n)),
        None => "⚠ few".to_owned(),
    };
    format!(
        r#" <span class="small-sample" title="fewer than {} — read with care">{text}</span>"#,
        trend::SMALL_SAMPLE
    )
}

/// One touchpoint: its figures over the days, its trend per day, owners, promises,
/// and the promises broken there with their customers.
pub async fn touchpoint<S: Store>(
    store: &S,
    zone: &Zone,
    map: &JourneyMap,
    touchpoint: &str,
    params: &[(String, String)],
) -> PageResult {
    let Some(t) = map.touchpoint(touchpoint) else {
        return Ok(None);
    };
    let days = Days::from_params(store, params).await?;
    let health: HashMap<String, Tally> = store
        .health(Some(days.first), Some(days.last + 1))
        .await?
        .into_iter()
        .collect();
    let total = health.get(&t.key).copied().unwrap_or_default();
    let mut all_entities = store.entity_health(Some(days.first), Some(days.last + 1)).await?;
    // Judged as strictly as the journey page's ranking of the same days.
    let strictness = Strictness::of_view(map, &health, &all_entities);
    let entities = all_entities.remove(&t.key).unwrap_or_default();
    let mut per_day = Vec::new();
    for day in days.iter() {
        per_day.push((day, tally_of(&store.health(Some(day), Some(day + 1)).await?, &t.key)));
    }
    let journey_path = format!("/ui/journeys/{}", url_segment(&map.key));
    let stage = map.stages.iter().find(|s| s.key == t.stage);
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<p><a href="{}?{}">← {}</a> · {} · owned by <strong id="owners">{}</strong> · channels: {}</p>"#,
        journey_path,
        days.page_query(),
        esc(&map.name),
        esc(stage.map_or(&t.stage, |s| &s.name)),
        esc(&owner_names(map, t)),
        esc(&t.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")),
    );
    body.push_str(&range_form(
        &format!("{journey_path}/touchpoints/{}", url_segment(&t.key)),
        &days,
    ));
    let _ = write!(
        body,
        r#"<div class="cards" id="figures">
<div class="card {level}"><div class="n">{}</div><div class="l">the worse of broken and negative</div></div>
<div class="card"><div class="n">{}</div><div class="l">exposures</div></div>
<div class="card"><div class="n">{}</div><div class="l">promises kept ({} of {})</div></div>
<div class="card"><div class="n">{}</div><div class="l">promises broken</div></div>
<div class="card"><div class="n">{}</div><div class="l">negative answers (of {})</div></div>
<div class="card"><div class="n">{}</div><div class="l">NPS</div></div>
<div class="card"><div class="n">{}</div><div class="l">CSAT (1–5)</div></div></div>"#,
        percent(worst_share(&total)),
        total.exposure,
        percent(total.promise_kept_rate()),
        total.promises_kept,
        total.promises_kept + total.promises_broken,
        total.promises_broken,
        percent(negative_share(&total)),
        total.answers,
        whole(total.nps()),
        one_decimal(total.csat()),
        level = level(t, &total, &entities, strictness),
    );
    body.push_str(&accountable_section(t, &total, &entities, strictness));
    // Where stock is claimed, the evidence per store and SKU is one click away.
    if t.exposure.iter().any(|e| e == "availability.shown") {
        let _ = write!(
            body,
            r#"<p id="inventory-link"><a href="/ui/inventory?{}">Inventory truthfulness per store and SKU</a>: phantom stock, receipts the counts contradict, who owns the fix.</p>"#,
            days.page_query()
        );
    }
    body.push_str("<h2>Per day</h2>");
    body.push_str(&trend_chart(&per_day));
    body.push_str(&day_table(&per_day));
    body.push_str(&promise_definitions(t));
    body.push_str(&broken_promises(store, zone, t, &days).await?);
    if !t.next.is_empty() {
        body.push_str("<h2>Where customers go next</h2><p>");
        for (i, next) in t.next.iter().filter_map(|k| map.touchpoint(k)).enumerate() {
            let _ = write!(
                body,
                r#"{}<a href="{}">{}</a>"#,
                if i > 0 { " · " } else { "" },
                esc(&touchpoint_href(map, next, &days)),
                esc(&next.name)
            );
        }
        body.push_str("</p>");
    }
    // No reload: a lead reading down the broken promises should not lose their place.
    Ok(Some(super::html::page(&format!("Touchpoint: {}", t.name), None, &body)))
}

/// Exposure as bars (left scale), the shares of promises broken and answers
/// negative as lines (0–100 %), one step per day. Inline SVG: no script needed.
fn trend_chart(per_day: &[(i64, Tally)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 44.0;
    const RIGHT: f64 = 44.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 28.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let step = plot_w / per_day.len().max(1) as f64;
    let max_exposure = per_day.iter().map(|(_, t)| t.exposure).max().unwrap_or(0).max(1);
    let y_count = |n: i64| TOP + plot_h - n as f64 / max_exposure as f64 * plot_h;
    let y_share = |s: f64| TOP + plot_h - s * plot_h;
    let mut svg = format!(
        r##"<svg class="trend" id="trend" viewBox="0 0 {W} {H}" role="img" aria-label="exposure, promises broken and negative answers per day">
<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#c9d0db"/>
<text x="{tx}" y="{TOP}" class="axis" text-anchor="end" dy=".8em">{max_exposure}</text><text x="{tx}" y="{bottom}" class="axis" text-anchor="end">0</text>
<text x="{sx}" y="{TOP}" class="axis" dy=".8em">100 %</text><text x="{sx}" y="{mid}" class="axis">50 %</text>"##,
        bottom = TOP + plot_h,
        right = W - RIGHT,
        tx = LEFT - 4.0,
        sx = W - RIGHT + 4.0,
        mid = y_share(0.5),
    );
    let label_every = (per_day.len() / 10).max(1);
    for (i, (day, t)) in per_day.iter().enumerate() {
        let x = LEFT + i as f64 * step;
        let y = y_count(t.exposure);
        let _ = write!(
            svg,
            r#"<rect class="exposure" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"><title>{}: {} exposures, {} broken of {} settled, {} negative of {} answers</title></rect>"#,
            x + step * 0.15,
            step * 0.7,
            TOP + plot_h - y,
            date(*day),
            t.exposure,
            t.promises_broken,
            t.promises_kept + t.promises_broken,
            t.negative_answers,
            t.answers,
        );
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" class="axis" text-anchor="middle">{}</text>"#,
                x + step / 2.0,
                H - 8.0,
                &date(*day)[5..]
            );
        }
    }
    for (class, share) in [
        ("broken", broken_share as fn(&Tally) -> Option<f64>),
        ("negative", negative_share),
    ] {
        // A day without a figure breaks the line rather than drawing it at zero.
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for (i, (_, t)) in per_day.iter().enumerate() {
            match share(t) {
                Some(s) => {
                    let x = LEFT + (i as f64 + 0.5) * step;
                    if let Some(run) = runs.last_mut() {
                        run.push(format!("{x:.1},{:.1}", y_share(s)));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let _ = write!(svg, r#"<polyline class="{class}" points="{}"/>"#, run.join(" "));
            if run.len() == 1 {
                let (x, y) = run[0].split_once(',').unwrap_or(("0", "0"));
                let _ = write!(svg, r#"<circle class="{class}" cx="{x}" cy="{y}" r="3"/>"#);
            }
        }
    }
    svg.push_str("</svg>");
    svg.push_str(
        r#"<p class="legend"><span><i class="swatch exposure"></i>exposures (left scale)</span><span><i class="swatch broken"></i>promises broken, share of settled</span><span><i class="swatch negative"></i>survey answers negative, share</span></p>"#,
    );
    svg
}

fn day_table(per_day: &[(i64, Tally)]) -> String {
    let mut out = String::from(
        r#"<table id="days"><tr><th>day</th><th class="num">exposures</th><th class="num">kept</th><th class="num">broken</th><th class="num">broken share</th><th class="num">answers</th><th class="num">negative</th><th class="num">NPS</th><th class="num">CSAT</th></tr>"#,
    );
    for (day, t) in per_day.iter().rev() {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            date(*day),
            t.exposure,
            t.promises_kept,
            t.promises_broken,
            percent(broken_share(t)),
            t.answers,
            percent(negative_share(t)),
            whole(t.nps()),
            one_decimal(t.csat()),
        );
    }
    out.push_str("</table>");
    out
}

/// What the map promises at this touchpoint.
fn promise_definitions(t: &Touchpoint) -> String {
    if t.promises.is_empty() {
        return r#"<h2>Promises</h2><p class="muted">No promise is made at this touchpoint.</p>"#.to_owned();
    }
    let mut out = String::from(
        "<h2>Promises</h2><table><tr><th>promise</th><th>made by</th><th>due</th><th>kept by</th><th>broken by</th></tr>",
    );
    for p in &t.promises {
        let due = match &p.due {
            Due::Field(field) => format!("data.{field}"),
            Due::AfterSeconds(s) if s % 3600 == 0 => format!("{} h after", s / 3600),
            Due::AfterSeconds(s) => format!("{s} s after"),
            Due::ServiceLevel(ServiceTarget::FirstResponse) => "first-response service level".to_owned(),
            Due::ServiceLevel(ServiceTarget::Resolution) => "resolution service level".to_owned(),
        };
        let _ = write!(
            out,
            "<tr><td>{}{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(&p.key),
            p.kind
                .as_ref()
                .filter(|k| **k != p.key)
                .map(|k| format!(r#" <span class="tag">{}</span>"#, esc(k)))
                .unwrap_or_default(),
            esc(&p.made_by),
            esc(&due),
            esc(&p.kept_by.join(", ")),
            esc(&if p.broken_by.is_empty() {
                "the clock".to_owned()
            } else {
                p.broken_by.join(", ")
            }),
        );
    }
    out.push_str("</table>");
    out
}

/// The promises of this touchpoint broken and due in the days shown, the latest first.
async fn broken_promises<S: Store>(store: &S, zone: &Zone, t: &Touchpoint, days: &Days) -> Result<String, ApiError> {
    if t.promises.is_empty() {
        return Ok(String::new());
    }
    let mut query = PromiseQuery {
        touchpoints: Some(vec![t.key.clone()]),
        state: Some("broken".into()),
        due_from_us: Some(days.first * DAY_US),
        due_to_us: Some((days.last + 1) * DAY_US),
        limit: 1000,
        ..Default::default()
    };
    // Pages come oldest first; keep the latest few while counting them all.
    let mut latest: Vec<PromiseView> = Vec::new();
    let mut count = 0usize;
    loop {
        let page = store.promises(query.clone()).await?;
        count += page.promises.len();
        latest.extend(page.promises);
        let keep_from = latest.len().saturating_sub(BROKEN_LISTED);
        latest.drain(..keep_from);
        match page.next {
            Some(after) => query.after = Some(after),
            None => break,
        }
    }
    let mut out = format!("<h2>Broken promises due in these days: {count}</h2>");
    if latest.is_empty() {
        out.push_str(r#"<p class="muted" id="broken-promises">None.</p>"#);
        return Ok(out);
    }
    if count > latest.len() {
        let _ = write!(out, r#"<p class="muted">The latest {} are listed.</p>"#, latest.len());
    }
    out.push_str(
        r#"<table id="broken-promises"><tr><th>promise</th><th>about</th><th>customer</th><th>due</th><th>broken</th></tr>"#,
    );
    for p in latest.iter().rev() {
        let customer = p
            .customer
            .as_ref()
            .and_then(customer_key)
            .map(|key| format!(r#"<a href="/ui/customers/{}">{}</a>"#, url_segment(&key), esc(&key)))
            .unwrap_or_else(|| "–".to_owned());
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td>{customer}</td><td class="muted">{}</td><td class="muted">{}</td></tr>"#,
            esc(&p.key.replace('_', " ")),
            super::pages::subject_link(&p.subject),
            esc(&super::pages::clock(zone, &p.due)),
            esc(&p
                .settled_at
                .as_deref()
                .map_or("–".to_owned(), |t| super::pages::clock(zone, t))),
        );
    }
    out.push_str("</table>");
    Ok(out)
}

/// A customer key from a customer ref as an event sent it: the sender's id, else an
/// identity key that `/ui/customers/{key}` resolves.
pub(super) fn customer_key(customer: &Value) -> Option<String> {
    if let Some(id) = customer["id"].as_str() {
        return Some(id.to_owned());
    }
    for kind in ["email", "phone"] {
        if let Some(value) = customer[kind].as_str() {
            return Some(format!("{kind}:{value}"));
        }
    }
    let (system, id) = customer["external"].as_object()?.iter().next()?;
    Some(format!("ext:{system}:{}", id.as_str()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_round_half_up_like_the_script() {
        assert_eq!(percent(Some(0.125)), "13 %");
        assert_eq!(percent(None), "–");
        assert_eq!(whole(Some(-12.5)), "-12");
        assert_eq!(whole(Some(-0.4)), "0");
        assert_eq!(one_decimal(Some(4.25)), "4.3");
    }

    #[test]
    fn the_colour_is_the_weakest_link_judgement() {
        let map = troth_core::journey::parse_journey(include_str!("../../../../journeys/retail.toml")).unwrap();
        let window = map.touchpoint("delivery_window").unwrap();
        let t = |kept, broken, exposure| Tally {
            exposure,
            promises_kept: kept,
            promises_broken: broken,
            ..Default::default()
        };
        let one = Strictness::shared_by(1);
        assert_eq!(level(window, &t(0, 0, 10), &[], one), "h-none");
        assert_eq!(level(window, &t(99, 1, 100), &[], one), "h-good");
        assert_eq!(
            level(window, &t(4, 1, 5), &[], one),
            "h-warn",
            "over target, too few to be sure"
        );
        assert_eq!(level(window, &t(70, 30, 100), &[], one), "h-bad", "a weakest link");
    }

    #[test]
    fn the_accountable_table_puts_the_culprit_first_and_marks_it() {
        let map = troth_core::journey::parse_journey(include_str!("../../../../journeys/retail.toml")).unwrap();
        let window = map.touchpoint("delivery_window").unwrap();
        let t = |kept, broken| Tally {
            exposure: kept + broken,
            promises_kept: kept,
            promises_broken: broken,
            ..Default::default()
        };
        let entities = vec![
            ("carrier:fast".to_owned(), t(198, 2)),
            ("carrier:slow".to_owned(), t(60, 40)),
            ("carrier:small".to_owned(), t(3, 0)),
        ];
        let mut total = Tally::default();
        entities.iter().for_each(|(_, tally)| total.add(tally));
        let html = accountable_section(window, &total, &entities, Strictness::shared_by(4));
        let rows: Vec<&str> = html.split("<tr").skip(2).collect();
        assert_eq!(rows.len(), 3, "{html}");
        assert!(
            rows[0].starts_with(r#" class="bad"><td><code>carrier:slow</code> · culprit"#),
            "{html}"
        );
        assert!(rows[0].contains("<strong>40 % of 100</strong>"), "{html}");
        // The rest by how much each was measured, unmarked.
        assert!(
            rows[1].contains("carrier:fast") && !rows[1].contains("culprit"),
            "{html}"
        );
        assert!(rows[2].contains("carrier:small"), "{html}");
        assert!(accountable_section(window, &total, &[], Strictness::shared_by(4)).is_empty());
    }

    #[test]
    fn customer_refs_become_keys_the_customer_page_resolves() {
        let key = |v: Value| customer_key(&v);
        assert_eq!(
            key(serde_json::json!({"id": "c-1", "email": "a@b"})).as_deref(),
            Some("c-1")
        );
        assert_eq!(key(serde_json::json!({"email": "a@b"})).as_deref(), Some("email:a@b"));
        assert_eq!(
            key(serde_json::json!({"external": {"shop": "42"}})).as_deref(),
            Some("ext:shop:42")
        );
        assert_eq!(key(serde_json::json!({})), None);
    }
}
