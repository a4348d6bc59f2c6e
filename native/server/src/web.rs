//! The web player's static files (`web-demo/dist`, built by `web-demo/build.sh`), served at
//! `/` without credentials: they are public code; every call they make to `/v1/` carries the
//! caller's token like any other client. Paths are checked before the disk is touched: only
//! plain names (letters, digits, `.`, `_`, `-`) joined by `/`, none starting with a dot, so
//! nothing outside the directory can be named.

use std::path::{Path, PathBuf};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use tapelog_api::ErrorCode;

/// Where the web player's files are, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct WebRoot {
    dir: Option<PathBuf>,
}

/// The directory `serve` uses when none is configured, relative to its working directory
/// (where `scripts/run.sh` builds the player).
pub const DEFAULT_WEB_DIR: &str = "web-demo/dist";

impl WebRoot {
    /// Files from `dir`; `None` serves only a page that says how to build the player.
    pub fn new(dir: Option<PathBuf>) -> WebRoot {
        WebRoot { dir }
    }

    /// `dir` if given, else [`DEFAULT_WEB_DIR`] when it holds an `index.html`.
    pub fn configured_or_default(dir: Option<PathBuf>) -> WebRoot {
        let dir = dir.or_else(|| {
            let d = PathBuf::from(DEFAULT_WEB_DIR);
            d.join("index.html").is_file().then_some(d)
        });
        WebRoot { dir }
    }

    /// The directory served, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The answer to `GET path` (a path outside `/v1/`, `/healthz` and `/metrics`).
    pub async fn get(&self, path: &str) -> Response {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() || rel.ends_with('/') {
            format!("{rel}index.html")
        } else {
            rel.to_string()
        };
        let Some(dir) = &self.dir else {
            if rel == "index.html" {
                return (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    NOT_BUILT_PAGE,
                )
                    .into_response();
            }
            return not_found(path);
        };
        if !is_safe(&rel) {
            return not_found(path);
        }
        match tokio::fs::read(dir.join(&rel)).await {
            Ok(bytes) => {
                let mut resp = (StatusCode::OK, bytes).into_response();
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&rel)),
                );
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                resp
            }
            Err(_) => not_found(path),
        }
    }
}

/// A relative path made only of plain names: no `..`, no hidden files, no backslashes,
/// no percent escapes, no empty segments.
fn is_safe(rel: &str) -> bool {
    !rel.is_empty()
        && rel.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        })
}

/// The content type of a file of the player, by its extension.
fn content_type(rel: &str) -> &'static str {
    match rel.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn not_found(path: &str) -> Response {
    ApiError::new(ErrorCode::NotFound, format!("no such page: {path}")).into_response()
}

const NOT_BUILT_PAGE: &str = "<!doctype html><meta charset=utf-8><title>tapelog</title>\
<h1>tapelog serve</h1><p>The web player is not built. Run <code>bash web-demo/build.sh</code> \
and start <code>tapelog serve</code> from the repository's top directory, or give \
<code>--web-dir DIR</code>. The API is under <code>/v1/</code> (docs/api.md).</p>";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_served() {
        for ok in [
            "index.html",
            "assets/xterm.css",
            "pkg/tapelog_wasm_bg.wasm",
            "a-b_c.js",
        ] {
            assert!(is_safe(ok), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "assets/../../x",
            ".env",
            "a//b",
            "a/.hidden",
            "%2e%2e/x",
            "a\\b",
            "/abs",
        ] {
            assert!(!is_safe(bad), "{bad}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("pkg/x.wasm"), "application/wasm");
        assert_eq!(content_type("worker.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }

    #[tokio::test]
    async fn files_from_the_directory_and_nothing_outside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dist");
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("index.html"), "<p>player</p>").unwrap();
        std::fs::write(root.join("pkg/a.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        let web = WebRoot::new(Some(root));

        let r = web.get("/").await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert_eq!(&body[..], b"<p>player</p>");

        let r = web.get("/pkg/a.wasm").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/wasm");

        assert_eq!(web.get("/../secret").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(web.get("/missing.js").await.status(), StatusCode::NOT_FOUND);

        let none = WebRoot::new(None);
        let r = none.get("/").await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("web-demo/build.sh"));
    }
}
