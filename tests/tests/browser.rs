//! B3, C1: the web client in a real browser, headless Chromium driven over the DevTools
//! protocol (`headless_chrome`), against `chat-server-smol --http`.
//!
//! Skipped, with a loud line, when Chromium is not installed (`CHROMIUM` names another
//! binary); `CHATHTTP_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.
//! `CHATHTTP_SCREENSHOTS=DIR` writes the login and chat screens there; the ones in
//! `docs/screenshots/` come from `CHATHTTP_SCREENSHOTS=docs/screenshots`.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use chathttp_tests::{GUARD, Relay, Runtime, Server, http, request};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

/// The Chromium binary, or `None` (and a loud line) when it is not installed.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    let found = std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(|| {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CHATHTTP_REQUIRE_BROWSER").is_none(),
            "CHATHTTP_REQUIRE_BROWSER is set but Chromium is not installed"
        );
        eprintln!("\n*** SKIPPED: Chromium is not installed; the browser tests did not run ***\n");
    }
    found
}

fn launch(path: PathBuf, width: u32, height: u32) -> Browser {
    let options = LaunchOptions::default_builder()
        .path(Some(path))
        .headless(true)
        // Tests often run as root, where Chromium's sandbox cannot start.
        .sandbox(false)
        .window_size(Some((width, height)))
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .expect("launch options");
    Browser::new(options).expect("Chromium starts")
}

/// Another site on a free loopback port: any request gets a small page of its own.
fn other_site() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("its address");
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0; 4096];
            let _ = stream.read(&mut request);
            let page = "<!doctype html><title>elsewhere</title><p>another site";
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    addr
}

/// Makes `tab` a phone's screen: 375 CSS pixels wide (B3).
fn phone_sized(tab: &Tab) {
    use headless_chrome::protocol::cdp::Emulation::SetDeviceMetricsOverride;
    tab.call_method(SetDeviceMetricsOverride {
        width: 375,
        height: 720,
        device_scale_factor: 1.0,
        mobile: true,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .expect("device metrics can be set");
}

/// Evaluates `script` in the page; its value as a string (`JSON.stringify` for others).
fn eval(tab: &Tab, script: &str) -> String {
    let wrapped = format!(
        "(() => {{ const v = ({script}); return typeof v === 'string' ? v : JSON.stringify(v); }})()"
    );
    let result = tab.evaluate(&wrapped, false).expect("the script runs");
    match result.value {
        Some(serde_json_value) => serde_json_value.as_str().unwrap_or_default().to_owned(),
        None => String::new(),
    }
}

/// Waits until `script` is true in the page.
fn wait_until(tab: &Tab, script: &str, what: &str) {
    let started = Instant::now();
    while eval(tab, script) != "true" {
        assert!(
            started.elapsed() < GUARD,
            "{what}: not so after {GUARD:?}; log: {}",
            eval(tab, "document.getElementById('log').innerText")
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The log's lines as the user sees them.
fn log_text(tab: &Tab) -> String {
    eval(tab, "document.getElementById('log').innerText")
}

fn members(tab: &Tab) -> String {
    eval(
        tab,
        "[...document.querySelectorAll('#members li')].map(li => li.textContent).join(',')",
    )
}

/// Clicks the element `selector`, types `text` and presses Enter.
fn enter(tab: &Tab, selector: &str, text: &str) {
    tab.wait_for_element(selector)
        .expect("the field")
        .click()
        .expect("focus");
    tab.type_str(text).expect("typing");
    tab.press_key("Enter").expect("Enter");
}

fn log_in(tab: &Tab, url: &str, name: &str) {
    tab.navigate_to(url).expect("navigate");
    tab.wait_until_navigated().expect("the page loads");
    enter(tab, "#name", name);
}

fn screenshot(tab: &Tab, name: &str) {
    let Some(dir) = std::env::var_os("CHATHTTP_SCREENSHOTS") else {
        return;
    };
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("a screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    std::fs::write(dir.join(name), png).expect("the screenshot is written");
}

/// Two browser members (one on a phone-sized screen) and one TCP member chat, join, list
/// and leave; a peer's markup and escape sequences show as text; a dropped WebSocket
/// resumes with nothing missed or doubled.
#[test]
fn b3_two_browsers_and_a_terminal_share_the_room() {
    let Some(path) = chromium() else { return };
    let server = Server::start(Runtime::Smol.over_websocket(), &["--history", "50"]);
    // Bob's browser reaches the gateway through a relay, so that its link can drop.
    let relay = Relay::start(server.http_addr());
    let desktop = launch(path.clone(), 900, 640);
    let phone = launch(path, 375, 720);
    let alice = desktop.new_tab().expect("a tab");
    let bob = phone.new_tab().expect("a tab");
    phone_sized(&bob);

    let mut carol = server.tcp_member("carol");
    carol.send(&request("POST", "carol", b"said before anyone came\n"));
    carol.read_chat_lines(1);

    // B2: a page from another site cannot open /ws.
    alice
        .navigate_to(&format!("http://{}/", other_site()))
        .expect("another site");
    alice.wait_until_navigated().expect("the page loads");
    let foreign = format!(
        "new Promise(done => {{ const ws = new WebSocket('ws://{}/ws'); \
         ws.onopen = () => done('opened'); ws.onclose = () => done('refused'); }})",
        server.http_addr()
    );
    let outcome = alice.evaluate(&foreign, true).expect("the script runs");
    let outcome = outcome.value.and_then(|v| v.as_str().map(str::to_owned));
    assert_eq!(
        outcome.as_deref(),
        Some("refused"),
        "a foreign page's WebSocket"
    );
    let metrics = http::get(server.http_addr(), "/metrics").2;
    assert!(
        metrics.contains("chathttp_foreign_origins_total 1\n"),
        "refused for its Origin: {metrics}"
    );

    // Login, with the server's refusal shown in place.
    let url = format!("http://{}/", server.http_addr());
    alice.navigate_to(&url).expect("navigate");
    alice.wait_until_navigated().expect("the page loads");
    screenshot(&alice, "login.png");
    log_in(&alice, &url, "carol");
    wait_until(
        &alice,
        "document.getElementById('login-error').textContent.length > 0",
        "the refusal",
    );
    let refusal = eval(&alice, "document.getElementById('login-error').textContent");
    assert!(refusal.contains("carol"), "the name is taken: {refusal:?}");
    assert_eq!(
        eval(&alice, "document.getElementById('chat').hidden"),
        "true"
    );
    log_in(&alice, &url, "alice");
    wait_until(
        &alice,
        "!document.getElementById('chat').hidden",
        "alice in the room",
    );
    // E: history on join, dimmed above a rule.
    wait_until(
        &alice,
        "document.querySelectorAll('#log .replayed').length === 1",
        "the replay",
    );
    assert!(log_text(&alice).contains("said before anyone came"));
    carol.read_until_body("alice has just entered the chat room...\n");

    log_in(&bob, &format!("http://{}/", relay.addr), "bob");
    wait_until(
        &bob,
        "!document.getElementById('chat').hidden",
        "bob in the room",
    );
    wait_until(
        &alice,
        "document.getElementById('members').textContent.includes('bob')",
        "bob listed",
    );
    wait_until(
        &bob,
        "document.querySelectorAll('#members li').length === 3",
        "bob's list",
    );
    assert_eq!(members(&bob), "carol,alice,bob");
    assert_eq!(
        eval(&bob, "document.documentElement.scrollWidth <= 375"),
        "true",
        "fits a phone"
    );
    carol.read_until_body("bob has just entered the chat room...\n");

    // Enter sends; Shift-Enter adds a line.
    enter(&alice, "#message", "hello from alice");
    assert_eq!(carol.read_chat_lines(1), ["[ alice ] : hello from alice\n"]);
    alice.type_str("line one").expect("typing");
    alice
        .press_key_with_modifiers(
            "Enter",
            Some(&[headless_chrome::browser::tab::ModifierKey::Shift]),
        )
        .expect("Shift-Enter");
    alice.type_str("line two").expect("typing");
    alice.press_key("Enter").expect("Enter");
    assert_eq!(
        carol.read_chat_lines(1),
        ["[ alice ] : line one\nline two\n"]
    );
    wait_until(
        &bob,
        "document.getElementById('log').innerText.includes('line one\\nline two')",
        "a two-line message",
    );

    // C1: markup and escape sequences from a peer are text.
    let attack =
        "<img src=x onerror=\"document.title='pwned'\"> \u{1b}[31mred\u{1b}[0m \u{202e}evil";
    carol.send(&request("POST", "carol", format!("{attack}\n").as_bytes()));
    carol.read_chat_lines(1);
    wait_until(
        &bob,
        "document.getElementById('log').innerText.includes('<img src=x')",
        "the markup as text",
    );
    for tab in [&alice, &bob] {
        assert_eq!(
            eval(tab, "document.querySelectorAll('#log img').length"),
            "0",
            "no element from a peer"
        );
        assert_ne!(eval(tab, "document.title"), "pwned", "no peer script ran");
        let log = log_text(tab);
        assert!(
            log.contains("\\u{1b}[31mred\\u{1b}[0m"),
            "escape sequences shown: {log}"
        );
        assert!(log.contains("\\u{202e}evil"), "bidi controls shown: {log}");
    }
    screenshot(&alice, "chat.png");

    // A dropped WebSocket: offline, then back with exactly what was said meanwhile.
    relay.drop_link();
    wait_until(
        &bob,
        "!document.getElementById('offline').hidden",
        "the offline banner",
    );
    carol.read_until_body("bob has just left the chat room...\n");
    for n in 1..=3 {
        carol.send(&request(
            "POST",
            "carol",
            format!("while bob was away {n}\n").as_bytes(),
        ));
    }
    carol.read_chat_lines(3);
    relay.restore_link();
    wait_until(
        &bob,
        "document.getElementById('offline').hidden",
        "back online",
    );
    wait_until(
        &bob,
        "document.getElementById('log').innerText.includes('3 messages while you were away')",
        "the resume rule",
    );
    let log = log_text(&bob);
    for n in 1..=3 {
        assert_eq!(
            log.matches(&format!("while bob was away {n}")).count(),
            1,
            "once each: {log}"
        );
    }
    assert_eq!(
        log.matches("hello from alice").count(),
        1,
        "nothing doubled: {log}"
    );
    screenshot(&bob, "chat-phone.png");

    // A link that dies without a word: the server still holds bob's old connection, so the
    // name is taken (401) until it notices; the page keeps trying and gets back in.
    carol.read_until_body("bob has just entered the chat room...\n");
    relay.drop_link_quietly();
    wait_until(
        &bob,
        "!document.getElementById('offline').hidden",
        "offline again",
    );
    relay.restore_link();
    carol.send(&request(
        "POST",
        "carol",
        b"said while bob's old link lingered\n",
    ));
    carol.read_chat_lines(1);
    // Bob's next tries meet the 401 (the server's count shows it), and keep trying.
    let started = Instant::now();
    while !http::get(server.http_addr(), "/metrics")
        .2
        .contains("chathttp_refused_total{code=\"401\"} ")
    {
        assert!(started.elapsed() < GUARD, "no 401 met");
        thread::sleep(Duration::from_millis(100));
    }
    relay.let_server_notice();
    carol.read_until_body("bob has just left the chat room...\n");
    wait_until(
        &bob,
        "document.getElementById('offline').hidden",
        "back after the 401s",
    );
    wait_until(
        &bob,
        "document.getElementById('log').innerText.includes('1 message while you were away')",
        "the second resume",
    );
    assert_eq!(
        log_text(&bob)
            .matches("said while bob's old link lingered")
            .count(),
        1
    );

    // Leaving: the others see it, and the lists follow.
    carol.read_until_body("bob has just entered the chat room...\n");
    bob.wait_for_element("#leave")
        .expect("the leave button")
        .click()
        .expect("click");
    carol.read_until_body("bob has just left the chat room...\n");
    wait_until(
        &alice,
        "!document.getElementById('members').textContent.includes('bob')",
        "bob gone from the list",
    );
    assert_eq!(members(&alice), "carol,alice");
}
