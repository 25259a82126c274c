//! A real browser for the UI tests: Debian's headless Chromium, driven
//! through `chromedriver` (WebDriver) by `fantoccini`.
//!
//! `.ci/run` installs `chromium` and `chromium-driver`. When either is
//! missing the tests fail with a message saying so, never skip.
//! Screenshots go to `$SWITCHYARD_SCREENSHOTS` (default
//! `target/ui-screenshots` under the workspace): test artifacts, not
//! committed.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use super::TestServer;

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Only one Chromium at a time per test binary: two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Browser {
    pub client: Client,
    /// `http://127.0.0.1:PORT` of the server under test.
    pub base: String,
    driver: Child,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Desktop and phone window sizes for screenshots.
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn find(binary: &str, candidates: &[&str]) -> PathBuf {
    for c in candidates {
        let p = PathBuf::from(c);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{binary} is not installed (looked in {candidates:?}); the UI tests need Debian's \
         `chromium` and `chromium-driver` packages: `apt-get install -y chromium chromium-driver` \
         (.ci/run installs them)"
    );
}

/// Where screenshots are saved.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots")
        })
}

impl Browser {
    /// A fresh headless Chromium (its own profile) at desktop size, for
    /// pages of `server`.
    pub async fn open(server: &TestServer) -> Browser {
        Self::open_url(&server.url).await
    }

    pub async fn open_url(base: &str) -> Browser {
        let turn = ONE_AT_A_TIME.lock().await;
        let chromium = find(
            "chromium",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver_bin = find("chromedriver", &["/usr/bin/chromedriver"]);
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-default-apps", "--disable-extensions", "--disable-sync",
                    "--no-first-run", "--mute-audio", "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ]
            }
        }))
        .unwrap();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::new(connector.clone())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let client =
            client.unwrap_or_else(|| panic!("chromedriver did not start Chromium: {last:?}"));
        client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .expect("window size");
        Browser {
            client,
            base: base.to_string(),
            driver,
            _turn: turn,
        }
    }

    /// Opens `path` (`/ui/...`) of the server under test.
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The path (and query) of the page now shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        let mut s = url.path().to_string();
        if let Some(q) = url.query() {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// Signs in through the sign-in form and waits for the page after it.
    pub async fn sign_in(&self, email: &str, password: &str) {
        self.goto("/ui/login").await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("form button[type=submit]").await;
        self.wait_gone("#password").await;
    }

    /// The element `css` selects, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!("no element {css:?} on {}: {e}", self.path_now().await),
        }
    }

    async fn path_now(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Every element `css` selects now (no waiting).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
    }

    /// Whether `css` selects anything now.
    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// Clears the field and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.ok();
        e.send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("type into {css}: {err}"));
    }

    /// Picks the option whose value is `value` in the select `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.select_by_value(value)
            .await
            .unwrap_or_else(|err| panic!("select {value:?} in {css}: {err}"));
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        e.click()
            .await
            .unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    /// The visible text of `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_default()
    }

    /// The whole page's visible text.
    pub async fn body_text(&self) -> String {
        self.text("body").await
    }

    /// Waits (10 s at most) until the text of `css` contains `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        self.wait_for_text_for(css, needle, Duration::from_secs(10))
            .await
    }

    pub async fn wait_for_text_for(&self, css: &str, needle: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let mut seen = String::new();
            for e in self.find_all(css).await {
                seen.push_str(&e.text().await.unwrap_or_default());
                seen.push('\n');
            }
            if seen.contains(needle) {
                return seen;
            }
            if std::time::Instant::now() > deadline {
                panic!("{css:?} never showed {needle:?}; it shows:\n{seen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (10 s at most) until `css` selects nothing.
    pub async fn wait_gone(&self, css: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.exists(css).await {
            assert!(
                std::time::Instant::now() < deadline,
                "{css:?} is still on {}",
                self.path_now().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's path starts with `prefix`.
    pub async fn wait_for_path(&self, prefix: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let p = self.path().await;
            if p.starts_with(prefix) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still at {p}, expected {prefix}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Problems a keyboard or screen-reader user would meet on this page:
    /// form controls without a label, buttons and links without a name,
    /// images without alternative text, a page without one `h1` or without
    /// `lang`. Empty when there are none.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let found = self
            .eval(
                r#"
                const problems = [];
                const name = (el) => (el.getAttribute('aria-label') || el.getAttribute('title') || el.textContent || '').trim();
                for (const el of document.querySelectorAll('input, select, textarea')) {
                  if (el.type === 'hidden' || el.closest('template')) continue;
                  const labelled = (el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]'))
                    || el.closest('label') || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
                  if (!labelled) problems.push('no label: ' + el.outerHTML.slice(0, 120));
                }
                for (const el of document.querySelectorAll('button, a[href]')) {
                  if (el.closest('template')) continue;
                  if (!name(el) && !el.querySelector('img[alt]')) problems.push('no name: ' + el.outerHTML.slice(0, 120));
                }
                for (const el of document.querySelectorAll('img:not([alt])')) problems.push('no alt: ' + el.outerHTML.slice(0, 120));
                const ids = new Map();
                for (const el of document.querySelectorAll('[id]')) {
                  if (el.closest('template')) continue;
                  if (ids.has(el.id)) problems.push('duplicate id: ' + el.id);
                  ids.set(el.id, true);
                }
                if (document.querySelectorAll('h1').length !== 1) problems.push('h1 count: ' + document.querySelectorAll('h1').length);
                if (!document.documentElement.lang) problems.push('no lang on html');
                return problems;
                "#,
            )
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a PNG of the window as `NAME.png` in [`screenshot_dir`], at
    /// desktop size, and `NAME-phone.png` at phone width when `phone`.
    pub async fn screenshot(&self, name: &str, phone: bool) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
        if phone {
            self.client
                .set_window_size(PHONE.0, PHONE.1)
                .await
                .expect("resize");
            tokio::time::sleep(Duration::from_millis(150)).await;
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{name}-phone.png")), png).expect("write screenshot");
            self.client
                .set_window_size(DESKTOP.0, DESKTOP.1)
                .await
                .expect("resize");
        }
    }

    /// Ends the browser session and chromedriver.
    pub async fn close(mut self) {
        self.client.clone().close().await.ok();
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test does not leave chromedriver (and its Chromium) behind.
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}

/// Adds a person with `role` (all projects) and [`PASSWORD`].
pub async fn add_user(server: &TestServer, email: &str, role: switchyard_store::Role) {
    add_user_in(server, email, role, None).await;
}

/// Adds a person with `role` in `project` only (or all, `None`).
pub async fn add_user_in(
    server: &TestServer,
    email: &str,
    role: switchyard_store::Role,
    project: Option<&str>,
) {
    server
        .store
        .create_user(
            "system:test",
            switchyard_store::UserInput {
                email: email.into(),
                password: PASSWORD.into(),
                role,
                project: project.map(str::to_string),
            },
        )
        .await
        .expect("create user");
}
