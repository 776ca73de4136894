//! Health endpoints on HEALTH_PORT, for load balancers, orchestrators and `raven health`.
//!
//! * `/health/live`: the process answers (200), nothing more;
//! * `/health/ready` and `/health`: 200 when Raven serves good data, 503 otherwise,
//!   with a JSON body that names every component and, when unready, why.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::StatusSource;

pub fn router(status: StatusSource) -> Router {
    Router::new()
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
        .with_state(status)
}

async fn live(State(status): State<StatusSource>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::OK,
        Json(json!({ "status": "live", "uptime_ms": status.started.elapsed().as_millis() as u64 })),
    )
}

async fn ready(State(status): State<StatusSource>) -> (StatusCode, Json<Value>) {
    let (s, readiness) = status.status_and_readiness();
    let feeds: Vec<Value> = s
        .connections
        .iter()
        .map(|c| json!({ "venue": c.venue, "name": c.name, "state": c.state, "last_message_age_ms": c.last_message_age_ms, "reconnects": c.reconnects }))
        .collect();
    let books: Vec<Value> = s
        .books
        .iter()
        .map(|b| json!({ "venue": b.venue, "symbol": b.symbol, "state": b.state, "gaps": b.gaps, "resyncs": b.resyncs }))
        .collect();
    let synced = s.books.iter().filter(|b| b.state == "synced").count();
    let stores: Vec<Value> = s
        .stores
        .iter()
        .map(|st| json!({ "name": st.name, "state": st.state, "reason": st.reason, "dropped": st.dropped }))
        .collect();
    let body = json!({
        "status": if readiness.ready { "ready" } else { "unready" },
        "reasons": readiness.reasons,
        "components": {
            "grpc": { "status": "serving", "subscribers": s.subscribers.len() },
            "feeds": { "status": if feeds.iter().all(|f| f["state"] == "connected") { "up" } else { "degraded" }, "connections": feeds },
            "books": { "status": format!("{synced}/{} synced", s.books.len()), "books": books },
            "stores": stores,
        },
        "uptime_ms": s.uptime_ms,
    });
    let code = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
