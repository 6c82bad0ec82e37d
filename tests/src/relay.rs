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
    /// Each connection through the relay: the client's socket and the server's.
    links: Arc<Mutex<Vec<(TcpStream, TcpStream)>>>,
    /// While set, a client's end closing does not close the server's end.
    quiet: Arc<AtomicBool>,
    /// Server ends kept open by [`drop_link_quietly`](Self::drop_link_quietly).
    kept: Mutex<Vec<TcpStream>>,
}

impl Relay {
    /// A relay on a free loopback port to `server`.
    pub fn start(server: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let addr = listener.local_addr().expect("its address");
        let open = Arc::new(AtomicBool::new(true));
        let quiet = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<(TcpStream, TcpStream)>>> = Arc::default();
        let (accept_open, accept_links) = (Arc::clone(&open), Arc::clone(&links));
        let accept_quiet = Arc::clone(&quiet);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !accept_open.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection end at once
                }
                let Ok(upstream) = TcpStream::connect(server) else {
                    continue;
                };
                let pipes = [
                    (client.try_clone(), upstream.try_clone(), true),
                    (upstream.try_clone(), client.try_clone(), false),
                ];
                for (from, to, to_server) in pipes {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    let quiet = Arc::clone(&accept_quiet);
                    thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        if !(to_server && quiet.load(Ordering::SeqCst)) {
                            let _ = to.shutdown(Shutdown::Both);
                        }
                    });
                }
                let mut held = accept_links.lock().unwrap_or_else(PoisonError::into_inner);
                held.push((client, upstream));
            }
        });
        Self {
            addr,
            open,
            links,
            quiet,
            kept: Mutex::default(),
        }
    }

    /// Cuts every connection through the relay and turns new ones away.
    pub fn drop_link(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        for (client, server) in links.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Cuts the clients' side of every connection and turns new ones away, but leaves the
    /// server's side open, as a link that died without a word would look to the server
    /// until its keepalive noticed; [`let_server_notice`](Self::let_server_notice) closes it.
    pub fn drop_link_quietly(&self) {
        self.quiet.store(true, Ordering::SeqCst);
        self.open.store(false, Ordering::SeqCst);
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        for (client, server) in links.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            kept.push(server);
        }
    }

    /// Closes the server's side of the connections [`drop_link_quietly`] left open.
    ///
    /// [`drop_link_quietly`]: Self::drop_link_quietly
    pub fn let_server_notice(&self) {
        for server in self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = server.shutdown(Shutdown::Both);
        }
        self.quiet.store(false, Ordering::SeqCst);
    }

    /// Lets new connections through again.
    pub fn restore_link(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
