//! Measures the synthetic market's deliverable rate: starts a simulator in process,
//! connects WebSocket clients subscribed to every stream, and counts the frames they
//! receive per second.
//!
//! `cargo run --release -p raven-sim --example sim_rate -- [RATE] [SYMBOLS] [CLIENTS] [SECONDS]`

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use raven_sim::{Sim, SimArgs, SimVenue};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: u64| -> anyhow::Result<u64> {
        Ok(match std::env::args().nth(i) {
            Some(a) => a.parse()?,
            None => default,
        })
    };
    let (rate, symbols, clients, seconds) = (arg(1, 200_000)?, arg(2, 10)?, arg(3, 1)?, arg(4, 5)?);
    let sim = Sim::start(SimArgs {
        rate,
        symbols: symbols as usize,
        venue: SimVenue::Usdm,
        ..SimArgs::default()
    })
    .await?;
    let streams: Vec<String> = sim
        .symbols()
        .iter()
        .flat_map(|s| {
            let l = s.to_ascii_lowercase();
            [
                "@depth@100ms",
                "@aggTrade",
                "@trade",
                "@bookTicker",
                "@markPrice@1s",
            ]
            .map(|k| format!("{l}{k}"))
        })
        .collect();
    let url = format!("{}/stream?streams={}", sim.ws_url(), streams.join("/"));
    let received = Arc::new(AtomicU64::new(0));
    for _ in 0..clients {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(_)) = ws.next().await {
                received.fetch_add(1, Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (start, r0, s0) = (Instant::now(), received.load(Relaxed), sim.frames_sent());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let secs = start.elapsed().as_secs_f64();
    let got = (received.load(Relaxed) - r0) as f64 / secs;
    let sent = (sim.frames_sent() - s0) as f64 / secs;
    let stats = sim.stats();
    println!(
        "target {rate}/s: generated {sent:.0}/s, received {got:.0}/s per {clients} client(s) total, lagged connections {}",
        stats.connections_lagged
    );
    sim.shutdown().await;
    Ok(())
}
