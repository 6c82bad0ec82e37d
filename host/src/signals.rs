//! SIGINT and SIGTERM (S11), delivered by a plain thread to a callback, so that a blocking
//! and an async driver receive them the same way; and SIGHUP, which reloads the TLS pair
//! (T2) without the driver.

use std::path::Path;
use std::process;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::tls::Tls;

/// Set by the signal thread, read by the [`Driver`](crate::Driver). Signals are process-wide, and so is this.
static SHUTDOWN_REQUESTED: AtomicBool = AtomicBool::new(false);

/// On SIGINT or SIGTERM, requests shutdown and calls `wake` (from a dedicated thread), which
/// should hand the driver an [`Input::Shutdown`](crate::Input::Shutdown) without waiting.
///
/// The request is a flag that the driver checks on every input, so it gets through even when
/// the driver's input channel is full and `wake` cannot deliver anything; `wake` only ends
/// the driver's wait when it is idle. The handlers are installed before this returns, so call
/// it before [`listen`](crate::listen): a signal that arrives once the `listening on` line is out then always
/// means a clean shutdown.
pub fn on_shutdown_signal(wake: impl Fn() + Send + 'static) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot install signal handlers: {error}");
            process::exit(1);
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                tracing::info!(signal, "shutting down");
                SHUTDOWN_REQUESTED.store(true, Ordering::Relaxed);
                wake();
            }
        })
        .expect("one thread can be spawned at start-up");
}

/// Whether SIGINT or SIGTERM has arrived.
pub(crate) fn shutdown_requested() -> bool {
    SHUTDOWN_REQUESTED.load(Ordering::Relaxed)
}

/// Loads the TLS certificate and key (T1), or exits with one line saying why; then reloads
/// them from the same paths on every SIGHUP (T2), from a thread of its own. A reload that
/// fails keeps the pair in use and logs why.
pub(crate) fn load_tls(cert: &Path, key: &Path) -> Arc<Tls> {
    let tls = match Tls::load(cert, key) {
        Ok(tls) => Arc::new(tls),
        Err(error) => {
            eprintln!("error: cannot use --tls-cert/--tls-key: {error}");
            process::exit(1);
        }
    };
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("error: cannot install the SIGHUP handler: {error}");
            process::exit(1);
        }
    };
    let reloading = Arc::clone(&tls);
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                match reloading.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate and key"),
                    Err(error) => tracing::warn!(
                        %error,
                        "SIGHUP: cannot reload the TLS certificate and key; keeping the old ones"
                    ),
                }
            }
        })
        .expect("one thread can be spawned at start-up");
    tls
}
