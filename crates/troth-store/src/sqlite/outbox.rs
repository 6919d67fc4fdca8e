//! The transactional outbox (docs/notifications.md) and the consent projection it
//! reads. A play's messages are inserted in the projections' transaction that meets the event
//! that triggered them, under their idempotency key, so an event is never without
//! its messages and a duplicate never enqueues twice. The dispatcher (troth-notify)
//! claims, sends and marks rows through the projections thread.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value, json};
use troth_core::catalogue::{EventData, Purpose};
use troth_core::identity::CustomerId;
use troth_core::play::{Planned, PlannedAction};
use troth_core::{Channel, Timestamp, ValidEvent};

use super::notices;
use crate::{Compose, OutboxEntry, OutboxPage, OutboxQuery, OutboxState, RetryPolicy, StoreError};

/// Projects a `customer.consent_changed` event: the latest answer (by event time)
/// per customer, channel and purpose.
pub fn apply_consent(conn: &Connection, schema: &str, event: &ValidEvent, cid: Option<i64>) -> rusqlite::Result<()> {
    let (EventData::ConsentChanged(consent), Some(cid)) = (&event.data, cid) else {
        return Ok(());
    };
    conn.prepare_cached(&format!(
        "INSERT INTO {schema}.consents (cid, channel, purpose, granted, time_us) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (cid, channel, purpose) DO UPDATE SET granted = excluded.granted, time_us = excluded.time_us
          WHERE excluded.time_us >= consents.time_us"
    ))?
    .execute(params![
        cid,
        consent.channel.as_str(),
        consent.purpose.as_str(),
        consent.granted,
        event.time.micros()
    ])?;
    Ok(())
}

/// The customer's latest consent answer for a channel and purpose, counting the
/// customers merged into them; `None` when they never said.
fn consent(conn: &Connection, cid: i64, channel: Channel, purpose: Purpose) -> rusqlite::Result<Option<bool>> {
    // Lookups joined by UNION ALL and the latest picked here: IN (… UNION …) and
    // ORDER BY would each build a temporary b-tree on every call.
    let mut answers = conn.prepare_cached(
        "SELECT granted, time_us FROM consents WHERE cid = ?1 AND channel = ?2 AND purpose = ?3
         UNION ALL
         SELECT c.granted, c.time_us FROM customers m JOIN consents c ON c.cid = m.cid
          WHERE m.merged_into = ?1 AND c.channel = ?2 AND c.purpose = ?3",
    )?;
    let answers = answers.query_map(params![cid, channel.as_str(), purpose.as_str()], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, bool>(0)?))
    })?;
    let mut latest: Option<(i64, bool)> = None;
    for answer in answers {
        let answer = answer?;
        if latest.is_none_or(|l| answer.0 >= l.0) {
            latest = Some(answer);
        }
    }
    Ok(latest.map(|(_, granted)| granted))
}

/// Records a play's message or alert. Plays' messages are service messages: a
/// customer who withdrew `service` consent on the channel gets a `skipped` row
/// saying so, as does one without an address for it, or one the over-contact rules
/// spare (see [`notices`]). With a `composer`, a message's text is rendered here.
pub fn enqueue(
    conn: &Connection,
    planned: &Planned,
    event: &ValidEvent,
    cid: Option<i64>,
    now: Timestamp,
    composer: Option<&dyn Compose>,
) -> Result<bool, StoreError> {
    let customer = match cid {
        Some(cid) => Some((cid, traits(conn, cid)?)),
        None => None,
    };
    let mut payload = json!({
        "play": planned.play,
        "touchpoint": planned.touchpoint,
        "event": serde_json::from_str::<Value>(&event.raw).unwrap_or(Value::Null),
    });
    if let Some((cid, traits)) = &customer {
        payload["customer"] = json!({"id": CustomerId(*cid).to_string(), "traits": traits});
    }
    if let Some(promise) = promise_of(conn, event)? {
        payload["promise"] = promise;
    }
    let shipment = match &planned.action {
        PlannedAction::NotifyCustomer { .. } => notices::context(conn, event, now)?,
        _ => None,
    };
    if let Some(shipment) = &shipment {
        payload["shipment"] = shipment.payload.clone();
    }
    // Set when the row, if written as pending, tells the customer about the shipment.
    let mut contact = None;
    let (channel, recipient, skipped) = match &planned.action {
        PlannedAction::NotifyCustomer { channel, template } => {
            payload["template"] = template.as_str().into();
            let (recipient, mut skipped) = match &customer {
                None => (None, Some("the event names no customer".to_owned())),
                Some((cid, traits)) => recipient(conn, *cid, traits, *channel)?,
            };
            if skipped.is_none()
                && let (Some(shipment), Some((cid, _))) = (&shipment, &customer)
            {
                skipped = notices::over_contact(conn, shipment, event, *cid, template)?;
                contact = Some((shipment, *cid, template));
            }
            // Rendered once, here, so replays and later template changes never alter what is sent.
            if skipped.is_none()
                && let Some(message) = composer.and_then(|c| c.compose(&payload))
            {
                payload["message"] = json!(message);
            }
            (channel.as_str().to_owned(), recipient, skipped)
        }
        PlannedAction::AlertOwner { function, webhook_url } => {
            payload["function"] = function.as_str().into();
            let skipped = webhook_url
                .is_none()
                .then(|| format!("function {function:?} has no webhook_url in the journey map"));
            ("webhook".to_owned(), webhook_url.clone(), skipped)
        }
        PlannedAction::OpenCase { .. } => return Ok(false),
    };
    let (state, next_attempt) = match skipped {
        Some(_) => (OutboxState::Skipped, None),
        None => (OutboxState::Pending, Some(now.micros())),
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO outbox (id, play, event_id, channel, recipient, payload, state, next_attempt_us, last_error, created_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            planned.id,
            planned.play,
            event.id,
            channel,
            recipient,
            payload.to_string(),
            state.as_str(),
            next_attempt,
            skipped,
            now.micros()
        ])?;
    let pending = inserted == 1 && state == OutboxState::Pending;
    if pending && let Some((shipment, cid, template)) = contact {
        notices::record(conn, shipment, event, cid, template, &planned.id)?;
    }
    Ok(pending)
}

/// The address to send to, or why there is none.
fn recipient(
    conn: &Connection,
    cid: i64,
    traits: &Map<String, Value>,
    channel: Channel,
) -> rusqlite::Result<(Option<String>, Option<String>)> {
    let channel_name = channel.as_str();
    if !matches!(channel, Channel::Email | Channel::Sms) {
        return Ok((None, Some(format!("troth cannot send on {channel_name}"))));
    }
    if consent(conn, cid, channel, Purpose::Service)? == Some(false) {
        return Ok((
            None,
            Some(format!("the customer withdrew service consent for {channel_name}")),
        ));
    }
    Ok(match address(conn, cid, traits, channel)? {
        Some(address) => (Some(address), None),
        None => (None, Some(format!("the customer has no {channel_name} address"))),
    })
}

fn traits(conn: &Connection, cid: i64) -> rusqlite::Result<Map<String, Value>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT traits FROM customers WHERE cid = ?1")?
        .query_row([cid], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
}

/// Where to reach the customer on a channel: the `email`/`phone` trait when they
/// set one, else an identity of that kind.
fn address(
    conn: &Connection,
    cid: i64,
    traits: &Map<String, Value>,
    channel: Channel,
) -> rusqlite::Result<Option<String>> {
    let (trait_name, prefix) = match channel {
        Channel::Email => ("email", "email:"),
        Channel::Sms => ("phone", "phone:"),
        _ => return Ok(None),
    };
    if let Some(value) = traits.get(trait_name).and_then(Value::as_str).filter(|v| !v.is_empty()) {
        return Ok(Some(value.to_owned()));
    }
    let key: Option<String> = conn
        .prepare_cached(
            "SELECT key FROM identities WHERE cid = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key LIMIT 1",
        )?
        .query_row(params![cid, prefix], |r| r.get(0))
        .optional()?;
    Ok(key.map(|k| k[prefix.len()..].to_owned()))
}

/// The promise a `promise.*` event concerns, for templates (`{promise.due}`).
fn promise_of(conn: &Connection, event: &ValidEvent) -> rusqlite::Result<Option<Value>> {
    let id = match &event.data {
        EventData::PromiseBroken(p) => &p.promise,
        EventData::PromiseAtRisk(p) => &p.promise,
        _ => return Ok(None),
    };
    conn.prepare_cached("SELECT key, subject, due_us, start_us, state FROM promises WHERE id = ?1")?
        .query_row([id], |r| {
            let mut promise = json!({
                "id": id,
                "key": r.get::<_, String>(0)?,
                "subject": r.get::<_, String>(1)?,
                "due": Timestamp(r.get(2)?).to_string(),
                "state": r.get::<_, String>(4)?,
            });
            if let Some(start) = r.get::<_, Option<i64>>(3)? {
                promise["start"] = Timestamp(start).to_string().into();
            }
            Ok(promise)
        })
        .optional()
}

const COLUMNS: &str = "rowid, id, play, event_id, channel, recipient, payload, state, attempts, next_attempt_us, last_error, created_us, sent_us";

fn entry(r: &Row<'_>) -> rusqlite::Result<(i64, OutboxEntry)> {
    let time = |us: Option<i64>| us.map(|us| Timestamp(us).to_string());
    let payload: String = r.get(6)?;
    let state: String = r.get(7)?;
    Ok((
        r.get(0)?,
        OutboxEntry {
            id: r.get(1)?,
            play: r.get(2)?,
            event: r.get(3)?,
            channel: r.get(4)?,
            recipient: r.get(5)?,
            payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            state: OutboxState::parse(&state).unwrap_or(OutboxState::Dead),
            attempts: r.get(8)?,
            next_attempt_at: time(r.get(9)?),
            last_error: r.get(10)?,
            created_at: Timestamp(r.get(11)?).to_string(),
            sent_at: time(r.get(12)?),
        },
    ))
}

pub fn list(conn: &Connection, query: &OutboxQuery) -> Result<OutboxPage, StoreError> {
    let limit = query.limit.max(1);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE (?1 IS NULL OR state = ?1) AND rowid > ?2 ORDER BY rowid LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![
            query.state.map(OutboxState::as_str),
            query.after.unwrap_or(0),
            limit as i64 + 1
        ],
        entry,
    )?;
    let mut rows = rows.collect::<Result<Vec<_>, _>>()?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(rowid, _)| *rowid)
    } else {
        None
    };
    Ok(OutboxPage {
        entries: rows.into_iter().map(|(_, e)| e).collect(),
        next,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<OutboxEntry>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"))?
        .query_row([id], entry)
        .optional()?
        .map(|(_, e)| e))
}

pub fn claim(conn: &Connection, now: Timestamp, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE outbox SET state = 'sending'
          WHERE rowid IN (SELECT rowid FROM outbox WHERE state = 'pending' AND next_attempt_us <= ?1
                           ORDER BY next_attempt_us, rowid LIMIT ?2)
          RETURNING {COLUMNS}"
    ))?;
    let rows = stmt.query_map(params![now.micros(), limit as i64], entry)?;
    let mut claimed: Vec<(i64, OutboxEntry)> = rows.collect::<Result<_, _>>()?;
    claimed.sort_by_key(|(rowid, _)| *rowid);
    Ok(claimed.into_iter().map(|(_, e)| e).collect())
}

pub fn sent(conn: &Connection, id: &str, now: Timestamp) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE outbox SET state = 'sent', sent_us = ?2, next_attempt_us = NULL, last_error = NULL WHERE id = ?1",
        )?
        .execute(params![id, now.micros()])?;
    Ok(changed == 1)
}

pub fn failed(
    conn: &Connection,
    id: &str,
    now: Timestamp,
    error: &str,
    policy: RetryPolicy,
) -> Result<Option<OutboxState>, StoreError> {
    let attempts: Option<u32> = conn
        .prepare_cached("SELECT attempts FROM outbox WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let Some(attempts) = attempts.map(|a| a + 1) else {
        return Ok(None);
    };
    let (state, next) = if attempts >= policy.max_attempts {
        (OutboxState::Dead, None)
    } else {
        (OutboxState::Pending, Some(now.micros() + policy.delay_us(attempts)))
    };
    conn.prepare_cached(
        "UPDATE outbox SET state = ?2, attempts = ?3, next_attempt_us = ?4, last_error = ?5 WHERE id = ?1",
    )?
    .execute(params![id, state.as_str(), attempts, next, error])?;
    Ok(Some(state))
}

pub fn defer(conn: &Connection, id: &str, now: Timestamp, reason: &str, delay_us: i64) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE outbox SET state = 'pending', next_attempt_us = ?2, last_error = ?3 WHERE id = ?1 AND state = 'sending'",
        )?
        .execute(params![id, now.micros() + delay_us, reason])?;
    Ok(changed == 1)
}

pub fn retry(conn: &Connection, id: &str, now: Timestamp) -> Result<Option<OutboxEntry>, StoreError> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_us = ?2 WHERE id = ?1 AND state = 'dead'",
    )?
    .execute(params![id, now.micros()])?;
    get(conn, id)
}

/// At open: rows claimed by a process that stopped before marking them go back to
/// pending. Their send may have happened (at least once); receivers de-duplicate
/// by the id every message carries.
pub fn recover(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'", [])
}

/// The consent projector: the latest answer per customer, channel and purpose.
pub struct Consents;

impl Consents {
    pub fn open(conn: &Connection, schema: &str) -> Result<Consents, StoreError> {
        conn.execute_batch(&super::schema::consents(schema))?;
        Ok(Consents)
    }
}

impl super::projector::Projector for Consents {
    fn name(&self) -> &'static str {
        "consents"
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        &[super::projector::Table {
            name: "consents",
            rows: "SELECT cid, channel, purpose, granted, time_us FROM {s}.consents",
        }]
    }

    fn apply(
        &mut self,
        cx: &mut super::projector::Cx<'_>,
        at: &mut super::projector::Logged,
    ) -> Result<(), StoreError> {
        Ok(apply_consent(cx.conn, cx.schema, &at.event, at.customer)?)
    }
}

/// The plays of the journey map, live only: the messages and alerts they ask for
/// are enqueued in the outbox, the cases they open appended to the log as
/// `case.opened` events. The outbox is not a projection: a rebuild enqueues and
/// sends nothing again.
pub struct Plays {
    rules: Option<std::sync::Arc<super::projections::JourneyRules>>,
}

impl Plays {
    pub fn new(rules: Option<std::sync::Arc<super::projections::JourneyRules>>) -> Plays {
        Plays { rules }
    }
}

impl super::projector::Projector for Plays {
    fn name(&self) -> &'static str {
        "plays"
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        &[]
    }

    fn apply(
        &mut self,
        cx: &mut super::projector::Cx<'_>,
        at: &mut super::projector::Logged,
    ) -> Result<(), StoreError> {
        let (Some(rules), Some(_)) = (&self.rules, &cx.live) else {
            return Ok(());
        };
        let (plays, event) = (&rules.plays, &at.event);
        if !plays.concerns(&event.event_type) {
            return Ok(());
        }
        let planned = plays.on_event(event, at.received);
        if !planned.is_empty() {
            // Messages read the shipment as the table holds it.
            cx.shipments.write(cx.conn, cx.schema)?;
        }
        let Some(live) = &mut cx.live else {
            return Ok(());
        };
        for planned in planned {
            if let PlannedAction::OpenCase { .. } = planned.action {
                // A case opened by a play opens no further cases: plays cannot loop.
                if event.id.starts_with("troth.case.") {
                    continue;
                }
                let customer = super::projector::event_customer(event);
                let Some(case) = troth_core::play::case_event(&planned, event, customer.as_ref()) else {
                    continue;
                };
                let case = troth_core::validate_value(case, None)
                    .map_err(|r| StoreError::Invalid(format!("a play's case does not validate: {}", r.error)))?;
                live.derived.push(case);
            } else if enqueue(cx.conn, &planned, event, at.customer, at.received, live.composer)? {
                live.enqueued += 1;
            }
        }
        Ok(())
    }
}
