//! The outbox tail: publishing committed events in order, and streaming them to subscribers.
//!
//! The table is the truth. A subscriber's task first reads it from its cursor, in stream order,
//! into a bounded channel. Once caught up it takes new events from the process's one *tail*: a
//! single reader that, when woken (a publish in this process, a Postgres `NOTIFY` from another
//! replica, or the fallback interval), reads what was published since it last looked and
//! broadcasts it to every subscriber; so idle subscribers cost the database nothing. A slow
//! client only makes its own task wait on the channel: writers are never blocked and nothing is
//! dropped, because a subscriber that falls behind the broadcast goes back to reading the table
//! from its cursor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::auth::Tenancy;
use crate::ledger::{Ledger, LedgerError};
use crate::store::{NotificationFilter, PublishedNotification, Store, WakeUps};

/// Events read per query.
const PAGE: u32 = 500;
/// Events the tail's broadcast holds for subscribers that are behind; one further behind reads
/// the table instead.
const BROADCAST_CAPACITY: usize = 4_096;

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
    live: broadcast::Sender<Arc<PublishedNotification>>,
}

impl Events {
    /// Wake-ups whose outbox signal is `outbox_written`, the one the ledger raises after its
    /// commits (other replicas' writes are relayed into the same signal).
    pub fn new(settings: StreamSettings, outbox_written: Arc<Notify>, shutdown: CancellationToken) -> Events {
        let wake_ups = WakeUps { outbox: outbox_written, published: Arc::new(watch::Sender::new(0)) };
        Events { wake_ups, settings, shutdown, live: broadcast::Sender::new(BROADCAST_CAPACITY) }
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

    /// The tail: reads each newly published event once for the whole process and broadcasts it.
    pub async fn tail<S: Store>(self, ledger: Ledger<S>) {
        let mut published = self.wake_ups.published.subscribe();
        let everything = NotificationFilter::default();
        let mut cursor = None;
        loop {
            published.borrow_and_update();
            let read = match cursor {
                // Only what is published from now on: subscribers read the past from the table.
                None => ledger.stream_bounds().await.map(|bounds| {
                    cursor = Some(bounds.last);
                    false
                }),
                Some(after) => ledger.notifications_after(after, &everything, PAGE).await.map(|page| {
                    let full = page.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
                    for event in page {
                        cursor = Some(event.position);
                        // No subscriber is fine: the event is in the table for later ones.
                        let _ = self.live.send(Arc::new(event));
                    }
                    full
                }),
            };
            match read {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "reading published notifications failed; retrying"),
            }
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(self.settings.fallback_interval) => {}
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Streams published events after `after` that match `filter` and that `tenancy` may see,
    /// then new ones as they come; the stream holds `permit` until it ends.
    pub fn subscribe<S: Store>(
        &self,
        ledger: Ledger<S>,
        filter: NotificationFilter,
        tenancy: Tenancy,
        after: i64,
        permit: StreamPermit,
    ) -> ReceiverStream<Result<PublishedNotification, LedgerError>> {
        let (sender, receiver) = mpsc::channel(self.settings.buffer);
        // Taken before the first read of the table, so nothing published after that read is missed.
        let mut live = self.live.subscribe();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _subscriber = crate::metrics::subscriber();
            let mut cursor = after;
            'catch_up: loop {
                // From the table, until a page comes back short.
                loop {
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
                        if visible(&tenancy, &event) && sender.send(Ok(event)).await.is_err() {
                            return; // the client went away
                        }
                    }
                    if !full {
                        break;
                    }
                }
                // Then from the tail. Positions are dense and broadcast in order, so skipping
                // what the table already gave (at or before the cursor) leaves no gap.
                loop {
                    let event = tokio::select! {
                        received = live.recv() => received,
                        () = shutdown.cancelled() => return,
                        () = sender.closed() => return,
                    };
                    match event {
                        Ok(event) if event.position <= cursor => {}
                        Ok(event) => {
                            cursor = event.position;
                            if filter.matches(&event.notification)
                                && visible(&tenancy, &event)
                                && sender.send(Ok(PublishedNotification::clone(&event))).await.is_err()
                            {
                                return;
                            }
                        }
                        // Fell behind the broadcast: the table still has everything.
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        ReceiverStream::new(receiver)
    }
}

/// Whether a confined principal may see `event`: a workspace event in one of its workspaces, an
/// account event of one of its accounts.
fn visible(tenancy: &Tenancy, event: &PublishedNotification) -> bool {
    let notification = &event.notification;
    match &notification.workspace_id {
        Some(workspace) => tenancy.allows_workspace(workspace.as_str()),
        None => tenancy.allows_account(notification.account_id.as_str()),
    }
}

/// Caps on open notification streams, in total and per principal, on this replica.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    total: usize,
    per_principal: usize,
    open: Arc<Mutex<OpenStreams>>,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    by_principal: HashMap<String, usize>,
}

/// Which cap a refused stream hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamsExhausted {
    /// The replica's total.
    Total(usize),
    /// The principal's share.
    PerPrincipal(usize),
}

/// One open stream, counted until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    open: Arc<Mutex<OpenStreams>>,
    principal: String,
}

impl StreamLimits {
    /// At most `total` streams, `per_principal` of them for one principal.
    pub fn new(total: usize, per_principal: usize) -> StreamLimits {
        StreamLimits { total, per_principal, open: Arc::default() }
    }

    /// Counts a new stream of `principal`, or says which cap it would pass.
    pub fn admit(&self, principal: &str) -> Result<StreamPermit, StreamsExhausted> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.total {
            return Err(StreamsExhausted::Total(self.total));
        }
        let held = open.by_principal.entry(principal.to_owned()).or_default();
        if *held >= self.per_principal {
            return Err(StreamsExhausted::PerPrincipal(self.per_principal));
        }
        *held += 1;
        open.total += 1;
        Ok(StreamPermit { open: Arc::clone(&self.open), principal: principal.to_owned() })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(held) = open.by_principal.get_mut(&self.principal) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.by_principal.remove(&self.principal);
            }
        }
    }
}
