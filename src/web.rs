//! The embedded pages: the admin panel at `/`, a project's user portal at `/p/<slug>`, and their
//! static files under `/static/`. Files come from `assets/` at build time (in debug builds
//! rust-embed reads them from disk, so page work needs no rebuild).

use poem::{
    EndpointExt, Request, Response, Route, get, handler,
    http::{HeaderValue, StatusCode, header},
    web::Path,
};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// Pages load only their own scripts, styles and images, talk only to this origin, and may not
/// be framed: a stolen-click or injected-script attack has nothing to work with.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; \
base-uri 'none'; frame-ancestors 'none'";

/// Adds the page routes to the application's router.
pub fn mount(route: Route) -> Route {
    route
        .at("/", get(admin_page).after(secure))
        // The setup URL the server prints (`/setup?token=…`): the admin panel's setup screen.
        .at("/setup", get(admin_page).after(secure))
        .at("/p/:slug", get(portal_page).after(secure))
        .at("/p/:slug/*rest", get(portal_page).after(secure))
        .at("/static/*path", get(static_file).after(secure))
}

async fn secure(res: poem::Result<Response>) -> poem::Result<Response> {
    let mut res = res?;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    Ok(res)
}

#[handler]
fn admin_page(req: &Request) -> Response {
    serve("admin/index.html", req)
}

#[handler]
fn portal_page(req: &Request) -> Response {
    serve("portal/index.html", req)
}

#[handler]
fn static_file(Path(path): Path<String>, req: &Request) -> Response {
    serve(&path, req)
}

fn serve(path: &str, req: &Request) -> Response {
    let Some(file) = Assets::get(path) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .content_type("text/plain; charset=utf-8")
            .body("not found");
    };
    // Files keep stable names (no bundler), so browsers revalidate every time and get a 304
    // while nothing changed.
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let builder = Response::builder()
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "no-cache");
    if unchanged {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    builder
        .content_type(content_type)
        .body(file.data.into_owned())
}
