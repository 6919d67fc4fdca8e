//! The tracking page's HTML: mobile-first, complete without script (forms are
//! plain POSTs); `track.js` keeps it current. Every value goes through `esc`.

use std::fmt::Write;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use troth_core::Timestamp;
use troth_store::TrackedShipment;

use super::story::{Action, LateBecause, State};
use super::view::{POSITION_FRESH_US, ProofView, TrackView};
use super::zone::Zone;
use super::{PROBLEMS, SLOTS, TrackingConfig};
use crate::ApiError;
use crate::ui::esc;

pub struct Page<'a> {
    pub token: &'a str,
    pub tracked: &'a TrackedShipment,
    pub view: &'a TrackView,
    /// The driver's last minutes (`map::trail`).
    pub trail: &'a [super::map::TrailPoint],
    pub config: &'a TrackingConfig,
    /// The form just sent (`?done=`), to thank the customer for it.
    pub done: Option<&'a str>,
    /// The case just opened (`?case=`), confirmed only if the log holds it.
    pub case: Option<&'a str>,
    /// A form sent back because something in it must change: what is wrong, and
    /// what the customer typed, shown again in that form.
    pub kept: Option<&'a Kept>,
    pub now: Timestamp,
}

/// A form the customer must correct, with what they typed.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The form's section: `instructions`, `safe-place`, `another-time` or `report`.
    pub form: &'static str,
    pub message: String,
    /// The fields as sent, by name.
    pub values: Vec<(&'static str, String)>,
}

impl Kept {
    fn value(&self, form: &str, field: &str) -> Option<&str> {
        (self.form == form)
            .then(|| {
                self.values
                    .iter()
                    .find(|(name, _)| *name == field)
                    .map(|(_, v)| v.as_str())
            })
            .flatten()
    }

    /// The message, inside the form it is about.
    fn alert(&self, form: &str) -> String {
        if self.form == form {
            format!(r#"<p class="problem" role="alert">{}</p>"#, esc(&self.message))
        } else {
            String::new()
        }
    }
}

impl Page<'_> {
    /// A local date in the view's zone, `YYYY-MM-DD`.
    fn zone_date(&self, t: Timestamp) -> String {
        Zone::named(&self.view.timezone).unwrap_or_default().date(t)
    }
}

/// The same page for a wrong token and an expired one.
pub fn not_found() -> Response {
    let body = "<section><h1>Link not found</h1><p>This tracking link does not exist or has expired.</p></section>";
    (
        StatusCode::NOT_FOUND,
        Html(frame("Not found", None, &TrackingConfig::default(), body)),
    )
        .into_response()
}

pub fn failed(error: &ApiError) -> Response {
    let body = "<section><h1>Something went wrong</h1><p>Please try again in a moment.</p></section>";
    (
        error.code.describe().1,
        Html(frame("Something went wrong", None, &TrackingConfig::default(), body)),
    )
        .into_response()
}

/// A form's input could not be taken: say why, and link back.
pub fn invalid(token: &str, message: &str) -> Response {
    let body = format!(
        r#"<section><h1>Please check</h1><p class="problem">{}</p><p><a href="/t/{}">Back to your delivery</a></p></section>"#,
        esc(message),
        esc(token)
    );
    (
        StatusCode::BAD_REQUEST,
        Html(frame("Please check", None, &TrackingConfig::default(), &body)),
    )
        .into_response()
}

pub fn render(p: &Page<'_>) -> String {
    let view = p.view;
    let status = &view.status;
    let shipment = &p.tracked.shipment;
    let token = esc(p.token);
    let mut b = String::new();
    if let Some(kept) = p.kept {
        // The form is further down: say so at the top, linked to it.
        let _ = write!(
            b,
            r##"<p class="problem" role="alert"><a href="#{}">Please check the form below: {}</a></p>"##,
            kept.form,
            esc(&kept.message)
        );
    }
    if let Some(done) = p.done {
        let confirmed = p
            .case
            .filter(|_| done == "problem")
            .and_then(|case| view.cases.iter().find(|c| c.reference == case));
        let thanks = match (done, confirmed) {
            ("problem", Some(case)) => format!("Thank you. {}", case.message),
            ("problem", None) => "Thank you; our team will contact you about it.".into(),
            ("reschedule", _) => "Your new delivery time is saved.".into(),
            ("instructions", _) => "Your instructions are saved; the driver will see them.".into(),
            ("safe_place", _) => "Your safe place is saved.".into(),
            _ => String::new(),
        };
        if !thanks.is_empty() {
            let _ = write!(
                b,
                r#"<p class="thanks" role="status" id="thanks">{}</p>"#,
                with_reference(&thanks, confirmed.map(|c| c.reference.as_str()))
            );
        }
    }
    let finished = shipment.final_at().is_some();
    let _ = write!(
        b,
        r#"<section class="now" id="track" data-token="{token}" data-stage="{}" data-state="{}" data-tone="{}" data-final="{finished}" data-now="{}" data-stale-after="{}" data-labels="{}"><p class="muted">Delivery {}</p><h1 id="stage">{}</h1><div id="status-lines">"#,
        esc(view.stage.as_deref().unwrap_or("")),
        esc(&json_name(&status.state)),
        esc(&json_name(&status.tone)),
        esc(&p.now.to_string()),
        POSITION_FRESH_US / 1_000_000,
        esc(&labels_json()),
        esc(&view.shipment),
        esc(&status.headline)
    );
    let references = || view.lost_case.iter().chain(&view.cases).map(|c| c.reference.as_str());
    for line in &status.lines {
        let _ = write!(b, "<p>{}</p>", with_references(line, references()));
    }
    b.push_str(r#"</div><p class="actions" id="actions">"#);
    for (action, id, label) in ACTIONS {
        // Only forms the page has: a finished delivery keeps just "report a problem".
        let offered = status.actions.contains(action) && (!finished || *action == Action::Report);
        let _ = write!(
            b,
            r##"<a href="#{id}" data-action="{}"{}>{label}</a>"##,
            esc(&json_name(action)),
            hidden(!offered)
        );
    }
    b.push_str("</p>");
    let _ = write!(
        b,
        r#"<p id="window"{}><span id="window-label">{}</span>: <strong id="window-text">{}</strong></p>"#,
        hidden(view.window.is_none()),
        window_label(view),
        esc(view.window.as_ref().map(|w| w.local.as_str()).unwrap_or_default())
    );
    // While late, the status lines give the new estimate with the apology.
    let _ = write!(
        b,
        r#"<p id="eta"{}>Expected <strong><time id="eta-text" datetime="{}">{}</time></strong></p>"#,
        hidden(view.eta.is_none() || status.state == State::Late),
        esc(view.eta.as_deref().unwrap_or_default()),
        esc(view.eta_local.as_deref().unwrap_or_default())
    );
    let _ = write!(
        b,
        r#"<p id="stops"{}><strong id="stops-text">{}</strong></p></section>"#,
        hidden(view.stops_before.is_none()),
        view.stops_before.map(super::map::stops_text).unwrap_or_default()
    );
    if let Some(proof) = &view.proof {
        proof_section(&mut b, proof, view);
    }
    b.push_str(&map(p));
    b.push_str(r#"<section><h2>Progress</h2><ol class="stages" id="stages">"#);
    for stage in &view.stages {
        let _ = write!(
            b,
            r#"<li data-stage="{}"><strong>{}</strong> <time datetime="{}">{}</time></li>"#,
            esc(&stage.stage),
            esc(stage_label(&stage.stage).unwrap_or(&stage.stage)),
            esc(&stage.at),
            esc(&stage.local)
        );
    }
    b.push_str("</ol></section>");
    if !view.cases.is_empty() {
        b.push_str(r#"<section id="cases"><h2>Your reports</h2><ul class="cases">"#);
        for case in &view.cases {
            let _ = write!(b, "<li>{}</li>", with_reference(&case.message, Some(&case.reference)));
        }
        b.push_str("</ul></section>");
    }
    if !finished {
        forms(&mut b, p, &token);
    }
    let _ = write!(
        b,
        r#"<section id="report"><h2>Report a problem</h2>{}<form method="post" action="/t/{token}/problem"><label>What is wrong? <select name="category" required>"#,
        p.kept.map(|k| k.alert("report")).unwrap_or_default()
    );
    if status.problem.is_none() {
        // No reason fits the state well enough to pick it for the customer.
        b.push_str(r#"<option value="" selected>Choose…</option>"#);
    }
    for (category, label) in PROBLEMS {
        // Reasons that only make sense in one state are offered only in it.
        let only_in = match *category {
            "missed" => Some(State::AttemptFailed),
            "lost" => Some(State::Lost),
            _ => None,
        };
        if only_in.is_some_and(|s| s != status.state) {
            continue;
        }
        let selected = if status.problem.as_deref() == Some(category) {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, r#"<option value="{category}"{selected}>{}</option>"#, esc(label));
    }
    b.push_str(r#"</select></label><button type="submit">Report</button></form></section>"#);
    let _ = write!(
        b,
        r#"<p class="muted zone" id="zone">Times are in {} time.</p>"#,
        esc(&view.timezone)
    );
    frame(
        &status.headline,
        Some(r#"<script src="/assets/track.js" defer></script>"#),
        p.config,
        &b,
    )
}

/// "Your new window" once troth has moved the one promised, so the window shown is
/// not mistaken for the one the apology is about (`track.js` words it the same).
fn window_label(view: &TrackView) -> &'static str {
    match &view.late {
        Some(late) if late.because == LateBecause::WindowMoved => "Your new window",
        _ => "Your window",
    }
}

/// A message, escaped, with the case reference in it kept on one line (a
/// customer copies or reads it out as one thing).
fn with_reference(message: &str, reference: Option<&str>) -> String {
    with_references(message, reference.into_iter())
}

/// A message, escaped, with each of these case references kept on one line
/// wherever it stands as a word of its own (so a short reference cannot match
/// inside other words).
fn with_references<'a>(message: &str, references: impl Iterator<Item = &'a str>) -> String {
    let mut out = esc(message);
    for r in references.filter(|r| !r.is_empty()) {
        let r = esc(r);
        let mut kept = String::with_capacity(out.len() + 32);
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&r) {
            let (before, after) = (&rest[..at], &rest[at + r.len()..]);
            let alone = before.chars().next_back().is_none_or(char::is_whitespace)
                && after
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace() || ".,;:!?)".contains(c));
            kept.push_str(before);
            if alone {
                let _ = write!(kept, r#"<strong class="ref">{r}</strong>"#);
            } else {
                kept.push_str(&r);
            }
            rest = after;
        }
        kept.push_str(rest);
        out = kept;
    }
    out
}

/// The page's links to its forms, for the actions a state offers.
const ACTIONS: &[(Action, &str, &str)] = &[
    (Action::AnotherTime, "another-time", "Choose another time"),
    (Action::SafePlace, "safe-place", "Name a safe place"),
    (Action::Report, "report", "Report a problem"),
];

/// A value's name in the JSON twin (`attempt_failed`), so the page and its script agree.
fn json_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Proof of delivery: the photo itself (when the carrier gave a link to one) and
/// what kind of proof it is; when and where are in the status lines above.
fn proof_section(b: &mut String, proof: &ProofView, view: &TrackView) {
    let kind = match proof.kind.as_str() {
        "photo" => "The driver took a photo where they left it.",
        "signature" => "Signed for.",
        "safe_place" => "Left in a safe place.",
        "handed" => "Handed over in person.",
        _ => "",
    };
    let _ = write!(b, r#"<section id="proof"><h2>Proof of delivery</h2>"#);
    if let Some(photo) = proof
        .photo
        .as_deref()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
    {
        let _ = write!(
            b,
            r#"<a href="{0}"><img class="photo" src="{0}" alt="Photo of your parcel where it was left"></a>"#,
            esc(photo)
        );
    }
    let when = view
        .stages
        .iter()
        .rev()
        .find(|s| s.stage == "delivered")
        .map(|s| s.local.as_str())
        .unwrap_or_default();
    let _ = write!(
        b,
        r#"<p>{} <span class="muted">{}</span></p></section>"#,
        esc(kind),
        esc(when)
    );
}

fn forms(b: &mut String, p: &Page<'_>, token: &str) {
    let shipment = &p.tracked.shipment;
    let kept = |form: &str, field: &str| p.kept.and_then(|k| k.value(form, field)).map(str::to_owned);
    let alert = |form: &str| p.kept.map(|k| k.alert(form)).unwrap_or_default();
    let instructions =
        kept("instructions", "instructions").unwrap_or_else(|| shipment.instructions().unwrap_or_default());
    let _ = write!(
        b,
        r#"<section id="instructions"><h2>Instructions for the driver</h2>{}<form method="post" action="/t/{token}/instructions">
<textarea name="instructions" maxlength="500" rows="2" required>{}</textarea><button type="submit">Save</button></form></section>"#,
        alert("instructions"),
        esc(&instructions)
    );
    let safe = shipment.safe_place();
    let _ = write!(
        b,
        r#"<section id="safe-place"><h2>Safe place</h2>{}{}<form method="post" action="/t/{token}/safe-place" enctype="multipart/form-data">
<label>Where may we leave it? <input name="place" maxlength="500" required value="{}"></label>
<label>A photo of the place (JPEG or PNG, up to 5 MiB) <input type="file" name="photo" accept="image/jpeg,image/png"></label>
<button type="submit">Save</button></form></section>"#,
        alert("safe-place"),
        if safe.as_ref().is_some_and(|s| s.photo.is_some()) {
            format!(r#"<img class="photo" src="/t/{token}/safe-place-photo" alt="Your safe place">"#)
        } else {
            String::new()
        },
        esc(&kept("safe-place", "place").unwrap_or_else(|| safe.map(|s| s.place).unwrap_or_default()))
    );
    // The slots are hours of the customer's own day (the form's handler reads them so).
    let tomorrow = p.zone_date(Timestamp(p.now.0 + 86_400_000_000));
    let day = kept("another-time", "date").unwrap_or_else(|| tomorrow.clone());
    let _ = write!(
        b,
        r#"<section id="another-time"><h2>Another time</h2>{3}<form method="post" action="/t/{token}/reschedule">
<label>Day <input type="date" name="date" required min="{0}" value="{2}"></label><label>Time ({1}) <select name="slot">"#,
        esc(&tomorrow),
        esc(&p.view.timezone),
        esc(&day),
        alert("another-time")
    );
    let chosen = kept("another-time", "slot");
    for (slot, label, _, _) in SLOTS {
        let selected = if chosen.as_deref() == Some(*slot) {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, r#"<option value="{slot}"{selected}>{label}</option>"#);
    }
    b.push_str(r#"</select></label><button type="submit">Reschedule</button></form></section>"#);
}

/// The map (see `map.rs`): this customer's address, the driver while on the way,
/// and the driver's last minutes, over tiles when configured.
fn map(p: &Page<'_>) -> String {
    let destination = p
        .view
        .destination
        .as_ref()
        .map(|d| super::geo::LatLon::new(d.lat, d.lon));
    let tiles = super::map::Tiles::of(p.config);
    super::map::render(&super::map::MapInput {
        destination,
        last: p.view.last_position.as_ref(),
        trail: p.trail,
        stops_before: p.view.stops_before,
        tiles: tiles.as_ref(),
        stale_after: POSITION_FRESH_US / 1_000_000,
    })
}

fn hidden(yes: bool) -> &'static str {
    if yes { " hidden" } else { "" }
}

/// The stages' labels for the script, which renders stages that arrive live.
fn labels_json() -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        ALL.iter().map(|s| (s.as_str().to_owned(), s.label().into())).collect();
    serde_json::Value::Object(map).to_string()
}

use troth_core::shipment::Stage;

const ALL: &[Stage] = &[
    Stage::Placed,
    Stage::Picked,
    Stage::Packed,
    Stage::HandedOver,
    Stage::OutForDelivery,
    Stage::Arriving,
    Stage::AttemptFailed,
    Stage::Rescheduled,
    Stage::Delivered,
    Stage::Lost,
    Stage::Returned,
];

fn stage_label(stage: &str) -> Option<&'static str> {
    ALL.iter().find(|s| s.as_str() == stage).map(|s| s.label())
}

/// The page frame in the retailer's name and colour; no staff navigation.
fn frame(title: &str, head: Option<&str>, config: &TrackingConfig, body: &str) -> String {
    let name = config.name.as_deref().unwrap_or("Your delivery");
    let colour = config
        .colour
        .as_deref()
        .filter(|c| c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or("#2456d6");
    let logo = config
        .logo_url
        .as_deref()
        .map(|url| format!(r#"<img class="logo" src="{}" alt="">"#, esc(url)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin"><meta name="robots" content="noindex">
{}<title>{} · {}</title><link rel="stylesheet" href="/assets/track.css"><style>:root{{--brand:{colour}}}</style></head>
<body class="track"><header>{logo}<span class="retailer">{}</span></header>
<main>{body}</main></body></html>"#,
        head.unwrap_or(""),
        esc(title),
        esc(name),
        esc(name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_reference_is_kept_whole_only_where_it_stands_alone() {
        let line = "Opened case play-a1; quote play-a1 if you call. xplay-a1 and play-a12 are other words.";
        assert_eq!(
            with_references(line, ["play-a1"].into_iter()),
            r#"Opened case <strong class="ref">play-a1</strong>; quote <strong class="ref">play-a1</strong> if you call. xplay-a1 and play-a12 are other words."#
        );
        // Escaped before it is marked.
        assert_eq!(
            with_references("case <a&b>", ["<a&b>"].into_iter()),
            r#"case <strong class="ref">&lt;a&amp;b&gt;</strong>"#
        );
    }
}
