//! A running venue, owned by whoever started it.

use std::time::Duration;

use raven_model::Venue;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long [`VenueHandle::shutdown`] waits for connections to close cleanly.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Owns a running venue. Dropping it aborts every task; [`VenueHandle::shutdown`] closes
/// the sockets first.
pub struct VenueHandle {
    venue: Venue,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl VenueHandle {
    /// `task` supervises the venue's connections and ends when `shutdown` turns true.
    pub fn new(venue: Venue, shutdown: watch::Sender<bool>, task: JoinHandle<()>) -> Self {
        Self {
            venue,
            shutdown,
            task: Some(task),
        }
    }

    pub fn venue(&self) -> Venue {
        self.venue
    }

    /// Closes every connection (books get `book_reset`) and waits for the tasks, at most
    /// a few seconds before aborting them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for VenueHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting the supervisor drops its JoinSet, which aborts every connection.
            task.abort();
        }
    }
}
