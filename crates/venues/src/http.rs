//! The HTTP client every venue's REST calls go through, and the TLS setup under it.

use std::time::Duration;

/// A REST request that takes longer than this has failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client one venue's REST calls share (connection reuse, one TLS setup).
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("raven/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// rustls needs a process-wide crypto provider; Raven uses ring (see Cargo.toml). If
/// another part of the process installed one first, that one is used.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
