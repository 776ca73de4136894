//! Who may connect and call — TLS and credentials — and keeping both current.
//!
//! Certificates and token files are rotated while Raven runs. [`Access::watch`] reads
//! them again on SIGHUP (the Unix convention for "re-read your configuration") and when
//! a file's modification time or size changes, checked every [`CHECK_EVERY`]; a file
//! that does not read leaves what is in use as it was and is logged.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use crate::auth::Auth;
use crate::tls::Tls;

/// How often the files are checked for changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// A file's (modification time, size), or `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Files as they were when last read, to notice they changed.
#[derive(Debug)]
pub(crate) struct FileStamps {
    paths: Vec<PathBuf>,
    seen: Mutex<Vec<Stamp>>,
}

impl FileStamps {
    /// Records `paths` as they are now: call before reading them.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let seen = Mutex::new(paths.iter().map(stamp).collect());
        Self { paths, seen }
    }

    /// Records the files as they are now, before they are read again: a read that
    /// fails is not retried until a file changes again.
    pub fn mark(&self) {
        *self.seen.lock() = self.paths.iter().map(stamp).collect();
    }

    /// True when a file changed since it was last marked (never, without files).
    pub fn changed(&self) -> bool {
        let now: Vec<Stamp> = self.paths.iter().map(stamp).collect();
        now != *self.seen.lock()
    }
}

/// Credentials and TLS of the gRPC port. Shared with what reloads them.
#[derive(Debug, Clone)]
pub struct Access {
    pub auth: Arc<Auth>,
    pub tls: Option<Arc<Tls>>,
}

impl Access {
    /// Plain text, no credentials.
    pub fn open() -> Self {
        Self {
            auth: Arc::new(Auth::open()),
            tls: None,
        }
    }

    /// What an operator should hear at start about listening on `host` this way.
    pub fn warnings(&self, host: IpAddr) -> Vec<String> {
        if host.is_loopback() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.auth.is_open() {
            out.push(format!(
                "gRPC listens on {host} beyond loopback and requires no credentials: anyone who \
                 can reach it may subscribe and see every client (configure [[auth.principals]])"
            ));
        }
        if self.tls.is_none() {
            out.push(format!(
                "gRPC listens on {host} beyond loopback in plain text{}: configure [server.tls]",
                if self.auth.is_open() {
                    ""
                } else {
                    ", so tokens cross the network readable"
                }
            ));
        }
        out
    }

    /// Reads the files again: on SIGHUP, and when they change. Ends when `stop` turns
    /// true.
    pub async fn watch(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; files are still reloaded when they change");
                None
            }
        };
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = hup => self.reload_all(),
                _ = tick.tick() => self.reload_changed(),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    fn reload_all(&self) {
        tracing::info!("SIGHUP: reading the TLS and token files again");
        if let Some(tls) = &self.tls {
            report_tls(tls.reload());
        }
        report_tokens(self.auth.reload());
    }

    fn reload_changed(&self) {
        if let Some(result) = self.tls.as_ref().and_then(|t| t.reload_if_changed()) {
            report_tls(result);
        }
        if let Some(result) = self.auth.reload_if_changed() {
            report_tokens(result);
        }
    }
}

fn report_tls(result: Result<(), String>) {
    match result {
        Ok(()) => tracing::info!("TLS certificate reloaded; new connections use it"),
        Err(e) => {
            tracing::error!(error = %e, "TLS files not reloaded; the certificate in use stays")
        }
    }
}

fn report_tokens(result: Result<usize, String>) {
    let label = if result.is_ok() { "ok" } else { "failed" };
    metrics::counter!("raven_token_reloads_total", "result" => label).increment(1);
    match result {
        Ok(valid) => tracing::info!(valid, "tokens reloaded"),
        Err(e) => tracing::error!(error = %e, "tokens file not reloaded; the tokens in use stay"),
    }
}
