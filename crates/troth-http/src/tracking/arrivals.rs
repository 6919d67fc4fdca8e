//! Live arrival estimates for the tracking page: one [`Route`] per driver, fed the
//! route events (`shipment.out_for_delivery`, `shipment.arriving`, a stop's outcome,
//! trusted positions) as this server stores them. The estimator is pure
//! (`troth_core::eta`, docs/eta.md); this is its memory.
//!
//! It also keeps each shipment's current window (`shipment.window_set`,
//! `shipment.rescheduled`), so [`Arrivals::reissue`] can give the customer a new
//! one-hour window when the estimate leaves the one they have, or narrow a longer
//! window to one hour once the driver is on the way (docs/eta.md#re-issued-windows).
//!
//! On first use the routes are rebuilt from the log's route events of the last
//! [`LOOKBACK_US`] (positions excepted: the next report brings them). Events stored
//! while that runs may be seen twice; observing an event again changes nothing the
//! estimate uses.

use std::collections::HashMap;

use troth_core::catalogue::EventData;
use troth_core::eta::{EtaParams, ReissuePolicy, Route, RouteEvent, Window};
use troth_core::{Timestamp, ValidEvent};
use troth_store::{AppendStatus, EventQuery, Store, StoreError};

/// How far back the routes are rebuilt from the log: a driver's day.
pub const LOOKBACK_US: i64 = 18 * 3600 * 1_000_000;

/// The route events read back from the log (positions are too many and soon stale),
/// and the windows.
const ROUTE_TYPES: [&str; 6] = [
    "shipment.window_set",
    "shipment.rescheduled",
    "shipment.out_for_delivery",
    "shipment.arriving",
    "shipment.delivered",
    "shipment.attempt_failed",
];

#[derive(Debug, Default)]
pub struct Arrivals {
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    routes: HashMap<String, Route>,
    /// The driver each shipment went out with (the latest assignment).
    driver_of: HashMap<String, String>,
    /// Each shipment's latest window, by event time.
    windows: HashMap<String, (Timestamp, Window)>,
}

impl State {
    fn observe(&mut self, event: &ValidEvent) {
        if let Some((shipment, window)) = window_of(event) {
            let latest = self.windows.entry(shipment.to_owned()).or_insert((event.time, window));
            if event.time >= latest.0 {
                *latest = (event.time, window);
            }
            return;
        }
        let Some((route_event, driver)) = RouteEvent::from_event(event) else {
            return;
        };
        let driver = match (&route_event, driver) {
            (RouteEvent::OutForDelivery { shipment, .. }, Some(driver)) => {
                self.driver_of.insert((*shipment).to_owned(), driver.to_owned());
                driver.to_owned()
            }
            (_, Some(driver)) => driver.to_owned(),
            (RouteEvent::Arriving { shipment } | RouteEvent::Completed { shipment }, None) => {
                match self.driver_of.get(*shipment) {
                    Some(driver) => driver.clone(),
                    None => return,
                }
            }
            _ => return,
        };
        // A done stop is predicted no more; forgetting it keeps the map to open stops
        // (a new attempt assigns the shipment again).
        if let RouteEvent::Completed { shipment } = route_event {
            self.driver_of.remove(shipment);
            self.windows.remove(shipment);
        }
        self.routes
            .entry(driver)
            .or_insert_with(|| Route::new(EtaParams::default()))
            .observe(event.time, route_event);
    }
}

/// The shipment and window an event sets, if it sets one.
fn window_of(event: &ValidEvent) -> Option<(&str, Window)> {
    let shipment = event.subject.as_deref()?.strip_prefix("shipment:")?;
    let (start, end) = match &event.data {
        EventData::WindowSet(w) => (w.window_start, w.window_end),
        EventData::Rescheduled(r) => (r.window_start, r.window_end),
        _ => return None,
    };
    Some((shipment, Window { start, end }))
}

/// The route events and windows of a batch about to be stored, with their places
/// in it, for [`Arrivals::observe_stored`] once the store has answered.
pub fn route_events(events: &[ValidEvent]) -> Vec<(usize, ValidEvent)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| RouteEvent::from_event(e).is_some() || window_of(e).is_some())
        .map(|(i, e)| (i, e.clone()))
        .collect()
}

impl Arrivals {
    /// Takes in the route events of a batch (see [`route_events`]) that the store
    /// accepted: `statuses` answer the whole batch, in order.
    pub async fn observe_stored<S: Store>(
        &self,
        store: &S,
        route: Vec<(usize, ValidEvent)>,
        statuses: &[AppendStatus],
    ) {
        let mut stored = route
            .into_iter()
            .filter(|(i, _)| matches!(statuses.get(*i), Some(AppendStatus::Accepted { .. })))
            .peekable();
        if stored.peek().is_none() {
            return;
        }
        let mut state = self.state.lock().await;
        load(&mut state, store).await;
        for (_, event) in stored {
            state.observe(&event);
        }
    }

    /// When the shipment's stop is expected to be done, as seen at `now`; `None` when
    /// it is not a pending stop of its driver's route.
    pub async fn predict<S: Store>(&self, store: &S, shipment: &str, now: Timestamp) -> Option<Timestamp> {
        let mut state = self.state.lock().await;
        load(&mut state, store).await;
        state.predict(shipment, now)
    }

    /// Gives a new window to every shipment on the way whose estimate has left its
    /// window (or whose window is longer than the policy's, now that the driver is on
    /// the way): appends `shipment.window_set` with `estimate: true`, which makes no
    /// promise (the carrier's window is still judged) and which the journey's window
    /// play tells the customer. Returns how many windows were re-issued.
    pub async fn reissue<S: Store>(
        &self,
        store: &S,
        now: Timestamp,
        policy: &ReissuePolicy,
    ) -> Result<usize, StoreError> {
        let due: Vec<(String, String, Window)> = {
            let mut state = self.state.lock().await;
            load(&mut state, store).await;
            // Windows of shipments nobody will deliver any more are forgotten.
            state
                .windows
                .retain(|_, (_, w)| now.micros() - w.end.micros() < LOOKBACK_US);
            state
                .driver_of
                .iter()
                .filter_map(|(shipment, driver)| {
                    let (_, current) = state.windows.get(shipment)?;
                    let predicted = state.predict(shipment, now)?;
                    let new = troth_core::eta::reissue_window(predicted, *current, policy)?;
                    Some((shipment.clone(), driver.clone(), new))
                })
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(due.len());
        for (shipment, driver, window) in &due {
            let mut event = serde_json::json!({
                "id": format!("troth.eta.{shipment}.{}", window.start.micros()),
                "type": "shipment.window_set",
                "time": now.to_string(),
                "source": "troth",
                "subject": format!("shipment:{shipment}"),
                "data": {
                    "window_start": window.start.to_string(),
                    "window_end": window.end.to_string(),
                    "driver": driver,
                    "estimate": true,
                },
            });
            // The shipment's customer, so the window's play can tell them.
            if let Some(customer) = customer_of(store, shipment).await? {
                event["customer"] = customer;
            }
            match troth_core::validate_value(event, None) {
                Ok(event) => events.push(event),
                Err(r) => tracing::warn!(error = %r.error.message, shipment, "a re-issued window does not validate"),
            }
        }
        let route = route_events(&events);
        let statuses = store.append(events).await?;
        self.observe_stored(store, route, &statuses).await;
        Ok(statuses
            .iter()
            .filter(|s| matches!(s, AppendStatus::Accepted { .. }))
            .count())
    }
}

/// The customer the shipment's events named, as the shipment projection keeps it.
async fn customer_of<S: Store>(store: &S, shipment: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let Some(link) = store.tracking_link(shipment.to_owned()).await? else {
        return Ok(None);
    };
    Ok(store.tracked(link.token).await?.and_then(|t| t.customer))
}

impl State {
    fn predict(&self, shipment: &str, now: Timestamp) -> Option<Timestamp> {
        let driver = self.driver_of.get(shipment)?;
        self.routes.get(driver)?.predict(shipment, now)
    }
}

/// Rebuilds the routes from the log once. A failed read is logged and retried on
/// the next use; until then estimates rest on what arrives live.
async fn load<S: Store>(state: &mut State, store: &S) {
    if state.loaded {
        return;
    }
    match read_route_events(store, Timestamp::now()).await {
        Ok(events) => {
            for event in &events {
                state.observe(event);
            }
            state.loaded = true;
        }
        Err(e) => tracing::warn!(error = %e, "route events could not be read for arrival estimates"),
    }
}

/// The route events of the last [`LOOKBACK_US`], in log order.
async fn read_route_events<S: Store>(store: &S, now: Timestamp) -> Result<Vec<ValidEvent>, StoreError> {
    let mut stored = Vec::new();
    for event_type in ROUTE_TYPES {
        let mut after_seq = None;
        loop {
            let page = store
                .events(EventQuery {
                    event_type: Some(event_type.to_owned()),
                    from_us: Some(now.micros() - LOOKBACK_US),
                    after_seq,
                    limit: 1_000,
                    ..EventQuery::default()
                })
                .await?;
            stored.extend(page.events.into_iter().map(|e| (e.seq, e.raw)));
            match page.next_after {
                Some(next) => after_seq = Some(next),
                None => break,
            }
        }
    }
    stored.sort_by_key(|(seq, _)| *seq);
    Ok(stored
        .iter()
        .filter_map(|(_, raw)| troth_core::validate_event(raw).ok())
        .collect())
}
