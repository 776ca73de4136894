//! What one client stream may subscribe to: its principal's entitlements.
//!
//! The API layer authenticates a caller and hands its [`Session`](crate::Session) a
//! [`Grant`]; the session checks every topic against it before resolving, so a topic
//! beyond the grant is answered `REJECTED` with a reason naming the entitlement, the
//! same way as any other refused topic, and never touches an instrument. The hub knows
//! nothing of tokens or certificates: a grant is a name, the venues and channels it
//! covers, and a budget of topics shared by all the principal's streams.

use std::sync::atomic::{AtomicUsize, Ordering};

use raven_model::Venue;

use crate::Channel;

/// One principal's entitlements, shared by all its streams.
#[derive(Debug)]
pub struct Grant {
    /// The principal's name, as reasons and metrics show it.
    pub principal: String,
    /// Venues it may subscribe to; `None`: all.
    pub venues: Option<Vec<Venue>>,
    /// Channel families it may subscribe to ([`Channel::family`]); `None`: all.
    pub channels: Option<Vec<&'static str>>,
    /// Topics all its streams may hold together.
    topics: TopicBudget,
}

#[derive(Debug)]
struct TopicBudget {
    /// `usize::MAX`: no budget beyond each stream's own limit.
    max: usize,
    held: AtomicUsize,
}

impl Grant {
    pub fn new(
        principal: impl Into<String>,
        venues: Option<Vec<Venue>>,
        channels: Option<Vec<&'static str>>,
        max_topics: Option<usize>,
    ) -> Self {
        Self {
            principal: principal.into(),
            venues,
            channels,
            topics: TopicBudget {
                max: max_topics.unwrap_or(usize::MAX),
                held: AtomicUsize::new(0),
            },
        }
    }

    /// Everything, no budget: a server that requires no credentials.
    pub fn open(principal: impl Into<String>) -> Self {
        Self::new(principal, None, None, None)
    }

    /// Whether the grant covers `venue` (whatever the channel).
    pub fn covers_venue(&self, venue: Venue) -> bool {
        self.venues.as_ref().is_none_or(|v| v.contains(&venue))
    }

    /// Why `venue`/`channel` is beyond the grant, or `None` when it is covered.
    pub fn refusal(&self, venue: Venue, channel: Channel) -> Option<String> {
        if !self.covers_venue(venue) {
            return Some(format!(
                "principal {:?} is not entitled to venue {venue} (entitlement: venues)",
                self.principal
            ));
        }
        if self
            .channels
            .as_ref()
            .is_some_and(|c| !c.contains(&channel.family()))
        {
            return Some(format!(
                "principal {:?} is not entitled to channel {} (entitlement: channels)",
                self.principal,
                channel.family()
            ));
        }
        None
    }

    /// Takes one topic of the budget, or says why not.
    pub(crate) fn take_topic(&self) -> Result<(), String> {
        let max = self.topics.max;
        let taken = self
            .topics
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < max).then_some(held + 1)
            });
        taken.map(|_| ()).map_err(|held| {
            format!(
                "topic limit reached: principal {:?} holds {held} topics on all its streams \
                 (entitlement: max_topics = {max})",
                self.principal
            )
        })
    }

    /// Gives back one topic taken with [`Grant::take_topic`].
    pub(crate) fn return_topic(&self) {
        self.topics.held.fetch_sub(1, Ordering::AcqRel);
    }

    /// Topics its streams hold now.
    pub fn topics_held(&self) -> usize {
        self.topics.held.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_names_what_it_does_not_cover() {
        let (a, b) = (
            Venue::new("grant_test_a").unwrap(),
            Venue::new("grant_test_b").unwrap(),
        );
        let g = Grant::new(
            "desk",
            Some(vec![a]),
            Some(vec!["trades", "candles"]),
            Some(2),
        );
        assert_eq!(g.refusal(a, Channel::Trades), None);
        let m5 = Channel::Candles(raven_model::candle::CandleInterval::M5);
        assert_eq!(g.refusal(a, m5), None, "a family covers every interval");
        let venue = g.refusal(b, Channel::Trades).unwrap();
        assert!(
            venue.contains("venue grant_test_b") && venue.contains("\"desk\""),
            "{venue}"
        );
        let channel = g.refusal(a, Channel::Book).unwrap();
        assert!(channel.contains("channel book"), "{channel}");
        g.take_topic().unwrap();
        g.take_topic().unwrap();
        let full = g.take_topic().unwrap_err();
        assert!(full.contains("max_topics = 2"), "{full}");
        g.return_topic();
        g.take_topic().unwrap();
        assert_eq!(g.topics_held(), 2);
        let open = Grant::open("open");
        assert_eq!(open.refusal(b, Channel::Book), None);
    }
}
