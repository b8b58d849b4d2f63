//! The leases this instance holds, and a destination that writes only while its
//! pipeline's lease is held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, WriteFence};
use funnel_record::Record;
use funnel_store::Fence;

/// The leases this instance holds, by pipeline: what the supervisor may run.
#[derive(Debug, Default)]
pub struct Fences {
    held: Mutex<HashMap<String, Arc<Fence>>>,
}

impl Fences {
    fn held(&self) -> MutexGuard<'_, HashMap<String, Arc<Fence>>> {
        // Critical sections only read or replace entries: a poisoned lock is still usable.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fence of `pipeline`, while this instance holds its lease.
    pub fn get(&self, pipeline: &str) -> Option<Arc<Fence>> {
        self.held().get(pipeline).filter(|f| f.permits()).cloned()
    }

    pub(crate) fn insert(&self, fence: Arc<Fence>) {
        self.held().insert(fence.pipeline().to_owned(), fence);
    }

    pub(crate) fn remove(&self, pipeline: &str) {
        if let Some(fence) = self.held().remove(pipeline) {
            fence.revoke();
        }
    }
}

/// Refuses every write once the fence no longer permits it, and hands the fence to the
/// destination, which checks it again right before its own writes.
pub(crate) struct Fenced {
    inner: Arc<dyn Destination>,
    fence: Arc<Fence>,
}

impl Fenced {
    /// `inner`, fenced by `fence` when there is one.
    pub(crate) fn wrap(
        inner: Arc<dyn Destination>,
        fence: Option<&Arc<Fence>>,
    ) -> Arc<dyn Destination> {
        match fence {
            None => inner,
            Some(fence) => {
                inner.fence(Arc::clone(fence) as Arc<dyn WriteFence>);
                Arc::new(Self {
                    inner,
                    fence: Arc::clone(fence),
                })
            }
        }
    }
}

#[async_trait]
impl Destination for Fenced {
    async fn open(&self) -> Result<(), ConnectorError> {
        self.inner.open().await
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        self.fence.check()?;
        self.inner.write(records).await
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.inner.ack().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.inner.teardown().await
    }

    fn fence(&self, fence: Arc<dyn WriteFence>) {
        self.inner.fence(fence);
    }
}
