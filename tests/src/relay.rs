//! A TCP relay in front of a server, for cases where a client's link drops while the server
//! runs on.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

/// Relays every connection made to [`addr`](Self::addr) to the server; can cut all of them
/// and turn new ones away, as a dropped Wi-Fi link would.
#[derive(Debug)]
pub struct Relay {
    /// Where clients connect instead of the server.
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    /// A relay on a free loopback port to `server`.
    pub fn start(server: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let addr = listener.local_addr().expect("its address");
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (accept_open, accept_links) = (Arc::clone(&open), Arc::clone(&links));
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !accept_open.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection end at once
                }
                let Ok(upstream) = TcpStream::connect(server) else {
                    continue;
                };
                let pipes = [
                    (client.try_clone(), upstream.try_clone()),
                    (upstream.try_clone(), client.try_clone()),
                ];
                for (from, to) in pipes {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                let mut held = accept_links.lock().unwrap_or_else(PoisonError::into_inner);
                held.extend([client, upstream]);
            }
        });
        Self { addr, open, links }
    }

    /// Cuts every connection through the relay and turns new ones away.
    pub fn drop_link(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        for link in links.drain(..) {
            let _ = link.shutdown(Shutdown::Both);
        }
    }

    /// Lets new connections through again.
    pub fn restore_link(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
