//! `troth serve`: the store, the HTTP API, and a clean stop on Ctrl-C or SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::net::TcpListener;
use troth_core::journey::JourneyMap;
use troth_http::tracking::TrackingConfig;
use troth_http::{AppState, FollowedJourney, app};
use troth_notify::{Dispatcher, NotifyConfig};
use troth_store::sqlite::SqliteStore;

use crate::config::Config;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    if config.master_key.is_none() && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {} without a master key: anyone who can reach it could read and write every event. \
             Set --master-key (or TROTH_MASTER_KEY), or listen on 127.0.0.1",
            config.listen
        );
    }
    let store = SqliteStore::open_with_journey(&config.data_dir, Some(&config.journey))
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    if config.master_key.is_none() {
        tracing::warn!(
            "no master key is set: the API is open to every local process (set --master-key to require keys)"
        );
    }
    let osmand = match config.osmand_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for OsmAnd reports on {addr}"))?,
        ),
        None => None,
    };
    if let Some(osmand) = &osmand {
        let addr = osmand.local_addr()?;
        tracing::info!(%addr, "taking OsmAnd reports of GPS apps");
        println!("troth OsmAnd listening on http://{addr}");
    }
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), journey = %config.journey.key, "troth is ready");
    println!("troth listening on http://{addr}");
    let options = ServeOptions {
        osmand,
        master_key: config.master_key,
        journey: Some(config.journey),
        journey_file: config.journey_file,
        notify: Some(config.notify),
        tracking: config.tracking,
        read_wait: Some(config.read_wait),
        service: Some(config.service),
        segment_events: config.segment_events,
    };
    run(store, listener, options, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// What a server runs with besides its store and its listener.
#[derive(Default)]
pub struct ServeOptions {
    /// The OsmAnd port's listener (`--osmand-listen`).
    pub osmand: Option<TcpListener>,
    /// Without one the API is open (to loopback only).
    pub master_key: Option<String>,
    /// The journey map the API and pages serve.
    pub journey: Option<JourneyMap>,
    /// Watched for changes; a good new map is followed without a restart.
    pub journey_file: Option<PathBuf>,
    /// With it, the outbox dispatcher sends what plays asked for.
    pub notify: Option<NotifyConfig>,
    pub tracking: TrackingConfig,
    /// How long a read given `min_position` may wait (the default unless set).
    pub read_wait: Option<std::time::Duration>,
    /// Cases' service levels; unless set, the default hours in the retailer's zone.
    pub service: Option<troth_core::case::ServiceLevels>,
    /// Which troth type each Segment `track` event name becomes (the built-in table by default).
    pub segment_events: troth_core::segment::EventMap,
}

/// Serves the API on `listener` (and OsmAnd reports on `options.osmand`) until
/// `stop` completes. With `options.notify`, the outbox dispatcher sends what plays
/// asked for; it finishes the batch under way on stop.
pub async fn run(
    store: SqliteStore,
    listener: TcpListener,
    options: ServeOptions,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ServeOptions {
        osmand,
        master_key,
        journey,
        journey_file,
        notify,
        mut tracking,
        read_wait,
        service,
        segment_events,
    } = options;
    let clock = tokio::spawn(promise_clock(store.clone()));
    let (stop_dispatch, dispatch_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(notify) = &notify {
        // Messages are rendered as their rows are written, with the configured templates.
        store.set_composer(std::sync::Arc::new(notify.composer()));
    }
    let dispatcher = notify.map(|notify| {
        tracing::info!(
            email = notify.smtp.is_some(),
            sms = notify.sms.is_some(),
            webhooks = notify.webhook_secret.is_some(),
            "outbox dispatcher running; unconfigured channels keep their messages pending"
        );
        let wake = store.outbox_signal();
        tokio::spawn(Dispatcher::new(store.clone(), notify).run(wake, async move {
            let _ = dispatch_stopped.await;
        }))
    });
    if tracking.upload_dir.is_none() {
        tracking.upload_dir = store.db_path().parent().map(|dir| dir.join("uploads"));
    }
    // Without settings, teams work the default hours in the retailer's zone.
    let service = service.unwrap_or_else(|| crate::config::default_service(tracking.timezone.name()));
    let mut state = AppState::new(store.clone(), master_key)
        .with_tracking(tracking)
        .with_segment_events(segment_events);
    state.service = std::sync::Arc::new(service);
    if let Some(read_wait) = read_wait {
        state.read_wait = read_wait;
    }

    if let Some(journey) = journey {
        state = state.with_journey(journey);
    }
    let windows = tokio::spawn(reissue_windows(store.clone(), state.tracking.arrivals.clone()));
    let watcher = journey_file.map(|path| tokio::spawn(watch_journey(path, store, state.journey.clone())));
    // Both listeners stop together: `stop` fires once, the watch tells each.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stopping.send(true);
    });
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let osmand = osmand.map(|listener| {
        let app = troth_http::osmand_app(state.clone());
        tokio::spawn(troth_http::server::serve(listener, app, until_stopped()))
    });
    let janitor = tokio::spawn(forget_idle_clients(state.guards.clone()));
    let app = app(state);
    let served = troth_http::server::serve(listener, app, until_stopped()).await;
    if let Some(osmand) = osmand {
        match osmand.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the OsmAnd listener failed"),
            Err(e) => tracing::warn!(error = %e, "the OsmAnd listener stopped abnormally"),
            Ok(Ok(())) => {}
        }
    }
    clock.abort();
    windows.abort();
    janitor.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let _ = stop_dispatch.send(());
    if let Some(dispatcher) = dispatcher
        && tokio::time::timeout(std::time::Duration::from_secs(30), dispatcher)
            .await
            .is_err()
    {
        tracing::warn!("the outbox dispatcher did not finish in time; its claimed rows are sent after the next start");
    }
    served
}

/// Empties the per-client rate limiters of clients whose allowance is full again.
async fn forget_idle_clients(guards: std::sync::Arc<troth_http::limits::Guards>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every.tick().await;
        guards.forget_idle();
    }
}

/// How often the windows of shipments on the way are held against their estimates.
const WINDOW_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Re-issues the window of a shipment on the way when its estimate has left it
/// (docs/eta.md#re-issued-windows).
async fn reissue_windows(store: SqliteStore, arrivals: std::sync::Arc<troth_http::tracking::Arrivals>) {
    let policy = troth_core::eta::ReissuePolicy::default();
    let mut every = tokio::time::interval(WINDOW_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match arrivals.reissue(&store, troth_core::Timestamp::now(), &policy).await {
            Ok(0) => {}
            Ok(reissued) => tracing::info!(reissued, "delivery windows re-issued from arrival estimates"),
            Err(e) => tracing::warn!(error = %e, "delivery windows could not be checked against estimates"),
        }
    }
}

/// Moves the promises' clock to now every second: at risk, broken when due.
async fn promise_clock(store: SqliteStore) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match store.tick(troth_core::Timestamp::now()).await {
            Ok(0) => {}
            Ok(changed) => tracing::debug!(changed, "promise clock"),
            Err(e) => tracing::warn!(error = %e, "the promise clock could not run"),
        }
    }
}

/// How often the journey map's file is looked at for changes.
const JOURNEY_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads the journey map when its file changes: the store follows the new map
/// (history recounted, later events under its rules) and the API and pages serve
/// it. A map with errors is refused with its errors logged, and the old one stays.
async fn watch_journey(path: PathBuf, store: SqliteStore, followed: FollowedJourney) {
    let stamp = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()));
    let mut seen = stamp(&path);
    let mut every = tokio::time::interval(JOURNEY_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let mut map = match crate::config::load_journey(Some(&path)) {
            Ok(map) => map,
            Err(e) => {
                tracing::warn!(file = %path.display(), "the changed journey map was not loaded; the previous one stays: {e:#}");
                continue;
            }
        };
        // The service levels are troth's settings, not the file's: they stay.
        if let Some(current) = followed.get() {
            map.service = current.service.clone();
        }
        if followed.get().is_some_and(|current| *current == map) {
            continue;
        }
        let started = std::time::Instant::now();
        match store.reload_journey(&map).await {
            Ok(()) => {
                tracing::info!(journey = %map.key, file = %path.display(), took = ?started.elapsed(), "journey map reloaded");
                followed.set(map);
            }
            Err(e) => tracing::warn!(error = %e, "the journey map could not be reloaded; the previous one stays"),
        }
    }
}

/// Binds `addr` and serves in the background; returns the bound address and a
/// handle that stops the server when dropped or sent to.
pub async fn spawn(
    store: SqliteStore,
    addr: SocketAddr,
    master_key: Option<String>,
    journey: Option<JourneyMap>,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = bind(addr).await?;
    spawn_on(
        store,
        listener,
        ServeOptions {
            master_key,
            journey,
            ..ServeOptions::default()
        },
    )
}

/// Binds the API's address, saying what to do when it is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("listening on {addr} (is another server using it? --listen 127.0.0.1:0 picks a free port)")
    })
}

/// [`spawn`] on a listener already bound (the demo binds first, so a taken port
/// fails before anything is written).
pub fn spawn_on(
    store: SqliteStore,
    listener: TcpListener,
    options: ServeOptions,
) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let bound = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(store, listener, options, async move {
        let _ = stopped.await;
    }));
    Ok((bound, stop))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("stopping: finishing requests in flight");
}
