//! The driver's bookkeeping of connections, over real sockets on loopback: events from a
//! connection that has been replaced never reach the front end, and that connection is
//! closed.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chathttp_client::args::ServerAddr;
use chathttp_client::driver::{Action, Driver, Frontend};
use chathttp_client::net::{NetEvent, Tagged};
use chathttp_core::UsageError;
use chathttp_core::client::{ClientEvent, Intent};
use chrono::NaiveTime;

const TIMEOUT: Duration = Duration::from_secs(15);

/// A front end that writes down what it is told.
#[derive(Default)]
struct Recorder {
    seen: Vec<String>,
}

impl Frontend for Recorder {
    fn on_connected(&mut self) -> Vec<Action> {
        self.seen.push("connected".into());
        vec![Action::Send(Intent::Join("rec".into()))]
    }

    fn on_connect_failed(&mut self, reason: String) -> Vec<Action> {
        self.seen.push(format!("failed: {reason}"));
        Vec::new()
    }

    fn on_event(&mut self, event: ClientEvent, _at: NaiveTime) -> Vec<Action> {
        self.seen.push(format!("{event:?}"));
        Vec::new()
    }

    fn on_send_error(&mut self, intent: Intent, error: UsageError) -> Vec<Action> {
        self.seen.push(format!("send error: {intent:?}: {error}"));
        Vec::new()
    }
}

fn listener() -> (TcpListener, ServerAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listening socket");
    let addr = listener.local_addr().expect("its address").to_string();
    (listener, ServerAddr::parse(&addr).expect("a valid address"))
}

#[test]
fn a_replaced_connection_is_closed_and_its_events_dropped() {
    let (old_listener, old_addr) = listener();
    let (new_listener, new_addr) = listener();
    let (tx, rx) = mpsc::channel::<Tagged>();
    let mut driver = Driver::new(tx, None);
    let mut front = Recorder::default();

    // Connect to the old server, and replace it before its Connected is handled.
    driver.run(&mut front, vec![Action::Connect(old_addr)]);
    let (mut old_peer, _) = old_listener.accept().expect("the old connection");
    driver.run(&mut front, vec![Action::Connect(new_addr)]);
    let (mut new_peer, _) = new_listener.accept().expect("the new connection");
    new_peer
        .write_all(b"HTTP/1.1 202 Accept\nContent_Length: 2\n\nhi")
        .expect("greeting");

    // Handle everything until the new connection's greeting has been seen.
    while !front.seen.iter().any(|s| s == "Connected") {
        let tagged = rx.recv_timeout(TIMEOUT).expect("network events");
        driver.handle_net(&mut front, tagged);
    }

    // The old connection's own events may come later than the new one's (the two connect
    // threads race): go on handling events until the old connection is closed, without a
    // word.
    old_peer
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("a read timeout");
    let deadline = Instant::now() + TIMEOUT;
    let mut rest = Vec::new();
    loop {
        match old_peer.read_to_end(&mut rest) {
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the replaced connection failed instead of closing: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the replaced connection was never closed"
        );
        while let Ok(tagged) = rx.try_recv() {
            driver.handle_net(&mut front, tagged);
        }
    }
    assert!(rest.is_empty(), "the replaced connection sent {rest:?}");
    assert_eq!(
        front.seen,
        ["connected", "Connected"],
        "nothing from the old connection"
    );

    // The new one carries the ADD.
    let mut start = [0; 4];
    new_peer
        .set_read_timeout(Some(TIMEOUT))
        .expect("a read timeout");
    new_peer.read_exact(&mut start).expect("the ADD request");
    assert_eq!(&start, b"ADD ");
}

#[test]
fn sending_without_a_connection_is_reported_to_the_front_end() {
    let (tx, _rx) = mpsc::channel::<Tagged>();
    let mut driver = Driver::new(tx, None);
    let mut front = Recorder::default();
    driver.run(
        &mut front,
        vec![Action::Send(Intent::ListUsers), Action::Exit(3)],
    );
    assert_eq!(
        front.seen,
        ["send error: ListUsers: the session is not connected"]
    );
    assert_eq!(driver.exit_code(), Some(3));
}

#[test]
fn a_failed_connection_s_reason_reaches_the_front_end_as_data() {
    let (_listener, addr) = listener();
    let (tx, _rx) = mpsc::channel::<Tagged>();
    let mut driver = Driver::new(tx, None);
    let mut front = Recorder::default();
    driver.run(&mut front, vec![Action::Connect(addr)]);
    // What a TLS failure may quote from the server's certificate.
    let reason = "TLS handshake failed: not valid for DnsName(\"\u{1b}]0;pwned\u{7}\")".to_owned();
    let event = NetEvent::ConnectFailed(reason);
    driver.handle_net(&mut front, Tagged { link: 1, event });
    let failed = front
        .seen
        .iter()
        .find(|s| s.starts_with("failed: "))
        .expect("reported");
    assert!(!failed.chars().any(char::is_control), "{failed:?}");
    assert!(failed.contains("pwned"), "{failed:?}");
}
