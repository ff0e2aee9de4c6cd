//! Every `/api/v1` route with its OpenAPI 3.1 description, registered together: a handler
//! is routed by the same `routes!` entry that documents it (its `#[utoipa::path]`), so the
//! document served at `/api/openapi.json` cannot miss a route or describe one that is not
//! there. What every operation shares (HTTP Basic, the 401 and 500 answers, 413 for a body)
//! is added here once.

use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voipchat_proto::Status;

use super::{limits, rooms, MAX_BODY_BYTES};
use crate::AppState;

/// The document's fixed parts; the paths come from the routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "voipchat backend API",
        description = "What a game's server calls: session keys and join signatures, the app's \
                       rooms, its settings and its quota. Every call authenticates with HTTP \
                       Basic appId:appSecret; every failure answers {errCode, errMsg} (the codes \
                       are in docs/errors.md).",
        license(name = "MIT OR Apache-2.0")
    ),
    tags(
        (name = "keys", description = "Session keys and join signatures."),
        (name = "rooms", description = "The app's open rooms."),
        (name = "limits", description = "The app's settings and its daily room quota."),
    )
)]
struct ApiDoc;

/// The name of the HTTP Basic security scheme.
const BASIC: &str = "appBasic";

/// The backend API's routes (under `/api/v1`, with the body limit) and their document.
pub fn api() -> (Router<AppState>, OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(super::session_key))
        .routes(routes!(super::voip_sign))
        .routes(routes!(limits::quota))
        .routes(routes!(limits::usage))
        .routes(routes!(limits::get_settings, limits::patch_settings))
        .routes(routes!(rooms::list_rooms))
        .routes(routes!(rooms::room))
        .routes(routes!(rooms::kick))
        .routes(routes!(rooms::mute))
        .routes(routes!(rooms::close))
        .routes(routes!(
            super::webhook::webhook,
            super::webhook::set_webhook,
            super::webhook::clear_webhook
        ))
        .split_for_parts();
    shared_parts(&mut doc);
    let router = router.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    (router, doc)
}

/// Adds what every operation has: HTTP Basic, 401 (-12004) and 500 (-1000), and 413
/// (-12008) where there is a body.
fn shared_parts(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        BASIC.into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some("user = appId, password = appSecret"))
                .build(),
        ),
    );
    let mut schemas = Vec::new();
    <Status as ToSchema>::schemas(&mut schemas);
    components.schemas.insert(
        <Status as ToSchema>::name().into(),
        <Status as PartialSchema>::schema(),
    );
    components.schemas.extend(schemas);
    doc.security = Some(vec![SecurityRequirement::new(BASIC, Vec::<String>::new())]);

    let failure = |text: &str| -> RefOr<Response> {
        ResponseBuilder::new()
            .description(text)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        <Status as ToSchema>::name(),
                    ))))
                    .build(),
            )
            .build()
            .into()
    };
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            let responses = &mut op.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                failure(
                    "-12004: no credentials, not HTTP Basic, or appId and appSecret do not match.",
                )
            });
            responses
                .entry("500".into())
                .or_insert_with(|| failure("-1000: the store failed."));
            if op.request_body.is_some() {
                responses
                    .entry("413".into())
                    .or_insert_with(|| failure("-12008: the body is larger than 64 KiB."));
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The document as JSON.
pub fn json(doc: &OpenApi) -> String {
    // Plain data always serializes.
    doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!("the OpenAPI document does not serialize: {e}");
        "{}".into()
    })
}
