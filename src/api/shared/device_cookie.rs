//! The device cookies of sign-ins (`service::login_guard`) as HTTP sees them: read from the
//! request, set on the answer, scoped to the one path that reads them.

use poem::Request;
use poem::web::cookie::{Cookie, SameSite};

use crate::api::shared::csrf::is_https;
use crate::service::login_guard::{DEVICE_COOKIE_PREFIX, DeviceCookie};
use crate::state::AppState;

/// The device cookies the client sent (name, value); a few at most are looked at.
pub fn presented(req: &Request) -> Vec<(String, String)> {
    req.cookie().with_cookies(|cookies| {
        cookies
            .filter(|c| c.name().starts_with(DEVICE_COOKIE_PREFIX))
            .take(32)
            .map(|c| (c.name().to_owned(), c.value().to_owned()))
            .collect()
    })
}

/// Sets `device` on the answer: HttpOnly (no script reads it), SameSite=Strict, `Secure`
/// behind HTTPS, and sent back only to `path` (the sign-in endpoint), nowhere else.
pub fn set(req: &Request, state: &AppState, path: &str, device: &DeviceCookie) {
    let mut cookie = Cookie::new_with_str(device.name.clone(), device.value.clone());
    cookie.set_path(path);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_secure(is_https(req, state));
    cookie.set_max_age(std::time::Duration::from_secs(
        device.max_age_secs.max(0) as u64
    ));
    req.cookie().add(cookie);
}
