//! The outbox tail: publishing committed events in order, and streaming them to subscribers.
//!
//! The table is the truth. A subscriber's task reads it from its cursor, in stream order, into a
//! bounded channel; when it has caught up it waits for a wake-up (a publish in this process, a
//! Postgres `NOTIFY` from another replica) or the fallback interval. A slow client only makes its
//! own task wait on the channel: writers are never blocked and nothing is dropped, because the
//! task always resumes reading the table from its cursor.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::ledger::{Ledger, LedgerError};
use crate::store::{NotificationFilter, PublishedNotification, Store, WakeUps};

/// Events read per query.
const PAGE: u32 = 500;

/// How subscribers and the publisher wait.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Longest wait between looks at the table when no wake-up comes.
    pub fallback_interval: Duration,
    /// Events buffered per subscriber before its reader waits for the client.
    pub buffer: usize,
    /// How long published events are kept.
    pub retention: Duration,
}

/// The process's wake-ups and settings, shared by the publisher and every subscriber.
#[derive(Debug, Clone)]
pub struct Events {
    wake_ups: WakeUps,
    settings: StreamSettings,
    shutdown: CancellationToken,
}

impl Events {
    /// Wake-ups whose outbox signal is `outbox_written`, the one the ledger raises after its
    /// commits (other replicas' writes are relayed into the same signal).
    pub fn new(settings: StreamSettings, outbox_written: Arc<Notify>, shutdown: CancellationToken) -> Events {
        let wake_ups = WakeUps { outbox: outbox_written, published: Arc::new(watch::Sender::new(0)) };
        Events { wake_ups, settings, shutdown }
    }

    /// The wake-ups, for the store's cross-replica bridge.
    pub fn wake_ups(&self) -> WakeUps {
        self.wake_ups.clone()
    }

    /// Publishes committed events whenever woken (by this process's writes, another replica's
    /// `NOTIFY`, or the fallback interval).
    pub async fn publish<S: Store>(self, ledger: Ledger<S>) {
        loop {
            match ledger.publish_notifications().await {
                Ok(0) => {}
                Ok(published) => {
                    tracing::debug!(published, "notifications published");
                    self.wake_ups.published.send_modify(|generation| *generation += 1);
                }
                Err(error) => tracing::warn!(%error, "publishing notifications failed; retrying"),
            }
            tokio::select! {
                () = self.wake_ups.outbox.notified() => {}
                () = tokio::time::sleep(self.settings.fallback_interval) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Streams published events after `after` that match `filter`, then new ones as they come.
    pub fn subscribe<S: Store>(
        &self,
        ledger: Ledger<S>,
        filter: NotificationFilter,
        after: i64,
    ) -> ReceiverStream<Result<PublishedNotification, LedgerError>> {
        let (sender, receiver) = mpsc::channel(self.settings.buffer);
        let mut published = self.wake_ups.published.subscribe();
        let (fallback, shutdown) = (self.settings.fallback_interval, self.shutdown.clone());
        tokio::spawn(async move {
            let _subscriber = crate::metrics::Subscriber::start();
            let mut cursor = after;
            loop {
                published.borrow_and_update();
                let page = match ledger.notifications_after(cursor, &filter, PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(error)).await;
                        return;
                    }
                };
                let full = page.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
                for event in page {
                    cursor = event.position;
                    if sender.send(Ok(event)).await.is_err() {
                        return; // the client went away
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    changed = published.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(fallback) => {}
                    () = shutdown.cancelled() => return,
                    () = sender.closed() => return,
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}
