//! TLS for the tests: a certificate authority and server certificates made with rcgen when
//! a test process first needs them (no key is ever committed), and client configurations
//! that trust that authority alone.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

/// The tests' certificate authority, and a certificate from it for `localhost` and
/// `127.0.0.1` that servers started with TLS use.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    ca: CertificateDer<'static>,
    ca_pem: String,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
}

/// The process's [`Pki`], made on first use in a fresh directory under the system's
/// temporary directory.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::new)
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("chathttp-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "chathttp tests CA");
        let key = KeyPair::generate().expect("a CA key");
        let ca = params.self_signed(&key).expect("a CA certificate");
        let mut pki = Pki {
            issuer: Issuer::new(params, key),
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            dir,
        };
        (pki.cert, pki.key) = pki.issue("server", &["localhost", "127.0.0.1"], None);
        pki
    }

    /// Issues a certificate for `names` signed by the CA, valid until `not_after` (a year
    /// `YYYY`, or far in the future), written as `NAME.pem` and `NAME.key` in the tests'
    /// directory; returns their paths.
    pub fn issue(&self, name: &str, names: &[&str], not_after: Option<i32>) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        if let Some(year) = not_after {
            params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
            params.not_after = rcgen::date_time_ymd(year, 1, 1);
        }
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("the certificate is written");
        std::fs::write(&key_path, key.serialize_pem()).expect("the key is written");
        (cert_path, key_path)
    }

    /// The CA certificate as a PEM file, for `chat-client --ca`.
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.join("ca.pem");
        if !path.exists() {
            std::fs::write(&path, &self.ca_pem).expect("the CA is written");
        }
        path
    }

    /// A client configuration that trusts this CA only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).expect("the CA is a valid root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// The first certificate (DER) of the PEM file at `path`.
    pub fn der_of(path: &Path) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_file_iter(path)
            .expect("a PEM file")
            .next()
            .expect("a certificate in it")
            .expect("a valid certificate")
            .to_vec()
    }

    /// The directory certificates are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A TLS stream to `127.0.0.1` over `tcp`, verified against `config`'s roots.
pub fn connect(
    config: &Arc<rustls::ClientConfig>,
    tcp: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = ServerName::try_from("127.0.0.1").expect("an IP address is a server name");
    let session =
        rustls::ClientConnection::new(Arc::clone(config), name).expect("a client session");
    rustls::StreamOwned::new(session, tcp)
}
