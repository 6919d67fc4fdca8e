//! `/ui/carriers`: the carrier scorecards, a table per carrier (worst window hit
//! rate first) with its drivers under it, read from the same store call as
//! `GET /api/v1/carriers`.

use std::fmt::Write;

use serde_json::Value;
use troth_core::scorecard::{CarrierCard, LAGGING_POINTS, ScoreTally, rank};
use troth_core::trend::{self, DayRange, Good};
use troth_store::{EventQuery, Store};

use super::html::{count, esc, page, url_segment};
use super::journey::{Days, date, one_decimal, percent, range_form};
use crate::ApiError;

pub async fn carriers<S: Store>(store: &S, params: &[(String, String)]) -> Result<Option<String>, ApiError> {
    let days = Days::from_params(store, params).await?;
    let rows = store.scorecards(Some(days.first), Some(days.last + 1)).await?;
    let before = DayRange {
        first: days.first,
        last: days.last,
    }
    .previous();
    let earlier = rank(&store.scorecards(Some(before.first), Some(before.last + 1)).await?);
    let cards = rank(&rows);
    let lost = lost_parcels(store, &days).await?;
    let mut body = range_form("/ui/carriers", &days);
    let _ = write!(
        body,
        r#"<p class="muted">{} to {} (UTC days), worst window hit rate first; ▲▼ against the {} days before ({} to {}). <a href="/api/v1/carriers?from={}T00:00:00Z&amp;to={}T00:00:00Z">JSON</a></p>
<details class="explain"><summary>What the figures mean</summary><dl>
<dt>Shipments</dt><dd>parcels handed to the carrier (<code>shipment.created</code>) in these days.</dd>
<dt>Windows kept</dt><dd>of the one-hour delivery windows settled in these days, the share delivered inside the window; a failed attempt or a delivery after the window breaks it.</dd>
<dt>First attempt</dt><dd>of the parcels delivered, the share delivered without a failed attempt before.</dd>
<dt>Lost</dt><dd>parcels the carrier reported lost; each is listed under its carrier.</dd>
<dt>Late deliveries</dt><dd>deliveries after the end of their window, and by how many minutes on average; a handful of very late parcels can make the mean large while the windows kept stay high.</dd>
<dt>Tracking views per shipment</dt><dd>how often customers opened the tracking page per parcel: many views mean customers were left wondering.</dd>
<dt>Highlighted driver</dt><dd>a driver whose windows kept trail the carrier's own by {} points or more.</dd>
</dl></details>"#,
        date(days.first),
        date(days.last),
        days.last - days.first + 1,
        date(before.first),
        date(before.last),
        date(days.first),
        date(days.last + 1),
        LAGGING_POINTS,
    );
    if cards.is_empty() {
        body.push_str("<p>No shipments in these days.</p>");
    }
    // Only a carrier with settled windows can be the worst; `rank` puts it first.
    let worst = cards.first().filter(|c| c.total.window_hit_rate().is_some());
    for card in &cards {
        let is_worst = worst.is_some_and(|w| w.carrier == card.carrier) && cards.len() > 1;
        let previous = earlier.iter().find(|c| c.carrier == card.carrier);
        body.push_str(&carrier_table(card, previous, is_worst));
        let theirs: Vec<String> = lost
            .iter()
            .filter(|(_, carrier)| *carrier == card.carrier)
            .map(|(shipment, _)| {
                format!(
                    r#"<a href="/ui/shipments/{}">{}</a>"#,
                    url_segment(shipment),
                    esc(shipment)
                )
            })
            .collect();
        if !theirs.is_empty() {
            let _ = write!(body, r#"<p class="lost">Lost: {}</p>"#, theirs.join(", "));
        }
    }
    Ok(Some(page("Carriers", None, &body)))
}

fn carrier_table(card: &CarrierCard, previous: Option<&CarrierCard>, is_worst: bool) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<section class="carrier{}" data-carrier="{}"><h2>{}{}</h2><div class="scroll"><table><thead><tr><th></th><th class="num">Shipments</th><th>Windows kept</th><th>First attempt</th><th class="num">Lost</th><th class="num">Late deliveries</th><th class="num">Tracking views per shipment</th></tr></thead><tbody>"#,
        if is_worst { " worst" } else { "" },
        esc(&card.carrier),
        esc(&card.carrier),
        if is_worst {
            r#" <span class="tag bad">worst window hit rate</span>"#
        } else {
            ""
        },
    );
    out.push_str(&row("All drivers", &card.total, previous.map(|p| &p.total), "total"));
    let lagging = card.lagging_driver().map(|(d, _)| d.as_str());
    for (driver, tally) in &card.drivers {
        let (class, label) = if lagging == Some(driver.as_str()) {
            ("driver worst", format!("Driver {driver} (trails the carrier)"))
        } else {
            ("driver", format!("Driver {driver}"))
        };
        let before = previous.and_then(|p| p.drivers.iter().find(|(d, _)| d == driver).map(|(_, t)| t));
        out.push_str(&row(&label, tally, before, class));
    }
    if card.drivers.is_empty() {
        out.push_str(r#"<tr><td colspan="7" class="muted">No delivery runs in these days.</td></tr>"#);
    }
    out.push_str("</tbody></table></div></section>");
    out
}

fn row(label: &str, t: &ScoreTally, before: Option<&ScoreTally>, class: &str) -> String {
    let late = match t.mean_minutes_late() {
        Some(m) => format!(
            r#"{} <span class="muted">· {} min on average</span>"#,
            count(t.late),
            count((m + 0.5).floor() as i64)
        ),
        None => r#"<span class="muted">none</span>"#.to_owned(),
    };
    // No earlier figure: nothing to compare, and no dash beside the bar either.
    let change = |now: Option<f64>, then: Option<f64>| match trend::share_change(now, then, Good::Higher) {
        Some(c) if c.verdict != trend::Verdict::Same => super::overview::change_cell(Some((c, " pts")), true),
        Some(_) => String::new(),
        None => String::new(),
    };
    format!(
        r#"<tr class="{class}"><th scope="row">{}</th><td class="num">{}</td><td>{}</td><td>{}</td><td class="num{}">{}</td><td class="num late">{}</td><td class="num">{}</td></tr>"#,
        esc(label),
        count(t.shipments),
        meter(
            t.window_hit_rate(),
            t.windows_kept + t.windows_broken,
            &change(
                t.window_hit_rate(),
                before.map(ScoreTally::window_hit_rate).unwrap_or(None)
            ),
        ),
        meter(
            t.first_attempt_rate(),
            t.delivered,
            &change(
                t.first_attempt_rate(),
                before.map(ScoreTally::first_attempt_rate).unwrap_or(None)
            ),
        ),
        if t.lost > 0 { " bad" } else { "" },
        count(t.lost),
        late,
        one_decimal(t.tracking_views_per_shipment()),
    )
}

/// A rate as a figure and a bar, with how many it is out of and its change.
fn meter(rate: Option<f64>, of: i64, change: &str) -> String {
    let Some(rate) = rate else {
        return r#"<span class="muted">–</span>"#.to_owned();
    };
    let class = match rate {
        r if r < 0.8 => "bad",
        r if r < 0.9 => "warn",
        _ => "good",
    };
    format!(
        r#"<div class="meter"><span class="{class}">{}</span> <span class="muted">of {}</span> {change}<div class="track"><div class="fill {class}" style="width:{:.1}%"></div></div></div>"#,
        percent(Some(rate)),
        count(of),
        rate * 100.0,
    )
}

/// Lost parcels listed on the page, at most.
const LOST_LISTED: usize = 50;

/// The shipments lost in these days with their carriers, so each carrier's lost
/// parcels link to the staff shipment view. Losses are rare, so one lookup of the
/// `shipment.created` per parcel is cheap.
async fn lost_parcels<S: Store>(store: &S, days: &Days) -> Result<Vec<(String, String)>, ApiError> {
    const DAY_US: i64 = 86_400_000_000;
    let page = store
        .events(EventQuery {
            event_type: Some("shipment.lost".into()),
            from_us: Some(days.first * DAY_US),
            to_us: Some((days.last + 1) * DAY_US),
            limit: LOST_LISTED,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    for event in &page.events {
        let subject = serde_json::from_str::<Value>(&event.raw)
            .ok()
            .and_then(|v| v["subject"].as_str().map(str::to_owned));
        let Some(subject) = subject else { continue };
        let created = store
            .events(EventQuery {
                subject: Some(subject.clone()),
                event_type: Some("shipment.created".into()),
                limit: 1,
                ..Default::default()
            })
            .await?;
        let carrier = created
            .events
            .first()
            .and_then(|e| serde_json::from_str::<Value>(&e.raw).ok())
            .and_then(|v| v["data"]["carrier"].as_str().map(str::to_owned));
        if let (Some(shipment), Some(carrier)) = (subject.strip_prefix("shipment:"), carrier) {
            out.push((shipment.to_owned(), carrier));
        }
    }
    Ok(out)
}
