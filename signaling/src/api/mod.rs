//! The REST API under `/api`: rooms, participants, tracks, node status and drain, the fleet. Every route
//! but the OpenAPI document (and, in dev mode, the development token) needs a bearer token with
//! the `admin` grant. The document itself is docs/openapi.json, compiled in.

pub mod error;
mod fleet;
mod node;
mod rooms;

pub use error::{ApiError, ApiJson, ErrorBody};
pub use fleet::{FleetStatus, RoomPlacement};
pub use node::{DevToken, NodeStatus};
pub use rooms::{CreateRoom, MuteRequest, ParticipantList, RoomDetail, RoomList};

use crate::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, delete, get, post};

/// The OpenAPI 3 document served at `/api/openapi.json` (docs/openapi.json).
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// One route of the HTTP router, as listed for documentation and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path in the router's syntax (`/api/rooms/{room}`).
    pub path: &'static str,
    /// Needs an admin token.
    pub admin: bool,
}

/// Builds a router while recording its routes.
pub(crate) struct Routes {
    router: Router<AppState>,
    list: Vec<RouteInfo>,
    state: AppState,
}

impl Routes {
    pub(crate) fn new(state: AppState) -> Self {
        Routes { router: Router::new(), list: Vec::new(), state }
    }

    /// A route anyone may call.
    pub(crate) fn public(mut self, method: &'static str, path: &'static str, handler: MethodRouter<AppState>) -> Self {
        self.list.push(RouteInfo { method, path, admin: false });
        self.router = self.router.route(path, handler);
        self
    }

    /// A route that needs a bearer token with the admin grant.
    pub(crate) fn admin(mut self, method: &'static str, path: &'static str, handler: MethodRouter<AppState>) -> Self {
        self.list.push(RouteInfo { method, path, admin: true });
        let guarded = handler.route_layer(middleware::from_fn_with_state(self.state.clone(), require_admin));
        self.router = self.router.route(path, guarded);
        self
    }

    pub(crate) fn finish(self) -> (Router<AppState>, Vec<RouteInfo>) {
        (self.router, self.list)
    }
}

/// Adds the `/api` routes.
pub(crate) fn register(r: Routes) -> Routes {
    let dev = r.state.auth.is_dev();
    let mut r = r
        .public("GET", "/api/openapi.json", get(openapi))
        .admin("GET", "/api/node", get(node::status))
        .admin("POST", "/api/node/drain", post(node::drain))
        .admin("GET", "/api/fleet", get(fleet::status))
        .admin("GET", "/api/fleet/rooms/{room}", get(fleet::room))
        .admin("GET", "/api/rooms", get(rooms::list))
        .admin("POST", "/api/rooms", post(rooms::create))
        .admin("GET", "/api/rooms/{room}", get(rooms::get))
        .admin("DELETE", "/api/rooms/{room}", delete(rooms::delete))
        .admin("GET", "/api/rooms/{room}/participants", get(rooms::participants))
        .admin("DELETE", "/api/rooms/{room}/participants/{participant}", delete(rooms::remove_participant))
        .admin("POST", "/api/rooms/{room}/participants/{participant}/tracks/{track}/mute", post(rooms::mute));
    if dev {
        r = r.public("GET", "/api/dev/token", get(node::dev_token));
    }
    r.router = r.router.route("/api/{*rest}", any(not_found));
    r
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such API route; see /api/openapi.json".into())
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_admin(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match state.auth.check_admin(bearer(req.headers())) {
        Ok(claims) => {
            req.extensions_mut().insert(claims);
            next.run(req).await
        }
        Err(e) => {
            state.metrics.auth_failure("api", e.reason());
            tracing::info!(path = %req.uri().path(), reason = e.reason(), "api request refused: {e}");
            ApiError::Auth(e).into_response()
        }
    }
}
