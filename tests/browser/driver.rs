//! A real headless Chromium driven through WebDriver (fantoccini + chromedriver), with the waits,
//! screenshots and page checks the browser tests share.
//!
//! Each [`Browser`] starts its own `chromedriver` on a free port (in a process group of its own,
//! ended on drop, also when the test panics) and one Chromium session. Missing binaries fail the
//! test with a message saying how to install them: the browser tests never skip.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long an element or a condition may take to appear.
pub const TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(40);

pub const DESKTOP: (u32, u32) = (1280, 900);

fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "the browser tests need {} ({env} overrides the path), and it is missing. \
         Install Chromium and its driver: `apt-get install -y chromium chromium-driver` \
         (Debian). These tests never skip.",
        path.display()
    );
    path
}

/// A `chromedriver` process; dropping it ends its whole process group (driver and browsers).
pub struct ChromeDriver {
    child: Child,
    pub url: String,
}

impl ChromeDriver {
    fn start() -> Self {
        let exe = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for chromedriver")
            .port();
        let child = Command::new(&exe)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The driver and the browsers it started share the group whose id is the driver's pid.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium session on the Keyward server at `base`.
pub struct Browser {
    pub c: Client,
    pub base: String,
    http: reqwest::Client,
    session: String,
    shots: PathBuf,
    phone: std::sync::atomic::AtomicBool,
    // Last: dropped after the client.
    driver: ChromeDriver,
}

/// Where screenshots go: `target/screenshots/` (of `CARGO_TARGET_DIR` when set).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

/// `[data-test="name"]`
pub fn t(name: &str) -> String {
    format!("[data-test=\"{name}\"]")
}

/// Records `securitypolicyviolation` events from the very start of every document.
const CSP_LISTENER: &str = "window.__csp = []; document.addEventListener('securitypolicyviolation', \
     (e) => window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI} in ${e.sourceFile}:${e.lineNumber}`));";

impl Browser {
    pub async fn start(base: &str) -> Self {
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let driver = ChromeDriver::start();
        let http = reqwest::Client::new();
        let ready = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < ready, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (w, h) = DESKTOP;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--window-size={w},{h}"), "--hide-scrollbars", "--force-color-profile=srgb",
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--disable-background-networking", "--disable-sync", "--lang=en-US",
                ],
                "prefs": {"intl.accept_languages": "en-US"},
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a Chromium session through chromedriver");
        let session = c
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("target/screenshots");
        let b = Self {
            c,
            base: base.trim_end_matches('/').to_owned(),
            http,
            session,
            shots,
            phone: std::sync::atomic::AtomicBool::new(false),
            driver,
        };
        b.cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": CSP_LISTENER}),
        )
        .await;
        b.cdp(
            "Browser.grantPermissions",
            json!({"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": b.base}),
        )
        .await;
        b
    }

    /// Ends the browser session (the driver ends on drop).
    pub async fn close(self) {
        let Browser { c, driver, .. } = self;
        let _ = c.close().await;
        drop(driver);
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        let url = format!(
            "{}/session/{}/goog/cdp/execute",
            self.driver.url, self.session
        );
        let r = self
            .http
            .post(url)
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"));
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "CDP {cmd} failed: {body}");
        body["value"].clone()
    }

    /// The browser console since the last call (chromedriver's log endpoint).
    pub async fn console(&self) -> Vec<Value> {
        let url = format!("{}/session/{}/se/log", self.driver.url, self.session);
        let r = self
            .http
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("browser log");
        let body: Value = r.json().await.unwrap_or(Value::Null);
        body["value"].as_array().cloned().unwrap_or_default()
    }

    /// Sets the viewport: a phone, 375 CSS px wide (mobile emulation), or the desktop window.
    pub async fn phone(&self, on: bool) {
        self.phone.store(on, std::sync::atomic::Ordering::Relaxed);
        self.viewport(None).await;
    }

    /// Applies the current viewport, `height` CSS px tall when given.
    async fn viewport(&self, height: Option<f64>) {
        let phone = self.phone.load(std::sync::atomic::Ordering::Relaxed);
        match (phone, height) {
            (false, None) => {
                self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
                    .await;
            }
            (phone, height) => {
                let (w, h, dpr) = if phone {
                    (375.0, 812.0, 2)
                } else {
                    (f64::from(DESKTOP.0), f64::from(DESKTOP.1), 1)
                };
                self.cdp(
                    "Emulation.setDeviceMetricsOverride",
                    json!({"width": w, "height": height.unwrap_or(h), "deviceScaleFactor": dpr, "mobile": phone}),
                )
                .await;
            }
        }
    }

    pub async fn goto(&self, path: &str) {
        self.c
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.c
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.c
            .execute_async(script, args)
            .await
            .unwrap_or_else(|e| panic!("async script failed: {e}\n{script}"))
    }

    /// Polls `script` (a function body returning a value) until it returns something truthy.
    pub async fn wait_js(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        let mut last;
        loop {
            match self.c.execute(script, args.clone()).await {
                Ok(v) => {
                    let truthy = match &v {
                        Value::Null => false,
                        Value::Bool(b) => *b,
                        Value::String(s) => !s.is_empty(),
                        Value::Number(n) => n.as_f64() != Some(0.0),
                        _ => true,
                    };
                    if truthy {
                        return v;
                    }
                    last = v;
                }
                Err(e) => last = Value::String(format!("error: {e}")),
            }
            if Instant::now() > deadline {
                self.failure_shot(what).await;
                panic!(
                    "timed out waiting for {what} (last: {last}); url {:?}",
                    self.url().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn url(&self) -> String {
        self.c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    async fn failure_shot(&self, what: &str) {
        let name: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(60)
            .collect();
        if let Ok(png) = self.c.screenshot().await {
            let _ = std::fs::write(self.shots.join(format!("FAILED-{name}.png")), png);
        }
    }

    /// The first visible element matching `css`, waiting for it.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(els) = self.c.find_all(Locator::Css(css)).await {
                for el in els {
                    if el.is_displayed().await.unwrap_or(false) {
                        return el;
                    }
                }
            }
            if Instant::now() > deadline {
                self.failure_shot(css).await;
                panic!(
                    "timed out waiting for a visible {css}; url {:?}",
                    self.url().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The visible `[data-test=name]`.
    pub async fn el(&self, name: &str) -> Element {
        self.find(&t(name)).await
    }

    /// Every element matching `css` (no wait).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.c.find_all(Locator::Css(css)).await.unwrap_or_default()
    }

    /// Clicks the visible element matching `css`, retrying while something covers it.
    pub async fn click_css(&self, css: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let el = self.find(css).await;
            match el.click().await {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline && retryable(&e) => {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    pub async fn click(&self, name: &str) {
        self.click_css(&t(name)).await;
    }

    /// Replaces the value of the visible field matching `css` by typing `text`.
    pub async fn fill_css(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn fill(&self, name: &str, text: &str) {
        self.fill_css(&t(name), text).await;
    }

    pub async fn select(&self, name: &str, value: &str) {
        self.select_css(&t(name), value).await;
    }

    pub async fn select_css(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    pub async fn text(&self, name: &str) -> String {
        self.el(name).await.text().await.unwrap_or_default()
    }

    /// Waits until the visible `[data-test=name]` contains `needle`; returns its text.
    pub async fn wait_text(&self, name: &str, needle: &str) -> String {
        let v = self
            .wait_js(
                &format!("{name} to contain {needle:?}"),
                "const els = [...document.querySelectorAll(arguments[0])]\
                   .filter((e) => e.offsetParent !== null || e.getClientRects().length);\
                 const hit = els.find((e) => e.textContent.includes(arguments[1]));\
                 return hit ? hit.textContent : null;",
                vec![json!(t(name)), json!(needle)],
            )
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until `[data-test=name]` has `attr` equal to `value`.
    pub async fn wait_attr(&self, name: &str, attr: &str, value: &str) {
        self.wait_js(
            &format!("{name}[{attr}={value}]"),
            "const e = document.querySelector(arguments[0]); \
             return !!e && e.getAttribute(arguments[1]) === arguments[2];",
            vec![json!(t(name)), json!(attr), json!(value)],
        )
        .await;
    }

    /// Waits until nothing matches `css` (or nothing visible does).
    pub async fn wait_gone(&self, css: &str) {
        self.wait_js(
            &format!("{css} to go away"),
            "return ![...document.querySelectorAll(arguments[0])].some((e) => e.getClientRects().length);",
            vec![json!(css)],
        )
        .await;
    }

    /// Saves a screenshot of the whole page (up to 2,400 CSS px tall) as
    /// `target/screenshots/<name>.png`, without toasts, focus ring or caret.
    pub async fn shot(&self, name: &str) -> PathBuf {
        let size = self
            .js(
                "document.querySelectorAll('[data-test=toast]').forEach((e) => e.remove());\
                 if (document.activeElement && document.activeElement.blur) document.activeElement.blur();\
                 window.scrollTo(0, 0);\
                 const d = document.documentElement;\
                 return Math.max(d.scrollHeight, document.body.scrollHeight, window.innerHeight);",
                vec![],
            )
            .await;
        let height = size.as_f64().unwrap_or(900.0).min(2400.0);
        // A viewport as tall as the page, so 100vh layouts (the sidebar) look as they do.
        let tall = height > self.inner_height().await;
        if tall {
            self.viewport(Some(height)).await;
        }
        let shot = self
            .cdp("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        if tall {
            self.viewport(None).await;
        }
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    async fn inner_height(&self) -> f64 {
        self.js("return window.innerHeight;", vec![])
            .await
            .as_f64()
            .unwrap_or(0.0)
    }

    /// The page loaded nothing from another origin, links no script or style elsewhere, and
    /// the Content-Security-Policy refused nothing (listener installed before any script).
    pub async fn assert_clean(&self, page: &str) {
        let v = self
            .js(
                "const o = location.origin; const bad = [];\
                 for (const e of performance.getEntriesByType('resource')) {\
                   const u = new URL(e.name);\
                   if (u.origin !== o && u.protocol !== 'data:' && u.protocol !== 'blob:') bad.push(e.name);\
                 }\
                 for (const el of document.querySelectorAll('script[src], link[href], img[src], iframe, source[src], video, audio')) {\
                   const raw = el.getAttribute('src') || el.getAttribute('href');\
                   if (!raw) continue;\
                   const u = new URL(raw, location.href);\
                   if (u.origin !== o && u.protocol !== 'data:') bad.push(el.outerHTML.slice(0, 200));\
                 }\
                 const inline = [...document.querySelectorAll('script:not([src])')].map((s) => s.outerHTML.slice(0, 80));\
                 return {bad, inline, csp: Array.isArray(window.__csp) ? window.__csp : null,\
                         resources: performance.getEntriesByType('resource').length};",
                vec![],
            )
            .await;
        assert_eq!(
            v["bad"],
            json!([]),
            "{page}: loads or links resources from another origin"
        );
        assert_eq!(v["inline"], json!([]), "{page}: has inline scripts");
        assert!(
            v["csp"].is_array(),
            "{page}: the CSP listener was not installed: {v}"
        );
        assert_eq!(
            v["csp"],
            json!([]),
            "{page}: Content-Security-Policy violations"
        );
        assert!(
            v["resources"].as_u64().unwrap_or(0) > 0,
            "{page}: no resource timing entries at all: {v}"
        );
        // The console too: CSP refusals and uncaught errors are logged as SEVERE.
        let severe: Vec<String> = self
            .console()
            .await
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            // The pages call the API and show its refusals (401 before sign-in, 400/403/404 of
            // the form error checks): Chromium logs each failed request; they are expected.
            .filter(|m| {
                !m.contains("Failed to load resource: the server responded with a status of 4")
            })
            .collect();
        assert!(
            severe.is_empty(),
            "{page}: errors in the browser console: {severe:#?}"
        );
    }

    /// At the current viewport the page does not scroll sideways.
    pub async fn assert_no_hscroll(&self, page: &str) {
        let v = self
            .js(
                "const d = document.documentElement;\
                 const wide = [...document.querySelectorAll('body *')]\
                   .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)\
                   .filter((e) => { for (let p = e.parentElement; p; p = p.parentElement) {\
                       const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return false; } return true; })\
                   .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}.${e.className}[${e.getAttribute('data-test') || ''}] right=${Math.round(e.getBoundingClientRect().right)}`);\
                 return {scroll: d.scrollWidth, inner: window.innerWidth, wide};",
                vec![],
            )
            .await;
        let scroll = v["scroll"].as_f64().unwrap_or(f64::MAX);
        let inner = v["inner"].as_f64().unwrap_or(0.0);
        assert!(
            inner <= 400.0,
            "{page}: the phone viewport is not in force: {v}"
        );
        assert!(
            scroll <= inner,
            "{page}: scrolls horizontally at {inner} px (scrollWidth {scroll}); too wide: {}",
            v["wide"]
        );
    }

    /// Fetches `url` from the page (with its cookies): `(status, bytes)`.
    pub async fn fetch(&self, url: &str) -> (u64, u64) {
        let v = self
            .js_async(
                "const [url, done] = arguments;\
                 fetch(url, {credentials: 'same-origin'})\
                   .then(async (r) => done({status: r.status, bytes: (await r.arrayBuffer()).byteLength}))\
                   .catch((e) => done({status: 0, bytes: 0, error: String(e)}));",
                vec![json!(url)],
            )
            .await;
        (
            v["status"].as_u64().unwrap_or(0),
            v["bytes"].as_u64().unwrap_or(0),
        )
    }

    /// Simulates an HTML5 drag and drop from `from` onto `to` (CSS selectors) with a real
    /// `DataTransfer`, dropping near the bottom (`below`) or the top of the target.
    /// WebDriver's pointer actions do not start native drags in Chromium.
    pub async fn drag(&self, from: &str, to: &str, below: bool) {
        self.find(from).await;
        let ok = self
            .js(
                "const [from, to, below] = arguments;\
                 const src = document.querySelector(from); const dst = document.querySelector(to);\
                 if (!src || !dst) return false;\
                 const dt = new DataTransfer();\
                 const r = dst.getBoundingClientRect();\
                 const at = {clientX: r.left + r.width / 2, clientY: below ? r.bottom - 2 : r.top + 2};\
                 const fire = (el, type, xy) => el.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt, ...(xy || {})}));\
                 fire(src, 'dragstart');\
                 fire(dst, 'dragenter', at); fire(dst, 'dragover', at); fire(dst, 'drop', at);\
                 fire(src, 'dragend');\
                 return true;",
                vec![json!(from), json!(to), json!(below)],
            )
            .await;
        assert_eq!(ok, json!(true), "drag {from} onto {to}");
    }
}

fn retryable(e: &CmdError) -> bool {
    let s = e.to_string();
    s.contains("intercepted")
        || s.contains("not interactable")
        || s.contains("stale")
        || s.contains("detached")
}
