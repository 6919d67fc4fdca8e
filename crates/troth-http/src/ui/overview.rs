//! `/`: the morning overview, what a customer-experience lead asks first. Promises
//! due today and this week against last week, the weakest touchpoints with their
//! owners, deliveries on the road and late now, open cases breaching their SLA.
//! Every number links to the list behind it, and the promise figures are the counts
//! of `GET /api/v1/journeys/{key}/promises` with the same filters.

use std::collections::HashMap;
use std::fmt::Write;

use troth_core::Timestamp;
use troth_core::health::Tally;
use troth_core::journey::JourneyMap;
use troth_core::trend::{self, DayRange, Good, Periods, Verdict};
use troth_store::{PromiseQuery, Store};

use super::html::{count, esc, page, url_segment};
use super::journey::{date, parse_day, percent};
use crate::ApiError;
use crate::extract::unknown_param;

type PageResult = Result<Option<String>, ApiError>;

pub(super) const DAY_US: i64 = 86_400_000_000;
/// Weak touchpoints named on the overview.
const WORST_SHOWN: usize = 5;
/// Open case breaches counted at most (the list pages through them).
pub(super) const BREACHES_COUNTED: usize = 10_000;

/// The promise states the overview counts, in the order of its rows, with what a
/// row is called. `cancelled` (a window replaced by a new one) is left out: the new
/// promise stands in for it.
pub(super) const STATES: [(&str, &str); 4] = [
    ("kept", "Kept"),
    ("broken", "Broken"),
    ("at_risk", "At risk now"),
    ("made", "Still open"),
];

/// The promise keys that are a case's SLA: of kind `case_sla`, or made by `case.opened`.
pub(super) fn case_keys(map: Option<&JourneyMap>) -> Vec<String> {
    map.into_iter()
        .flat_map(|m| &m.touchpoints)
        .flat_map(|t| &t.promises)
        .filter(|p| p.kind.as_deref() == Some("case_sla") || p.made_by == "case.opened")
        .map(|p| p.key.clone())
        .collect()
}

/// The day the overview is about: `?day=YYYY-MM-DD`, or today (UTC).
fn today(params: &[(String, String)]) -> Result<i64, ApiError> {
    let mut day = None;
    for (name, value) in params {
        match name.as_str() {
            "day" if !value.trim().is_empty() => day = Some(parse_day(name, value.trim())?),
            "day" => {}
            other => return Err(unknown_param(other, "day (a date, YYYY-MM-DD)")),
        }
    }
    Ok(day.unwrap_or_else(|| Timestamp::now().micros().div_euclid(DAY_US)))
}

/// The query string of the promise list for `range` (and `state`, when one).
pub(super) fn promises_href(range: DayRange, state: Option<&str>) -> String {
    let state = state.map(|s| format!("state={s}&")).unwrap_or_default();
    format!("/ui/promises?{state}from={}&to={}", date(range.first), date(range.last))
}

/// Promise counts by state, due in `range`.
async fn counts<S: Store>(store: &S, range: DayRange) -> Result<HashMap<String, u64>, ApiError> {
    let counts = store
        .promise_counts(PromiseQuery {
            due_from_us: Some(range.first * DAY_US),
            due_to_us: Some((range.last + 1) * DAY_US),
            ..Default::default()
        })
        .await?;
    Ok(counts.into_iter().collect())
}

pub async fn overview<S: Store>(store: &S, map: Option<&JourneyMap>, params: &[(String, String)]) -> PageResult {
    let today = today(params)?;
    let periods = Periods::around(today);
    let now = Timestamp::now();
    let mut body = format!(
        r#"<p class="muted">{} (UTC). A week is the seven days ending that day; last week, the seven before. <a href="/?day={}">The day before</a></p>"#,
        esc(&date(today)),
        date(today - 1),
    );

    // Promises.
    let columns = [
        ("today", "Today", periods.today),
        ("week", "This week", periods.this_week),
        ("last_week", "Last week", periods.last_week),
    ];
    let mut figures = Vec::new();
    for (_, _, range) in &columns {
        figures.push(counts(store, *range).await?);
    }
    let n = |column: usize, state: &str| figures[column].get(state).copied().unwrap_or(0) as i64;
    body.push_str(
        r#"<section id="promises"><h2>Promises due</h2><div class="scroll"><table class="figures"><thead><tr><th></th>"#,
    );
    for (_, label, range) in &columns {
        let _ = write!(
            body,
            r#"<th class="num">{label}<br><span class="muted">{}</span></th>"#,
            esc(&span(*range))
        );
    }
    body.push_str(r#"<th class="num">Change</th></tr></thead><tbody>"#);
    // All promises due, then each state.
    let _ = write!(body, r#"<tr><th scope="row">Due</th>"#);
    for (i, (key, _, range)) in columns.iter().enumerate() {
        let due: i64 = STATES.iter().map(|(s, _)| n(i, s)).sum();
        let _ = write!(
            body,
            r#"<td class="num"><a data-figure="promises.due.{key}" href="{}">{}</a></td>"#,
            esc(&promises_href(*range, None)),
            count(due)
        );
    }
    let due_now: i64 = STATES.iter().map(|(s, _)| n(1, s)).sum();
    let due_before: i64 = STATES.iter().map(|(s, _)| n(2, s)).sum();
    let _ = write!(
        body,
        r#"<td class="num">{}</td></tr>"#,
        // More promises due is volume, neither good nor bad news: no colour.
        change_cell(
            trend::count_change(due_now, due_before, Good::Higher).map(|c| (c, " %")),
            false
        )
    );
    for (state, label) in STATES {
        let _ = write!(body, r#"<tr><th scope="row">{label}</th>"#);
        for (i, (key, _, range)) in columns.iter().enumerate() {
            let _ = write!(
                body,
                r#"<td class="num{}"><a data-figure="promises.{state}.{key}" href="{}">{}</a></td>"#,
                match state {
                    "broken" if n(i, state) > 0 => " bad",
                    "at_risk" if n(i, state) > 0 => " warn",
                    _ => "",
                },
                esc(&promises_href(*range, Some(state))),
                count(n(i, state))
            );
        }
        // Open and at-risk promises of last week have all settled since: no comparison.
        let change = match state {
            "kept" => trend::count_change(n(1, state), n(2, state), Good::Higher),
            "broken" => trend::count_change(n(1, state), n(2, state), Good::Lower),
            _ => None,
        };
        let _ = write!(
            body,
            r#"<td class="num">{}</td></tr>"#,
            change_cell(change.map(|c| (c, " %")), true)
        );
    }
    let kept_rate = |i: usize| {
        let settled = n(i, "kept") + n(i, "broken");
        (settled > 0).then(|| n(i, "kept") as f64 / settled as f64)
    };
    body.push_str(r#"<tr class="total"><th scope="row">Kept rate</th>"#);
    for (i, (key, _, _)) in columns.iter().enumerate() {
        let _ = write!(
            body,
            r#"<td class="num" data-figure="promises.kept_rate.{key}">{}{}</td>"#,
            percent(kept_rate(i)),
            sample_note(n(i, "kept") + n(i, "broken"), "settled")
        );
    }
    let _ = write!(
        body,
        r#"<td class="num">{}</td></tr></tbody></table></div>"#,
        change_cell(
            trend::share_change(kept_rate(1), kept_rate(2), Good::Higher).map(|c| (c, " pts")),
            true
        )
    );
    body.push_str(
        r#"<p class="muted">Promises by the day they fall due, in the state they are in now. Broken includes kept too late; at risk: close to due and not yet kept; still open: not yet due; kept rate: kept of those kept or broken. Change: this week against last week.</p></section>"#,
    );

    body.push_str(r#"<div class="grid2">"#);
    // Deliveries on the road.
    let road = store.on_the_road().await?;
    let late: Vec<i64> = road.iter().filter_map(|r| r.shipment.late_by(now)).collect();
    let _ = write!(
        body,
        r#"<section id="deliveries"><h2>Deliveries now</h2><div class="cards"><a class="card" href="/ui/deliveries"><div class="n" data-figure="deliveries.on_the_road">{}</div><div class="l">on the road (out for delivery or arriving)</div></a>
<a class="card{}" href="/ui/deliveries?late=1"><div class="n" data-figure="deliveries.late">{}</div><div class="l">late now: past the end of their window{}</div></a></div></section>"#,
        count(road.len() as i64),
        if late.is_empty() { "" } else { " bad" },
        count(late.len() as i64),
        late.iter()
            .max()
            .map(|us| format!(", the latest by {}", minutes(*us)))
            .unwrap_or_default(),
    );

    // Cases breaching their SLA.
    let keys = case_keys(map);
    let breaches = store.unresolved_breaches(keys.clone(), BREACHES_COUNTED).await?;
    let breached = breaches.iter().filter(|p| p.state == "broken").count() as i64;
    let at_risk = breaches.iter().filter(|p| p.state == "at_risk").count() as i64;
    if keys.is_empty() {
        body.push_str(r#"<section id="cases"><h2>Cases</h2><p class="muted">The journey map promises no case SLA (a promise of kind <code>case_sla</code>).</p></section>"#);
    } else {
        let _ = write!(
            body,
            r#"<section id="cases"><h2>Open cases</h2><div class="cards"><a class="card{}" href="/ui/cases?state=broken"><div class="n" data-figure="cases.breached">{}{}</div><div class="l">past their SLA and not resolved</div></a>
<a class="card{}" href="/ui/cases?state=at_risk"><div class="n" data-figure="cases.at_risk">{}</div><div class="l">close to their SLA</div></a></div></section>"#,
            if breached > 0 { " bad" } else { "" },
            count(breached),
            if breaches.len() >= BREACHES_COUNTED { "+" } else { "" },
            if at_risk > 0 { " warn" } else { "" },
            count(at_risk),
        );
    }
    body.push_str("</div>");

    // The weakest touchpoints this week.
    body.push_str(&worst_touchpoints(store, map, &periods).await?);

    let totals = store.overview().await?;
    let _ = write!(
        body,
        r#"<p class="muted" id="totals">{} events from {} {} stored. Raw events: <a href="/api/v1/events?limit=100">/api/v1/events</a>.</p>"#,
        count(totals.events as i64),
        count(totals.customers as i64),
        if totals.customers == 1 { "customer" } else { "customers" },
    );
    Ok(Some(page("Overview", Some(60), &body)))
}

/// The touchpoints furthest below their targets this week, with owners, what
/// failed, and the same figure last week.
async fn worst_touchpoints<S: Store>(
    store: &S,
    map: Option<&JourneyMap>,
    periods: &Periods,
) -> Result<String, ApiError> {
    let Some(map) = map else {
        return Ok(r#"<section id="worst"><h2>Weakest touchpoints</h2><p class="muted">This server follows no journey map.</p></section>"#.to_owned());
    };
    let week = tallies(store, periods.this_week).await?;
    let before = tallies(store, periods.last_week).await?;
    let entities = store
        .entity_health(Some(periods.this_week.first), Some(periods.this_week.last + 1))
        .await?;
    let links: Vec<_> = troth_core::weakest::weakest_links(map, &week, &entities, None)
        .into_iter()
        .filter(|l| l.score > 0.0)
        .take(WORST_SHOWN)
        .collect();
    let mut out = format!(
        r#"<section id="worst"><h2>Weakest touchpoints this week</h2><p class="muted">Furthest below their targets, weighed by how many customers met them; the ranking of the <a href="/ui/journeys/{}?from={}&amp;to={}">journey page</a>.</p>"#,
        url_segment(&map.key),
        date(periods.this_week.first),
        date(periods.this_week.last),
    );
    if links.is_empty() {
        out.push_str(r#"<p>Every touchpoint with something measured meets its targets this week.</p></section>"#);
        return Ok(out);
    }
    out.push_str(r#"<ol class="links">"#);
    for link in &links {
        let Some(t) = map.touchpoint(&link.touchpoint) else {
            continue;
        };
        let empty = Tally::default();
        let (now, then) = (week.get(&t.key).unwrap_or(&empty), before.get(&t.key).unwrap_or(&empty));
        let broken = |t: &Tally| t.promise_kept_rate().map(|k| 1.0 - k);
        let trend = trend::share_change(broken(now), broken(then), Good::Lower)
            .map(|c| format!(" · promises broken {} vs last week", change_text(c, " pts")))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<li data-touchpoint="{}"><a href="/ui/journeys/{}/touchpoints/{}?from={}&amp;to={}">{}</a> <span class="muted">· owned by {}{}</span><br><span class="why">{}</span></li>"#,
            esc(&t.key),
            url_segment(&map.key),
            url_segment(&t.key),
            date(periods.this_week.first),
            date(periods.this_week.last),
            esc(&t.name),
            esc(&super::journey::owner_names(map, t)),
            esc(&trend),
            esc(&link.why),
        );
    }
    out.push_str("</ol></section>");
    Ok(out)
}

async fn tallies<S: Store>(store: &S, range: DayRange) -> Result<HashMap<String, Tally>, ApiError> {
    Ok(store
        .health(Some(range.first), Some(range.last + 1))
        .await?
        .into_iter()
        .collect())
}

/// `2026-11-24 – 2026-11-30`, or one date.
fn span(range: DayRange) -> String {
    if range.first == range.last {
        date(range.first)
    } else {
        format!("{} – {}", &date(range.first)[5..], &date(range.last)[5..])
    }
}

/// `3 h 12 min`, `45 min`.
pub(super) fn minutes(us: i64) -> String {
    let minutes = us / 60_000_000;
    if minutes >= 60 {
        format!("{} h {} min", count(minutes / 60), minutes % 60)
    } else {
        format!("{minutes} min")
    }
}

/// A change as `▲ 12 %`, `▼ 3 pts`, `≈ same`; `unit` is ` %` or ` pts`.
pub(super) fn change_text(change: trend::Change, unit: &str) -> String {
    if change.verdict == Verdict::Same {
        return "≈ same".to_owned();
    }
    let size = (change.delta.abs() + 0.5).floor() as i64;
    let unit = if size == 1 && unit == " pts" { " pt" } else { unit };
    format!("{} {size}{unit}", change.arrow())
}

/// A change in a table cell, coloured by whether it is good news when `coloured`.
pub(super) fn change_cell(change: Option<(trend::Change, &str)>, coloured: bool) -> String {
    match change {
        None => r#"<span class="muted">–</span>"#.to_owned(),
        Some((c, unit)) => {
            let class = match c.verdict {
                Verdict::Better if coloured => "good",
                Verdict::Worse if coloured => "bad",
                _ => "muted",
            };
            format!(r#"<span class="{class}">{}</span>"#, esc(&change_text(c, unit)))
        }
    }
}

/// A warning beside a share computed from few cases.
pub(super) fn sample_note(n: i64, what: &str) -> String {
    if trend::small_sample(n) {
        format!(
            r#" <span class="small-sample" title="Fewer than {} {what}: read with care">⚠ {} {what}</span>"#,
            trend::SMALL_SAMPLE,
            count(n)
        )
    } else {
        String::new()
    }
}
