//! Who is calling: bearer tokens and client certificates, mapped to principals.
//!
//! A principal is a name with entitlements: the venues and channels it may subscribe
//! to, how many `Subscribe` streams and topics it may hold, and whether it may see
//! other clients in `GetStatus` (admin). The configuration lists principals; each is
//! reached by the SHA-256 of a bearer token (`authorization: Bearer <token>`), by a
//! name its client certificate carries (a DNS or URI subject-alternative name, checked
//! against the client CA by TLS first), or both.
//!
//! Tokens are never kept: only their hashes, from the configuration or a tokens file
//! that can be rotated without a restart ([`Auth::reload`]). A presented token is
//! hashed and looked up; the hash of a random 256-bit secret reveals nothing to time.
//! Nothing here logs a token or its hash.
//!
//! With no principal configured Raven is open, as before: every caller is the one
//! principal `open`, entitled to everything and admin.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use raven_hub::Grant;

use crate::access::FileStamps;

/// The name every caller has on a server that requires no credentials.
pub const OPEN_PRINCIPAL: &str = "open";

/// One principal as the configuration describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrincipalSpec {
    pub name: String,
    /// SHA-256 of each token that authenticates as it.
    pub token_sha256: Vec<[u8; 32]>,
    /// Client-certificate names (DNS or URI SAN) that authenticate as it.
    pub cert_names: Vec<String>,
    /// May see every client in `GetStatus`, with addresses.
    pub admin: bool,
    /// Venues it may use; `None`: all.
    pub venues: Option<Vec<raven_model::Venue>>,
    /// Channel families it may use (`trades`, `book`, …, `candles`); `None`: all.
    pub channels: Option<Vec<&'static str>>,
    /// `Subscribe` streams it may hold at once; `None`: the server's per-client limit.
    pub max_streams: Option<usize>,
    /// Topics its streams may hold together; `None`: no budget beyond each stream's.
    pub max_topics: Option<usize>,
}

/// An authenticated caller.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub admin: bool,
    pub max_streams: Option<usize>,
    /// What its streams may subscribe to; shared by all of them.
    pub grant: Arc<Grant>,
}

impl Principal {
    fn new(spec: &PrincipalSpec) -> Self {
        Self {
            name: spec.name.clone(),
            admin: spec.admin,
            max_streams: spec.max_streams,
            grant: Arc::new(Grant::new(
                spec.name.clone(),
                spec.venues.clone(),
                spec.channels.clone(),
                spec.max_topics,
            )),
        }
    }

    /// Why `venue`/`channel` is not for this principal (`PERMISSION_DENIED` for a
    /// one-shot call), or `None`.
    pub fn refusal(
        &self,
        venue: raven_model::Venue,
        channel: raven_hub::Channel,
    ) -> Option<String> {
        self.grant.refusal(venue, channel)
    }
}

/// Why a call was not authenticated; the client sees the message, metrics the label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("credentials required: send `authorization: Bearer <token>` or a client certificate")]
    Missing,
    #[error("the authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("the token is not valid")]
    UnknownToken,
    #[error("the client certificate names no principal")]
    UnknownCertificate,
    #[error("the token and the client certificate name different principals")]
    Conflict,
}

impl AuthError {
    /// The `reason` label of `raven_auth_failures_total`.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::UnknownToken => "unknown_token",
            AuthError::UnknownCertificate => "unknown_certificate",
            AuthError::Conflict => "conflict",
        }
    }
}

/// Every `reason` of `raven_auth_failures_total`, so the series exist from the start.
pub const AUTH_FAILURE_REASONS: [&str; 5] = [
    "missing",
    "malformed",
    "unknown_token",
    "unknown_certificate",
    "conflict",
];

/// Who may call, and how each is recognised.
#[derive(Debug)]
pub struct Auth {
    /// `Some` on an open server: the one principal everyone is.
    open: Option<Arc<Principal>>,
    principals: HashMap<String, Arc<Principal>>,
    /// Hashes from the configuration, which a reload keeps.
    configured_tokens: HashMap<[u8; 32], Arc<Principal>>,
    tokens_file: Option<PathBuf>,
    /// Configured and file hashes together; replaced whole on reload.
    tokens: RwLock<HashMap<[u8; 32], Arc<Principal>>>,
    /// The tokens file as it was when last read.
    stamps: FileStamps,
    cert_names: HashMap<String, Arc<Principal>>,
}

impl Auth {
    /// No credentials: everyone is [`OPEN_PRINCIPAL`].
    pub fn open() -> Self {
        let open = Arc::new(Principal::new(&PrincipalSpec {
            name: OPEN_PRINCIPAL.to_owned(),
            admin: true,
            ..PrincipalSpec::default()
        }));
        Self {
            open: Some(open),
            principals: HashMap::new(),
            configured_tokens: HashMap::new(),
            tokens_file: None,
            tokens: RwLock::new(HashMap::new()),
            stamps: FileStamps::new(Vec::new()),
            cert_names: HashMap::new(),
        }
    }

    /// The configured principals, and a tokens file of `<principal> <sha256-hex>` lines.
    /// Errors name the principal or the file line at fault.
    pub fn new(specs: &[PrincipalSpec], tokens_file: Option<PathBuf>) -> Result<Self, String> {
        if specs.is_empty() {
            return Err("at least one principal is needed to require credentials".into());
        }
        let mut principals = HashMap::new();
        let mut configured_tokens = HashMap::new();
        let mut cert_names = HashMap::new();
        for spec in specs {
            if spec.name == OPEN_PRINCIPAL {
                return Err(format!("principal name {OPEN_PRINCIPAL:?} is reserved"));
            }
            let p = Arc::new(Principal::new(spec));
            if principals.insert(spec.name.clone(), p.clone()).is_some() {
                return Err(format!("principal {:?} is listed twice", spec.name));
            }
            for hash in &spec.token_sha256 {
                if configured_tokens.insert(*hash, p.clone()).is_some() {
                    return Err(format!(
                        "principal {:?}: a token hash is already another principal's",
                        spec.name
                    ));
                }
            }
            for name in &spec.cert_names {
                if cert_names.insert(name.clone(), p.clone()).is_some() {
                    return Err(format!(
                        "principal {:?}: certificate name {name:?} is already another principal's",
                        spec.name
                    ));
                }
            }
        }
        let auth = Self {
            open: None,
            principals,
            configured_tokens,
            stamps: FileStamps::new(tokens_file.iter().cloned().collect()),
            tokens_file,
            tokens: RwLock::new(HashMap::new()),
            cert_names,
        };
        auth.reload()?;
        Ok(auth)
    }

    /// True when no credentials are required.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Every principal's name, for metrics that count by principal.
    pub fn principal_names(&self) -> Vec<String> {
        match &self.open {
            Some(p) => vec![p.name.clone()],
            None => {
                let mut names: Vec<String> = self.principals.keys().cloned().collect();
                names.sort();
                names
            }
        }
    }

    /// Reads the tokens file again (if there is one); on any error the tokens in use
    /// stay as they were. Returns how many tokens are valid now.
    pub fn reload(&self) -> Result<usize, String> {
        let mut tokens = self.configured_tokens.clone();
        if let Some(path) = &self.tokens_file {
            self.stamps.mark();
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let at = || format!("{} line {}", path.display(), n + 1);
                let mut words = line.split_whitespace();
                let (Some(name), Some(hex), None) = (words.next(), words.next(), words.next())
                else {
                    return Err(format!("{}: expected `<principal> <sha256-hex>`", at()));
                };
                let principal = self
                    .principals
                    .get(name)
                    .ok_or_else(|| format!("{}: no principal is named {name:?}", at()))?;
                let hash = parse_sha256(hex).map_err(|e| format!("{}: {e}", at()))?;
                if tokens.insert(hash, principal.clone()).is_some() {
                    return Err(format!("{}: this token hash is listed twice", at()));
                }
            }
        }
        let valid = tokens.len();
        *self.tokens.write() = tokens;
        Ok(valid)
    }

    /// Reloads if the tokens file changed since it was last read; `None` when it did
    /// not (or there is none).
    pub fn reload_if_changed(&self) -> Option<Result<usize, String>> {
        self.stamps.changed().then(|| self.reload())
    }

    /// The principal of a call with this `authorization` header value and these
    /// verified client-certificate names.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        cert_names: &[String],
    ) -> Result<Arc<Principal>, AuthError> {
        if let Some(open) = &self.open {
            return Ok(open.clone());
        }
        let by_token = match authorization {
            None => None,
            Some(value) => {
                let token = bearer(value).ok_or(AuthError::Malformed)?;
                let hash = sha256(token);
                let found = self.tokens.read().get(&hash).cloned();
                Some(found.ok_or(AuthError::UnknownToken)?)
            }
        };
        let by_cert = if cert_names.is_empty() {
            None
        } else {
            let found = cert_names.iter().find_map(|n| self.cert_names.get(n));
            match (found, &by_token) {
                (Some(p), _) => Some(p.clone()),
                // A certificate that names nobody is fine when a token says who it is.
                (None, Some(_)) => None,
                (None, None) => return Err(AuthError::UnknownCertificate),
            }
        };
        match (by_token, by_cert) {
            (Some(t), Some(c)) if !Arc::ptr_eq(&t, &c) => Err(AuthError::Conflict),
            (Some(p), _) | (None, Some(p)) => Ok(p),
            (None, None) => Err(AuthError::Missing),
        }
    }
}

/// The token of an `authorization: Bearer <token>` value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, token) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = token.trim_ascii_start();
    // The scheme must be followed by a space, and a token is one word.
    (value.get(6) == Some(&b' ') && !token.is_empty() && !token.contains(&b' ')).then_some(token)
}

/// SHA-256 of `token`, as kept in the configuration.
pub fn sha256(token: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lower-case hex of a hash.
pub fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SHA-256 written as 64 hex digits (an optional `sha256:` prefix is allowed).
pub fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let hex = text.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(
            "a token hash is 64 hex digits (the SHA-256 of the token; `raven token` makes both)"
                .into(),
        );
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| "a token hash is 64 hex digits".to_owned())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, token: &str, cert: &str) -> PrincipalSpec {
        PrincipalSpec {
            name: name.into(),
            token_sha256: if token.is_empty() {
                vec![]
            } else {
                vec![sha256(token.as_bytes())]
            },
            cert_names: if cert.is_empty() {
                vec![]
            } else {
                vec![cert.into()]
            },
            ..PrincipalSpec::default()
        }
    }

    #[test]
    fn tokens_and_certificates_name_their_principals() {
        let auth = Auth::new(
            &[
                spec("alice", "a-secret", "alice.example"),
                spec("bob", "b-secret", ""),
            ],
            None,
        )
        .unwrap();
        let who = |h: Option<&str>, certs: &[&str]| {
            let certs: Vec<String> = certs.iter().map(|s| s.to_string()).collect();
            auth.authenticate(h.map(str::as_bytes), &certs)
                .map(|p| p.name.clone())
        };
        assert_eq!(who(Some("Bearer a-secret"), &[]), Ok("alice".into()));
        assert_eq!(who(Some("bearer  b-secret "), &[]), Ok("bob".into()));
        assert_eq!(who(None, &["other", "alice.example"]), Ok("alice".into()));
        assert_eq!(
            who(Some("Bearer b-secret"), &["unknown.example"]),
            Ok("bob".into())
        );
        assert_eq!(who(None, &[]), Err(AuthError::Missing));
        assert_eq!(who(Some("Bearer nope"), &[]), Err(AuthError::UnknownToken));
        assert_eq!(who(Some("Basic YTpi"), &[]), Err(AuthError::Malformed));
        assert_eq!(who(Some("Bearer"), &[]), Err(AuthError::Malformed));
        assert_eq!(who(Some("Bearera-secret"), &[]), Err(AuthError::Malformed));
        assert_eq!(who(Some("Bearer a b"), &[]), Err(AuthError::Malformed));
        assert_eq!(
            who(None, &["unknown.example"]),
            Err(AuthError::UnknownCertificate)
        );
        assert_eq!(
            who(Some("Bearer b-secret"), &["alice.example"]),
            Err(AuthError::Conflict)
        );
        assert!(!auth.is_open());
        assert_eq!(auth.principal_names(), ["alice", "bob"]);
    }

    #[test]
    fn a_tokens_file_is_read_again_and_a_bad_one_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("raven-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        let line = |name: &str, token: &str| format!("{name} {}\n", hex(&sha256(token.as_bytes())));
        std::fs::write(&file, format!("# rotated weekly\n\n{}", line("bob", "t1"))).unwrap();
        let auth = Auth::new(
            &[spec("alice", "a", ""), spec("bob", "", "")],
            Some(file.clone()),
        )
        .unwrap();
        let name = |t: &str| {
            auth.authenticate(Some(format!("Bearer {t}").as_bytes()), &[])
                .map(|p| p.name.clone())
        };
        assert_eq!(name("t1"), Ok("bob".into()));
        assert_eq!(name("a"), Ok("alice".into()), "configured hashes stay");

        std::fs::write(&file, line("bob", "t2")).unwrap();
        assert_eq!(auth.reload(), Ok(2));
        assert_eq!(
            name("t1"),
            Err(AuthError::UnknownToken),
            "a rotated token is gone"
        );
        assert_eq!(name("t2"), Ok("bob".into()));

        std::fs::write(
            &file,
            format!("{}carol {}\n", line("bob", "t3"), "0".repeat(64)),
        )
        .unwrap();
        let e = auth.reload().unwrap_err();
        assert!(e.contains("line 2") && e.contains("carol"), "{e}");
        assert_eq!(name("t2"), Ok("bob".into()), "the tokens in use stay");
        std::fs::write(&file, "bob xyz\n").unwrap();
        assert!(auth.reload().unwrap_err().contains("64 hex digits"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_open_server_has_one_admin_principal() {
        let auth = Auth::open();
        let p = auth.authenticate(None, &[]).unwrap();
        assert_eq!(p.name, OPEN_PRINCIPAL);
        assert!(p.admin && auth.is_open());
        assert_eq!(
            parse_sha256(&format!("sha256:{}", "ab".repeat(32))),
            Ok([0xab; 32])
        );
    }
}
