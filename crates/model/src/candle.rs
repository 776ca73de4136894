//! Candles (filled in by the model work).
