//! [`SharedDestination`]: one destination written by the workers of several sources.
//!
//! Each worker gets a [`handle`](SharedDestination::handle) that is a
//! [`Destination`] of its own. Writes from all handles go to the destination one at a
//! time, in the order they were made; the destination's acks, which come back in that
//! same order, are routed to the handle whose records they acknowledge. So each source
//! still sees its own acks, in its own write order, and nothing else.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use funnel_record::Record;
use tokio::sync::Notify;

use crate::error::ConnectorError;
use crate::plugin::{Destination, DestinationAck};

#[derive(Default)]
struct State {
    /// Writes not fully acked yet, oldest first: (handle, records left to ack).
    order: VecDeque<(usize, usize)>,
    /// Acks routed to each handle, not yet taken.
    acks: Vec<VecDeque<DestinationAck>>,
    /// Set once the destination's ack stream failed: every handle fails from then on.
    failed: Option<String>,
    opened: bool,
    open_handles: usize,
}

/// A destination shared by several workers (see the module docs).
pub struct SharedDestination {
    inner: Arc<dyn Destination>,
    state: Mutex<State>,
    /// Serializes writes, so the order of `order` is the order of the writes.
    write: tokio::sync::Mutex<()>,
    /// Held by the one handle reading the destination's acks.
    reader: tokio::sync::Mutex<()>,
    routed: Notify,
}

impl SharedDestination {
    /// Shares `inner`.
    pub fn new(inner: Arc<dyn Destination>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            state: Mutex::new(State::default()),
            write: tokio::sync::Mutex::new(()),
            reader: tokio::sync::Mutex::new(()),
            routed: Notify::new(),
        })
    }

    /// A new handle: a destination of its own for one worker.
    pub fn handle(self: &Arc<Self>) -> Arc<dyn Destination> {
        let mut state = self.lock();
        state.acks.push(VecDeque::new());
        Arc::new(Handle {
            shared: Arc::clone(self),
            index: state.acks.len() - 1,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Routes acks, in write order, to the handles that wrote their records.
    fn route(&self, acks: Vec<DestinationAck>) -> Result<(), ConnectorError> {
        let mut state = self.lock();
        for ack in acks {
            let Some((handle, left)) = state.order.front_mut() else {
                let message = "shared destination acknowledged more records than were written";
                state.failed = Some(message.to_owned());
                return Err(ConnectorError::fatal(message));
            };
            let handle = *handle;
            *left -= 1;
            if *left == 0 {
                state.order.pop_front();
            }
            state.acks[handle].push_back(ack);
        }
        Ok(())
    }
}

struct Handle {
    shared: Arc<SharedDestination>,
    index: usize,
}

#[async_trait]
impl Destination for Handle {
    async fn open(&self) -> Result<(), ConnectorError> {
        // Holding the write lock makes concurrent opens wait for the first one.
        let _writing = self.shared.write.lock().await;
        if !self.shared.lock().opened {
            self.shared.inner.open().await?;
        }
        let mut state = self.shared.lock();
        state.opened = true;
        state.open_handles += 1;
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        if records.is_empty() {
            return Ok(());
        }
        let _writing = self.shared.write.lock().await;
        self.shared
            .lock()
            .order
            .push_back((self.index, records.len()));
        let result = self.shared.inner.write(records).await;
        if result.is_err() {
            // Nothing of this write will be acked.
            self.shared.lock().order.pop_back();
        }
        result
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        loop {
            let routed = self.shared.routed.notified();
            {
                let mut state = self.shared.lock();
                if !state.acks[self.index].is_empty() {
                    return Ok(state.acks[self.index].drain(..).collect());
                }
                if let Some(message) = &state.failed {
                    return Err(ConnectorError::transient(message.clone()));
                }
            }
            tokio::select! {
                () = routed => {}
                reader = self.shared.reader.lock() => {
                    // This handle reads the destination's acks for everyone until its own
                    // arrive.
                    let _reader = reader;
                    if !self.shared.lock().acks[self.index].is_empty() {
                        continue;
                    }
                    let result = match self.shared.inner.ack().await {
                        Ok(acks) => self.shared.route(acks),
                        Err(e) => {
                            self.shared.lock().failed = Some(e.to_string());
                            Err(e)
                        }
                    };
                    self.shared.routed.notify_waiters();
                    result?;
                }
            }
        }
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        let last = {
            let mut state = self.shared.lock();
            state.open_handles = state.open_handles.saturating_sub(1);
            state.open_handles == 0 && state.opened
        };
        if last {
            self.shared.lock().opened = false;
            self.shared.inner.teardown().await?;
        }
        Ok(())
    }
}
