//! The web page at `/`: its files, embedded in the binary (no network at run time, nothing to
//! install beside the server), served without the bearer token (they hold no data; the page asks
//! for the token and sends it with every API call it makes).
//!
//! The sources are `crates/liteobs-server/web/` (plain JavaScript modules and CSS, no build step)
//! and `web/vendor/` (d3-force, made by `scripts/vendor-web.sh`, licence in `vendor/LICENSE`).
//! Each file is answered gzipped when the browser accepts it (compressed once, on first use),
//! with an `ETag` for revalidation and a Content-Security-Policy that lets the page load only
//! its own files and talk only to its own server.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;

/// One embedded file.
pub struct Asset {
    /// Under `/ui/` (`index.html` is also `/`).
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset { name: $name, content_type: $type, bytes: include_bytes!(concat!("../web/", $name)) }
    };
}

/// Every file of the page.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("format.js", "text/javascript; charset=utf-8"),
    asset!("traffic.js", "text/javascript; charset=utf-8"),
    asset!("routes.js", "text/javascript; charset=utf-8"),
    asset!("map.js", "text/javascript; charset=utf-8"),
    asset!("view.js", "text/javascript; charset=utf-8"),
    asset!("vendor/d3-force.min.js", "text/javascript; charset=utf-8"),
    asset!("vendor/LICENSE", "text/plain; charset=utf-8"),
];

/// The page may load only its own files, and call only its own server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the server keeps of one file: its gzip form and its tag.
struct Prepared {
    gzip: Vec<u8>,
    etag: String,
}

fn prepared() -> &'static [Prepared] {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS.iter().map(|a| Prepared { gzip: gzip(a.bytes), etag: etag(a.bytes) }).collect()
    })
}

/// The gzip form of `bytes` (what a browser is sent, and what the size budget counts).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 3), Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// A strong tag from the content (FNV-1a, 64 bits): the same file, the same tag, across restarts.
fn etag(bytes: &[u8]) -> String {
    let hash =
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    format!("\"{hash:016x}\"")
}

/// Mounts `GET /` and `GET /ui/{file}` on an actix scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index)).route("/ui/{file:.+}", web::get().to(file));
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

async fn file(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    serve(&req, &name)
}

fn serve(req: &HttpRequest, name: &str) -> HttpResponse {
    let Some(at) = ASSETS.iter().position(|a| a.name == name) else {
        return HttpResponse::NotFound()
            .content_type("application/json")
            .body(serde_json::json!({ "error": format!("no such file: /ui/{name}") }).to_string());
    };
    let asset = &ASSETS[at];
    let prepared = &prepared()[at];
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, prepared.etag.as_str()))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP));
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == prepared.etag || t.trim() == "*"));
    if unchanged {
        return response.status(actix_web::http::StatusCode::NOT_MODIFIED).finish();
    }
    if accepts_gzip(req.headers().get(header::ACCEPT_ENCODING)) {
        response.insert_header((header::CONTENT_ENCODING, "gzip")).body(prepared.gzip.clone())
    } else {
        response.body(asset.bytes)
    }
}

/// `Accept-Encoding` names gzip with a non-zero weight (RFC 9110 §12.5.3).
fn accepts_gzip(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else { return false };
    value.split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let zero = parts
            .any(|p| p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0)));
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !zero
    })
}

/// Routes served without a token: the page's files and the health check.
pub fn is_public(path: &str) -> bool {
    path == "/" || path == "/healthz" || path.starts_with("/ui/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_small_compressed_and_every_file_it_names_is_embedded() {
        let compressed: usize = ASSETS.iter().map(|a| gzip(a.bytes).len()).sum();
        let raw: usize = ASSETS.iter().map(|a| a.bytes.len()).sum();
        println!("web page: {raw} bytes, {compressed} gzipped");
        assert!(compressed < 500 * 1024, "the page's files total {compressed} bytes gzipped (budget 500 KB)");
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap_or("");
        for reference in html.split("\"ui/").skip(1) {
            let name = reference.split('"').next().unwrap_or("");
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html loads ui/{name}, which is not embedded"
            );
        }
        // Every module a script imports is embedded too.
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js") && !a.name.starts_with("vendor/")) {
            let text = std::str::from_utf8(a.bytes).unwrap_or("");
            for import in text.split("from \"./").skip(1) {
                let name = import.split('"').next().unwrap_or("");
                assert!(
                    ASSETS.iter().any(|b| b.name == name),
                    "{} imports ./{name}, which is not embedded",
                    a.name
                );
            }
        }
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(accepts_gzip(Some(&v("gzip, deflate, br"))));
        assert!(accepts_gzip(Some(&v("br;q=1.0, GZIP;q=0.5"))));
        assert!(accepts_gzip(Some(&v("*"))));
        assert!(!accepts_gzip(Some(&v("gzip;q=0"))));
        assert!(!accepts_gzip(Some(&v("br, deflate"))));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn only_the_page_and_the_health_check_are_public() {
        for path in ["/", "/healthz", "/ui/app.js", "/ui/vendor/LICENSE"] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/query", "/stats", "/map", "/sql", "/upload", "/index.html", "/uix", "//"] {
            assert!(!is_public(path), "{path}");
        }
    }
}
