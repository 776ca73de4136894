//! `raven`: the market data server and its companion commands.
//!
//! One binary so a container, a laptop and CI run the same thing:
//! `serve` runs the server, `sim` a local exchange, `sub`, `book` and `history` are
//! clients for humans and scripts, `status` prints the server's view of its feeds, `health`
//! answers a container health check without curl, and `token` makes a bearer token.

mod client;
mod config;
mod dial;
mod history;
mod serve;
mod supervise;
mod telemetry;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "raven",
    version,
    about = "Raven market data server: exact live order books and trades from crypto exchanges, streamed over gRPC."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: connect to the configured venues and serve gRPC, health and metrics.
    Serve(serve::ServeArgs),
    /// Run a local Binance-compatible exchange (synthetic market or capture replay).
    Sim(raven_sim::SimArgs),
    /// Subscribe to topics and print the live stream.
    Sub(client::SubArgs),
    /// Print one order book snapshot.
    Book(client::BookArgs),
    /// Print stored trades, BBO, funding, liquidations or candles (table, CSV, JSON lines).
    History(history::HistoryArgs),
    /// Print the server's status: feed connections, books, subscribers.
    Status(client::StatusArgs),
    /// Check the health endpoint: exit 0 when ready, 1 otherwise (for container health checks).
    Health(client::HealthArgs),
    /// Make a bearer token and print the SHA-256 the server's config keeps of it.
    Token(token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // TLS for https/wss to the exchanges and for `raven health` against an https URL.
    raven_venues::http::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raven: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Logs for every command; trace export only for the server (see `telemetry`). The
    // OTLP exporter's connection lives on the runtime, so it is set up inside it.
    let telemetry = {
        let _runtime = runtime.enter();
        telemetry::init(matches!(cli.command, Command::Serve(_)))
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Sim(args) => raven_sim::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Sub(args) => client::sub(args).await,
            Command::Book(args) => client::book(args).await,
            Command::History(args) => history::history(args).await,
            Command::Status(args) => client::status(args).await,
            Command::Health(args) => client::health(args).await,
            Command::Token(args) => token::token(args),
        }
    });
    // With the runtime still running, which carries the export, and off its threads.
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        // The reader of our output went away (`raven sub … | head`): it has what it
        // wanted, so stop quietly, as Unix tools do.
        Err(e) if e.is::<StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raven: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A client command's standard output went away (its reader closed the pipe).
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
pub struct StdoutClosed;

/// The error of a write to standard output: [`StdoutClosed`] for a closed pipe, which
/// `main` ends quietly; any other as it is.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("writing to standard output")
    }
}

/// The default config file path when `--config` and `RAVEN_CONFIG` are absent.
pub fn default_config_path() -> Option<PathBuf> {
    let p = PathBuf::from("raven.toml");
    p.exists().then_some(p)
}
