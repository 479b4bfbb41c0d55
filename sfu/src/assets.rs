//! The demo page, compiled into the binary.

use signaling::Asset;

/// Files served at `/` and `/app.js`.
pub static ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("../static/index.html") },
    Asset { path: "/app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../static/app.js") },
];
