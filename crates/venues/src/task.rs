//! Helpers for supervising long-lived tasks, shared by the venue supervisor (module
//! [`crate::binance`]) and the server's own (stores, ticker, views).

/// The text of a panic payload, for the log and the feed-gap reason.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast::<&'static str>()
            .map_or_else(|_| "panic".to_owned(), |s| (*s).to_owned()),
    }
}
