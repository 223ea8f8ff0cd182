//! The OpenAPI 3.1 document, generated from the route table and the body
//! types themselves, so it cannot drift from what the server does.

use super::{Access, routes};
use axum::Json;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The document for this build.
pub fn document() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for r in routes() {
        let method = r.method.as_str().to_ascii_lowercase();
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut op = Map::new();
        op.insert("operationId".into(), operation_id(&method, r.path).into());
        op.insert("tags".into(), json!([tag(r.path)]));
        if !params.is_empty() {
            op.insert("parameters".into(), params.into());
        }
        if let Some(body) = r.body {
            let schema = serde_json::to_value(body(&mut generator)).unwrap_or(Value::Null);
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": schema } } }),
            );
        } else if r.path.ends_with("/attachments") {
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } }),
            );
        } else if is_photo_upload(&r.method, r.path) {
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "image/*": { "schema": { "type": "string", "format": "binary" } } } }),
            );
        } else if r.path == "/api/v1/users/import" {
            op.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "text/csv": { "schema": { "type": "string" } } } }),
            );
        }
        let mut responses = json!({
            "2XX": { "description": "done", "content": { r.produces: {} } },
            "default": { "description": "refused; see `error` for the stable code",
                         "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
        });
        // Deletions answer 204 with no body.
        if r.method == http::Method::DELETE {
            responses["204"] = json!({ "description": "deleted" });
        }
        if r.produces.is_empty() {
            responses["2XX"] = json!({ "description": "done (tus headers or media, not JSON)" });
        }
        if r.path == "/api/v1/auth/jwt" && r.method == http::Method::GET {
            responses["3XX"] = json!({ "description": "signed in; redirected to the front page" });
        }
        op.insert("responses".into(), responses);
        let security = match r.access {
            Access::Open | Access::Public => json!([]),
            _ => json!([{ "cookie": [] }, { "bearer": [] }]),
        };
        op.insert("security".into(), security);
        paths
            .entry(r.path)
            .or_default()
            .insert(method, Value::Object(op));
    }
    let mut schemas = generator.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error", "message"],
            "properties": { "error": { "type": "string" }, "message": { "type": "string" } }
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "invigil",
            "version": crate::VERSION,
            "description": "Self-hosted online exam proctoring. Requests are scoped to the host named by the Host header."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "cookie": { "type": "apiKey", "in": "cookie", "name": crate::auth::sessions::COOKIE },
                "bearer": { "type": "http", "scheme": "bearer", "description": "an API key, ivk_…" }
            }
        }
    })
}

/// The identity check's photos are sent as the raw image body.
fn is_photo_upload(method: &http::Method, path: &str) -> bool {
    *method == http::Method::POST
        && (path.ends_with("/identity/face") || path.ends_with("/identity/document"))
}

fn operation_id(method: &str, path: &str) -> String {
    let tail: Vec<String> = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .map(|s| {
            s.trim_matches(|c| c == '{' || c == '}')
                .replace(['-', '.'], "_")
        })
        .collect();
    format!("{method}_{}", tail.join("_"))
}

fn tag(path: &str) -> String {
    path.trim_start_matches("/api/v1/")
        .split('/')
        .next()
        .unwrap_or("api")
        .to_string()
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> impl IntoResponse {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_body() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = std::collections::HashSet::new();
        for r in routes() {
            let op = &doc["paths"][r.path][r.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", r.method, r.path);
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_string()),
                "duplicate id"
            );
            assert_eq!(
                op["requestBody"].is_object(),
                r.body.is_some()
                    || r.path.ends_with("/import")
                    || r.path.ends_with("/attachments")
                    || is_photo_upload(&r.method, r.path),
                "{}",
                r.path
            );
        }
        let login = &doc["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        let name = login["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        let schema = &doc["components"]["schemas"][name];
        assert_eq!(schema["required"], json!(["username", "password"]));
        // Every reference points at a component that exists.
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let target = piece.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"][target].is_object(),
                "dangling $ref {target}"
            );
        }
    }
}
