//! The lists behind the overview's numbers: promises by state and due day
//! (`/ui/promises`), deliveries on the road and late (`/ui/deliveries`), open cases
//! breaching their SLA (`/ui/cases`). Each says how many there are with the same
//! reads as the overview, so a number and its list agree.

use std::fmt::Write;

use troth_core::Timestamp;
use troth_core::journey::JourneyMap;
use troth_store::{PromiseQuery, PromiseView, Store};

use super::html::{count, esc, page, url_segment};
use super::journey::{customer_key, date, parse_day};
use super::overview::{BREACHES_COUNTED, DAY_US, STATES, case_keys, minutes};
use super::pages::{clock, subject_link};
use crate::ApiError;
use crate::extract::{invalid_param, unknown_param};
use crate::tracking::Zone;

type PageResult = Result<Option<String>, ApiError>;

/// Rows a list shows; the API pages through the rest.
const LISTED: usize = 200;

/// `/ui/promises?state=&touchpoint=&from=&to=`: the promises due in those days, in
/// one state or (without `state`) in every state but replaced.
pub async fn promises<S: Store>(
    store: &S,
    zone: &Zone,
    map: Option<&JourneyMap>,
    params: &[(String, String)],
) -> PageResult {
    let today = Timestamp::now().micros().div_euclid(DAY_US);
    let (mut first, mut last, mut state, mut touchpoint) = (today, today, None, None);
    for (name, value) in params {
        match name.as_str() {
            "from" => first = parse_day(name, value)?,
            "to" => last = parse_day(name, value)?,
            "state" => {
                if !["made", "at_risk", "kept", "broken", "cancelled"].contains(&value.as_str()) {
                    return Err(invalid_param(
                        name,
                        format!("state must be made, at_risk, kept, broken or cancelled, not {value:?}"),
                    ));
                }
                state = Some(value.clone());
            }
            "touchpoint" => {
                if map.and_then(|m| m.touchpoint(value)).is_none() {
                    return Err(invalid_param(name, format!("no touchpoint {value:?}")));
                }
                touchpoint = Some(value.clone());
            }
            other => return Err(unknown_param(other, "state, touchpoint, from, to (dates, YYYY-MM-DD)")),
        }
    }
    let query = PromiseQuery {
        touchpoints: touchpoint.clone().map(|t| vec![t]),
        state: state.clone(),
        due_from_us: Some(first * DAY_US),
        due_to_us: Some((last + 1) * DAY_US),
        limit: LISTED,
        ..Default::default()
    };
    let counts = store.promise_counts(query.clone()).await?;
    let states: Vec<&str> = match &state {
        Some(s) => vec![s.as_str()],
        None => STATES.iter().map(|(s, _)| *s).collect(),
    };
    let total: u64 = counts
        .iter()
        .filter(|(s, _)| states.contains(&s.as_str()))
        .map(|(_, n)| n)
        .sum();
    // Each state's first rows by due time, merged: the first rows of them all.
    let mut rows: Vec<PromiseView> = Vec::new();
    for s in &states {
        let page = store
            .promises(PromiseQuery {
                state: Some((*s).to_owned()),
                ..query.clone()
            })
            .await?;
        rows.extend(page.promises);
    }
    rows.sort_by(|a, b| (&a.due, &a.id).cmp(&(&b.due, &b.id)));
    rows.truncate(LISTED);

    let what = match state.as_deref() {
        Some(s) => STATES
            .iter()
            .find(|(k, _)| *k == s)
            .map_or("Replaced", |(_, label)| label)
            .to_owned(),
        None => "Due".to_owned(),
    };
    let range = if first == last {
        date(first)
    } else {
        format!("{} to {}", date(first), date(last))
    };
    let title = format!("Promises: {} · due {range}", what.to_lowercase());
    let mut body = format!(
        r#"<p><strong id="count">{}</strong> {} due {} (UTC days){}.</p>"#,
        count(total as i64),
        if total == 1 { "promise" } else { "promises" },
        esc(&range),
        touchpoint
            .as_deref()
            .and_then(|t| map?.touchpoint(t))
            .map(|t| format!(" at {}", esc(&t.name)))
            .unwrap_or_default(),
    );
    if let Some(map) = map {
        let mut api = format!(
            "/api/v1/journeys/{}/promises?from={}T00:00:00Z&to={}T00:00:00Z",
            url_segment(&map.key),
            date(first),
            date(last + 1)
        );
        if let Some(s) = &state {
            let _ = write!(api, "&state={s}");
        }
        if let Some(t) = &touchpoint {
            let _ = write!(api, "&touchpoint={}", url_segment(t));
        }
        if total as usize > rows.len() {
            let _ = write!(
                body,
                r#"<p class="muted">The first {} by due time are listed; <a href="{}">the API</a> lists them all.</p>"#,
                count(rows.len() as i64),
                esc(&api)
            );
        }
    }
    if rows.is_empty() {
        body.push_str(r#"<p class="muted">None.</p>"#);
        return Ok(Some(page(&title, None, &body)));
    }
    body.push_str(r#"<div class="scroll"><table id="list"><thead><tr><th>Promise</th><th>About</th><th>Customer</th><th>Due</th><th>State</th><th>Settled</th></tr></thead><tbody>"#);
    for p in &rows {
        // The touchpoint only where the promise's own name does not already say it.
        let touchpoint = if p.touchpoint == p.key {
            String::new()
        } else {
            map.and_then(|m| m.touchpoint(&p.touchpoint))
                .map_or(p.touchpoint.clone(), |t| t.name.clone())
        };
        let _ = write!(
            body,
            r#"<tr><td>{}<br><span class="muted small">{}</span></td><td>{}</td><td>{}</td><td class="nowrap">{}</td><td class="{}">{}</td><td class="nowrap">{}</td></tr>"#,
            esc(&p.key.replace('_', " ")),
            esc(&touchpoint),
            subject_link(&p.subject),
            customer_link(p.customer.as_ref()),
            esc(&clock(zone, &p.due)),
            state_class(&p.state),
            esc(&p.state.replace('_', " ")),
            esc(&p.settled_at.as_deref().map_or("–".to_owned(), |t| clock(zone, t))),
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(Some(page(&title, None, &body)))
}

fn state_class(state: &str) -> &'static str {
    match state {
        "kept" => "good",
        "broken" => "bad",
        "at_risk" => "warn",
        _ => "muted",
    }
}

fn customer_link(customer: Option<&serde_json::Value>) -> String {
    customer
        .and_then(customer_key)
        .map(|key| format!(r#"<a href="/ui/customers/{}">{}</a>"#, url_segment(&key), esc(&key)))
        .unwrap_or_else(|| "–".to_owned())
}

/// `/ui/deliveries` (`?late=1`: only those past their window): the parcels on the
/// road now, the latest first.
pub async fn deliveries<S: Store>(store: &S, zone: &Zone, params: &[(String, String)]) -> PageResult {
    let mut only_late = false;
    for (name, value) in params {
        match name.as_str() {
            "late" => only_late = !matches!(value.as_str(), "" | "0" | "false"),
            other => return Err(unknown_param(other, "late (1: only the late ones)")),
        }
    }
    let now = Timestamp::now();
    let mut road: Vec<_> = store
        .on_the_road()
        .await?
        .into_iter()
        .map(|r| (r.shipment.late_by(now), r))
        .filter(|(late, _)| !only_late || late.is_some())
        .collect();
    road.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let title = if only_late {
        "Deliveries late now"
    } else {
        "Deliveries on the road"
    };
    let mut body = format!(
        r#"<p><strong id="count">{}</strong> {} at {}{}. <a href="{}">{}</a></p>"#,
        count(road.len() as i64),
        if road.len() == 1 { "parcel" } else { "parcels" },
        esc(&clock(zone, &now.to_string())),
        if only_late {
            ": out for delivery or arriving, past the end of their window"
        } else {
            ": out for delivery or arriving"
        },
        if only_late {
            "/ui/deliveries"
        } else {
            "/ui/deliveries?late=1"
        },
        if only_late {
            "All on the road"
        } else {
            "Only the late ones"
        },
    );
    if road.is_empty() {
        body.push_str(r#"<p class="muted">None.</p>"#);
        return Ok(Some(page(title, Some(60), &body)));
    }
    body.push_str(r#"<div class="scroll"><table id="list"><thead><tr><th>Shipment</th><th>Customer</th><th>Driver</th><th>Window</th><th>Late by</th></tr></thead><tbody>"#);
    for (late, r) in road.iter().take(LISTED) {
        let assignment = r.shipment.assignment();
        let window = r
            .shipment
            .window()
            .map_or("–".to_owned(), |(start, end)| zone.clock_span(start, end));
        let _ = write!(
            body,
            r#"<tr><td><a href="/ui/shipments/{}">{}</a></td><td>{}</td><td>{}</td><td class="nowrap">{}</td><td class="{}">{}</td></tr>"#,
            url_segment(&r.id),
            esc(&r.id),
            customer_link(r.customer.as_ref()),
            esc(&assignment.as_ref().map_or("–".to_owned(), |a| {
                match a.stops_before {
                    Some(n) => format!("{} ({} stops before)", a.driver, count(i64::from(n))),
                    None => a.driver.clone(),
                }
            })),
            esc(&window),
            if late.is_some() { "bad num" } else { "num" },
            late.map_or("–".to_owned(), minutes),
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(Some(page(title, Some(60), &body)))
}

/// `/ui/cases?state=broken|at_risk`: open cases past or close to their SLA.
pub async fn cases<S: Store>(
    store: &S,
    zone: &Zone,
    map: Option<&JourneyMap>,
    params: &[(String, String)],
) -> PageResult {
    let mut state = "broken".to_owned();
    for (name, value) in params {
        match name.as_str() {
            "state" if value == "broken" || value == "at_risk" => state = value.clone(),
            "state" => {
                return Err(invalid_param(
                    name,
                    format!("state must be broken or at_risk, not {value:?}"),
                ));
            }
            other => return Err(unknown_param(other, "state (broken or at_risk)")),
        }
    }
    let now = Timestamp::now();
    let cases: Vec<PromiseView> = store
        .unresolved_breaches(case_keys(map), BREACHES_COUNTED)
        .await?
        .into_iter()
        .filter(|p| p.state == state)
        .collect();
    let title = if state == "broken" {
        "Open cases past their SLA"
    } else {
        "Open cases close to their SLA"
    };
    let mut body = format!(
        r#"<p><strong id="count">{}</strong> open {} at {}, oldest due first. A case counts until a <code>case.resolved</code> arrives for it.</p>"#,
        count(cases.len() as i64),
        if cases.len() == 1 { "case" } else { "cases" },
        esc(&clock(zone, &now.to_string())),
    );
    if cases.is_empty() {
        body.push_str(r#"<p class="muted">None.</p>"#);
        return Ok(Some(page(title, Some(60), &body)));
    }
    body.push_str(r#"<div class="scroll"><table id="list"><thead><tr><th>Case</th><th>Customer</th><th>Opened</th><th>Due</th><th>Overdue by</th></tr></thead><tbody>"#);
    for p in cases.iter().take(LISTED) {
        let overdue = Timestamp::parse_rfc3339(&p.due)
            .filter(|due| now > *due)
            .map_or("–".to_owned(), |due| minutes(now.0 - due.0));
        let _ = write!(
            body,
            r#"<tr><td>{}</td><td>{}</td><td class="nowrap">{}</td><td class="nowrap">{}</td><td class="num bad">{}</td></tr>"#,
            esc(&p.subject),
            customer_link(p.customer.as_ref()),
            esc(&clock(zone, &p.made_at)),
            esc(&clock(zone, &p.due)),
            esc(&overdue),
        );
    }
    body.push_str("</tbody></table></div>");
    Ok(Some(page(title, Some(60), &body)))
}
