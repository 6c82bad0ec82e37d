//! The byte stream to a server: a TCP socket, or TLS over it (T3).
//!
//! Two threads use a connection: the reader thread reads, the main thread writes. With TLS
//! both go through one `rustls::ClientConnection`, so it sits behind a lock; the reader
//! waits for the socket without holding it, so a write never waits for the server to speak.
//! The server's name is always verified: there is no way to turn that off.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// How the client trusts servers over TLS: the system's roots (`--tls`) or one PEM file of
/// certificates (`--ca`).
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|items| items.collect::<Result<Vec<_>, _>>())
                .map_err(|error| format!("--ca {}: {error}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("--ca {}: no CERTIFICATE in it", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|error| format!("--ca {}: {error}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            // Unreadable entries are skipped, as every TLS client does; none at all is an
            // error worth telling.
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no trusted certificates found on this system; give the server's CA with --ca PATH"
                        .into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One connection's stream; clones share it (see the module docs).
#[derive(Debug, Clone)]
pub struct Link {
    stream: Arc<TcpStream>,
    tls: Option<Arc<Mutex<rustls::ClientConnection>>>,
}

impl Link {
    /// A plaintext stream.
    pub fn plain(stream: TcpStream) -> Self {
        Self {
            stream: Arc::new(stream),
            tls: None,
        }
    }

    /// TLS over `stream` with `host` (a name or an IP address) as the name the server's
    /// certificate must carry; returns once the handshake is done, within `timeout`, or with
    /// the reason it failed (an expired certificate, another name, an unknown CA).
    pub fn tls(
        stream: TcpStream,
        host: &str,
        config: &Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| format!("{host:?} is not a valid server name for TLS"))?;
        let mut session = rustls::ClientConnection::new(Arc::clone(config), name)
            .map_err(|error| format!("TLS: {error}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|error| error.to_string())?;
        while session.is_handshaking() {
            session.complete_io(&mut &stream).map_err(explain)?;
        }
        stream
            .set_read_timeout(None)
            .map_err(|error| error.to_string())?;
        Ok(Self {
            stream: Arc::new(stream),
            tls: Some(Arc::new(Mutex::new(session))),
        })
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads what the server sent; `Ok(0)` at its end (with TLS, its `close_notify`).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return (&*self.stream).read(buf);
        };
        let mut raw = vec![0; 16 * 1024];
        loop {
            match lock(tls).reader().read(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            let n = (&*self.stream).read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            let mut session = lock(tls);
            let mut input = &raw[..n];
            while !input.is_empty() {
                let before = input.len();
                session.read_tls(&mut input)?;
                let state = session.process_new_packets().map_err(io::Error::other)?;
                if input.len() == before && state.plaintext_bytes_to_read() == 0 {
                    // Nothing more is taken after the server's close_notify.
                    break;
                }
            }
            // Replies rustls owes the server (a key update, an alert).
            while session.wants_write() {
                session.write_tls(&mut &*self.stream)?;
            }
        }
    }

    /// Writes all of `bytes`.
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return (&*self.stream).write_all(bytes);
        };
        let mut session = lock(tls);
        session.writer().write_all(bytes)?;
        while session.wants_write() {
            session.write_tls(&mut &*self.stream)?;
        }
        Ok(())
    }

    /// Closes the socket both ways; a reader then ends by itself.
    pub fn shutdown(&self) {
        // An error only means the socket is already closed.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A failed handshake as the user should read it: rustls's reason (an expired certificate,
/// another name), and what to do when the server's CA is simply not trusted.
fn explain(error: io::Error) -> String {
    let unknown_issuer = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|inner| {
            matches!(
                inner,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            )
        });
    if unknown_issuer {
        return "TLS handshake failed: the server's certificate is not signed by a certificate \
                authority this client trusts (for a private CA or a self-signed server, give \
                its certificate with --ca PATH)"
            .into();
    }
    format!("TLS handshake failed: {error}")
}

fn lock(tls: &Mutex<rustls::ClientConnection>) -> MutexGuard<'_, rustls::ClientConnection> {
    tls.lock().unwrap_or_else(PoisonError::into_inner)
}
