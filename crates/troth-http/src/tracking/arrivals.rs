//! Live arrival estimates for the tracking page: one [`Route`] per driver, fed the
//! route events (`shipment.out_for_delivery`, `shipment.arriving`, a stop's outcome,
//! trusted positions) as this server stores them. The estimator is pure
//! (`troth_core::eta`, docs/eta.md); this is its memory.
//!
//! It also keeps each shipment's current window (`shipment.window_set`,
//! `shipment.rescheduled`) and who set it, so [`Arrivals::reissue`] can give the
//! customer a new one-hour window when the estimate leaves the one they have, or
//! narrow a longer window to one hour once the driver is on the way
//! (docs/eta.md#re-issued-windows) — never a window the customer chose. A
//! rescheduled stop leaves its driver's route.
//!
//! On first use the routes are rebuilt from the log's route events of the last
//! [`LOOKBACK_US`] (positions excepted: the next report brings them). Events stored
//! while that runs may be seen twice; observing an event again changes nothing the
//! estimate uses.

use std::collections::HashMap;

use troth_core::eta::{EtaParams, ReissuePolicy, Route, RouteEvent, Window, WindowBy, window_of};
use troth_core::{Timestamp, ValidEvent};
use troth_store::{AppendStatus, EventQuery, Store, StoreError, TrackedShipment};

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
    /// Each shipment's latest window, by event time, and who set it.
    windows: HashMap<String, (Timestamp, Window, WindowBy)>,
}

impl State {
    fn observe(&mut self, event: &ValidEvent) {
        if let Some((shipment, window, by)) = window_of(event) {
            let latest = self
                .windows
                .entry(shipment.to_owned())
                .or_insert((event.time, window, by));
            if event.time >= latest.0 {
                *latest = (event.time, window, by);
            }
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
            (
                RouteEvent::Arriving { shipment } | RouteEvent::Completed { shipment } | RouteEvent::Left { shipment },
                None,
            ) => match self.driver_of.get(*shipment) {
                Some(driver) => driver.clone(),
                None => return,
            },
            _ => return,
        };
        // A done stop is predicted no more; forgetting it keeps the map to open stops
        // (a new attempt assigns the shipment again). A rescheduled one keeps its
        // window: it is the window the customer sees, and who chose it matters.
        match route_event {
            RouteEvent::Completed { shipment } => {
                self.driver_of.remove(shipment);
                self.windows.remove(shipment);
            }
            RouteEvent::Left { shipment } => {
                self.driver_of.remove(shipment);
            }
            _ => {}
        }
        self.routes
            .entry(driver)
            .or_insert_with(|| Route::new(EtaParams::default()))
            .observe(event.time, route_event);
    }
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

    /// How many stops the shipment's driver makes before it, as the route stands now
    /// (it falls as stops are done or leave the route); `None` when it is not a
    /// pending stop of its driver's route.
    pub async fn stops_before<S: Store>(&self, store: &S, shipment: &str) -> Option<u32> {
        let mut state = self.state.lock().await;
        load(&mut state, store).await;
        let driver = state.driver_of.get(shipment)?;
        state.routes.get(driver)?.stops_before(shipment)
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
                .retain(|_, (_, w, _)| now.micros() - w.end.micros() < LOOKBACK_US);
            state
                .driver_of
                .iter()
                .filter_map(|(shipment, driver)| {
                    let (_, current, by) = state.windows.get(shipment)?;
                    let predicted = state.predict(shipment, now)?;
                    let new = troth_core::eta::reissue_window(predicted, *current, *by, policy)?;
                    Some((shipment.clone(), driver.clone(), new))
                })
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(due.len());
        for (shipment, driver, window) in &due {
            let Some(tracked) = tracked(store, shipment).await? else {
                continue;
            };
            // Read again from the shipment itself: a reschedule stored since the routes
            // were consulted (and not yet observed here) takes the stop off the road,
            // and the customer's choice must not be overwritten by this estimate.
            if !tracked.shipment.on_the_road() {
                continue;
            }
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
            if let Some(customer) = tracked.customer {
                event["customer"] = customer;
            }
            match troth_core::validate_value(event, None) {
                Ok(event) => events.push(event),
                Err(r) => tracing::warn!(error = %r.error.message, shipment, "a re-issued window does not validate"),
            }
        }
        if events.is_empty() {
            return Ok(0);
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

/// The shipment as its projection holds it, with the customer its events named.
async fn tracked<S: Store>(store: &S, shipment: &str) -> Result<Option<TrackedShipment>, StoreError> {
    let Some(link) = store.tracking_link(shipment.to_owned()).await? else {
        return Ok(None);
    };
    store.tracked(link.token).await
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
