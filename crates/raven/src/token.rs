//! `raven token`: a new bearer token and the hash the server keeps of it.
//!
//! The server stores only SHA-256 hashes (`auth.principals[].token_sha256` or the
//! tokens file), so the token itself is shown once, here, to hand to the client.
//! `--hash` hashes a token read from standard input instead (to register one made
//! elsewhere), so it never appears in the shell history or the process list.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use rand::RngCore as _;

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// Hash the token on standard input instead of making a new one.
    #[arg(long)]
    pub hash: bool,
    /// With a new token: the principal it is for, to print a tokens-file line.
    #[arg(long, value_name = "NAME")]
    pub principal: Option<String>,
}

pub fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let token = if args.hash {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the token from standard input")?;
        let token = text.trim().to_owned();
        anyhow::ensure!(!token.is_empty(), "no token on standard input");
        token
    } else {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "token:        {token}").map_err(crate::stdout_error)?;
        token
    };
    let hash = raven_api::auth::hex(&raven_api::auth::sha256(token.as_bytes()));
    writeln!(out, "token_sha256: {hash}").map_err(crate::stdout_error)?;
    if let Some(name) = args.principal {
        writeln!(out, "tokens file:  {name} {hash}").map_err(crate::stdout_error)?;
    }
    Ok(ExitCode::SUCCESS)
}
