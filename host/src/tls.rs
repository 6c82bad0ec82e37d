//! TLS (PROTOCOL.md section T), written once for every runtime.
//!
//! rustls is Sans-IO like the room machine, so it sits in the [`Driver`](crate::Driver),
//! between the sockets and the machine, and the runtimes do not know about it: readers hand
//! the driver the bytes they read, as for a plaintext connection, and the driver's
//! [`Session`] turns them into the plaintext the machine is fed; the frames the machine asks
//! for are sealed into records by the same session just before they are written, so a
//! round's frames for one connection become one write, as in plaintext.
//!
//! S8 stays honest: the machine counts plaintext, and the driver reports plaintext as
//! written once it is sealed. Sealing stops while the connection's sealed backlog (records
//! the kernel has not taken) is past [`SEALED_BACKLOG`]; what is left waits as plaintext and
//! counts against `--max-output-bytes` as in a plaintext connection.
//!
//! The certificate and key are read at start and again on `SIGHUP` (T2); a handshake uses the
//! pair current when it starts.

use std::io::{self, IoSlice, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::buffers::{Frames, MAX_WRITE_SLICES};

/// The most sealed bytes a connection may hold that the kernel has not taken yet. Beyond
/// it, the room's frames wait unsealed, counted by the machine (S8).
pub const SEALED_BACKLOG: usize = 64 * 1024;

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the kind needed.
    #[error("{path}: {what}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the pair (a key it cannot use, or one that does not match the
    /// certificate).
    #[error("{0}")]
    Rejected(#[from] rustls::Error),
}

/// The listener's TLS: where the pair lives, and the configuration every handshake uses.
#[derive(Debug)]
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentPair>,
    config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Reads the certificate chain (PEM, leaf first) and the private key (PEM) and builds the
    /// listener's configuration: TLS 1.3 and 1.2 with rustls's safe defaults.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let pair = read_pair(cert_path, key_path, &provider)?;
        let current = Arc::new(CurrentPair(RwLock::new(Arc::new(pair))));
        let config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current,
            config: Arc::new(config),
        })
    }

    /// Reads the pair again from the same paths (T2). On error the current pair stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = read_pair(&self.cert_path, &self.key_path, &self.provider)?;
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }

    /// A session for a connection just accepted.
    pub(crate) fn accept(&self) -> Result<Session, rustls::Error> {
        Ok(Session::resume(self.connection()?))
    }

    /// A rustls connection whose handshake is yet to come.
    fn connection(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        rustls::ServerConnection::new(Arc::clone(&self.config))
    }

    /// The configuration every handshake uses: the gateway's HTTPS (T4) has its own
    /// handshakes, and hands its upgraded connections on as sessions.
    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.config)
    }
}

/// The pair handshakes use now; swapped whole by a reload.
#[derive(Debug)]
struct CurrentPair(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentPair {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let file_error = |path: &Path, what: String| TlsError::File {
        path: path.to_owned(),
        what,
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|error| file_error(cert_path, error.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(cert_path, "no CERTIFICATE in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|error| file_error(key_path, error.to_string()))?;
    Ok(CertifiedKey::from_der(chain, key, provider)?)
}

/// One connection's TLS, driven by the driver alone: raw bytes in, plaintext out, and the
/// room's frames sealed into records.
#[derive(Debug)]
pub(crate) struct Session {
    tls: rustls::ServerConnection,
    /// [`receive`](Self::receive) failed: only the alert is left to send.
    failed: bool,
}

impl Session {
    /// The driver's session for `tls`, in whatever state its handshake is.
    pub(crate) fn resume(mut tls: rustls::ServerConnection) -> Self {
        // The driver bounds what it seals (SEALED_BACKLOG); a limit of rustls's own would
        // refuse frames midway through a batch.
        tls.set_buffer_limit(None);
        Self { tls, failed: false }
    }

    /// Takes bytes read from the socket; returns the plaintext they carried (none during the
    /// handshake). An error (a plaintext client, garbage, a failed handshake) is final: the
    /// caller writes what [`take_records`](Self::take_records) gives (the alert) and closes.
    pub(crate) fn receive(&mut self, mut raw: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let mut plaintext = Vec::new();
        while !raw.is_empty() {
            let before = raw.len();
            // Reading from a slice fails only when rustls's buffer is full, which processing
            // the packets below empties.
            let _ = self.tls.read_tls(&mut raw);
            let state = self
                .tls
                .process_new_packets()
                .inspect_err(|_| self.failed = true)?;
            let ready = state.plaintext_bytes_to_read();
            if ready > 0 {
                let start = plaintext.len();
                plaintext.resize(start + ready, 0);
                // rustls said this much is ready; it cannot be short.
                let _ = self.tls.reader().read_exact(&mut plaintext[start..]);
            } else if raw.len() == before {
                // rustls takes nothing more (the peer sent close_notify): what follows is
                // dropped, rather than offered for ever.
                break;
            }
        }
        Ok(plaintext)
    }

    /// Moves up to `room` bytes of `frames` into rustls (encrypted at once, or after the
    /// handshake); returns how many it took.
    pub(crate) fn seal(&mut self, frames: &mut Frames, room: usize) -> usize {
        let mut sealed = 0;
        while sealed < room && !frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
            let count = frames.io_slices_upto(&mut slices, room - sealed);
            match io::Write::write_vectored(&mut self.tls.writer(), &slices[..count]) {
                Ok(0) | Err(_) => break,
                Ok(taken) => {
                    frames.consume(taken);
                    sealed += taken;
                }
            }
        }
        sealed
    }

    /// Appends the records rustls has ready (handshake messages, sealed frames, alerts) to
    /// `out`, as one buffer.
    pub(crate) fn take_records(&mut self, out: &mut Frames) {
        let mut records = Vec::new();
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut records).is_err() {
                break;
            }
        }
        if !records.is_empty() {
            out.push(Bytes::from(records));
        }
    }

    /// Whether the handshake is still going on (and has not failed).
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking() && !self.failed
    }

    /// Seals what is left of `frames` (a close's last frames) and the `close_notify` after
    /// them, and appends every record to `records`. After a failure, only the alert.
    pub(crate) fn finish(&mut self, frames: &mut Frames, records: &mut Frames) {
        if !self.failed {
            self.seal(frames, usize::MAX);
            self.tls.send_close_notify();
        }
        self.take_records(records);
    }

    /// Whether records wait to be taken.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }
}
