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
        crate::story::story,
        crate::actions::act,
        crate::audit::reads,
        crate::privacy::export,
        crate::privacy::erase,
        crate::privacy::erasure,
        crate::journeys::promises,
        crate::journeys::health,
        crate::journeys::functions,
        crate::journeys::weakest_links,
        crate::journeys::chasm,
        crate::journeys::flow,
        crate::carriers::carriers,
        crate::inventory::inventory,
        crate::cases::list,
        crate::cases::get,
        crate::cases::fcr,
        crate::keys::create_key,
        crate::keys::list_keys,
        crate::keys::delete_key,
        crate::outbox::list,
        crate::outbox::dead_letters,
        crate::outbox::get_entry,
        crate::outbox::retry,
        crate::quarantine::list,
        crate::segment::identify,
        crate::segment::track,
        crate::segment::page,
        crate::segment::screen,
        crate::segment::group,
        crate::segment::alias,
        crate::segment::batch,
        crate::segment::import,
        crate::segment::rejected,
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
    modifiers(&BearerAuth, &CommonAnswers, &ReadYourWrites),
    tags(
        (name = "events", description = "Ingest and read the event log"),
        (name = "segment", description = "Segment's HTTP Tracking API, for Segment's and RudderStack's SDKs as they are: the write key is an API key with the ingest scope (docs/segment.md)"),
        (name = "customers", description = "Customer profiles, their whole story, and what agents do for them"),
        (name = "journeys", description = "Journey maps: promises, health, weakest links, the expectation chasm, the map against the data"),
        (name = "carriers", description = "Carrier scorecards: windows kept, first attempts, lost parcels, lateness, tracking views"),
        (name = "inventory", description = "Inventory truthfulness: phantom stock per store and SKU, receipts the counts contradict, who owns the fix"),
        (name = "cases", description = "Contact-centre cases with their service-level clocks in business hours; first-contact resolution"),
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
        // Segment's: the write key as the user name, no password (or `writeKey` in the body).
        components.add_security_scheme(
            "write_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
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

/// Every read of the API takes the position it must include, as the query
/// parameter `min_position` or the header `Troth-Min-Position`
/// ([`crate::consistency`]).
struct ReadYourWrites;

impl Modify for ReadYourWrites {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        let position = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Int64,
                )))
                .minimum(Some(0))
                .build()
        };
        let parameters = [
            (
                crate::consistency::PARAM,
                ParameterIn::Query,
                "Answer only once the projections include this log position (an ingest answer's `position`); waits up to the server's limit, then 503 `projection_lagging`",
            ),
            (
                "Troth-Min-Position",
                ParameterIn::Header,
                "The same as `min_position`, as a header",
            ),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(operation) = item.get.as_mut().filter(|_| path.starts_with("/api/")) else {
                continue;
            };
            let list = operation.parameters.get_or_insert_with(Vec::new);
            for (name, place, description) in &parameters {
                list.push(
                    ParameterBuilder::new()
                        .name(*name)
                        .parameter_in(place.clone())
                        .required(Required::False)
                        .description(Some(*description))
                        .schema(Some(position()))
                        .build(),
                );
            }
        }
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
