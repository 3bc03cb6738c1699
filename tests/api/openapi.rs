//! `openapi.json` stays in step with the route table: every route is
//! documented, every documented operation exists, and each names the access
//! rule its route declares.

use std::collections::BTreeSet;

use secure_api::http::router::{Access, Route};
use secure_api::routes::table::{Optional, table};
use serde_json::Value;

const DOCUMENT: &str = include_str!("../../openapi.json");

/// The keys of a path item that are operations (OpenAPI 3.1).
const OPERATION_KEYS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON")
}

/// Every route the server can serve, the openapi.json one included (it is
/// only mounted with `--expose-openapi`), without the test-only panic probe.
fn routes() -> Vec<Route> {
    table(Optional::SERVABLE)
}

fn access_name(access: Access) -> String {
    match access {
        Access::Public => "public".to_owned(),
        Access::Authenticated => "authenticated".to_owned(),
        Access::Permission(permission) => permission.as_str().to_owned(),
        Access::Session => "session".to_owned(),
        Access::SessionPermission(permission) => format!("{} session", permission.as_str()),
    }
}

/// (METHOD, path) of every operation in `paths`.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            item.keys()
                .filter(|key| OPERATION_KEYS.contains(&key.as_str()))
                .map(|method| (method.to_ascii_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_route_is_documented_and_every_documented_path_exists() {
    let documented = documented_operations(&document());
    let served: BTreeSet<(String, String)> = routes()
        .iter()
        .map(|route| (route.method.as_str().to_owned(), route.path.to_owned()))
        .collect();

    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "openapi.json and src/http/router.rs disagree\n  \
         routes missing from openapi.json: {undocumented:?}\n  \
         documented operations missing from the route table: {not_served:?}"
    );
}

#[test]
fn documented_permissions_match_the_route_table() {
    let doc = document();
    let mismatches: Vec<String> = routes()
        .iter()
        .filter_map(|route| {
            let method = route.method.as_str().to_ascii_lowercase();
            let expected = access_name(route.access);
            let documented = doc["paths"][route.path][&method]["x-permission"].as_str();
            (documented != Some(expected.as_str())).then(|| {
                format!(
                    "{} {}: x-permission {documented:?}, route access {expected:?}",
                    route.method, route.path
                )
            })
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "x-permission disagrees with the route table:\n  {}",
        mismatches.join("\n  ")
    );
}

#[test]
fn the_document_version_is_the_crate_version() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}
