//! `/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "troth", description = "Events of the whole customer journey in; customers, promises and journey health out."),
    paths(
        crate::ingest::ingest_json,
        crate::ingest::ingest_ndjson,
        crate::read::list_events,
        crate::read::get_customer,
        crate::journeys::promises,
        crate::journeys::health,
        crate::journeys::functions,
        crate::journeys::weakest_links,
        crate::journeys::chasm,
        crate::carriers::carriers,
        crate::keys::create_key,
        crate::keys::list_keys,
        crate::keys::delete_key,
        crate::outbox::list,
        crate::outbox::dead_letters,
        crate::outbox::get_entry,
        crate::outbox::retry,
        crate::quarantine::list,
        crate::positions::create_device,
        crate::positions::list_devices,
        crate::positions::delete_device,
        crate::positions::ingest_positions,
        crate::positions::osmand,
        crate::tracking::issue_link,
        crate::tracking::track_json,
        crate::tracking::track_events,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "events", description = "Ingest and read the event log"),
        (name = "customers", description = "Customer profiles"),
        (name = "journeys", description = "Journey maps: promises, health, weakest links, the expectation chasm"),
        (name = "carriers", description = "Carrier scorecards: windows kept, first attempts, lost parcels, lateness, tracking views"),
        (name = "keys", description = "Scoped API keys"),
        (name = "drivers", description = "Drivers' devices and positions; the OsmAnd protocol of GPS apps (Traccar Client)"),
        (name = "outbox", description = "Messages and webhooks that plays asked for; dead letters (master key only)"),
        (name = "tracking", description = "Customers' tracking links: the JSON twin of the tracking page and its live stream (the token is the credential)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
