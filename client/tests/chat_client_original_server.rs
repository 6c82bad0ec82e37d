//! The client against a tiny scripted server that speaks exactly as the original Python
//! server does: the seed's example responses, byte for byte, the same quirks included
//! (`OK...^.^` for a join, a chat echo that keeps the POST body's newline and adds its own,
//! and no answer at all to DELETE).

mod chat_client_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use chat_client_support::{LineClient, TIMEOUT};

/// A response as the original server packs it: the seed's seven headers, LF line ends.
fn response(status: &str, datetime: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\nDatetime: {datetime}\nDeveloper: Soros_Liu\nServer: Python Socket Server\n\
         Content_Length: {}\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request, read off the connection: start line, headers, body.
#[derive(Debug)]
struct Request {
    start: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn read(reader: &mut BufReader<TcpStream>) -> Self {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reading a start line");
        let start = line.trim_end().to_owned();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("reading a header line");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("a header has a colon");
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut request = Self {
            start,
            headers,
            body: String::new(),
        };
        let length: usize = request
            .header("Content_Length")
            .parse()
            .expect("Content_Length is a number");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("reading the body");
        request.body = String::from_utf8(body).expect("the body is UTF-8");
        request
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {self:#?}"))
    }

    /// R1 and R2: the start line and the ten headers of the seed's examples, in order.
    fn check(&self, method: &str, user: &str) {
        assert_eq!(self.start, format!("{method} 127.0.0.1 HTTP/1.1"));
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Datetime",
                "User_Agent",
                "Host",
                "Accept_Language",
                "Accept",
                "Accept_Encoding",
                "Content_Length",
                "Content_Language",
                "Content_Encoding",
                "Content_Type"
            ],
            "the seed's request headers"
        );
        assert_eq!(self.header("User_Agent"), user);
        assert_eq!(self.header("Host"), "127.0.0.1");
        let datetime = self.header("Datetime");
        assert!(
            chrono::NaiveDateTime::parse_from_str(datetime, "%Y-%m-%d %H:%M:%S").is_ok(),
            "Datetime as in the seed: {datetime:?}"
        );
    }
}

/// Accepts one connection and greets it as the original does (body `test`).
fn accept(listener: &TcpListener) -> (BufReader<TcpStream>, TcpStream) {
    let (stream, _) = listener.accept().expect("the client connects");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("a read timeout");
    let mut writer = stream.try_clone().expect("a second handle");
    writer
        .write_all(&response("202 Accept", "2015-11-29 10:17:34", "test"))
        .expect("greeting");
    (BufReader::new(stream), writer)
}

/// The original's welcome to a join, then the seed's chat line from Alice.
fn welcome_and_hello(writer: &mut TcpStream) {
    writer
        .write_all(&response("200 OK", "2015-11-29 10:17:40", "OK...^.^"))
        .expect("welcoming");
    writer
        .write_all(&response(
            "200 OK",
            "2015-11-29 10:17:48",
            "[ Alice ] : Hello, everyone!\n",
        ))
        .expect("the seed's chat line");
}

#[test]
fn works_against_the_original_server() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listening socket");
    let addr = listener.local_addr().expect("its address").to_string();

    let script = thread::spawn(move || {
        // First visitor: the name is taken, in the seed's words.
        let (mut reader, mut writer) = accept(&listener);
        Request::read(&mut reader).check("ADD", "Alice");
        writer
            .write_all(&response(
                "401 User Name Exist",
                "2015-11-29 10:44:14",
                "Error...T.T",
            ))
            .expect("refusing");

        // Second visitor: joins, hears Alice, talks, lists users, hears Alice leave, leaves.
        let (mut reader, mut writer) = accept(&listener);
        Request::read(&mut reader).check("ADD", "Bob");
        welcome_and_hello(&mut writer);

        let say = Request::read(&mut reader);
        say.check("POST", "Bob");
        assert_eq!(
            say.body, "Hi Alice!\n",
            "the message, ended by a newline as in the seed"
        );
        // The original's do_say: '[ ' + user + ' ] : ' + body + '\n', body newline and all.
        let echo = format!("[ Bob ] : {}\n", say.body);
        writer
            .write_all(&response("200 OK", "2015-11-29 10:17:50", &echo))
            .expect("echo");

        Request::read(&mut reader).check("GET", "Bob");
        writer
            .write_all(&response(
                "200 OK",
                "2015-11-29 10:19:52",
                "Online users:\nAlice\nBob\n",
            ))
            .expect("user list");
        writer
            .write_all(&response(
                "200 OK",
                "2015-11-29 10:20:00",
                "Alice has just left the chat room...\n",
            ))
            .expect("a leave");

        // The original's do_logout answers the leaver nothing and keeps the socket open.
        Request::read(&mut reader).check("DELETE", "Bob");
        let mut rest = Vec::new();
        reader
            .read_to_end(&mut rest)
            .expect("the client closes its end");
        assert!(rest.is_empty(), "nothing after DELETE: {rest:?}");
    });

    let mut alice = LineClient::start(&addr, "Alice");
    alice.expect_line(&format!("* connected to {addr}"));
    alice.expect_line("! the name \"Alice\" is taken");
    let (status, rest) = alice.wait_exit();
    assert_eq!(status.code(), Some(1), "then {rest:?}");

    let mut bob = LineClient::start(&addr, "Bob");
    bob.expect_line("* joined as Bob");
    bob.expect_chat("Alice", "Hello, everyone!");
    bob.send("Hi Alice!");
    bob.expect_chat("Bob", "Hi Alice!");
    bob.send("/users");
    // Next, not merely later: the echo's doubled newline must not show as an empty line.
    bob.expect_next("* online: Alice, Bob");
    bob.expect_line("* Alice left");
    bob.close_stdin();
    bob.expect_line("! the server did not confirm /quit; exiting");
    let (status, rest) = bob.wait_exit();
    assert!(status.success(), "{status}, then {rest:?}");

    script
        .join()
        .expect("the scripted server saw what it expected");
}

#[test]
fn e2_asked_for_history_the_original_server_ignores_it_and_the_client_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listening socket");
    let addr = listener.local_addr().expect("its address").to_string();
    let script = thread::spawn(move || {
        let (mut reader, mut writer) = accept(&listener);
        let add = Request::read(&mut reader);
        // The ten headers of the seed, then the one revision 2 adds, which a server that
        // reads the headers it knows by name never looks at.
        assert_eq!(add.headers.len(), 11, "{add:#?}");
        assert_eq!(add.headers[10], ("History".to_owned(), "5".to_owned()));
        welcome_and_hello(&mut writer);
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
    });
    let mut bob = LineClient::start_with(&addr, "Bob", &["--history", "5"]);
    bob.expect_line("* joined as Bob");
    bob.expect_next("* this server keeps no history");
    bob.expect_chat("Alice", "Hello, everyone!");
    bob.close_stdin();
    let (status, rest) = bob.wait_exit();
    assert!(status.success(), "{status}, then {rest:?}");
    script.join().expect("the scripted server");
}
