use std::cell::Cell;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use super::*;
use crate::buffers::Outgoing;
use crate::closing::LINGER;

/// A clock that moves only when the test says; clones share the time.
#[derive(Debug, Clone, Default)]
struct TestClock(Rc<Cell<Duration>>);

impl TestClock {
    fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(u64::try_from(self.0.get().as_millis()).expect("a short test"))
    }
}

type TestDriver = Driver<Loopback, TestClock>;

/// A connection for a driver under test: the server's side of a loopback socket.
#[derive(Debug)]
struct Loopback {
    stream: std::net::TcpStream,
    queue: Mutex<Outgoing>,
}

impl AsFd for Loopback {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl Outbox for Loopback {
    fn queue(&self) -> &Mutex<Outgoing> {
        &self.queue
    }
    fn start_writer(&self) -> io::Result<()> {
        Err(io::Error::other("the test expects no writer"))
    }
}

/// For a flush with no input arriving meanwhile.
fn no_arrivals() -> Option<Input<std::net::TcpStream>> {
    None
}

/// Opens `count` connections on a fresh driver; returns their ids and the clients' ends.
fn driver_with_clients(
    count: usize,
    config: ServerConfig,
) -> (TestDriver, Vec<ConnId>, Vec<std::net::TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut driver = Driver::with_clock(config, TestClock::default());
    let (conns, clients) = (0..count).map(|_| connect(&mut driver, &listener)).unzip();
    (driver, conns, clients)
}

/// A client connects to `listener` and `driver` accepts it; returns its id and the
/// client's end.
fn connect(driver: &mut TestDriver, listener: &TcpListener) -> (ConnId, std::net::TcpStream) {
    let addr = listener.local_addr().expect("addr");
    let client = std::net::TcpStream::connect(addr).expect("connect");
    client.set_nonblocking(true).expect("non-blocking");
    let (stream, _) = listener.accept().expect("accept");
    let mut conn = None;
    driver.handle(Input::Accepted(stream), |id, stream| {
        conn = Some(id);
        let queue = Mutex::default();
        Ok(Loopback { stream, queue })
    });
    driver.flush(no_arrivals, |_, _| unreachable!());
    (conn.expect("opened"), client)
}

/// Opens `wave` connections on a fresh driver, each sending `bytes` in one round.
fn driver_with_wave(
    wave: usize,
    bytes: &'static [u8],
    config: ServerConfig,
) -> (TestDriver, Vec<std::net::TcpStream>) {
    let (mut driver, conns, clients) = driver_with_clients(wave, config);
    for conn in conns {
        received(&mut driver, conn, bytes.to_vec());
    }
    (driver, clients)
}

fn received(driver: &mut TestDriver, conn: ConnId, bytes: Vec<u8>) {
    let input = Input::Received(conn, Bytes::from(bytes));
    driver.handle::<std::net::TcpStream>(input, |_, _| unreachable!());
}

fn post(from: &str, text: &str) -> Vec<u8> {
    let length = text.len();
    format!("POST / HTTP/1.1\nUser_Agent: {from}\nContent-Length: {length}\n\n{text}").into()
}

/// What each client has received so far, as text.
fn read_all(clients: &mut [std::net::TcpStream]) -> Vec<String> {
    use std::io::Read;
    let mut texts = Vec::new();
    for client in clients {
        let mut bytes = Vec::new();
        let mut buffer = [0; 4096];
        while let Ok(n @ 1..) = client.read(&mut buffer) {
            bytes.extend_from_slice(&buffer[..n]);
        }
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    texts
}

/// A room of `count` joined members named m0, m1…, with their join notices read.
fn room_of(count: usize) -> (TestDriver, Vec<ConnId>, Vec<std::net::TcpStream>) {
    // The driver's tests send far faster than flood control (S12) allows.
    let config = ServerConfig {
        flood: chathttp_core::limits::FloodLimits::OFF,
        ..ServerConfig::default()
    };
    let (mut driver, conns, mut clients) = driver_with_clients(count, config);
    for (i, &conn) in conns.iter().enumerate() {
        let add = format!("ADD / HTTP/1.1\nUser_Agent: m{i}\n\n");
        received(&mut driver, conn, add.into());
        driver.flush(no_arrivals, |_, _| unreachable!());
    }
    read_all(&mut clients);
    (driver, conns, clients)
}

/// Runs rounds as a runtime does while [`Driver::next_wakeup`] says zero and no input
/// waits (the deadline, then flush); returns how many clients saw their end of stream
/// in each round, and what each received.
fn rounds_until_idle(
    driver: &mut TestDriver,
    clients: &mut [std::net::TcpStream],
) -> (Vec<usize>, Vec<String>) {
    use std::io::Read;
    let mut received = vec![Vec::new(); clients.len()];
    let mut ended = vec![false; clients.len()];
    let mut closed_per_round = Vec::new();
    loop {
        let mut closed = 0;
        for (i, client) in clients.iter_mut().enumerate() {
            if ended[i] {
                continue;
            }
            let mut buffer = [0; 512];
            while let Ok(n) = client.read(&mut buffer) {
                if n == 0 {
                    ended[i] = true;
                    closed += 1;
                    break;
                }
                received[i].extend_from_slice(&buffer[..n]);
            }
        }
        closed_per_round.push(closed);
        assert!(closed_per_round.len() <= clients.len() + 2, "progress");
        if driver.next_wakeup() != Some(Duration::ZERO) {
            break;
        }
        driver.handle_timeout();
        driver.flush(no_arrivals, |_, _| unreachable!());
    }
    let texts = received
        .iter()
        .map(|r| String::from_utf8_lossy(r).into())
        .collect();
    (closed_per_round, texts)
}

#[test]
fn a_driver_tidies_once_it_has_been_quiet_and_again_after_new_input() {
    use std::sync::atomic::AtomicUsize;
    static TIDIED: AtomicUsize = AtomicUsize::new(0);
    fn tidy() {
        TIDIED.fetch_add(1, Ordering::Relaxed);
    }
    let (mut driver, conns, _clients) = room_of(2);
    driver.tidy_when_quiet(tidy);
    received(&mut driver, conns[0], post("m0", "hello"));
    let wakeup = driver.next_wakeup().expect("the driver asks to be woken");
    assert!(
        wakeup <= QUIET_BEFORE_TIDY,
        "woken for the tidy: {wakeup:?}"
    );
    driver.handle_timeout();
    assert_eq!(
        TIDIED.load(Ordering::Relaxed),
        0,
        "not while the room is busy"
    );

    driver.clock.advance(QUIET_BEFORE_TIDY);
    driver.handle_timeout();
    assert_eq!(TIDIED.load(Ordering::Relaxed), 1, "tidied once quiet");
    driver.handle_timeout();
    assert_eq!(TIDIED.load(Ordering::Relaxed), 1, "and only once");

    received(&mut driver, conns[1], post("m1", "again"));
    driver.clock.advance(QUIET_BEFORE_TIDY);
    driver.flush(no_arrivals, |_, _| unreachable!());
    assert_eq!(
        TIDIED.load(Ordering::Relaxed),
        2,
        "the next quiet spell tidies too"
    );
}

#[test]
fn a_message_that_arrives_during_a_fan_out_goes_out_in_the_same_flush() {
    let (mut driver, conns, mut clients) = room_of(8);
    received(&mut driver, conns[0], post("m0", "first"));
    let mut second = Some(Input::<std::net::TcpStream>::Received(
        conns[1],
        post("m1", "second").into(),
    ));
    let mut asked = 0;
    let arrived = || {
        asked += 1;
        // The second message arrives once the first has gone to three members.
        if asked == 3 { second.take() } else { None }
    };
    driver.flush(arrived, |_, _| unreachable!());
    assert!(second.is_none(), "the flush took the message that arrived");
    for (i, text) in read_all(&mut clients).iter().enumerate() {
        let first = text
            .find("first")
            .expect("every member has the first message");
        let second = text
            .find("second")
            .expect("and the second, without another round");
        assert!(first < second, "member {i} got them in order: {text}");
    }
}

#[test]
fn broadcasts_joined_into_a_run_keep_their_order_around_a_reply() {
    let (mut driver, conns, mut clients) = room_of(3);
    let mut pipelined = post("m0", "one");
    pipelined.extend(post("m0", "two"));
    pipelined.extend_from_slice(b"GET / HTTP/1.1\n\n");
    pipelined.extend(post("m0", "three"));
    received(&mut driver, conns[0], pipelined);
    driver.flush(no_arrivals, |_, _| unreachable!());
    let texts = read_all(&mut clients);
    let at = |text: &str, what: &str| {
        text.find(what)
            .unwrap_or_else(|| panic!("{what:?} missing from {text:?}"))
    };
    let sender = &texts[0];
    let order = [
        at(sender, "[ m0 ] : one"),
        at(sender, "[ m0 ] : two"),
        at(sender, "Online users:"),
        at(sender, "[ m0 ] : three"),
    ];
    assert!(order.is_sorted(), "the reply between the runs: {sender}");
    for text in &texts[1..] {
        let lines = [
            at(text, "[ m0 ] : one"),
            at(text, "[ m0 ] : two"),
            at(text, "[ m0 ] : three"),
        ];
        assert!(lines.is_sorted(), "in order: {text}");
        assert_eq!(text.matches("[ m0 ] :").count(), 3, "each once: {text}");
    }
}

#[test]
fn a_flush_under_endless_input_returns_and_the_rest_is_written_next() {
    let (mut driver, conns, mut clients) = room_of(2);
    let get = b"GET / HTTP/1.1\n\n";
    let mut taken = 0;
    let endless = || {
        taken += 1;
        Some(Input::<std::net::TcpStream>::Received(
            conns[0],
            Bytes::from_static(get),
        ))
    };
    received(&mut driver, conns[1], get.to_vec());
    driver.flush(endless, |_, _| unreachable!());
    assert_eq!(
        taken, INPUTS_PER_FLUSH,
        "the flush returned under endless input"
    );
    let answered = |text: &String| text.matches("HTTP/1.1 200").count();
    let first = read_all(&mut clients);
    assert_eq!(answered(&first[1]), 1, "the round's own write was done");
    assert_eq!(
        driver.next_wakeup(),
        Some(Duration::ZERO),
        "answers wait to be written"
    );
    driver.handle_timeout();
    driver.flush(no_arrivals, |_, _| unreachable!());
    let second = read_all(&mut clients);
    let total = answered(&first[0]) + answered(&second[0]);
    assert_eq!(total, INPUTS_PER_FLUSH, "every request taken is answered");
    assert_ne!(driver.next_wakeup(), Some(Duration::ZERO), "nothing waits");
}

#[test]
fn a_wave_of_bad_requests_is_closed_a_slice_per_round() {
    let wave = 3 * CLOSES_PER_ROUND + 4;
    let (mut driver, mut clients) =
        driver_with_wave(wave, b"GET\t/ HTTP/1.1\n\n", ServerConfig::default());
    driver.flush(no_arrivals, |_, _| unreachable!());
    let (closed, texts) = rounds_until_idle(&mut driver, &mut clients);
    assert_eq!(closed, [32, 32, 32, 4], "{closed:?}");
    for text in texts {
        assert!(text.contains("HTTP/1.1 400 Bad Request"), "{text}");
    }
}

#[test]
fn a_wave_of_timeouts_is_closed_a_slice_per_round() {
    let config = ServerConfig {
        request_timeout: Duration::from_millis(20),
        ..ServerConfig::default()
    };
    let wave = 3 * CLOSES_PER_ROUND + 4;
    let (mut driver, mut clients) = driver_with_wave(wave, b"GET / HTTP/1.1\nUser_Ag", config);
    driver.flush(no_arrivals, |_, _| unreachable!());
    driver.clock.advance(Duration::from_millis(40));
    assert_eq!(
        driver.next_wakeup(),
        Some(Duration::ZERO),
        "the timeouts are due"
    );
    let (closed, texts) = rounds_until_idle(&mut driver, &mut clients);
    assert_eq!(closed.iter().sum::<usize>(), wave, "{closed:?}");
    assert!(closed.iter().all(|&n| n <= CLOSES_PER_ROUND), "{closed:?}");
    for text in texts {
        assert!(text.contains("HTTP/1.1 408 Request Timeout"), "{text}");
    }
}

#[test]
fn s13_a_close_whose_last_bytes_the_peer_never_takes_is_reset_at_the_linger() {
    let config = ServerConfig {
        flood: chathttp_core::limits::FloodLimits::OFF,
        max_output_bytes: 8 << 20,
        ..ServerConfig::default()
    };
    let (mut driver, conns, mut clients) = driver_with_clients(2, config);
    // A small kernel buffer on both ends of the reader's socket, so a 60 KiB message does not
    // fit and the rest waits for a writer (which the test's outbox never starts: stuck).
    socket2::SockRef::from(&clients[0])
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    for (i, &conn) in conns.iter().enumerate() {
        let add = format!("ADD / HTTP/1.1\nUser_Agent: m{i}\n\n");
        received(&mut driver, conn, add.into());
        driver.flush(no_arrivals, |_, _| unreachable!());
    }
    read_all(&mut clients);
    received(&mut driver, conns[1], post("m1", &"x".repeat(60 * 1024)));
    driver.flush(no_arrivals, |_, _| unreachable!());
    // The reader leaves; its goodbye queues behind what the kernel did not take.
    received(&mut driver, conns[0], b"DELETE / HTTP/1.1\n\n".to_vec());
    driver.flush(no_arrivals, |_, _| unreachable!());
    assert!(
        driver.next_wakeup().is_some_and(|d| d <= LINGER),
        "the close has a deadline"
    );
    driver.clock.advance(LINGER + Duration::from_millis(1));
    driver.handle_timeout();
    // The peer reads what reached it, then meets the reset.
    use std::io::Read;
    let mut buffer = [0; 65536];
    let started = std::time::Instant::now();
    let error = loop {
        match clients[0].read(&mut buffer) {
            Ok(0) => panic!("a clean end of stream: the close was not aborted"),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(started.elapsed() < Duration::from_secs(5), "never reset");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => break e,
        }
    };
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
    assert!(
        driver.lingering.is_empty(),
        "nothing is held past the linger"
    );
}

#[test]
fn s13_a_lingering_close_counts_against_the_limit_until_it_ends() {
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut driver = Driver::with_clock(config, TestClock::default());
    let status_line = |client: &mut std::net::TcpStream| {
        let text = read_all(std::slice::from_mut(client)).remove(0);
        text.lines().next().unwrap_or_default().to_owned()
    };

    // A bad request is answered and closed; the peer neither reads nor closes, so its
    // socket lingers, and holds the one place.
    let (first, mut bad) = connect(&mut driver, &listener);
    received(&mut driver, first, b"GET\t/ HTTP/1.1\n\n".to_vec());
    driver.flush(no_arrivals, |_, _| unreachable!());
    let (_, mut turned_away) = connect(&mut driver, &listener);
    assert_eq!(
        status_line(&mut turned_away),
        "HTTP/1.1 503 Service Unavailable"
    );
    assert_eq!(driver.server.closing_count(), 2, "both closes linger");

    // At the linger deadline both are aborted and their places are free.
    driver.clock.advance(LINGER + Duration::from_millis(1));
    driver.handle_timeout();
    assert_eq!(driver.server.closing_count(), 0);
    let answered = read_all(std::slice::from_mut(&mut bad)).remove(0);
    assert!(answered.contains("HTTP/1.1 400 Bad Request"), "{answered}");
    let (second, mut welcome) = connect(&mut driver, &listener);
    assert_eq!(status_line(&mut welcome), "HTTP/1.1 202 Accept");

    // A peer that closes as it should frees its place at once, without waiting for the
    // deadline.
    received(&mut driver, second, b"GET\t/ HTTP/1.1\n\n".to_vec());
    driver.flush(no_arrivals, |_, _| unreachable!());
    assert_eq!(driver.server.closing_count(), 1);
    let input = Input::Closed(second, Disconnect::Eof);
    driver.handle::<std::net::TcpStream>(input, |_, _| unreachable!());
    assert_eq!(
        driver.server.closing_count(),
        0,
        "released when the peer closed"
    );
    let (_, mut third) = connect(&mut driver, &listener);
    assert_eq!(status_line(&mut third), "HTTP/1.1 202 Accept");
}
