//! The demo page, compiled into the binary.

use signaling::Asset;

/// The demo page (`/`, `/app.js`) and the WHEP player (`/watch`, `/watch.js`).
pub static ASSETS: &[Asset] = &[
    Asset { path: "/", content_type: "text/html; charset=utf-8", body: include_str!("../static/index.html") },
    Asset { path: "/app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../static/app.js") },
    Asset { path: "/watch", content_type: "text/html; charset=utf-8", body: include_str!("../static/watch.html") },
    Asset {
        path: "/watch.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../static/watch.js"),
    },
];
