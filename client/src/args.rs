//! The command line, and the `HOST:PORT` address it names.

use std::fmt;

use clap::Parser;

/// `chat-client [--server HOST:PORT] [--name NAME] [--plain] [--tls] [--ca PATH]`
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-client",
    version,
    about = "A terminal client for ChatHTTP/1.1 chat rooms"
)]
pub struct Args {
    /// The server to join.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9994", value_parser = ServerAddr::parse)]
    pub server: ServerAddr,
    /// The name to join as (required in line mode; pre-fills the login form otherwise).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Line mode even on a terminal: one line per event on stdout, one message per input line.
    #[arg(long)]
    pub plain: bool,
    /// Connect over TLS, trusting the system's certificate authorities. The server's name
    /// is always checked.
    #[arg(long)]
    pub tls: bool,
    /// Chat lines said before you joined to show on joining, if the server keeps them
    /// (default: 50 in the TUI, none in line mode); 0 asks for none
    #[arg(long, value_name = "N")]
    pub history: Option<usize>,
    /// Connect over TLS, trusting the certificates in this PEM file instead (a private CA,
    /// or a self-signed server's own certificate). Implies --tls.
    #[arg(long, value_name = "PATH")]
    pub ca: Option<std::path::PathBuf>,
}

/// A server address as the user typed it: a host name or IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Host name or IP address, without the brackets of an IPv6 literal.
    pub host: String,
    /// TCP port, never zero.
    pub port: u16,
}

impl ServerAddr {
    /// Parses `HOST:PORT`, `[V6]:PORT` included.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = text
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| format!("expected HOST:PORT, got {text:?}"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Self::from_parts(host, port)
    }

    /// Builds an address from the login form's two fields.
    pub fn from_parts(host: &str, port: &str) -> Result<Self, String> {
        let host = host.trim();
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        match port.trim().parse::<u16>() {
            Ok(port) if port != 0 => Ok(Self {
                host: host.to_owned(),
                port,
            }),
            _ => Err(format!(
                "the port must be a number from 1 to 65535, not {:?}",
                port.trim()
            )),
        }
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_addresses() {
        let v4 = ServerAddr::parse("127.0.0.1:9994").expect("valid");
        assert_eq!((v4.host.as_str(), v4.port), ("127.0.0.1", 9994));
        let v6 = ServerAddr::parse("[::1]:80").expect("valid");
        assert_eq!(
            (v6.host.as_str(), v6.to_string().as_str()),
            ("::1", "[::1]:80")
        );
        assert!(ServerAddr::parse("localhost").is_err());
        assert!(ServerAddr::parse("localhost:0").is_err());
        assert!(ServerAddr::parse(":80").is_err());
    }
}
