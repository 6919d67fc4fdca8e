//! `/ui/customers/{id}`: the agent's one screen for a customer, from the same story
//! the API serves (`crate::story`): a summary first (open cases and their clocks,
//! promises at risk or broken, orders and spend, their last score, the channel they
//! use), then cases, promises, shipments with the customer's own tracking page,
//! what they said, and the timeline in words with routine events folded away.
//! `/ui/customers?q=` finds a customer by email, phone, order, shipment or name.
//!
//! An agent acts from the same page: a resolve form on each open case, and forms to
//! add a note, promise a callback and make a goodwill gesture. They post to
//! `/ui/customers/{id}/actions` ([`crate::actions`], as the API does) and come back
//! here, which then shows what was done; a refusal is said in words above them.

use std::fmt::Write;

use troth_core::Timestamp;
use troth_core::case::{CaseView, ClockState, SlaClock};
use troth_core::story::Tone;
use troth_store::Store;

use super::html::{esc, page, url_segment};
use super::pages::clock;
use crate::story::{Story, StoryOptions};
use crate::tracking::Zone;
use crate::{ApiError, AppState};

type PageResult = Result<Option<String>, ApiError>;

/// What the page shows besides the story.
#[derive(Debug, Default)]
pub struct Shown<'a> {
    /// Routine events in the timeline too.
    pub noise: bool,
    /// The action just done (`note`, `callback`, `resolve`, `goodwill`).
    pub done: Option<&'a str>,
    /// An action refused: said in words, its form filled as it was sent.
    pub refused: Option<&'a Refused>,
}

/// An action the page's form sent and troth refused.
#[derive(Debug)]
pub struct Refused {
    pub action: String,
    pub message: String,
    /// The form's fields as sent.
    pub values: Vec<(String, String)>,
}

impl Refused {
    /// What the refused form had in `field`, when `action`'s form is the one refused.
    fn value(&self, action: &str, field: &str) -> Option<&str> {
        (self.action == action)
            .then(|| self.values.iter().find(|(name, _)| name == field))
            .flatten()
            .map(|(_, value)| value.as_str())
    }
}

pub async fn customer<S: Store>(
    state: &AppState<S>,
    reader: Option<&crate::auth::Reader>,
    key: &str,
    shown: &Shown<'_>,
) -> PageResult {
    let noise = shown.noise;
    let options = StoryOptions { noise, channel: None };
    let now = Timestamp::now();
    let Some(story) = crate::story::read(state, key, &options, now).await? else {
        return Ok(None);
    };
    // Forms only for those who may act; each form carries its own Idempotency-Key,
    // so a double click stores one event.
    let acting = match reader {
        Some(reader) if may_act(state, reader) => Some(Acting {
            action: format!("/ui/customers/{}/actions", url_segment(&story.customer.id)),
            refused: shown.refused,
        }),
        _ => None,
    };
    crate::audit::record(state, reader, &story.customer.id, "page").await?;
    let zone = &state.tracking.config.timezone;
    // Named as people know them: their name, else an email, else the sender's own id.
    let known_as = |kind: &str| {
        story
            .customer
            .identities
            .iter()
            .find(|i| i.kind == kind)
            .map(|i| i.value.clone())
    };
    let name = story
        .customer
        .name
        .clone()
        .or_else(|| known_as("email"))
        .or_else(|| known_as("id"))
        .unwrap_or_else(|| story.customer.id.clone());
    let mut body = String::new();
    body.push_str(&search_form(""));
    if let Some(refused) = shown.refused {
        // On a phone the form can be screens below: a link leads back to it.
        let form = match refused.action.as_str() {
            "resolve" => Some("cases"),
            "note" | "callback" | "goodwill" => Some(refused.action.as_str()),
            _ => None,
        };
        let _ = write!(
            body,
            r#"<p class="error" role="alert">{}{}</p>"#,
            esc(&refused.message),
            form.map(|f| format!(r##" <a href="#{f}">Back to the form</a>"##))
                .unwrap_or_default()
        );
    } else if let Some(done) = shown.done.and_then(done_words) {
        let _ = write!(body, r#"<p class="done" role="status">{}</p>"#, esc(done));
    }
    summary(&mut body, &story, zone);
    cases(&mut body, &story.cases, zone, acting.as_ref())?;
    match &acting {
        Some(acting) => act(&mut body, &story, zone, acting, now)?,
        None => body.push_str(
            r#"<p class="muted">Signed in with a key that may only read: sign in with an agent key to act for this customer.</p>"#,
        ),
    }
    promises(&mut body, &story, zone);
    shipments(&mut body, &story, zone);
    feedback(&mut body, &story, zone);
    timeline(&mut body, &story, zone, noise);
    who(&mut body, &story);
    Ok(Some(page(&name, None, &body)))
}

fn tone_class(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => "good",
        Tone::Bad => "bad",
        Tone::Neutral => "",
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn summary(body: &mut String, story: &Story, zone: &Zone) {
    let c = &story.customer;
    let contact: Vec<String> = c
        .identities
        .iter()
        .filter(|i| i.kind == "email" || i.kind == "phone")
        .map(|i| esc(&i.value))
        .collect();
    let _ = write!(
        body,
        r#"<p class="muted">{} · <span class="mono">{}</span>{}</p><div class="cards">"#,
        if contact.is_empty() {
            "no email or phone known".to_owned()
        } else {
            contact.join(" · ")
        },
        esc(&c.id),
        c.first_seen
            .as_deref()
            .map(|t| format!(" · customer since {}", esc(&clock(zone, t))))
            .unwrap_or_default()
    );
    // The most urgent open case: its resolution clock says how long is left.
    let urgent = story.cases.iter().find(|case| case.state == "open");
    let (class, detail) = match urgent {
        Some(case) if case.breached => (
            "card bad",
            format!("{} {}", esc(&case.id), esc(&clock_words(&case.resolution_clock))),
        ),
        Some(case) => (
            "card warn",
            format!("{} {}", esc(&case.id), esc(&clock_words(&case.resolution_clock))),
        ),
        None => ("card", String::new()),
    };
    let _ = write!(
        body,
        r#"<div class="{class}"><div class="n">{}</div><div class="l">open {}{}</div></div>"#,
        c.open_cases,
        if c.open_cases == 1 { "case" } else { "cases" },
        if detail.is_empty() {
            String::new()
        } else {
            format!(" · {detail}")
        }
    );
    let troubled = c.promises_at_risk + c.promises_broken;
    let _ = write!(
        body,
        r#"<div class="{}"><div class="n">{troubled}</div><div class="l">promises at risk or broken ({} at risk, {} broken)</div></div>"#,
        if c.promises_broken > 0 {
            "card bad"
        } else if c.promises_at_risk > 0 {
            "card warn"
        } else {
            "card"
        },
        c.promises_at_risk,
        c.promises_broken
    );
    let spend = if c.value.spend.is_empty() {
        "nothing spent".to_owned()
    } else {
        c.value.spend.join(" + ")
    };
    let _ = write!(
        body,
        r#"<div class="card"><div class="n">{}</div><div class="l">{}, {}{}</div></div>"#,
        esc(&plural(c.value.orders, "order", "orders")),
        esc(&plural(c.value.items, "item", "items")),
        esc(&spend),
        if c.value.cancelled > 0 {
            format!(", {} cancelled", c.value.cancelled)
        } else {
            String::new()
        }
    );
    let (nps_class, nps) = match c.latest_nps {
        Some(n @ 0..=6) => ("card bad", format!("{n} of 10")),
        Some(n @ 9..=10) => ("card", format!("{n} of 10")),
        Some(n) => ("card", format!("{n} of 10")),
        None => ("card", "–".to_owned()),
    };
    let _ = write!(
        body,
        r#"<div class="{nps_class}"><div class="n">{}</div><div class="l">their last NPS answer</div></div>
<div class="card"><div class="n">{}</div><div class="l">the channel they use most</div></div></div>"#,
        esc(&nps),
        esc(c.preferred_channel.as_deref().unwrap_or("–")),
    );
    body.push_str(
        r#"<p class="muted">Next best action: no suggestion yet — troth will say what to do next, and why, here.</p>"#,
    );
}

/// "due in 3 h 50 business time" / "breached 10 min ago (business time)" / "met".
fn clock_words(clock: &SlaClock) -> String {
    let minutes = clock.business_minutes_left.unsigned_abs();
    let amount = match minutes {
        0..=59 => format!("{minutes} min"),
        60..=599 => format!("{} h {:02} min", minutes / 60, minutes % 60),
        _ => format!("{} h", minutes / 60),
    };
    match clock.state {
        ClockState::Running => format!("due in {amount} of business time"),
        ClockState::Breached => format!("overdue by {amount} of business time"),
        ClockState::Met => "met".into(),
        ClockState::MissedThenDone => format!("met {amount} late"),
    }
}

fn clock_cell(zone: &Zone, label: &str, sla: &SlaClock) -> String {
    let class = match sla.state {
        ClockState::Breached | ClockState::MissedThenDone => "bad",
        ClockState::Running => "",
        ClockState::Met => "good",
    };
    format!(
        r#"<td class="{class}" data-label="{label}">{}<br><span class="muted">due {}</span></td>"#,
        esc(&clock_words(sla)),
        esc(&clock(zone, &sla.due))
    )
}

fn cases(body: &mut String, cases: &[CaseView], zone: &Zone, acting: Option<&Acting<'_>>) -> Result<(), ApiError> {
    if cases.is_empty() {
        return Ok(());
    }
    body.push_str(
        r#"<h2>Cases</h2><table class="stack" id="cases"><tr><th>case</th><th>about</th><th>with</th><th>first response</th><th>resolution</th><th>effort</th><th>outcome</th></tr>"#,
    );
    for case in cases {
        let effort = &case.effort;
        let mut costs = Vec::new();
        if effort.transfers > 0 {
            costs.push(plural(effort.transfers.into(), "transfer", "transfers"));
        }
        if effort.holds > 0 {
            costs.push(format!(
                "{} ({} min)",
                plural(effort.holds.into(), "hold", "holds"),
                effort.held_seconds / 60
            ));
        }
        if effort.reopens > 0 {
            costs.push(plural(effort.reopens.into(), "reopen", "reopens"));
        }
        if effort.repeat_contacts > 0 {
            costs.push(plural(
                effort.repeat_contacts.into(),
                "repeat contact",
                "repeat contacts",
            ));
        }
        let verdict = match case.first_contact_resolution {
            Some(true) => r#"<br><span class="good">resolved on the first contact</span>"#,
            Some(false) => r#"<br><span class="bad">not resolved on the first contact</span>"#,
            None => "",
        };
        let outcome = match (&case.resolution, acting) {
            (Some(resolution), _) => format!(r#"<span class="good">resolved: {}</span>"#, esc(&words(resolution))),
            (None, Some(acting)) => resolve_form(case, acting)?,
            (None, None) => r#"<span class="muted">open</span>"#.to_owned(),
        };
        let _ = write!(
            body,
            r#"<tr data-case="{}"><td data-label="case"><strong>{}</strong><br><span class="muted">opened {}</span></td><td data-label="about">{}{}</td><td data-label="with">{}{}</td>{}{}<td data-label="effort">{}{verdict}</td><td data-label="outcome">{outcome}</td></tr>"#,
            esc(&case.id),
            esc(&case.id),
            esc(&clock(zone, &case.opened_at)),
            esc(&case.category.replace('_', " ")),
            case.order
                .as_deref()
                .map(|o| format!("<br><span class=\"muted\">order {}</span>", esc(o)))
                .unwrap_or_default(),
            esc(&case.team),
            case.agent
                .as_deref()
                .map(|a| format!(" · {}", esc(a)))
                .unwrap_or_default(),
            clock_cell(zone, "first response", &case.first_response),
            clock_cell(zone, "resolution", &case.resolution_clock),
            if costs.is_empty() {
                "none".to_owned()
            } else {
                esc(&costs.join(", "))
            },
        );
    }
    body.push_str("</table>");
    Ok(())
}

/// Where the page's forms post, and the form refused last, if one was.
struct Acting<'a> {
    action: String,
    refused: Option<&'a Refused>,
}

/// Whether `reader` may act for customers: the master key, an open server, or a key
/// with the agent scope (admin includes it), as `POST …/actions` requires.
pub fn may_act<S: Store>(state: &AppState<S>, reader: &crate::auth::Reader) -> bool {
    match reader.id.as_str() {
        "master" | "open" => true,
        uid => state
            .store
            .api_key(uid)
            .is_some_and(|key| key.allows(troth_store::Scope::Agent)),
    }
}

fn done_words(action: &str) -> Option<&'static str> {
    Some(match action {
        "note" => "Note added.",
        "callback" => "Callback promised: it is followed as a promise.",
        "resolve" => "Case resolved.",
        "goodwill" => "Goodwill gesture recorded.",
        _ => return None,
    })
}

fn words(code: &str) -> String {
    code.replace('_', " ")
}

/// The hidden fields every action form carries: which action, and a fresh
/// Idempotency-Key.
fn hidden(action: &str) -> Result<String, ApiError> {
    Ok(format!(
        r#"<input type="hidden" name="action" value="{action}"><input type="hidden" name="key" value="{}">"#,
        crate::tracking::random_hex::<12>()?
    ))
}

fn resolve_form(case: &CaseView, acting: &Acting<'_>) -> Result<String, ApiError> {
    let chosen = acting
        .refused
        .filter(|r| r.value("resolve", "case") == Some(case.id.as_str()))
        .and_then(|r| r.value("resolve", "resolution"));
    let mut options = String::from(r#"<option value="">resolution…</option>"#);
    for (code, label) in troth_core::case::RESOLUTION_CODES {
        let _ = write!(
            options,
            r#"<option value="{code}"{}>{}</option>"#,
            if chosen == Some(code) { " selected" } else { "" },
            esc(label)
        );
    }
    Ok(format!(
        r#"<form class="resolve" method="post" action="{}">{}<input type="hidden" name="case" value="{}"><select name="resolution" required aria-label="Resolution of case {}">{options}</select><button type="submit">Resolve</button></form>"#,
        esc(&acting.action),
        hidden("resolve")?,
        esc(&case.id),
        esc(&case.id),
    ))
}

/// A select of the customer's cases, open ones first; `chosen`, else the first open
/// one. `optional`: "no case" may be chosen.
fn case_select(cases: &[CaseView], chosen: Option<&str>, optional: bool) -> String {
    let chosen = chosen.or_else(|| cases.iter().find(|c| c.state == "open").map(|c| c.id.as_str()));
    let mut out = String::from(if optional {
        r#"<label>About<select name="case"><option value="">no case</option>"#
    } else {
        r#"<label>About<select name="case" required>"#
    });
    for case in cases {
        let _ = write!(
            out,
            r#"<option value="{}"{}>case {} · {}{}</option>"#,
            esc(&case.id),
            if chosen == Some(case.id.as_str()) {
                " selected"
            } else {
                ""
            },
            esc(&case.id),
            esc(&words(&case.category)),
            if case.state == "open" { " (open)" } else { "" }
        );
    }
    out.push_str("</select></label>");
    out
}

/// The forms of what an agent does beyond resolving: a note, a callback, a goodwill
/// gesture. A refused form comes back as it was sent.
fn act(body: &mut String, story: &Story, zone: &Zone, acting: &Acting<'_>, now: Timestamp) -> Result<(), ApiError> {
    let value = |action: &str, field: &str| {
        acting
            .refused
            .and_then(|r| r.value(action, field))
            .map(esc)
            .unwrap_or_default()
    };
    let chosen_case = |action: &str| acting.refused.and_then(|r| r.value(action, "case"));
    const HOUR_US: i64 = 3_600_000_000;
    // By default, a callback on the hour at least two hours from now.
    let suggested = Timestamp((now.micros() + 3 * HOUR_US - 1) / HOUR_US * HOUR_US);
    let due = match acting.refused.and_then(|r| r.value("callback", "due")) {
        Some(typed) => esc(typed),
        None => zone.local_input(suggested),
    };
    let currency = match acting.refused.and_then(|r| r.value("goodwill", "currency")) {
        Some(typed) => esc(typed),
        None => esc(story.currency.as_deref().unwrap_or("")),
    };
    let kind = acting
        .refused
        .and_then(|r| r.value("goodwill", "kind"))
        .unwrap_or("voucher");
    let kinds: String = [
        ("voucher", "Voucher"),
        ("refund", "Refund"),
        ("points", "Loyalty points"),
    ]
    .iter()
    .map(|(k, label)| {
        format!(
            r#"<option value="{k}"{}>{label}</option>"#,
            if *k == kind { " selected" } else { "" }
        )
    })
    .collect();
    let _ = write!(
        body,
        r#"<h2 id="act">Act</h2><div class="acts">
<form class="act" id="note" method="post" action="{action}"><h3>Add a note</h3>{note_hidden}<label>Note<textarea name="text" rows="3" maxlength="{max_note}" required>{text}</textarea></label>{note_case}<button type="submit">Add note</button></form>
{callback}
<form class="act" id="goodwill" method="post" action="{action}"><h3>Goodwill gesture</h3>{goodwill_hidden}<label>Gesture<select name="kind">{kinds}</select></label><div class="row"><label>Amount<input name="amount" inputmode="decimal" placeholder="20.00" value="{amount}"></label><label>Currency<input name="currency" maxlength="3" placeholder="EUR" value="{currency}"></label></div><label>Points (for loyalty points)<input name="points" inputmode="numeric" value="{points}"></label><label>Reason<input name="reason" maxlength="{max_reason}" required value="{reason}"></label>{goodwill_case}<button type="submit">Give</button></form>
</div>"#,
        action = esc(&acting.action),
        note_hidden = hidden("note")?,
        max_note = crate::actions::MAX_NOTE_CHARS,
        text = value("note", "text"),
        note_case = case_select(&story.cases, chosen_case("note"), true),
        callback = if story.cases.is_empty() {
            // Its promise is followed on a case, which `callback.made` names too.
            r#"<div class="act" id="callback"><h3>Promise a callback</h3><p class="muted">A callback is promised on a case, and this customer has none.</p></div>"#.to_owned()
        } else {
            format!(
                r#"<form class="act" id="callback" method="post" action="{action}"><h3>Promise a callback</h3>{hidden}<label>When ({zone_name})<input type="datetime-local" name="due" value="{due}" min="{min}" required></label>{case}<button type="submit">Promise callback</button></form>"#,
                action = esc(&acting.action),
                hidden = hidden("callback")?,
                zone_name = esc(zone.name()),
                min = zone.local_input(now),
                case = case_select(&story.cases, chosen_case("callback"), false),
            )
        },
        goodwill_hidden = hidden("goodwill")?,
        amount = value("goodwill", "amount"),
        points = value("goodwill", "points"),
        max_reason = crate::actions::MAX_REASON_CHARS,
        reason = value("goodwill", "reason"),
        goodwill_case = case_select(&story.cases, chosen_case("goodwill"), true),
    );
    Ok(())
}

fn promises(body: &mut String, story: &Story, zone: &Zone) {
    if story.promises.is_empty() {
        return;
    }
    body.push_str(
        r#"<h2>Promises</h2><table class="stack"><tr><th>promise</th><th>about</th><th>due</th><th>state</th></tr>"#,
    );
    for p in &story.promises {
        let class = match p.state.as_str() {
            "kept" => "good",
            "broken" => "bad",
            "at_risk" => "warn",
            _ => "muted",
        };
        let _ = write!(
            body,
            r#"<tr><td data-label="promise">{}</td><td data-label="about">{}</td><td data-label="due">{}</td><td class="{class}" data-label="state">{}</td></tr>"#,
            esc(&p.key.replace('_', " ")),
            super::pages::subject_link(&p.subject),
            esc(&clock(zone, &p.due)),
            esc(&p.state.replace('_', " "))
        );
    }
    body.push_str("</table>");
}

fn shipments(body: &mut String, story: &Story, zone: &Zone) {
    if story.shipments.is_empty() {
        return;
    }
    body.push_str(
        r#"<h2>Shipments</h2><table class="stack"><tr><th>shipment</th><th>now</th><th>window</th><th>what they see</th></tr>"#,
    );
    for s in &story.shipments {
        let bad = matches!(s.stage.as_deref(), Some("attempt_failed" | "lost" | "returned"));
        let window = match (&s.window_start, &s.window_end) {
            (Some(start), Some(end)) => match (Timestamp::parse_rfc3339(start), Timestamp::parse_rfc3339(end)) {
                (Some(a), Some(b)) => zone.clock_span(a, b),
                _ => String::new(),
            },
            _ => "–".to_owned(),
        };
        let _ = write!(
            body,
            r#"<tr><td data-label="shipment"><a href="/ui/shipments/{}">{}</a><br><span class="muted">order {} · {}</span></td><td class="{}" data-label="now">{}{}</td><td data-label="window">{}</td><td data-label="what they see">{}</td></tr>"#,
            url_segment(&s.id),
            esc(&s.id),
            esc(&s.order),
            esc(&s.carrier),
            if bad { "bad" } else { "" },
            esc(s.stage_label.as_deref().unwrap_or("–")),
            s.stage_at
                .as_deref()
                .map(|t| format!("<br><span class=\"muted\">{}</span>", esc(&clock(zone, t))))
                .unwrap_or_default(),
            esc(&window),
            s.tracking_url
                .as_deref()
                .map(|u| format!(r#"<a href="{}">their tracking page</a>"#, esc(u)))
                .unwrap_or_else(|| "–".to_owned()),
        );
    }
    body.push_str("</table>");
}

fn feedback(body: &mut String, story: &Story, zone: &Zone) {
    if story.feedback.is_empty() {
        return;
    }
    body.push_str("<h2>What they said</h2><ul class=\"said\">");
    for f in &story.feedback {
        let _ = write!(
            body,
            r#"<li class="{}">{} <span class="muted">{}</span></li>"#,
            tone_class(f.tone),
            esc(&f.text),
            esc(&clock(zone, &f.time))
        );
    }
    body.push_str("</ul>");
}

fn timeline(body: &mut String, story: &Story, zone: &Zone, noise: bool) {
    let _ = write!(
        body,
        r#"<h2>Timeline</h2><p class="muted">Newest first, every channel; {}</p><table class="timeline"><tr><th>when</th><th>channel</th><th>what happened</th></tr>"#,
        if noise {
            format!(
                r#"routine events included (<a href="/ui/customers/{}">fold them away</a>)."#,
                url_segment(&story.customer.id)
            )
        } else {
            format!(
                r#"routine events (positions, page views, tracking visits) folded away (<a href="/ui/customers/{}?noise=true">show them</a>)."#,
                url_segment(&story.customer.id)
            )
        }
    );
    for entry in &story.timeline {
        let _ = write!(
            body,
            r#"<tr><td class="muted nowrap">{}</td><td>{}</td><td class="{}">{}</td></tr>"#,
            esc(&clock(zone, &entry.time)),
            esc(entry.channel.as_deref().unwrap_or("–")),
            tone_class(entry.line.tone),
            esc(&entry.line.text)
        );
    }
    body.push_str("</table>");
    if story.timeline_truncated {
        body.push_str(
            r#"<p class="muted">Older events are left out; the API lists them all (/api/v1/events?customer=…).</p>"#,
        );
    }
}

fn who(body: &mut String, story: &Story) {
    let c = &story.customer;
    body.push_str(r#"<details class="explain"><summary>Identities and traits</summary><table>"#);
    for identity in &c.identities {
        let _ = write!(
            body,
            r#"<tr><td>{}</td><td class="mono">{}</td></tr>"#,
            esc(&identity.kind),
            esc(&identity.value)
        );
    }
    if !c.merged_from.is_empty() {
        let _ = write!(
            body,
            r#"<tr><td>merged from</td><td class="mono">{}</td></tr>"#,
            esc(&c.merged_from.join(", "))
        );
    }
    for (name, value) in &c.traits {
        let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        let _ = write!(body, "<tr><td>{}</td><td>{}</td></tr>", esc(name), esc(&value));
    }
    body.push_str("</table></details>");
}

/// The search box of the customer pages.
pub fn search_form(query: &str) -> String {
    format!(
        r#"<form class="search" method="get" action="/ui/customers"><input name="q" value="{}" placeholder="Email, phone, order, shipment or name" aria-label="Find a customer"> <button>Find</button></form>"#,
        esc(query)
    )
}
