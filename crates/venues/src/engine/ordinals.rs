//! Ordinals of trades that share an exchange time, for venues whose trades have no
//! number ([`raven_model::Trade::ordinal`]).

use std::collections::HashMap;

use raven_model::{InstrumentId, UnixNanos};

/// Per instrument: the last exchange time seen and how many trades had it.
#[derive(Debug, Default)]
pub struct Ordinals {
    last: HashMap<InstrumentId, (UnixNanos, u32)>,
}

impl Ordinals {
    /// The ordinal of the next trade of `instrument` at `time`: 0 for the first trade at
    /// a new time, then 1, 2, … while the time repeats.
    pub fn next(&mut self, instrument: &InstrumentId, time: UnixNanos) -> u32 {
        match self.last.get_mut(instrument) {
            Some((t, n)) if *t == time => {
                *n = n.saturating_add(1);
                *n
            }
            Some(entry) => {
                *entry = (time, 0);
                0
            }
            None => {
                self.last.insert(instrument.clone(), (time, 0));
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raven_model::Venue;

    #[test]
    fn counts_within_one_time() {
        let v = Venue::new("test_ordinals").unwrap();
        let (a, b) = (InstrumentId::new(v, "A"), InstrumentId::new(v, "B"));
        let mut o = Ordinals::default();
        assert_eq!(o.next(&a, UnixNanos(5)), 0);
        assert_eq!(o.next(&a, UnixNanos(5)), 1);
        assert_eq!(o.next(&b, UnixNanos(5)), 0);
        assert_eq!(o.next(&a, UnixNanos(5)), 2);
        assert_eq!(o.next(&a, UnixNanos(6)), 0);
    }
}
