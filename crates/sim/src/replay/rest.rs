//! Recorded REST answers, looked up by path and query parameters.
//!
//! A connector asks for the same listings the recording asked for, but not necessarily
//! with the parameters in the same order or spelled the same way: cryptofeed wrote
//! Bybit's `instruments-info?&category=linear&status=Trading&limit=1000` with an empty
//! first parameter. So a request matches a recorded URL when the path is equal and the
//! parameters are the same set (order-insensitive, empty pieces ignored, percent-escapes
//! decoded on both sides). A recording that fetched the same URL several times (OKX
//! asks for its listings once per reconnect) is answered with the first body.

use std::collections::HashMap;

/// Recorded bodies by (path, sorted decoded parameters).
#[derive(Debug, Default)]
pub(crate) struct RecordedRest {
    bodies: HashMap<(String, Vec<(String, String)>), String>,
}

impl RecordedRest {
    /// Records the body of a recorded `url` (scheme and host are ignored); the first
    /// body of a URL wins.
    pub fn insert(&mut self, url: &str, body: &str) {
        let (path, query) = split_url(url);
        self.bodies
            .entry((path.to_owned(), params(query)))
            .or_insert_with(|| body.to_owned());
    }

    /// The recorded body for a request's path and raw query string.
    pub fn get(&self, path: &str, query: &str) -> Option<&str> {
        self.bodies
            .get(&(path.to_owned(), params(query)))
            .map(String::as_str)
    }
}

/// A recorded URL's path (`/` when it has none) and raw query string.
pub(crate) fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    // The path starts at the first `/`, or is empty when a query follows the host
    // directly (`wss://h?x=1`).
    let start = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let path_query = &after_scheme[start..];
    match path_query.split_once('?') {
        Some(("", q)) => ("/", q),
        Some((p, q)) => (p, q),
        None if path_query.is_empty() => ("/", ""),
        None => (path_query, ""),
    }
}

/// Decoded `key=value` pairs, sorted; empty pieces (`?&a=1`) are dropped.
fn params(query: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    out.sort();
    out
}

/// Percent-decoding of a query component (`+` is a space); malformed escapes stay as
/// they are.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_path_and_query() {
        assert_eq!(
            split_url("https://api.binance.com/api/v3/depth?symbol=X&limit=1000"),
            ("/api/v3/depth", "symbol=X&limit=1000")
        );
        assert_eq!(split_url("wss://ws.kraken.com"), ("/", ""));
        assert_eq!(split_url("wss://advanced-trade-ws.coinbase.com"), ("/", ""));
        assert_eq!(
            split_url("wss://ws.okx.com:8443/ws/v5/public"),
            ("/ws/v5/public", "")
        );
        assert_eq!(split_url("wss://h?streams=a"), ("/", "streams=a"));
    }

    #[test]
    fn parameters_match_in_any_order() {
        let mut r = RecordedRest::default();
        r.insert(
            "https://api.bybit.com/v5/market/instruments-info?&category=linear&status=Trading&limit=1000",
            "linear",
        );
        r.insert(
            "https://www.okx.com/api/v5/public/instruments?instType=SWAP",
            "swap",
        );
        r.insert(
            "https://www.okx.com/api/v5/public/instruments?instType=SWAP",
            "later",
        );
        r.insert("https://api.kraken.com/0/public/AssetPairs", "pairs");
        let bybit = "/v5/market/instruments-info";
        assert_eq!(
            r.get(bybit, "limit=1000&category=linear&status=Trading"),
            Some("linear")
        );
        assert_eq!(
            r.get(bybit, "category=linear&status=Trading&limit=1000&"),
            Some("linear")
        );
        assert_eq!(r.get(bybit, "category=linear"), None);
        assert_eq!(
            r.get("/api/v5/public/instruments", "instType=SWAP"),
            Some("swap")
        );
        assert_eq!(
            r.get("/api/v5/public/instruments", "instType=%53WAP"),
            Some("swap")
        );
        assert_eq!(r.get("/0/public/AssetPairs", ""), Some("pairs"));
        assert_eq!(decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
