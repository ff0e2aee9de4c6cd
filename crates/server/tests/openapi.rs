//! `/api/openapi.json`: an OpenAPI 3.1 document that an independent parser (the `oas3`
//! crate) reads, whose references all resolve, and that describes exactly the backend API's
//! routes: every operation it lists is routed on a real server, and no `/api/` route is
//! registered without it (the server's source is read for routes registered past
//! `http::openapi::api`, and docs/api.md's examples are checked against it).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::TestServer;
use oas3::spec::{ObjectOrReference, Operation};
use voipchat_proto::ErrorCode;

/// `/api/` routes that are not the backend API, with the reason.
const NOT_THE_BACKEND_API: &[(&str, &str)] = &[
    (
        "/api/openapi.json",
        "the document itself, served without credentials",
    ),
    (
        "/api/v1/test/drop-ws",
        "a test hook, only with test_hooks = true",
    ),
    (
        "/api/v1/rooms/",
        "the prefix of the one-room routes, which a node passes to the room's node",
    ),
];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

/// The string literals of `text` that are a path under `/api/` (outside comments).
fn api_literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("\"/api/") {
            let after = &rest[i + 1..];
            let Some(end) = after.find('"') else { break };
            found.push(after[..end].to_string());
            rest = &after[end + 1..];
        }
    }
    found
}

fn operations(item: &oas3::spec::PathItem) -> Vec<(&'static str, &Operation)> {
    [
        ("GET", item.get.as_ref()),
        ("POST", item.post.as_ref()),
        ("PUT", item.put.as_ref()),
        ("PATCH", item.patch.as_ref()),
        ("DELETE", item.delete.as_ref()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_and_lists_every_backend_route() {
    let dir = common::data_dir();
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (app, secret) = server.create_app(true);
    let (status, text) = server
        .http_request("GET", "/api/openapi.json", None, None)
        .await;
    assert_eq!(status, 200, "served without credentials");
    let spec = oas3::from_json(&text).expect("oas3 parses the document");
    let version = spec.validate_version().expect("a supported version");
    assert_eq!((version.major, version.minor), (3, 1), "{}", spec.openapi);

    // Security: HTTP Basic, required by every operation.
    let components = spec.components.as_ref().expect("components");
    let schemes: Vec<&String> = components.security_schemes.keys().collect();
    assert_eq!(schemes.len(), 1, "{schemes:?}");
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    let scheme = &raw["components"]["securitySchemes"][schemes[0].as_str()];
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("basic"))
    );
    assert_eq!(
        raw["security"][0][schemes[0].as_str()],
        serde_json::json!([])
    );
    // The failure body: {errCode, errMsg}.
    let error_schema = &raw["components"]["schemas"]["ApiError"];
    assert_eq!(
        error_schema["required"],
        serde_json::json!(["errCode", "errMsg"])
    );

    let paths = spec.paths.as_ref().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        let ops = operations(item);
        assert!(!ops.is_empty(), "{path} has no operation");
        for (method, op) in ops {
            documented.insert(path.clone());
            let what = format!("{method} {path}");
            assert!(op.operation_id.is_some(), "{what}: operationId");
            assert!(
                op.summary.is_some(),
                "{what}: a summary (the handler's doc comment)"
            );
            let responses = op.responses.as_ref().expect("responses");
            for status in ["200", "401", "500"] {
                assert!(responses.contains_key(status), "{what}: no {status}");
            }
            for (status, response) in responses {
                let response = match response {
                    ObjectOrReference::Object(r) => r.clone(),
                    other => other.resolve(&spec).expect("the response resolves"),
                };
                let media = response
                    .content
                    .get("application/json")
                    .unwrap_or_else(|| panic!("{what} {status}: a JSON body"));
                let schema = media.schema.as_ref().expect("a schema");
                schema
                    .resolve(&spec)
                    .unwrap_or_else(|e| panic!("{what} {status}: the schema resolves: {e}"));
                if !status.starts_with('2') {
                    assert!(
                        format!("{schema:?}").contains("ApiError"),
                        "{what} {status}: failures answer the ApiError schema"
                    );
                }
            }
            if let Some(body) = &op.request_body {
                assert!(
                    responses.contains_key("413"),
                    "{what}: a body can be too large"
                );
                let body = body.resolve(&spec).expect("the body resolves");
                let media = body.content.get("application/json").expect("a JSON body");
                media
                    .schema
                    .as_ref()
                    .unwrap()
                    .resolve(&spec)
                    .expect("body schema");
            }

            // Routed on the real server: neither "no such route" nor "method not allowed".
            let concrete = path.replace("{groupId}", "room-1");
            let body = (method != "GET").then_some("{}");
            let (status, answer) = server
                .http_request(method, &concrete, Some((&app, &secret)), body)
                .await;
            if status == 404 || status == 405 {
                let (code, _) = common::api_failure(&answer);
                assert!(
                    code != i64::from(ErrorCode::UnknownRoute.code())
                        && code != i64::from(ErrorCode::MethodNotAllowed.code()),
                    "{what} is documented but not routed: {answer}"
                );
            }
        }
    }

    // No /api/ route registered outside the documented registration.
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let exempt: BTreeSet<&str> = NOT_THE_BACKEND_API.iter().map(|(p, _)| *p).collect();
    let mut in_source = BTreeSet::new();
    for (file, text) in &files {
        for literal in api_literals(text) {
            assert!(
                documented.contains(&literal) || exempt.contains(literal.as_str()),
                "{file} has the route {literal}, which /api/openapi.json does not describe: \
                 register it with routes! in http/openapi.rs (its handler with #[utoipa::path])"
            );
            in_source.insert(literal);
        }
    }
    for path in &documented {
        assert!(in_source.contains(path), "{path}: no handler names it");
    }
    // docs/api.md's examples call only documented routes, and every documented route.
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    // Without its section of refusals, which calls a route that does not exist on purpose.
    let refusals = doc.find("## Refusals").expect("a Refusals section");
    let refusals_end = doc[refusals + 3..]
        .find("\n## ")
        .map_or(doc.len(), |i| refusals + 3 + i);
    let doc = format!("{}{}", &doc[..refusals], &doc[refusals_end..]);
    let mut examples = BTreeSet::new();
    for word in doc.split_whitespace() {
        let word = word.trim_matches(['\'', '"', '`']);
        let Some(rest) = word.strip_prefix("http://127.0.0.1:7880") else {
            continue;
        };
        let path = rest.split('?').next().unwrap_or(rest);
        if !path.starts_with("/api/v1/") || exempt.contains(path) {
            continue;
        }
        let template = documented
            .iter()
            .find(|t| matches_template(t, path))
            .unwrap_or_else(|| panic!("docs/api.md calls {path}, which the document lacks"));
        examples.insert(template.clone());
    }
    assert_eq!(
        examples, documented,
        "docs/api.md has an example of every route"
    );
    server.stop().await;
}

/// `/api/v1/rooms/{groupId}/kick` matches `/api/v1/rooms/room-42/kick`.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

#[test]
fn the_route_scan_finds_literals_but_not_comments() {
    let text = r#"
        .route("/api/v1/extra", post(x)) // "/api/v1/in-comment"
        // .route("/api/v1/commented", get(y))
        let a = "/api/v1/one"; let b = "/api/v1/two";
        let c = "not /api/v1/three";
    "#;
    assert_eq!(
        api_literals(text),
        ["/api/v1/extra", "/api/v1/one", "/api/v1/two"]
    );
    assert!(matches_template(
        "/api/v1/rooms/{groupId}",
        "/api/v1/rooms/room-42"
    ));
    assert!(!matches_template(
        "/api/v1/rooms/{groupId}",
        "/api/v1/rooms"
    ));
    assert!(!matches_template(
        "/api/v1/rooms/{groupId}/kick",
        "/api/v1/rooms/g/mute"
    ));
}
