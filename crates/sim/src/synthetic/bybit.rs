//! The synthetic market in Bybit v5 linear's frames (USDT perpetuals).
//!
//! A second venue family next to Binance, so the demo and load tests cover a venue
//! whose books come in-stream, numbered per book. The shapes are Bybit's, from its v5
//! docs ("Connect", "Orderbook", "Trade", "Ticker", "All Liquidation", "Get Instruments
//! Info") as Raven's connector reads them, and as the recording `BYBIT.jsonl.zst`
//! (2026-08-09) shows them on `/v5/public/linear`:
//!
//! * The client protocol (subscribe, acks, `{"op":"ping"}`) is the replay's
//!   [`Bybit`](crate::replay::bybit::Bybit): topics are `<channel>.<symbol>`.
//! * `orderbook.200.SYM`: a `snapshot` of the whole book after each subscription, then a
//!   `delta` per change: `{"topic":..,"type":"delta","ts":..,"data":{"s":..,"b":[[p,q]..],
//!   "a":[..],"u":..,"seq":..},"cts":..}`, size `"0"` removing a level. `u` grows by
//!   exactly one per delta of the book, and the snapshot carries the last one, so a
//!   client checks `u = previous u + 1`. The walk keeps a side at most a quarter above
//!   `--levels`, and `--levels` is at most [`MAX_LEVELS`], so the whole book fits the
//!   topic's 200 levels and no level ever leaves the window unannounced. `seq` is the
//!   symbol's cross sequence.
//! * `publicTrade.SYM`: one trade per frame, `S` the taker's side, `L` the tick
//!   direction, `i` a UUID (linear trade ids are UUIDs) made from the trade's number.
//! * `tickers.SYM`: a snapshot after each subscription with every field Raven reads,
//!   then deltas of changed fields only, as Bybit sends them: `bid1Price`, `bid1Size`,
//!   `ask1Price`, `ask1Size` when the touch changes, and `markPrice`, `indexPrice` (the
//!   mid), `fundingRate` and `nextFundingTime` once a second; `cs` is the cross
//!   sequence.
//! * `allLiquidation.SYM`: `{"T","s","S","v","p"}` where `S` is the side of the
//!   *position* (the walk's liquidations are sells closing longs: `Buy`).
//! * REST `GET /v5/market/instruments-info?category=linear` lists the symbols as
//!   `LinearPerpetual` contracts with `tickSize` 0.01 and `qtyStep` 0.001 (pages of
//!   `limit`, default 500, at most 1000, continued with `cursor`); the other categories
//!   Bybit has are empty here, an unknown one is refused with `retCode` 10001.
//!   `GET /v5/market/time` answers the server time.

use crate::format::{self, push_u64};
use crate::replay::bybit::Bybit as ClientProtocol;
use crate::replay::{Protocol, Sub};

use super::walk::{Book, Changes, Ids, Liquidation, TickDirection, Trade};
use super::{Format, Kind, Out, Scales};

/// The Bybit client protocol the synthetic streams speak.
static PROTOCOL: ClientProtocol = ClientProtocol;

/// The most `--levels` a Bybit market takes: a side grows to `levels * 5 / 4`, and
/// the `orderbook.200` topic holds 200 levels a side.
pub(super) const MAX_LEVELS: usize = 160;

/// The book topic (Raven's default depth; see [`MAX_LEVELS`]).
const BOOK_CHANNEL: &str = "orderbook.200";

/// Every symbol's funding rate (Bybit's usual 0.01 % per 8 hours).
const FUNDING_RATE: &str = "0.0001";

/// Bybit's frames for the linear category.
pub(super) struct Bybit {
    scales: Scales,
    symbols: Vec<String>,
}

impl Bybit {
    pub fn new(symbols: &[String]) -> Bybit {
        Bybit {
            // Like BTCUSDT: prices "65114.20", sizes "6.054".
            scales: Scales {
                tick: 2,
                price: 2,
                lot: 3,
                qty: 3,
            },
            symbols: symbols.to_vec(),
        }
    }

    /// `{"topic":"<channel>.<symbol>","type":"<kind>"`.
    fn begin(&self, channel: &str, i: usize, kind: &str) -> String {
        let mut s = String::with_capacity(320);
        s.push_str("{\"topic\":\"");
        s.push_str(channel);
        s.push('.');
        s.push_str(&self.symbols[i]);
        s.push_str("\",\"type\":\"");
        s.push_str(kind);
        s.push('"');
        s
    }

    /// A book frame (snapshot or delta) of symbol `i` with the ids of `book`.
    fn book_frame(
        &self,
        i: usize,
        kind: &str,
        book: &Book,
        bids: impl Iterator<Item = (u64, u64)>,
        asks: impl Iterator<Item = (u64, u64)>,
        now: u64,
    ) -> String {
        let mut s = self.begin(BOOK_CHANNEL, i, kind);
        s.push_str(",\"ts\":");
        push_u64(&mut s, now);
        s.push_str(",\"data\":{\"s\":\"");
        s.push_str(&self.symbols[i]);
        s.push_str("\",\"b\":");
        self.scales.push_levels(&mut s, bids);
        s.push_str(",\"a\":");
        self.scales.push_levels(&mut s, asks);
        s.push_str(",\"u\":");
        push_u64(&mut s, book.last_u);
        s.push_str(",\"seq\":");
        push_u64(&mut s, book.seq);
        s.push_str("},\"cts\":");
        push_u64(&mut s, now);
        s.push('}');
        s
    }

    /// `,"name":"value"` with a price.
    fn push_price_field(&self, s: &mut String, name: &str, ticks: u64) {
        s.push_str(",\"");
        s.push_str(name);
        s.push_str("\":");
        self.scales.push_price(s, ticks);
    }

    /// `,"name":"value"` with a size.
    fn push_qty_field(&self, s: &mut String, name: &str, lots: u64) {
        s.push_str(",\"");
        s.push_str(name);
        s.push_str("\":");
        self.scales.push_qty(s, lots);
    }

    fn push_touch(&self, s: &mut String, bid: (u64, u64), ask: (u64, u64)) {
        self.push_price_field(s, "bid1Price", bid.0);
        self.push_qty_field(s, "bid1Size", bid.1);
        self.push_price_field(s, "ask1Price", ask.0);
        self.push_qty_field(s, "ask1Size", ask.1);
    }

    /// Mark and index price (the mid, at the price scale) and funding.
    fn push_mark(&self, s: &mut String, book: &Book, now: u64) {
        if let Some(mid) = book.mid(self.scales.tick, self.scales.price) {
            for name in ["markPrice", "indexPrice"] {
                s.push_str(",\"");
                s.push_str(name);
                s.push_str("\":\"");
                format::push_decimal(s, mid, self.scales.price);
                s.push('"');
            }
        }
        s.push_str(",\"fundingRate\":\"");
        s.push_str(FUNDING_RATE);
        s.push_str("\",\"nextFundingTime\":\"");
        push_u64(s, super::next_funding_ms(now));
        s.push('"');
    }

    /// `{"topic":"tickers.SYM","type":KIND,"data":{"symbol":"SYM"`.
    fn ticker_begin(&self, i: usize, kind: &str) -> String {
        let mut s = self.begin("tickers", i, kind);
        s.push_str(",\"data\":{\"symbol\":\"");
        s.push_str(&self.symbols[i]);
        s.push('"');
        s
    }

    /// Closes a ticker's data with the cross sequence and the time.
    fn ticker_end(mut s: String, book: &Book, now: u64) -> String {
        s.push_str("},\"cs\":");
        push_u64(&mut s, book.seq);
        s.push_str(",\"ts\":");
        push_u64(&mut s, now);
        s.push('}');
        s
    }

    fn instruments(&self, query: &str) -> String {
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        let now = format::now_ms();
        let category = param("category").unwrap_or("");
        if !["linear", "spot", "inverse", "option"].contains(&category) {
            return refusal("Illegal category", now);
        }
        let limit = match param("limit").map(str::parse::<usize>) {
            None => 500,
            Some(Ok(l)) if (1..=1000).contains(&l) => l,
            Some(_) => return refusal("params error: limit must be 1 to 1000", now),
        };
        let from = match param("cursor").filter(|c| !c.is_empty()).map(str::parse) {
            None => 0,
            Some(Ok(offset)) => offset,
            Some(Err(_)) => return refusal("params error: cursor", now),
        };
        let listed: Vec<&String> = if category == "linear" {
            self.symbols
                .iter()
                .filter(|s| param("symbol").is_none_or(|want| want.eq_ignore_ascii_case(s)))
                .collect()
        } else {
            Vec::new()
        };
        let page = listed.iter().skip(from).take(limit);
        let next = if from + limit < listed.len() {
            (from + limit).to_string()
        } else {
            String::new()
        };
        let s = self.scales;
        let (tick, step) = (s.price(1), s.qty(1));
        let items: Vec<String> = page
            .map(|symbol| {
                let base = symbol.trim_end_matches("USDT");
                format!(
                    concat!(
                        "{{\"symbol\":\"{symbol}\",\"contractType\":\"LinearPerpetual\",",
                        "\"status\":\"Trading\",\"baseCoin\":\"{base}\",\"quoteCoin\":\"USDT\",",
                        "\"launchTime\":\"1700000000000\",\"deliveryTime\":\"0\",",
                        "\"deliveryFeeRate\":\"\",\"priceScale\":\"{scale}\",",
                        "\"leverageFilter\":{{\"minLeverage\":\"1\",\"maxLeverage\":\"100.00\",",
                        "\"leverageStep\":\"0.01\"}},\"priceFilter\":{{\"minPrice\":\"{tick}\",",
                        "\"maxPrice\":\"{max_price}\",\"tickSize\":\"{tick}\"}},",
                        "\"lotSizeFilter\":{{\"maxOrderQty\":\"{max_qty}\",\"minOrderQty\":\"{step}\",",
                        "\"qtyStep\":\"{step}\",\"postOnlyMaxOrderQty\":\"{max_qty}\",",
                        "\"maxMktOrderQty\":\"{max_qty}\",\"minNotionalValue\":\"5\"}},",
                        "\"unifiedMarginTrade\":true,\"fundingInterval\":480,",
                        "\"settleCoin\":\"USDT\",\"copyTrading\":\"none\",",
                        "\"upperFundingRate\":\"0.005\",\"lowerFundingRate\":\"-0.005\",",
                        "\"isPreListing\":false,\"preListingInfo\":null}}"
                    ),
                    symbol = symbol,
                    base = base,
                    scale = s.tick,
                    tick = tick,
                    max_price = s.price(100_000_000),
                    step = step,
                    max_qty = s.qty(100_000_000),
                )
            })
            .collect();
        format!(
            "{{\"retCode\":0,\"retMsg\":\"OK\",\"result\":{{\"category\":\"{category}\",\"list\":[{}],\"nextPageCursor\":\"{next}\"}},\"retExtInfo\":{{}},\"time\":{now}}}",
            items.join(",")
        )
    }
}

/// Bybit's answer to a request it refuses (HTTP 200 with a non-zero `retCode`).
fn refusal(msg: &str, now: u64) -> String {
    serde_json::json!({
        "retCode": 10001, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": now,
    })
    .to_string()
}

/// A UUID-shaped trade id that names symbol `i` and its trade number.
fn trade_uuid(i: usize, trade_id: u64) -> String {
    format!(
        "{:08x}-{:04x}-5000-8000-{:012x}",
        i,
        (trade_id >> 48) & 0xffff,
        trade_id & 0xffff_ffff_ffff
    )
}

impl Format for Bybit {
    fn protocol(&self) -> &'static dyn Protocol {
        &PROTOCOL
    }

    fn endpoint(&self) -> &'static str {
        "/v5/public/linear"
    }

    fn streams(&self, i: usize) -> Vec<(String, Kind)> {
        let s = &self.symbols[i];
        vec![
            (format!("{BOOK_CHANNEL}.{s}"), Kind::Depth),
            (format!("publicTrade.{s}"), Kind::Trade),
            (format!("tickers.{s}"), Kind::Touch),
            (format!("allLiquidation.{s}"), Kind::Liquidation),
        ]
    }

    fn key_name(&self, sub: &Sub) -> String {
        format!("{}.{}", sub.channel, sub.symbol)
    }

    /// `ids.u` is the book's `u` now: one more than the last delta's.
    fn depth(&self, out: &mut Out, book: &Book, changes: &Changes, ids: Ids, now: u64) {
        debug_assert_eq!(ids.u, book.last_u);
        let text = self.book_frame(
            out.symbol,
            "delta",
            book,
            changes.bids.iter().copied(),
            changes.asks.iter().copied(),
            now,
        );
        out.push(Kind::Depth, text);
    }

    fn trade(&self, out: &mut Out, book: &Book, trade: &Trade, now: u64) {
        let i = out.symbol;
        let mut s = self.begin("publicTrade", i, "snapshot");
        s.push_str(",\"ts\":");
        push_u64(&mut s, now);
        s.push_str(",\"data\":[{\"T\":");
        push_u64(&mut s, now);
        s.push_str(",\"s\":\"");
        s.push_str(&self.symbols[i]);
        s.push_str(if trade.buy {
            "\",\"S\":\"Buy\""
        } else {
            "\",\"S\":\"Sell\""
        });
        self.push_qty_field(&mut s, "v", trade.lots);
        self.push_price_field(&mut s, "p", trade.price);
        s.push_str(",\"L\":\"");
        s.push_str(match trade.tick {
            TickDirection::Plus => "PlusTick",
            TickDirection::ZeroPlus => "ZeroPlusTick",
            TickDirection::Minus => "MinusTick",
            TickDirection::ZeroMinus => "ZeroMinusTick",
        });
        s.push_str("\",\"i\":\"");
        s.push_str(&trade_uuid(i, book.trade_id));
        s.push_str("\",\"BT\":false,\"RPI\":false,\"seq\":");
        push_u64(&mut s, book.seq);
        s.push_str("}]}");
        out.push(Kind::Trade, s);
    }

    fn touch(&self, out: &mut Out, book: &Book, bid: (u64, u64), ask: (u64, u64), now: u64) {
        let mut s = self.ticker_begin(out.symbol, "delta");
        self.push_touch(&mut s, bid, ask);
        out.push(Kind::Touch, Self::ticker_end(s, book, now));
    }

    fn mark(&self, out: &mut Out, book: &Book, now: u64) {
        let mut s = self.ticker_begin(out.symbol, "delta");
        self.push_mark(&mut s, book, now);
        out.push(Kind::Touch, Self::ticker_end(s, book, now));
    }

    fn liquidation(&self, out: &mut Out, l: &Liquidation, now: u64) {
        let i = out.symbol;
        let mut s = self.begin("allLiquidation", i, "snapshot");
        s.push_str(",\"ts\":");
        push_u64(&mut s, now);
        s.push_str(",\"data\":[{\"T\":");
        push_u64(&mut s, now);
        s.push_str(",\"s\":\"");
        s.push_str(&self.symbols[i]);
        // The position's side: a sell order closes a long.
        s.push_str("\",\"S\":\"Buy\"");
        self.push_qty_field(&mut s, "v", l.lots);
        self.push_price_field(&mut s, "p", l.price);
        s.push_str("}]}");
        out.push(Kind::Liquidation, s);
    }

    /// The whole book, or a ticker with every field; trades and liquidations have none.
    fn snapshot(&self, i: usize, kind: Kind, book: &Book, now: u64) -> Option<String> {
        match kind {
            Kind::Depth => Some(self.book_frame(
                i,
                "snapshot",
                book,
                book.bids.iter().rev().map(|(p, q)| (*p, *q)),
                book.asks.iter().map(|(p, q)| (*p, *q)),
                now,
            )),
            Kind::Touch => {
                let (Some(bid), Some(ask)) = book.touch() else {
                    return None;
                };
                let mut s = self.ticker_begin(i, "snapshot");
                if let Some(last) = book.last_trade_price() {
                    self.push_price_field(&mut s, "lastPrice", last);
                }
                self.push_mark(&mut s, book, now);
                s.push_str(",\"fundingIntervalHour\":\"8\"");
                self.push_touch(&mut s, bid, ask);
                Some(Self::ticker_end(s, book, now))
            }
            _ => None,
        }
    }

    fn rest(&self, path: &str, query: &str) -> Option<String> {
        match path {
            "/v5/market/instruments-info" => Some(self.instruments(query)),
            "/v5/market/time" => {
                let nanos = raven_model::UnixNanos::now().as_nanos();
                Some(format!(
                    "{{\"retCode\":0,\"retMsg\":\"OK\",\"result\":{{\"timeSecond\":\"{}\",\"timeNano\":\"{nanos}\"}},\"retExtInfo\":{{}},\"time\":{}}}",
                    nanos / 1_000_000_000,
                    nanos / 1_000_000
                ))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_page_and_refuse_unknown_categories() {
        let symbols: Vec<String> = (0..3).map(|i| format!("SYN{i}USDT")).collect();
        let b = Bybit::new(&symbols);
        let v: serde_json::Value =
            serde_json::from_str(&b.instruments("category=linear&limit=2")).unwrap();
        assert_eq!(v["retCode"], 0);
        let list = v["result"]["list"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["symbol"], "SYN0USDT");
        assert_eq!(list[0]["baseCoin"], "SYN0");
        assert_eq!(list[0]["priceFilter"]["tickSize"], "0.01");
        assert_eq!(list[0]["lotSizeFilter"]["qtyStep"], "0.001");
        assert_eq!(v["result"]["nextPageCursor"], "2");
        let v: serde_json::Value =
            serde_json::from_str(&b.instruments("category=linear&cursor=2")).unwrap();
        assert_eq!(v["result"]["list"][0]["symbol"], "SYN2USDT");
        assert_eq!(v["result"]["nextPageCursor"], "");
        let v: serde_json::Value =
            serde_json::from_str(&b.instruments("category=linear&symbol=syn1usdt")).unwrap();
        assert_eq!(v["result"]["list"].as_array().unwrap().len(), 1);
        let v: serde_json::Value = serde_json::from_str(&b.instruments("category=spot")).unwrap();
        assert_eq!(v["result"]["list"], serde_json::json!([]));
        for bad in ["", "category=futures", "category=linear&limit=0"] {
            let v: serde_json::Value = serde_json::from_str(&b.instruments(bad)).unwrap();
            assert_eq!(v["retCode"], 10001, "{bad}");
        }
    }

    #[test]
    fn trade_ids_are_uuid_shaped_and_distinct() {
        let a = trade_uuid(1, 10_001);
        assert_eq!(a.len(), 36);
        assert_eq!(
            a.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert_ne!(a, trade_uuid(2, 10_001));
        assert_ne!(a, trade_uuid(1, 10_002));
    }
}
