//! The door every gRPC call passes: refused connections, calls per connection, who
//! is calling.
//!
//! A tower layer in front of all services, so no handler can forget it. For each call
//! it
//! 1. answers `RESOURCE_EXHAUSTED` on a connection beyond `max_connections` (see
//!    [`crate::conn`]), naming the limit;
//! 2. opens the call on its connection ([`ConnInfo::begin_call`]); beyond
//!    `max_streams_per_connection` calls at once it answers `RESOURCE_EXHAUSTED`;
//!    the open call is held by the response body, so a `Subscribe` stream counts until
//!    it ends, and the connection is idle only when no call is open;
//! 3. authenticates the caller ([`Auth::authenticate`]) from its `authorization`
//!    header and client certificate, answering `UNAUTHENTICATED` with the reason (and
//!    closing a connection that keeps guessing, see [`crate::conn`]), and
//!    hands the [`Principal`] to the handler in the request's extensions. Health checks
//!    (`grpc.health.v1`) are answered for anyone: orchestrators probe without
//!    credentials, and they reveal nothing.
//!
//! Refusals are counted (`raven_limit_hits_total`, `raven_auth_failures_total`), and
//! calls by principal (`raven_principal_calls_total`), whose label values are the
//! configured principal names and the methods Raven serves, never client text.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::Status;

use crate::auth::{Auth, Principal};
use crate::conn::{Call, ConnInfo, MAX_AUTH_FAILURES};
use crate::metrics::METHODS;

const HEALTH: &str = "/grpc.health.v1.Health/";
const MARKET_DATA: &str = "/raven.v1.MarketData/";

/// Builds [`Gate`]s.
#[derive(Debug, Clone)]
pub struct GateLayer {
    auth: Arc<Auth>,
    max_calls_per_connection: usize,
    max_request_bytes: usize,
}

impl GateLayer {
    pub fn new(auth: Arc<Auth>, max_calls_per_connection: usize, max_request_bytes: usize) -> Self {
        Self {
            auth,
            max_calls_per_connection: max_calls_per_connection.max(1),
            max_request_bytes,
        }
    }
}

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Gate<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let call = match self.admit(&mut req) {
            Ok(call) => call,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        // The clone is the one that was polled ready (tower's rule for cloning
        // services inside `call`).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max_request_bytes = self.layer.max_request_bytes;
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            // A one-shot call whose request was too big is answered by tonic's decoder
            // before any handler, as OUT_OF_RANGE in a trailers-only response (no Raven
            // handler answers OUT_OF_RANGE). gRPC's own code for a message over the
            // limit is RESOURCE_EXHAUSTED, which Subscribe answers too: say that, and
            // name the setting.
            if response
                .headers()
                .get("grpc-status")
                .is_some_and(|s| s.as_bytes() == b"11")
            {
                metrics::counter!("raven_limit_hits_total", "limit" => "request_bytes")
                    .increment(1);
                let status = Status::resource_exhausted(too_large(max_request_bytes));
                let headers = response.headers_mut();
                headers.remove("grpc-status");
                headers.remove("grpc-message");
                if let Err(e) = status.add_header(headers) {
                    tracing::warn!(error = %e, "cannot rewrite a too-large request's status");
                }
            }
            Ok(match call {
                Some(call) => response.map(|body| Body::new(HoldCall { body, _call: call })),
                None => response,
            })
        })
    }
}

impl<S> Gate<S> {
    /// Steps 1–3 of the module doc; `Ok(None)` for a call not over a [`crate::conn`]
    /// connection (in-process), which holds no call open.
    fn admit(&self, req: &mut http::Request<Body>) -> Result<Option<Call>, Status> {
        let conn = req.extensions().get::<ConnInfo>().cloned();
        if let Some(reason) = conn.as_ref().and_then(ConnInfo::refused) {
            return Err(Status::resource_exhausted(reason));
        }
        let max = self.layer.max_calls_per_connection;
        let call = match &conn {
            Some(conn) => Some(conn.begin_call(max).map_err(|open| {
                metrics::counter!("raven_limit_hits_total", "limit" => "streams_per_connection")
                    .increment(1);
                Status::resource_exhausted(format!(
                    "this connection already has {open} calls open (server.max_streams_per_connection = {max}); \
                     end one or open another connection"
                ))
            })?),
            None => None,
        };
        let path = req.uri().path();
        if path.starts_with(HEALTH) {
            return Ok(call);
        }
        let method = path
            .strip_prefix(MARKET_DATA)
            .and_then(|m| METHODS.iter().find(|known| **known == m).copied())
            .unwrap_or("other");
        let authorization = req.headers().get(http::header::AUTHORIZATION);
        let names = conn.as_ref().map_or(&[][..], ConnInfo::cert_names);
        let principal = self
            .layer
            .auth
            .authenticate(authorization.map(|v| v.as_bytes()), names)
            .map_err(|e| {
                metrics::counter!("raven_auth_failures_total", "reason" => e.label()).increment(1);
                if conn.as_ref().is_some_and(ConnInfo::auth_failed) {
                    metrics::counter!("raven_limit_hits_total", "limit" => "auth_failures")
                        .increment(1);
                    return Status::unauthenticated(format!(
                        "{e}; this connection is closed after {MAX_AUTH_FAILURES} failed attempts"
                    ));
                }
                Status::unauthenticated(e.to_string())
            })?;
        metrics::counter!(
            "raven_principal_calls_total",
            "principal" => principal.name.clone(),
            "method" => method
        )
        .increment(1);
        req.extensions_mut().insert::<Arc<Principal>>(principal);
        Ok(call)
    }
}

/// What a client whose request was over `max` bytes is told.
pub(crate) fn too_large(max: usize) -> String {
    format!("a request is larger than server.max_request_bytes ({max} bytes)")
}

/// A response body that keeps its call open until it is done or dropped.
struct HoldCall {
    body: Body,
    _call: Call,
}

impl HttpBody for HoldCall {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
