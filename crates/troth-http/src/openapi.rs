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
    modifiers(&BearerAuth, &CommonAnswers),
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

/// The answers every operation can give besides its own, so that the document
/// lists every status a client may meet: 401 and 403 on secured operations; 413,
/// 415 and 408 on those that take a body; 429 where a per-client rate limit
/// applies; 503 when the store is unavailable or a read waited too long for
/// `min_position`. Each is problem+json.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, false),
            ];
            for (operation, writes) in operations {
                let Some(operation) = operation.as_mut() else { continue };
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem(description).into());
                };
                if secured {
                    add("401", "No API key, or one that is unknown or revoked");
                    add("403", "The key's scopes do not allow this operation");
                }
                if writes {
                    add("400", "The body or a parameter is invalid");
                    add("408", "The request was not answered in time");
                    add("413", "The body is over this route's limit");
                    add("415", "The body is not JSON");
                } else {
                    add("400", "A parameter is invalid");
                }
                if path == "/osmand" {
                    add("429", "Too many reports from this address");
                }
                add(
                    "503",
                    "The store is not available, or a read waited too long for `min_position`",
                );
            }
        }
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
