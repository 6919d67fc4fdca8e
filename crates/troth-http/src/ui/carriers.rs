//! `/ui/carriers`: the carrier scorecards, a table per carrier (worst window hit
//! rate first) with its drivers under it, read from the same store call as
//! `GET /api/v1/carriers`.

use std::fmt::Write;

use serde_json::Value;
use troth_core::scorecard::{CarrierCard, ScoreTally, rank};
use troth_store::{EventQuery, Store};

use super::html::{esc, page, url_segment};
use super::journey::{Days, date, one_decimal, percent, range_form};
use crate::ApiError;

pub async fn carriers<S: Store>(store: &S, params: &[(String, String)]) -> Result<Option<String>, ApiError> {
    let days = Days::from_params(store, params).await?;
    let rows = store.scorecards(Some(days.first), Some(days.last + 1)).await?;
    let cards = rank(&rows);
    let lost = lost_parcels(store, &days).await?;
    let mut body = range_form("/ui/carriers", &days);
    let _ = write!(
        body,
        r#"<p class="muted">{} to {}, UTC days. Worst window hit rate first; each figure counts on the day of the event that settled it. <a href="/api/v1/carriers?from={}T00:00:00Z&amp;to={}T00:00:00Z">JSON</a></p>"#,
        date(days.first),
        date(days.last),
        date(days.first),
        date(days.last + 1),
    );
    if cards.is_empty() {
        body.push_str("<p>No shipments in these days.</p>");
    }
    // Only a carrier with settled windows can be the worst; `rank` puts it first.
    let worst = cards.first().filter(|c| c.total.window_hit_rate().is_some());
    for card in &cards {
        let is_worst = worst.is_some_and(|w| w.carrier == card.carrier) && cards.len() > 1;
        body.push_str(&carrier_table(card, is_worst));
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

fn carrier_table(card: &CarrierCard, is_worst: bool) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<section class="carrier{}" data-carrier="{}"><h2>{}{}</h2><table><thead><tr><th></th><th class="num">Shipments</th><th>Windows kept</th><th>First attempt</th><th class="num">Lost</th><th class="num">Mean minutes late</th><th class="num">Tracking views per shipment</th></tr></thead><tbody>"#,
        if is_worst { " worst" } else { "" },
        esc(&card.carrier),
        esc(&card.carrier),
        if is_worst {
            r#" <span class="tag bad">worst window hit rate</span>"#
        } else {
            ""
        },
    );
    out.push_str(&row("All drivers", &card.total, "total"));
    // The worst driver is marked when the carrier has more than one.
    let worst_driver = (card.drivers.len() > 1)
        .then(|| card.drivers.first())
        .flatten()
        .filter(|(_, t)| t.window_hit_rate().is_some());
    for (driver, tally) in &card.drivers {
        let class = if worst_driver.is_some_and(|(d, _)| d == driver) {
            "driver worst"
        } else {
            "driver"
        };
        out.push_str(&row(&format!("Driver {driver}"), tally, class));
    }
    if card.drivers.is_empty() {
        out.push_str(r#"<tr><td colspan="7" class="muted">No delivery runs in these days.</td></tr>"#);
    }
    out.push_str("</tbody></table></section>");
    out
}

fn row(label: &str, t: &ScoreTally, class: &str) -> String {
    let late = t.mean_minutes_late().map_or("–".to_owned(), |m| format!("{m:.0}"));
    format!(
        r#"<tr class="{class}"><th scope="row">{}</th><td class="num">{}</td><td>{}</td><td>{}</td><td class="num{}">{}</td><td class="num">{} <span class="muted">({} late)</span></td><td class="num">{}</td></tr>"#,
        esc(label),
        t.shipments,
        meter(t.window_hit_rate(), t.windows_kept + t.windows_broken),
        meter(t.first_attempt_rate(), t.delivered),
        if t.lost > 0 { " bad" } else { "" },
        t.lost,
        late,
        t.late,
        one_decimal(t.tracking_views_per_shipment()),
    )
}

/// A rate as a figure and a bar, with how many it is out of.
fn meter(rate: Option<f64>, of: i64) -> String {
    let Some(rate) = rate else {
        return r#"<span class="muted">–</span>"#.to_owned();
    };
    let class = match rate {
        r if r < 0.8 => "bad",
        r if r < 0.9 => "warn",
        _ => "good",
    };
    format!(
        r#"<div class="meter"><span class="{class}">{}</span> <span class="muted">of {of}</span><div class="track"><div class="fill {class}" style="width:{:.1}%"></div></div></div>"#,
        percent(Some(rate)),
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
