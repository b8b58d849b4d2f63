//! A destination that writes only while its pipeline's lease is held.

use std::sync::Arc;

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, WriteFence};
use funnel_record::Record;
use funnel_store::Fence;

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
