//! The command line of PROTOCOL.md section X: flags, `--help`, and the [`Settings`] they give.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::process;
use std::time::Duration;

use chathttp_cluster::ClusterSettings;
use chathttp_core::limits::FloodLimits;
use chathttp_core::{FrameLimits, ServerConfig};
use clap::{CommandFactory, FromArgMatches, Parser};

use crate::descriptors::DescriptorLimit;
use crate::log::LogGuard;
use crate::tls::Tls;

/// What a server binary is asked to do.
#[derive(Debug)]
pub struct Settings {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The room machine's configuration.
    pub config: ServerConfig,
    /// `--redis`: the room is shared with other servers through Redis (docs/CLUSTER.md).
    pub cluster: Option<ClusterSettings>,
    /// The descriptor limit [`start`](crate::start) raised, for the log line at listen (S13).
    pub descriptors: Option<DescriptorLimit>,
    /// The log writer, set by [`start`](crate::start): keep it until the server exits, so
    /// the last lines are written.
    pub log: Option<std::sync::Arc<LogGuard>>,
    /// `--tls-cert` and `--tls-key`: the certificate chain and key files (T1).
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// The listener's TLS, loaded from `tls_files` by [`start`](crate::start).
    pub tls: Option<std::sync::Arc<Tls>>,
    /// `--history-db`: the history file (E4).
    pub history_file: Option<PathBuf>,
    /// The history file, opened by [`start`](crate::start).
    pub history_db: Option<crate::history::HistoryDb>,
    /// `--http`: the browser gateway (section B).
    pub http: Option<crate::GatewaySettings>,
}

/// A ChatHTTP/1.1 chat server (one room). Logs go to standard error; set RUST_LOG to filter
/// them (default: info). A flag given twice takes its last value.
#[derive(Debug, Parser)]
#[command(version, args_override_self = true)]
struct Flags {
    /// Address and port to listen on: an IPv4 address, an IPv6 address in brackets, or
    /// `localhost`, with a port; port 0 picks a free port
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9994", value_parser = parse_bind)]
    bind: SocketAddr,
    /// Connections served at once; one more gets 503 Service Unavailable (S10)
    #[arg(long, value_name = "N", default_value = "10000")]
    max_connections: NonZeroUsize,
    /// Largest request head in bytes: start line, headers and the empty line (W5)
    #[arg(long, value_name = "N", default_value = "8192")]
    max_header_bytes: NonZeroUsize,
    /// Largest request body in bytes (W5)
    #[arg(long, value_name = "N", default_value = "65536")]
    max_body_bytes: NonZeroUsize,
    /// Unsent output per connection before it is cut as a slow reader (S8)
    #[arg(long, value_name = "N", default_value = "1048576")]
    max_output_bytes: NonZeroUsize,
    /// Seconds a connection that has not joined may stay silent (S9); fractions allowed
    #[arg(long, value_name = "SECS", default_value = "600", value_parser = parse_seconds)]
    idle_timeout: Duration,
    /// Seconds a started request may take to complete before 408 (S9); fractions allowed
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_seconds)]
    request_timeout: Duration,
    /// Requests a second a connection may make that cost the room work (all but DELETE and
    /// requests refused with 400); past
    /// it, 429 Too Many Requests (S12); fractions allowed; 0 turns flood control off
    #[arg(long, value_name = "R", default_value = "5", value_parser = parse_rate)]
    message_rate: Rate,
    /// Requests a connection that was quiet may make at once (S12)
    #[arg(long, value_name = "B", default_value = "20")]
    message_burst: NonZeroU32,
    /// 429s within one minute after which a connection is closed (S12); at most 10000
    #[arg(long, value_name = "K", default_value = "50",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    flood_kick: u32,
    /// Chat lines the room keeps for replay to joiners that ask with a History header (E1);
    /// 0 turns history off. Each line holds up to --max-body-bytes
    #[arg(long, value_name = "N", default_value = "100",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    history: u32,
    /// Keep the history (and its epoch) in this SQLite file, created if missing, so that it
    /// survives restarts (E4); every line is written before anyone receives it. Not with
    /// --redis
    #[arg(long, value_name = "PATH", conflicts_with = "redis")]
    history_db: Option<PathBuf>,
    /// Share the room with every server started with the same Redis and --room: a Redis
    /// URL such as redis://127.0.0.1:6379, or rediss:// for TLS (docs/CLUSTER.md); the
    /// password may come from CHATHTTP_REDIS_PASSWORD instead. Without it the room is this
    /// process's alone
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// With --redis: the room's name; its Redis keys start with chathttp:{ROOM}:
    #[arg(long, value_name = "ROOM", default_value = "main", value_parser = parse_node_id)]
    room: String,
    /// With --redis: this server's id among the room's servers [default: HOST-PID-TIME]
    #[arg(long, value_name = "ID", value_parser = parse_node_id)]
    node_id: Option<String>,
    /// With --redis: seconds after which a server that stopped refreshing its liveness key
    /// is taken for dead: its members leave and their names are free; fractions allowed
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    node_ttl: Duration,
    /// With --redis: about how many entries the shared log keeps (XADD MAXLEN ~)
    #[arg(long, value_name = "N", default_value = "100000")]
    log_max_len: NonZeroUsize,
    /// Serve TLS (1.3 and 1.2) with this certificate chain: a PEM file, leaf first. Needs
    /// --tls-key. SIGHUP reads both files again (certificate renewals)
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert: a PEM file
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve the browser gateway on this address too (B1): the web client at /, members'
    /// WebSockets at /ws, Prometheus metrics at /metrics, a health check at /healthz. HTTPS
    /// with the --tls-cert pair
    #[arg(long, value_name = "ADDR", value_parser = parse_bind)]
    http: Option<SocketAddr>,
    /// With --http: another origin whose pages may open /ws (B2), such as
    /// https://chat.example.org; may repeat. The gateway's own origin always may
    #[arg(long, value_name = "ORIGIN", requires = "http", value_parser = parse_origin)]
    http_allow_origin: Vec<String>,
    /// Read settings from this TOML file first: the flags' names as keys (max-connections =
    /// 500, http-allow-origin = ["https://chat.example.org"]); a flag given here wins
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// An origin as a browser sends it: `http://` or `https://`, a host, maybe a port; lower
/// case, so that comparing is exact.
fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim_end_matches('/').to_ascii_lowercase();
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let fits = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
    match host {
        Some(host) if !host.is_empty() && host.chars().all(fits) => Ok(origin),
        _ => Err("expected an origin such as https://chat.example.org or http://host:8080".into()),
    }
}

/// A node id or room name: 1 to 64 printable ASCII characters, no spaces and no braces
/// (the room's keys use `{ROOM}` as their Redis hash tag).
fn parse_node_id(text: &str) -> Result<String, String> {
    let fits = |c: char| c.is_ascii_graphic() && c != '{' && c != '}';
    if text.is_empty() || text.len() > 64 || !text.chars().all(fits) {
        return Err("expected 1 to 64 printable ASCII characters, no spaces or braces".to_owned());
    }
    Ok(text.to_owned())
}

/// `localhost:PORT` or an IP socket address (`1.2.3.4:5`, `[::1]:5`). No name lookup:
/// `localhost` is the IPv4 loopback, so the `listening on` line is predictable.
fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port.parse().map_err(|_| format!("bad port {port:?}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse()
        .map_err(|_| "expected IP:PORT, [IPv6]:PORT or localhost:PORT".to_owned())
}

/// Positive, finite seconds, fractions allowed.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| "expected seconds, such as 30 or 0.5")?;
    // NaN fails this test too.
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than zero".to_owned());
    }
    let duration = Duration::try_from_secs_f64(secs).map_err(|_| "too large".to_owned())?;
    // A timeout too small to tell from zero would cut every connection at once.
    if duration < Duration::from_millis(1) {
        return Err("must be at least 0.001 (one millisecond)".to_owned());
    }
    Ok(duration)
}

/// `--message-rate`, as the interval between two requests; `None` is off.
#[derive(Debug, Clone, Copy)]
struct Rate(Option<Duration>);

/// `--message-rate`: requests a second, as the interval between two; 0 is off.
fn parse_rate(text: &str) -> Result<Rate, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| "expected requests a second, such as 5 or 0.5 (0 turns it off)")?;
    if rate == 0.0 {
        return Ok(Rate(None));
    }
    if rate.is_nan() || rate < 0.0 {
        return Err("must be 0 (off) or more".to_owned());
    }
    if rate > 1_000_000.0 {
        return Err("must be at most 1000000 (use 0 to turn flood control off)".to_owned());
    }
    // One request in more than a quarter of an hour is flood control no one would notice.
    if rate < 0.001 {
        return Err("must be at least 0.001 (or 0 to turn it off)".to_owned());
    }
    Ok(Rate(Some(Duration::from_secs_f64(1.0 / rate))))
}

impl Flags {
    fn into_settings(self) -> Settings {
        let config = ServerConfig {
            frame: FrameLimits {
                max_head_bytes: self.max_header_bytes.get(),
                max_body_bytes: self.max_body_bytes.get(),
                ..FrameLimits::default()
            },
            max_connections: self.max_connections.get(),
            max_output_bytes: self.max_output_bytes.get(),
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            flood: FloodLimits {
                interval: self.message_rate.0,
                burst: self.message_burst.get(),
                kick: self.flood_kick,
            },
            history: crate::history::in_memory(self.history as usize),
            ..ServerConfig::default()
        };
        let (request_timeout, max_output_bytes) = (config.request_timeout, config.max_output_bytes);
        let cluster = self.redis.map(|redis| ClusterSettings {
            redis,
            node_id: self
                .node_id
                .unwrap_or_else(chathttp_cluster::default_node_id),
            node_ttl: self.node_ttl,
            max_len: self.log_max_len.get(),
            room: self.room,
            password: std::env::var(chathttp_cluster::PASSWORD_VARIABLE).ok(),
            history: self.history as usize,
        });
        Settings {
            bind: self.bind,
            config,
            cluster,
            descriptors: None,
            log: None,
            tls_files: self.tls_cert.zip(self.tls_key),
            tls: None,
            history_file: self.history_db,
            history_db: None,
            http: self.http.map(|bind| crate::GatewaySettings {
                bind,
                allow_origins: self.http_allow_origin,
                timeout: request_timeout,
                max_output_bytes,
            }),
        }
    }
}

/// Parses the command line of `program`, after the `--config` file if one is named.
/// `--help` and `--version` print and exit 0; a bad flag or file prints one line to standard
/// error and exits 2.
pub(crate) fn from_command_line(program: &'static str) -> Settings {
    let fail = |text: &str| -> ! {
        eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
        process::exit(2);
    };
    let args = with_config_file(std::env::args_os().collect())
        .unwrap_or_else(|error| fail(&format!("error: {error}")));
    let matches = Flags::command().name(program).try_get_matches_from(args);
    let flags = matches.and_then(|m| Flags::from_arg_matches(&m));
    match flags {
        Ok(flags) => flags.into_settings(),
        Err(error) if !error.use_stderr() => error.exit(),
        Err(error) => fail(&error.to_string()),
    }
}

/// Why a `--config` file could not be used.
#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("--config {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("--config {path}: {error}")]
    Parse {
        path: String,
        error: toml::de::Error,
    },
    #[error(
        "--config {path}: unknown key `{key}` (the keys are the flags' names, such as `max-connections`)"
    )]
    UnknownKey { path: String, key: String },
    #[error("--config {path}: `{key}` must be {what}")]
    Type {
        path: String,
        key: String,
        what: &'static str,
    },
}

/// `argv` with the settings of its `--config PATH` file (TOML, the flags' names as keys)
/// put before the flags, so that a flag given on the command line wins: a flag given twice
/// takes its last value, and a list (`http-allow-origin`) given on the command line
/// replaces the file's.
fn with_config_file(argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let mut rest = argv.iter().skip(1);
    let mut path = None;
    while let Some(arg) = rest.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            path = rest.next().map(|p| p.to_string_lossy().into_owned());
        } else if let Some(p) = arg.strip_prefix("--config=") {
            path = Some(p.to_owned());
        }
    }
    let Some(path) = path else { return Ok(argv) };
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
        path: path.clone(),
        error,
    })?;
    let table: toml::Table = text.parse().map_err(|error| ConfigError::Parse {
        path: path.clone(),
        error,
    })?;
    let command = Flags::command();
    let given = |name: &str| {
        argv.iter()
            .any(|arg| arg.to_string_lossy().split('=').next() == Some(&format!("--{name}")))
    };
    let mut from_file = Vec::new();
    for (key, value) in table {
        let known = command.get_arguments().find(|arg| {
            arg.get_long() == Some(key.as_str())
                && !matches!(key.as_str(), "config" | "help" | "version")
        });
        let Some(arg) = known else {
            return Err(ConfigError::UnknownKey { path, key });
        };
        let many = matches!(arg.get_action(), clap::ArgAction::Append);
        let type_error = |what| ConfigError::Type {
            path: path.clone(),
            key: key.clone(),
            what,
        };
        let values = match value {
            toml::Value::Array(items) if many => items,
            toml::Value::Array(_) => return Err(type_error("a single value")),
            toml::Value::Table(_) => return Err(type_error("a value, not a table")),
            value => vec![value],
        };
        if many && given(&key) {
            continue;
        }
        for value in values {
            let text = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                _ => return Err(type_error("a string or a number")),
            };
            from_file.push(OsString::from(format!("--{key}")));
            from_file.push(OsString::from(text));
        }
    }
    let mut args = argv;
    args.splice(1..1, from_file);
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        let argv = std::iter::once("chat-server").chain(args.iter().copied());
        Flags::try_parse_from(argv).map(Flags::into_settings)
    }

    #[test]
    fn x_defaults_match_the_protocol() {
        let settings = parse(&[]).expect("no flags is valid");
        assert_eq!(settings.bind, "127.0.0.1:9994".parse().expect("addr"));
        let defaults = ServerConfig {
            history: settings.config.history.clone(),
            ..ServerConfig::default()
        };
        assert_eq!(settings.config, defaults);
        assert_eq!(settings.config.history.lines, 100, "E1: --history 100");
    }

    #[test]
    fn e1_history_zero_is_off_and_each_start_is_a_new_epoch() {
        assert_eq!(
            parse(&["--history", "0"]).expect("ok").config.history.lines,
            0
        );
        let (a, b) = (parse(&[]).expect("ok"), parse(&[]).expect("ok"));
        assert_ne!(a.config.history.epoch, b.config.history.epoch);
        assert!(parse(&["--history", "-1"]).is_err());
        assert!(parse(&["--history", "1000001"]).is_err());
    }

    #[test]
    fn s12_flood_flags_set_the_bucket_and_zero_turns_it_off() {
        let flood = parse(&[]).expect("ok").config.flood;
        assert_eq!(flood.interval, Some(Duration::from_millis(200)));
        assert_eq!((flood.burst, flood.kick), (20, 50));
        let flood = parse(&[
            "--message-rate",
            "0.5",
            "--message-burst",
            "3",
            "--flood-kick",
            "7",
        ])
        .expect("ok")
        .config
        .flood;
        assert_eq!(flood.interval, Some(Duration::from_secs(2)));
        assert_eq!((flood.burst, flood.kick), (3, 7));
        let off = parse(&["--message-rate", "0"]).expect("ok").config.flood;
        assert_eq!(off.interval, None);
    }

    #[test]
    fn x_accepts_fractions_localhost_and_v6() {
        let settings = parse(&["--idle-timeout", "0.5", "--bind", "localhost:0"]).expect("ok");
        assert_eq!(settings.config.idle_timeout, Duration::from_millis(500));
        assert_eq!(settings.bind, "127.0.0.1:0".parse().expect("addr"));
        let settings = parse(&["--bind", "[::1]:7"]).expect("ok");
        assert_eq!(settings.bind, "[::1]:7".parse().expect("addr"));
    }

    #[test]
    fn x_rejects_zero_and_nonsense() {
        for args in [
            &["--max-connections", "0"][..],
            &["--request-timeout", "0"],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "NaN"],
            &["--idle-timeout", "1e-10"],
            &["--message-rate", "-1"],
            &["--message-rate", "NaN"],
            &["--message-rate", "1e300"],
            &["--message-burst", "0"],
            &["--flood-kick", "0"],
            &["--flood-kick", "10001"],
            &["--request-timeout", "0.0009"],
            &["--max-body-bytes", "lots"],
            &["--bind", "example.com:80"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    /// Parses `args` after the `--config` file holding `file`.
    fn parse_with_file(file: &str, args: &[&str]) -> Result<Settings, String> {
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("chathttp-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, file).expect("a temporary file");
        let path = path.to_string_lossy().into_owned();
        let argv = ["chat-server", "--config", &path]
            .iter()
            .chain(args)
            .map(OsString::from)
            .collect();
        let args = with_config_file(argv).map_err(|error| error.to_string());
        let _ = std::fs::remove_file(&path);
        Flags::try_parse_from(args?)
            .map(Flags::into_settings)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn x_a_config_file_sets_flags_and_flags_win() {
        let file = "max-connections = 7\nidle-timeout = 0.5\nbind = \"localhost:0\"\n\
                    http = \"127.0.0.1:0\"\nhttp-allow-origin = [\"https://a.example\", \"https://b.example\"]\n";
        let settings = parse_with_file(file, &[]).expect("a valid file");
        assert_eq!(settings.config.max_connections, 7);
        assert_eq!(settings.config.idle_timeout, Duration::from_millis(500));
        let http = settings.http.expect("--http from the file");
        assert_eq!(
            http.allow_origins,
            ["https://a.example", "https://b.example"]
        );
        let flags = [
            "--max-connections",
            "9",
            "--http-allow-origin",
            "https://c.example",
        ];
        let settings = parse_with_file(file, &flags).expect("valid");
        assert_eq!(settings.config.max_connections, 9, "the flag wins");
        let http = settings.http.expect("--http from the file");
        assert_eq!(
            http.allow_origins,
            ["https://c.example"],
            "the flag's list replaces the file's"
        );
    }

    #[test]
    fn x_a_config_file_with_an_unknown_key_or_a_bad_value_is_an_error() {
        let error = parse_with_file("max-conections = 7\n", &[]).expect_err("a typo");
        assert!(error.contains("unknown key `max-conections`"), "{error}");
        let error = parse_with_file("config = \"x.toml\"\n", &[]).expect_err("no nesting");
        assert!(error.contains("unknown key `config`"), "{error}");
        let error = parse_with_file("bind = [\"a\", \"b\"]\n", &[]).expect_err("one value");
        assert!(error.contains("`bind` must be a single value"), "{error}");
        let error = parse_with_file("max-connections = 0\n", &[]).expect_err("as a flag would");
        assert!(error.contains("--max-connections"), "{error}");
        assert!(
            parse_with_file("max-connections = \n", &[]).is_err(),
            "not TOML"
        );
    }

    #[test]
    fn cluster_flags_only_with_redis() {
        assert_eq!(parse(&[]).expect("ok").cluster, None);
        let settings = parse(&["--redis", "redis://127.0.0.1:6380", "--node-ttl", "0.5"]);
        let cluster = settings
            .expect("ok")
            .cluster
            .expect("--redis shares the room");
        assert_eq!(cluster.node_ttl, Duration::from_millis(500));
        assert_eq!((cluster.room.as_str(), cluster.max_len), ("main", 100_000));
        assert!(!cluster.node_id.is_empty());
        assert!(parse(&["--redis", "redis://x", "--node-id", "a b"]).is_err());
        assert!(parse(&["--redis", "redis://x", "--node-ttl", "0"]).is_err());
        assert!(parse(&["--redis", "redis://x", "--room", "a}b"]).is_err());
    }
}
