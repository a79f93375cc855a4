//! The web screens: the supervisors' live wall (`/`), the agent's screen (`/agent`), the call
//! history (`/calls`) and one call's review (`/calls/{id}`), plus their scripts and style under
//! `/ui/...`. Everything is compiled into the binary (`include_str!`), so the screens work
//! offline and need no build step; the pages are plain HTML, CSS and ES modules.
//!
//! Every response carries its content type, an `ETag` (the content's SHA-256) with
//! `Cache-Control: no-cache` (so a browser revalidates and gets `304 Not Modified` until the
//! binary changes), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (tokens
//! travel in URLs for `<audio>` and downloads) and a strict `Content-Security-Policy`: scripts,
//! styles, media and images from this origin only, websockets to this host only, no frames.
//!
//! What it does not do: authentication. The pages are public shells; they ask for a token,
//! keep it in the tab's `sessionStorage` and present it to `/ws` and `/api`, which check it.
//! It holds no state and serves nothing from disk.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The pages (served at their routes) and the assets (served at `/ui/<name>`).
const FILES: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("ui/index.html"),
    },
    Asset {
        name: "agent.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("ui/agent.html"),
    },
    Asset {
        name: "calls.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("ui/calls.html"),
    },
    Asset {
        name: "review.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("ui/review.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("ui/app.css"),
    },
    Asset {
        name: "common.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/common.js"),
    },
    Asset {
        name: "live.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/live.js"),
    },
    Asset {
        name: "wall.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/wall.js"),
    },
    Asset {
        name: "agent.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/agent.js"),
    },
    Asset {
        name: "calls.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/calls.js"),
    },
    Asset {
        name: "review.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/review.js"),
    },
    Asset {
        name: "playbook.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("ui/playbook.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("ui/favicon.svg"),
    },
];

/// Each file's ETag, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|f| {
            let digest = Sha256::digest(f.body.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// Each page's route and file (the review page reads the call's id from its own path).
const PAGES: [(&str, &str); 5] = [
    ("/", "index.html"),
    ("/agent", "agent.html"),
    ("/calls", "calls.html"),
    ("/calls/{id}", "review.html"),
    ("/favicon.ico", "favicon.svg"),
];

/// The screens' routes. Generic over the state so `server::router` can merge it as is.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    PAGES
        .iter()
        .fold(Router::new(), |r, &(path, file)| {
            r.route(path, get(move |h: HeaderMap| async move { page(file, &h) }))
        })
        .route(
            "/ui/{name}",
            get(|Path(name): Path<String>, h: HeaderMap| async move {
                // The pages have their own routes; /ui/ is for what they load.
                if name.ends_with(".html") {
                    return not_found();
                }
                page(&name, &h)
            }),
        )
}

/// The Content-Security-Policy: this origin only; websockets to the host the page came from.
fn csp(headers: &HeaderMap) -> String {
    // A Host header is echoed only when it is a plain host[:port]; CSP 3 browsers also
    // accept ws/wss under 'self', so nothing breaks when it is left out.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let ws = host
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         media-src 'self'; connect-src 'self'{ws}; font-src 'self'; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

/// Serves an embedded file by name, 404 when there is none, 304 when the browser has it.
fn page(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = FILES.iter().position(|f| f.name == name) else {
        return not_found();
    };
    let file = &FILES[i];
    let etag = &ETAGS[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        file.body.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&csp(headers)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A response as the tests read it: status, lower-cased headers, body.
    struct Got {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Got {
        fn header(&self, name: &str) -> &str {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
        }
    }

    /// One raw HTTP/1.1 request to the routes served on a loopback port.
    async fn get(path: &str, host: &str, extra: &[(&str, &str)]) -> Got {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, routes::<()>()).await.unwrap();
        });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        server.abort();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Got {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    const HOST: &str = "127.0.0.1:8686";

    #[tokio::test]
    async fn pages_are_html_with_a_strict_policy() {
        for (path, script) in [
            ("/", "/ui/wall.js"),
            ("/agent", "/ui/agent.js"),
            ("/calls", "/ui/calls.js"),
            ("/calls/42", "/ui/review.js"),
        ] {
            let r = get(path, HOST, &[]).await;
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-type"), "text/html; charset=utf-8");
            let csp = r.header("content-security-policy");
            assert!(csp.contains("default-src 'none'"), "{csp}");
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(
                csp.contains("connect-src 'self' ws://127.0.0.1:8686 wss://127.0.0.1:8686;"),
                "{csp}"
            );
            assert!(csp.contains("media-src 'self'"), "{csp}");
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(r.header("referrer-policy"), "no-referrer");
            assert_eq!(r.header("cache-control"), "no-cache");
            let html = &r.body;
            assert!(html.starts_with("<!doctype html>"), "{path}");
            assert!(html.contains(script), "{path} loads {script}");
            // No inline scripts or styles (the policy would block them), nothing external.
            assert!(
                !html.contains("<script>") && !html.contains("style="),
                "{path}"
            );
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn assets_have_their_content_types() {
        for (path, ct) in [
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/common.js", "text/javascript; charset=utf-8"),
            ("/ui/live.js", "text/javascript; charset=utf-8"),
            ("/ui/wall.js", "text/javascript; charset=utf-8"),
            ("/ui/agent.js", "text/javascript; charset=utf-8"),
            ("/ui/calls.js", "text/javascript; charset=utf-8"),
            ("/ui/review.js", "text/javascript; charset=utf-8"),
            ("/ui/playbook.js", "text/javascript; charset=utf-8"),
            ("/ui/favicon.svg", "image/svg+xml"),
            ("/favicon.ico", "image/svg+xml"),
        ] {
            let r = get(path, HOST, &[]).await;
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-type"), ct, "{path}");
            assert_eq!(r.header("x-content-type-options"), "nosniff");
            assert!(r.header("etag").starts_with('"'));
            assert!(!r.body.is_empty(), "{path}");
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_404() {
        for path in [
            "/ui/nope.js",
            "/ui/index.html",
            "/ui/",
            "/ui/..%2Fui.rs",
            "/ui/app.css/x",
            "/agent/x",
        ] {
            let r = get(path, HOST, &[]).await;
            assert_eq!(r.status, 404, "{path}");
        }
    }

    #[tokio::test]
    async fn a_known_etag_gets_304() {
        let r = get("/ui/app.css", HOST, &[]).await;
        let etag = r.header("etag").to_owned();
        let again = get("/ui/app.css", HOST, &[("If-None-Match", &etag)]).await;
        assert_eq!(again.status, 304);
        assert_eq!(again.header("etag"), etag);
        assert!(again.body.is_empty());
        let other = get("/ui/app.css", HOST, &[("If-None-Match", "\"stale\"")]).await;
        assert_eq!(other.status, 200);
    }

    #[tokio::test]
    async fn a_strange_host_is_not_echoed() {
        let r = get("/", "evil;script-src", &[]).await;
        let csp = r.header("content-security-policy");
        assert!(csp.contains("connect-src 'self';"), "{csp}");
        assert!(!csp.contains("evil"), "{csp}");
    }
}
