//! A real `influxd` (Debian's `influxdb` 1.6.x at /usr/bin/influxd, or `$INFLUXD`) for
//! the store's tests and benchmark: one server per use, on free loopback ports, in a
//! temporary directory, killed on drop. Each user adds the queries it needs.
#![allow(dead_code)] // the tests and the bench each use a different part

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A free loopback port below Linux's ephemeral range (32768+), where outgoing
/// connections take their source ports: a port-0 pick could be taken by one before
/// influxd binds it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Influxd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    pub http: reqwest::Client,
}

impl Influxd {
    /// Writes the config; does not start the server.
    pub fn new() -> Influxd {
        // In a workspace build reqwest has rustls without a provider (for the venues'
        // https); the raven binary installs one at start, and so must these tests.
        raven_venues::http::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let rpc = free_port();
        let d = dir.path().display();
        let config = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [subscriber]\n  enabled = false\n"
        );
        std::fs::write(dir.path().join("influxdb.conf"), config).expect("write config");
        Influxd {
            dir,
            port,
            child: None,
            http: reqwest::Client::new(),
        }
    }

    pub async fn started() -> Influxd {
        let mut s = Influxd::new();
        s.start().await;
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it and waits up to 10 s for `/ping`.
    pub async fn start(&mut self) {
        self.start_within(Duration::from_secs(10)).await;
    }

    /// Starts it and waits up to `within` for `/ping` (a loaded box may need longer).
    pub async fn start_within(&mut self, within: Duration) {
        let bin = std::env::var("INFLUXD").unwrap_or_else(|_| "/usr/bin/influxd".to_owned());
        let log = std::fs::File::create(self.dir.path().join("influxd.log")).expect("log file");
        let child = Command::new(&bin)
            .arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (apt-get install influxdb): {e}"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(r) = self.http.get(format!("{}/ping", self.url())).send().await {
                if r.status().as_u16() == 204 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("influxd did not answer /ping within {within:?}");
    }

    /// SIGKILL, like a crash.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}
