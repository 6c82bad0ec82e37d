//! Plain HTTP/1.1 to the browser gateway (`--http`), by hand, so that what the gateway
//! answers is seen byte for byte.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::GUARD;

/// A `GET path`; returns the status code, the head in lower case and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("the gateway accepts connections");
    stream.set_read_timeout(Some(GUARD)).expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("a whole response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let code = head[9..12].parse().expect("a status code");
    (code, head.to_ascii_lowercase(), body.to_owned())
}

/// Sends a WebSocket upgrade to `/ws` on `stream` with these `Host` and `Origin` (none if
/// `None`) headers; returns the response's status code.
pub fn upgrade(stream: &mut TcpStream, host: &str, origin: Option<&str>) -> u16 {
    stream.set_read_timeout(Some(GUARD)).expect("timeout");
    let origin = origin.map_or(String::new(), |origin| format!("Origin: {origin}\r\n"));
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut head = [0; 12];
    stream.read_exact(&mut head).expect("a status line");
    String::from_utf8_lossy(&head[9..12])
        .parse()
        .expect("a status code")
}
