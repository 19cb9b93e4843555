//! `GET /openapi.json`: the admin API's OpenAPI document, generated from the handlers'
//! annotations and the answer types, so it cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{reload, status, windows};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "doltgres-sidecar admin API",
        description = "Health, status, metrics, backup windows and configuration reload of a doltgres-sidecar. \\
                       With `admin_token` set, the endpoints marked with the bearer scheme need \\
                       `Authorization: Bearer <token>`."
    ),
    paths(
        super::healthz,
        super::readyz,
        super::metrics,
        super::openapi_json,
        status::status,
        windows::quiesce,
        windows::resume,
        windows::run_backup,
        windows::list_backups,
        reload::reload,
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme the guarded endpoints name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = ApiDoc::openapi();
        let mut paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        paths.sort();
        let mut routes = vec![
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
            "/status",
            "/quiesce",
            "/resume",
            "/backups",
            "/reload",
        ];
        routes.sort();
        // The router's paths; `admin_limits.rs` checks that each documented one is served.
        assert_eq!(paths, routes);
        let json = doc.to_json().unwrap();
        for schema in [
            "WindowRecord",
            "Status",
            "Backups",
            "CopySummary",
            "ApiError",
            "Reloaded",
        ] {
            assert!(json.contains(&format!("\"{schema}\"")), "{schema} missing");
        }
    }
}
