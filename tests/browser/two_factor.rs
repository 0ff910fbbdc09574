//! Two-factor login in the admin panel: enrolment on the Account security page (QR code,
//! secret, first code, recovery codes shown once), then a sign-in whose second step takes a
//! code.

use serde_json::json;

use super::driver::{Browser, t};
use super::helpers::{self, TestServer};

fn code(secret: &str, steps: i64) -> String {
    let now = helpers::now_ms() / 1000;
    keyward::domain::two_factor::code_for_base32(secret, now + steps * 30).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_turns_on_two_factor_login_and_signs_in_with_a_code() {
    let srv = TestServer::start().await;
    helpers::setup_admin(&srv).await;
    let b = Browser::start(&srv.url).await;
    b.goto("/").await;
    b.fill("login-email", helpers::ADMIN_EMAIL).await;
    b.fill("login-password", helpers::PASSWORD).await;
    b.click("login-submit").await;
    b.el("view-dashboard").await;

    b.click("nav-security").await;
    b.el("totp-off").await;
    b.assert_clean("account security").await;
    b.click("totp-start").await;
    b.el("totp-qr").await;
    let secret = b.text("totp-secret").await.trim().to_owned();
    assert_eq!(secret.len(), 32, "{secret}");
    // The QR code is an image that loaded (an SVG data URI).
    b.wait_js(
        "the QR code to load",
        "const i = document.querySelector(arguments[0]); return !!i && i.complete && i.naturalWidth > 0;",
        vec![json!(t("totp-qr"))],
    )
    .await;
    b.fill("totp-code", "000000").await;
    b.click("totp-confirm").await;
    b.wait_text("error-code", "does not match").await;
    // Kept, not computed again below: a 30 s step may end between enrolment and sign-in.
    let enrolled_with = code(&secret, 0);
    b.fill("totp-code", &enrolled_with).await;
    b.click("totp-confirm").await;
    b.el("recovery-codes").await;
    let codes = b.all(&format!("{} li", t("recovery-codes"))).await;
    assert_eq!(codes.len(), 10);
    b.shot("two-factor-recovery-codes").await;
    b.click("recovery-done").await;
    b.wait_text("recovery-left", "10 of 10").await;
    b.el("totp-on").await;
    b.el("policy-form").await;
    b.assert_clean("two-factor on").await;
    b.phone(true).await;
    b.assert_no_hscroll("account security on a phone").await;
    b.phone(false).await;

    // Sign out and in again: the password step asks for a code.
    b.click("logout").await;
    b.el("login-form").await;
    b.fill("login-email", helpers::ADMIN_EMAIL).await;
    b.fill("login-password", helpers::PASSWORD).await;
    b.click("login-submit").await;
    b.el("second-factor-form").await;
    b.shot("two-factor-sign-in").await;
    b.fill("login-code", &enrolled_with).await;
    b.click("second-factor-submit").await;
    b.wait_text("second-factor-error", "already used").await;
    b.fill("login-code", &code(&secret, 1)).await;
    b.click("second-factor-submit").await;
    // Back where the operator signed out.
    b.el("totp-on").await;
    b.assert_clean("signed in with a code").await;
    b.close().await;
}
