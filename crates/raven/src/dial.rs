//! How a client command reaches the server: its address, TLS and token.
//!
//! Every client command (`sub`, `book`, `status`, `history`) takes the same flags:
//! `--server`, `--tls-ca` (trust this CA for the server's certificate; without it an
//! `https://` address is checked against the system's CAs), `--tls-cert`/`--tls-key`
//! (a client certificate, for mutual TLS), `--tls-domain` (the name the server's
//! certificate carries, when the address is an IP) and `--token` (or `RAVEN_TOKEN`,
//! which keeps it out of the process list), sent as `authorization: Bearer <token>` on
//! every call. The token is never printed.

use std::path::PathBuf;

use anyhow::Context as _;
use raven_proto::pb::market_data_client::MarketDataClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArg {
    /// gRPC address of the Raven server (https:// for TLS).
    #[arg(long, env = "RAVEN_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// PEM CA certificate to trust for the server's certificate (implies TLS).
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name to check the server's certificate against (default: the address's host).
    #[arg(long, value_name = "NAME")]
    pub tls_domain: Option<String>,
    /// Bearer token (prefer the RAVEN_TOKEN environment variable).
    #[arg(long, env = "RAVEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// A MarketData client that sends the token on every call.
pub type Client = MarketDataClient<InterceptedService<Channel, Credentials>>;

/// Adds `authorization: Bearer <token>` to each call when there is a token.
#[derive(Clone)]
pub struct Credentials(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

impl ServerArg {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let endpoint = Endpoint::from_shared(self.server.clone())
            .with_context(|| format!("--server {:?} is not a URL", self.server))?;
        let tls =
            self.server.starts_with("https://") || self.tls_ca.is_some() || self.tls_cert.is_some();
        if !tls {
            return Ok(endpoint);
        }
        let read = |flag: &str, p: &PathBuf| {
            std::fs::read(p).with_context(|| format!("{flag}: cannot read {}", p.display()))
        };
        let mut config = ClientTlsConfig::new();
        config = match &self.tls_ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?)),
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.identity(Identity::from_pem(
                read("--tls-cert", cert)?,
                read("--tls-key", key)?,
            ));
        }
        if let Some(name) = &self.tls_domain {
            config = config.domain_name(name.clone());
        }
        // An http:// address with TLS flags still means TLS: the scheme is rewritten so
        // the transport does not refuse the combination.
        let endpoint = if self.server.starts_with("http://") {
            Endpoint::from_shared(self.server.replacen("http://", "https://", 1))?
        } else {
            endpoint
        };
        endpoint
            .tls_config(config)
            .context("TLS settings (--tls-ca, --tls-cert, --tls-key)")
    }

    fn credentials(&self) -> anyhow::Result<Credentials> {
        let Some(token) = &self.token else {
            return Ok(Credentials(None));
        };
        // The error must not echo the token.
        let value = format!("Bearer {}", token.trim())
            .parse::<MetadataValue<Ascii>>()
            .map_err(|_| anyhow::anyhow!("--token / RAVEN_TOKEN: not printable ASCII"))?;
        Ok(Credentials(Some(value)))
    }

    /// Connects; the client sends the token on every call.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let credentials = self.credentials()?;
        let channel = self
            .endpoint()?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.server))?;
        Ok(MarketDataClient::with_interceptor(channel, credentials))
    }
}
