//! The synthetic market in Binance's frames: spot, USD-M and COIN-M.
//!
//! * Combined streams on `/stream`: `{"stream":"<symbol>@depth@100ms","data":{..}}`,
//!   written with the field order Binance uses per market. Update ids follow Binance
//!   exactly: `U = previous u + 1`, and futures `pu = previous u`.
//! * `@aggTrade` and `@trade` for every trade, `@bookTicker` for every change of the
//!   touch (spot's has no event time on Binance; the simulator appends `E` so latency
//!   can be measured on every stream), and on futures `@markPrice@1s` and rare
//!   `@forceOrder`.
//! * REST: depth snapshots on the three APIs and `exchangeInfo`, `time`, `ping`.
//!
//! Spot snapshots name the `u` of the last diff, and the next diff starts at
//! `lastUpdateId + 1`, as Binance's spot procedure expects. Futures ids are one sequence
//! shared by all symbols on Binance, so a snapshot's id falls *inside* the next diff's
//! `U..=u` range, and the documented procedure requires exactly that (`U <= lastUpdateId
//! <= u` for the first diff); the simulator answers `last u + 1`: the next diff of the
//! symbol starts there, and no id in between changes the book.

use crate::format::{self, push_decimal, push_u64};
use crate::replay::{binance as protocol, Protocol, Sub};
use crate::server::Api;

use super::walk::{Book, Changes, Ids, Liquidation, Trade};
use super::{Format, Kind, Out, Scales, KINDS};

/// The Binance protocol the synthetic streams speak.
static PROTOCOL: protocol::Binance = protocol::Binance;

/// The stream name suffix of each [`Kind`].
const STREAM_SUFFIX: [&str; KINDS] = [
    "@depth@100ms",
    "@aggTrade",
    "@trade",
    "@bookTicker",
    "@markPrice@1s",
    "@forceOrder",
];

/// Binance's frames for one market.
pub(super) struct Binance {
    scales: Scales,
    futures: bool,
    symbols: Vec<String>,
    /// `{"stream":"<name>","data":` per symbol and kind.
    prefix: Vec<[String; KINDS]>,
}

impl Binance {
    pub fn new(api: Api, symbols: &[String]) -> Binance {
        let scales = match api {
            Api::Usdm => Scales {
                tick: 2,
                price: 2,
                lot: 3,
                qty: 3,
            },
            Api::Coinm => Scales {
                tick: 1,
                price: 1,
                lot: 0,
                qty: 0,
            },
            Api::Spot => Scales {
                tick: 2,
                price: 8,
                lot: 3,
                qty: 8,
            },
        };
        let prefix = symbols
            .iter()
            .map(|s| {
                let lower = s.to_ascii_lowercase();
                STREAM_SUFFIX.map(|k| format!("{{\"stream\":\"{lower}{k}\",\"data\":"))
            })
            .collect();
        Binance {
            scales,
            futures: api.is_futures(),
            symbols: symbols.to_vec(),
            prefix,
        }
    }

    fn begin(&self, i: usize, kind: Kind) -> String {
        let mut s = String::with_capacity(320);
        s.push_str(&self.prefix[i][kind as usize]);
        s
    }

    fn finish(out: &mut Out, kind: Kind, mut text: String) {
        text.push('}');
        out.push(kind, text);
    }

    fn push_symbol(&self, out: &mut String, i: usize) {
        out.push_str(",\"s\":\"");
        out.push_str(&self.symbols[i]);
        out.push('"');
    }

    fn exchange_info(&self, prefix: &str) -> serde_json::Value {
        use serde_json::json;
        let s = self.scales;
        let tick = s.price(1).to_string();
        let lot = s.qty(1).to_string();
        let symbols: Vec<serde_json::Value> = self
            .symbols
            .iter()
            .map(|symbol| {
                let filters = json!([
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": s.price(100_000_000).to_string(), "tickSize": tick},
                    {"filterType": "LOT_SIZE", "minQty": lot, "maxQty": s.qty(100_000_000).to_string(), "stepSize": lot},
                ]);
                match prefix {
                    "/api/v3" => {
                        let base = symbol.trim_end_matches("USDT");
                        json!({"symbol": symbol, "status": "TRADING", "baseAsset": base,
                            "baseAssetPrecision": 8, "quoteAsset": "USDT", "quotePrecision": 8,
                            "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
                            "isSpotTradingAllowed": true, "filters": filters, "permissions": ["SPOT"]})
                    }
                    "/fapi/v1" => {
                        let base = symbol.trim_end_matches("USDT");
                        json!({"symbol": symbol, "pair": symbol, "contractType": "PERPETUAL",
                            "deliveryDate": 4133404800000u64, "onboardDate": 1569398400000u64,
                            "status": "TRADING", "baseAsset": base, "quoteAsset": "USDT",
                            "marginAsset": "USDT", "pricePrecision": s.tick, "quantityPrecision": s.lot,
                            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                            "filters": filters, "orderTypes": ["LIMIT", "MARKET"],
                            "timeInForce": ["GTC", "IOC", "FOK", "GTX"]})
                    }
                    _ => {
                        let pair = symbol.trim_end_matches("_PERP");
                        let base = pair.trim_end_matches("USD");
                        json!({"symbol": symbol, "pair": pair, "contractType": "PERPETUAL",
                            "deliveryDate": 4133404800000u64, "onboardDate": 1597042800000u64,
                            "contractStatus": "TRADING", "contractSize": 10, "marginAsset": base,
                            "baseAsset": base, "quoteAsset": "USD", "pricePrecision": s.tick,
                            "quantityPrecision": s.lot, "baseAssetPrecision": 8, "quotePrecision": 8,
                            "filters": filters, "orderTypes": ["LIMIT", "MARKET"],
                            "timeInForce": ["GTC", "IOC", "FOK", "GTX"]})
                    }
                }
            })
            .collect();
        let mut info = json!({
            "timezone": "UTC",
            "serverTime": format::now_ms(),
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": symbols,
        });
        if prefix == "/fapi/v1" {
            info["futuresType"] = json!("U_MARGINED");
        }
        info
    }
}

impl Format for Binance {
    fn protocol(&self) -> &'static dyn Protocol {
        &PROTOCOL
    }

    fn endpoint(&self) -> &'static str {
        "/stream"
    }

    fn streams(&self, i: usize) -> Vec<(String, Kind)> {
        let lower = self.symbols[i].to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .filter(|k| self.futures || (*k as usize) < Kind::Mark as usize)
            .map(|k| (format!("{lower}{}", STREAM_SUFFIX[k as usize]), k))
            .collect()
    }

    fn key_name(&self, sub: &Sub) -> String {
        protocol::stream_name(sub)
    }

    fn depth(&self, out: &mut Out, _book: &Book, changes: &Changes, ids: Ids, now: u64) {
        let i = out.symbol;
        let mut s = self.begin(i, Kind::Depth);
        s.push_str("{\"e\":\"depthUpdate\",\"E\":");
        push_u64(&mut s, now);
        if self.futures {
            s.push_str(",\"T\":");
            push_u64(&mut s, now);
        }
        self.push_symbol(&mut s, i);
        s.push_str(",\"U\":");
        push_u64(&mut s, ids.first);
        s.push_str(",\"u\":");
        push_u64(&mut s, ids.u);
        if self.futures {
            s.push_str(",\"pu\":");
            push_u64(&mut s, ids.pu);
        }
        s.push_str(",\"b\":");
        self.scales
            .push_levels(&mut s, changes.bids.iter().copied());
        s.push_str(",\"a\":");
        self.scales
            .push_levels(&mut s, changes.asks.iter().copied());
        s.push('}');
        Self::finish(out, Kind::Depth, s);
    }

    fn trade(&self, out: &mut Out, book: &Book, trade: &Trade, now: u64) {
        let i = out.symbol;
        let sc = self.scales;
        // A market buy takes asks: the buyer is the taker.
        let maker = if trade.buy { "false" } else { "true" };
        let mut s = self.begin(i, Kind::AggTrade);
        s.push_str("{\"e\":\"aggTrade\",\"E\":");
        push_u64(&mut s, now);
        if self.futures {
            s.push_str(",\"a\":");
            push_u64(&mut s, book.agg_id);
            self.push_symbol(&mut s, i);
        } else {
            self.push_symbol(&mut s, i);
            s.push_str(",\"a\":");
            push_u64(&mut s, book.agg_id);
        }
        s.push_str(",\"p\":");
        sc.push_price(&mut s, trade.price);
        s.push_str(",\"q\":");
        sc.push_qty(&mut s, trade.lots);
        s.push_str(",\"f\":");
        push_u64(&mut s, book.trade_id);
        s.push_str(",\"l\":");
        push_u64(&mut s, book.trade_id);
        s.push_str(",\"T\":");
        push_u64(&mut s, now);
        s.push_str(",\"m\":");
        s.push_str(maker);
        s.push_str(if self.futures { "}" } else { ",\"M\":true}" });
        Self::finish(out, Kind::AggTrade, s);

        let mut s = self.begin(i, Kind::Trade);
        s.push_str("{\"e\":\"trade\",\"E\":");
        push_u64(&mut s, now);
        if self.futures {
            s.push_str(",\"T\":");
            push_u64(&mut s, now);
        }
        self.push_symbol(&mut s, i);
        s.push_str(",\"t\":");
        push_u64(&mut s, book.trade_id);
        s.push_str(",\"p\":");
        sc.push_price(&mut s, trade.price);
        s.push_str(",\"q\":");
        sc.push_qty(&mut s, trade.lots);
        if self.futures {
            s.push_str(",\"X\":\"MARKET\",\"m\":");
            s.push_str(maker);
            s.push('}');
        } else {
            s.push_str(",\"T\":");
            push_u64(&mut s, now);
            s.push_str(",\"m\":");
            s.push_str(maker);
            s.push_str(",\"M\":true}");
        }
        Self::finish(out, Kind::Trade, s);
    }

    fn touch(&self, out: &mut Out, book: &Book, bid: (u64, u64), ask: (u64, u64), now: u64) {
        let i = out.symbol;
        let sc = self.scales;
        let mut s = self.begin(i, Kind::Touch);
        s.push_str(if self.futures {
            "{\"e\":\"bookTicker\",\"u\":"
        } else {
            "{\"u\":"
        });
        push_u64(&mut s, book.last_u);
        self.push_symbol(&mut s, i);
        s.push_str(",\"b\":");
        sc.push_price(&mut s, bid.0);
        s.push_str(",\"B\":");
        sc.push_qty(&mut s, bid.1);
        s.push_str(",\"a\":");
        sc.push_price(&mut s, ask.0);
        s.push_str(",\"A\":");
        sc.push_qty(&mut s, ask.1);
        if self.futures {
            s.push_str(",\"T\":");
            push_u64(&mut s, now);
        }
        s.push_str(",\"E\":");
        push_u64(&mut s, now);
        s.push('}');
        Self::finish(out, Kind::Touch, s);
    }

    /// Mark, index and estimated settle price all at the mid, exact at 8 decimals.
    fn mark(&self, out: &mut Out, book: &Book, now: u64) {
        let i = out.symbol;
        let Some(mid) = book.mid(self.scales.tick, 8) else {
            return;
        };
        let mut s = self.begin(i, Kind::Mark);
        s.push_str("{\"e\":\"markPriceUpdate\",\"E\":");
        push_u64(&mut s, now);
        self.push_symbol(&mut s, i);
        for key in ["p", "i", "P"] {
            s.push_str(",\"");
            s.push_str(key);
            s.push_str("\":\"");
            push_decimal(&mut s, mid, 8);
            s.push('"');
        }
        s.push_str(",\"r\":\"0.00010000\",\"T\":");
        push_u64(&mut s, super::next_funding_ms(now));
        s.push('}');
        Self::finish(out, Kind::Mark, s);
    }

    fn liquidation(&self, out: &mut Out, l: &Liquidation, now: u64) {
        let i = out.symbol;
        let sc = self.scales;
        let mut s = self.begin(i, Kind::Liquidation);
        s.push_str("{\"e\":\"forceOrder\",\"E\":");
        push_u64(&mut s, now);
        s.push_str(",\"o\":{\"s\":\"");
        let symbol = &self.symbols[i];
        s.push_str(symbol);
        s.push('"');
        if let Some(pair) = symbol.strip_suffix("_PERP") {
            s.push_str(",\"ps\":\"");
            s.push_str(pair);
            s.push('"');
        }
        s.push_str(",\"S\":\"SELL\",\"o\":\"LIMIT\",\"f\":\"IOC\",\"q\":");
        sc.push_qty(&mut s, l.lots);
        s.push_str(",\"p\":");
        sc.push_price(&mut s, l.price);
        s.push_str(",\"ap\":");
        sc.push_price(&mut s, l.price);
        s.push_str(",\"X\":\"FILLED\",\"l\":");
        sc.push_qty(&mut s, l.lots);
        s.push_str(",\"z\":");
        sc.push_qty(&mut s, l.lots);
        s.push_str(",\"T\":");
        push_u64(&mut s, now);
        s.push_str("}}");
        Self::finish(out, Kind::Liquidation, s);
    }

    /// Binance clients take books from REST: nothing is sent on subscribing.
    fn snapshot(&self, _i: usize, _kind: Kind, _book: &Book, _now: u64) -> Option<String> {
        None
    }

    /// `exchangeInfo`, `time`, `ping` of the three APIs.
    fn rest(&self, path: &str, _query: &str) -> Option<String> {
        let (prefix, endpoint) = path.rsplit_once('/')?;
        if !["/api/v3", "/fapi/v1", "/dapi/v1"].contains(&prefix) {
            return None;
        }
        match endpoint {
            "exchangeInfo" => Some(self.exchange_info(prefix).to_string()),
            "time" => Some(format!("{{\"serverTime\":{}}}", format::now_ms())),
            "ping" => Some("{}".to_owned()),
            _ => None,
        }
    }

    /// See the module docs for `lastUpdateId`.
    fn depth_snapshot(&self, api: Api, book: &Book, limit: usize) -> Option<String> {
        let s = self.scales;
        Some(format::depth_body(
            book.last_u + u64::from(self.futures),
            api.is_futures().then(format::now_ms),
            book.bids
                .iter()
                .rev()
                .take(limit)
                .map(|(p, q)| (s.price(*p), s.qty(*q))),
            book.asks
                .iter()
                .take(limit)
                .map(|(p, q)| (s.price(*p), s.qty(*q))),
        ))
    }
}
