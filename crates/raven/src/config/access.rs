//! Who may connect and what each may do: `[server.tls]` and `[auth]`.
//!
//! ```toml
//! [server.tls]
//! cert = "/etc/raven/tls/server.crt"     # PEM chain
//! key = "/etc/raven/tls/server.key"
//! client_ca = "/etc/raven/tls/clients-ca.crt"  # optional: mutual TLS
//! client_cert_optional = false           # with client_ca: a token may stand in
//!
//! [auth]
//! tokens_file = "/etc/raven/tokens"      # optional: `<principal> <sha256-hex>` lines
//!
//! [[auth.principals]]
//! name = "research"
//! token_sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//! client_cert_names = ["research.desk.example"]
//! venues = ["binance_spot"]              # omitted: all
//! channels = ["trades", "book"]          # omitted: all
//! max_streams = 8                        # omitted: server.subscribe_streams_per_client
//! max_topics = 200                       # omitted: only hub.max_topics_per_stream
//! admin = false                          # true: sees every client in GetStatus
//! ```
//!
//! Files are read when Raven starts ([`access`]), so a missing certificate or a bad
//! tokens file stops it with the key at fault, and again on SIGHUP or when they change
//! (see `serve`).

use std::path::PathBuf;
use std::sync::Arc;

use raven_api::auth::{parse_sha256, Auth, PrincipalSpec};
use raven_api::grpc::Access;
use raven_api::tls::{Tls, TlsFiles};
use raven_model::Venue;
use serde::Deserialize;

use super::{invalid, ChannelName, ConfigError};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM: the server certificate and its chain (env RAVEN_TLS_CERT).
    pub cert: PathBuf,
    /// PEM: its private key (env RAVEN_TLS_KEY).
    pub key: PathBuf,
    /// PEM: CAs of client certificates; set for mutual TLS (env RAVEN_TLS_CLIENT_CA).
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: a client without a certificate may connect and use a token.
    #[serde(default)]
    pub client_cert_optional: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Token hashes of principals, one `<principal> <sha256-hex>` a line (env
    /// RAVEN_TOKENS_FILE); read again on SIGHUP and when it changes.
    pub tokens_file: Option<PathBuf>,
    pub principals: Vec<PrincipalSection>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrincipalSection {
    pub name: String,
    /// SHA-256 (hex) of each token of this principal (`raven token` makes a pair).
    pub token_sha256: Vec<String>,
    /// Client-certificate DNS or URI names of this principal (needs server.tls.client_ca).
    pub client_cert_names: Vec<String>,
    pub venues: Option<Vec<String>>,
    pub channels: Option<Vec<ChannelName>>,
    pub max_streams: Option<usize>,
    pub max_topics: Option<usize>,
    pub admin: bool,
}

/// The longest principal name: it is a metric label value.
const MAX_NAME: usize = 64;

impl ChannelName {
    /// The family name the hub's grants use (`raven_hub::Channel::family`).
    fn family(self) -> &'static str {
        match self {
            ChannelName::Trades => "trades",
            ChannelName::Book => "book",
            ChannelName::Bbo => "bbo",
            ChannelName::Funding => "funding",
            ChannelName::Liquidations => "liquidations",
            ChannelName::Candles => "candles",
        }
    }
}

/// Checks `[auth]` without reading files (venues must be registered first).
pub(super) fn validate(auth: &AuthSection, tls: Option<&TlsSection>) -> Result<(), ConfigError> {
    if let Some(tls) = tls {
        for (key, path) in [("server.tls.cert", &tls.cert), ("server.tls.key", &tls.key)] {
            if path.as_os_str().is_empty() {
                return Err(invalid(key, "must name a PEM file"));
            }
        }
    }
    if auth.principals.is_empty() && auth.tokens_file.is_some() {
        return Err(invalid(
            "auth.tokens_file",
            "names principals, but auth.principals lists none",
        ));
    }
    specs(auth, tls).map(|_| ())
}

fn specs(auth: &AuthSection, tls: Option<&TlsSection>) -> Result<Vec<PrincipalSpec>, ConfigError> {
    let mut out = Vec::new();
    for (i, p) in auth.principals.iter().enumerate() {
        let key = |k: &str| format!("auth.principals[{i}].{k}");
        let name_ok = !p.name.is_empty()
            && p.name.len() <= MAX_NAME
            && p.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(invalid(
                key("name"),
                format!("{:?}: 1 to {MAX_NAME} of A-Z a-z 0-9 _ . -", p.name),
            ));
        }
        if p.name == raven_api::auth::OPEN_PRINCIPAL {
            return Err(invalid(
                key("name"),
                format!(
                    "{:?} is reserved: it names every caller of a server without credentials",
                    p.name
                ),
            ));
        }
        if out.iter().any(|s: &PrincipalSpec| s.name == p.name) {
            return Err(invalid(
                key("name"),
                format!("{:?} is listed twice", p.name),
            ));
        }
        let token_sha256 = p
            .token_sha256
            .iter()
            .enumerate()
            .map(|(j, h)| {
                parse_sha256(h).map_err(|e| invalid(format!("{}[{j}]", key("token_sha256")), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !p.client_cert_names.is_empty() && tls.and_then(|t| t.client_ca.as_ref()).is_none() {
            return Err(invalid(
                key("client_cert_names"),
                "client certificates need server.tls.client_ca (the CA that signs them)",
            ));
        }
        let venues = match &p.venues {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        v.parse::<Venue>()
                            .map_err(|e| invalid(format!("{}[{j}]", key("venues")), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        for (k, v) in [("max_streams", p.max_streams), ("max_topics", p.max_topics)] {
            if v == Some(0) {
                return Err(invalid(
                    key(k),
                    "must be at least 1 (omit it for no limit of its own)",
                ));
            }
        }
        out.push(PrincipalSpec {
            name: p.name.clone(),
            token_sha256,
            cert_names: p.client_cert_names.clone(),
            admin: p.admin,
            venues,
            channels: p
                .channels
                .as_ref()
                .map(|c| c.iter().map(|c| c.family()).collect()),
            max_streams: p.max_streams,
            max_topics: p.max_topics,
        });
    }
    Ok(out)
}

/// Reads the certificate, key, client CA and tokens file: who may connect, as the
/// gRPC server needs it. Errors name the key whose file is at fault.
pub fn access(auth: &AuthSection, tls: Option<&TlsSection>) -> Result<Access, ConfigError> {
    let loaded = match tls {
        None => None,
        Some(t) => Some(Arc::new(
            Tls::load(TlsFiles {
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: t.client_ca.clone(),
                client_cert_optional: t.client_cert_optional,
            })
            .map_err(|e| invalid("server.tls", e))?,
        )),
    };
    let specs = specs(auth, tls)?;
    let auth = if specs.is_empty() {
        Auth::open()
    } else {
        Auth::new(&specs, auth.tokens_file.clone()).map_err(|e| invalid("auth", e))?
    };
    Ok(Access {
        auth: Arc::new(auth),
        tls: loaded,
    })
}
