//! TLS for the gRPC port: rustls, certificates from files, reloaded without a restart.
//!
//! Certificates are rotated by tools that rewrite files (cert-manager, certbot, an
//! operator's `cp`), so [`Tls`] keeps the paths and builds a fresh rustls configuration
//! whenever [`Tls::reload_if_changed`] sees a file's modification time or size change,
//! or when asked ([`Tls::reload`], on SIGHUP). A new configuration applies to the
//! connections accepted after it; open ones keep the session they negotiated. A file
//! that does not parse (a half-written certificate, a key that does not match) leaves
//! the configuration in use as it was and is reported, so a bad rotation never takes
//! the port down.
//!
//! With a client CA, clients must present a certificate it signed (mutual TLS), unless
//! the client certificate is optional, in which case a client may authenticate with a
//! token instead. The names a verified client certificate carries (its DNS and URI
//! subject-alternative names) are what [`crate::auth`] maps to a principal.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::access::FileStamps;

/// Where the server's certificate, key and client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs that sign client certificates; `None`: no client certificates.
    pub client_ca: Option<PathBuf>,
    /// With a client CA: a client without a certificate may still connect (and must
    /// then authenticate with a token).
    pub client_cert_optional: bool,
}

/// The TLS configuration in use, and how to build the next one.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files as they were when last read.
    stamps: FileStamps,
}

impl Tls {
    /// Reads the files; errors name the file at fault.
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let stamps = FileStamps::new(
            [&files.cert, &files.key]
                .into_iter()
                .chain(&files.client_ca)
                .cloned()
                .collect(),
        );
        let config = build(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
            stamps,
        })
    }

    /// The configuration for the next connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// Reads the files again. On error the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        self.stamps.mark();
        let result = build(&self.files).map(|config| {
            *self.current.write() = Arc::new(config);
        });
        let label = if result.is_ok() { "ok" } else { "failed" };
        metrics::counter!("raven_tls_reloads_total", "result" => label).increment(1);
        result
    }

    /// Reloads if a file changed since the last read; `None` when none did.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        self.stamps.changed().then(|| self.reload())
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn certificates(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| format!("{}: not a PEM private key: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: not a CA certificate: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.client_cert_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    // gRPC is HTTP/2; clients refuse a server that does not say so in ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The names of a verified client certificate: its DNS and URI subject-alternative
/// names. A certificate that cannot be parsed has none.
pub fn client_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok(parsed) = webpki::EndEntityCert::try_from(cert) else {
        return Vec::new();
    };
    parsed
        .valid_dns_names()
        .chain(parsed.valid_uri_names())
        .map(str::to_owned)
        .collect()
}
