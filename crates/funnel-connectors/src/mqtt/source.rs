//! The MQTT source: a persistent session with manual acknowledgements; `ack` sends the
//! PUBACKs of the released messages, in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use funnel_core::{ConnectorError, Source};
use funnel_record::{Metadata, Position, Record, metadata};
use rumqttc::{
    AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::MqttSourceConfig;
use super::conn::{self, CLOSE_TIMEOUT, EventTask};
use crate::util::unix_nanos_now;
use crate::util::{lock, unless_stopped};

static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// An MQTT source; see the [module docs](super).
pub struct MqttSource {
    id: String,
    who: String,
    config: MqttSourceConfig,
    prefix: String,
    next: AtomicU64,
    state: Mutex<Option<Arc<Open>>>,
    stop: CancellationToken,
}

type Incoming = Result<Publish, String>;

struct Open {
    client: AsyncClient,
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<Incoming>>,
    /// Messages read and not yet acknowledged, by sequence number, in read order.
    unacked: Mutex<VecDeque<(u64, Publish)>>,
    /// Barriers (UNSUBSCRIBE of a topic nobody subscribes to) sent so far.
    barriers_sent: AtomicU64,
    /// UNSUBACKs received so far: the broker has handled everything sent before.
    barriers_done: tokio::sync::watch::Receiver<u64>,
    events: EventTask,
}

/// Polls the event loop, forwarding incoming messages, until the connection ends.
async fn run_events(
    mut events: EventLoop,
    tx: mpsc::UnboundedSender<Incoming>,
    barriers_done: tokio::sync::watch::Sender<u64>,
    who: String,
    server: String,
) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::UnsubAck(_))) => {
                barriers_done.send_modify(|n| *n += 1);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if tx.send(Ok(publish)).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = tx.send(Err(format!("{who}: disconnected")));
                // Let the DISCONNECT reach the broker: poll until it closes.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    while events.poll().await.is_ok() {}
                })
                .await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(format!(
                    "{who}: the connection to the MQTT broker at {server} ended: {e}"
                )));
                return;
            }
        }
    }
}

impl MqttSource {
    /// A source for `config`; `id` is the connector ID. The broker's persistent
    /// session, not the position, says where to resume.
    pub fn new(id: &str, config: MqttSourceConfig) -> Self {
        let session = (unix_nanos_now() as u64) ^ (SESSIONS.fetch_add(1, Ordering::Relaxed) << 48);
        Self {
            id: id.to_owned(),
            who: format!("mqtt source {id}"),
            config,
            prefix: format!("mqtt:{session:x}:"),
            next: AtomicU64::new(1),
            state: Mutex::new(None),
            stop: CancellationToken::new(),
        }
    }

    fn server(&self) -> String {
        self.config.connection.url.address()
    }

    fn open_state(&self) -> Result<Arc<Open>, ConnectorError> {
        if self.stop.is_cancelled() {
            return Err(ConnectorError::transient(format!(
                "{}: torn down",
                self.who
            )));
        }
        lock(&self.state).clone().ok_or_else(|| {
            ConnectorError::internal(format!("{}: read or ack before open", self.who))
        })
    }

    fn record(&self, open: &Open, publish: Publish, read_at: &str) -> Record {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut position = String::with_capacity(self.prefix.len() + 20);
        position.push_str(&self.prefix);
        position.push_str(&seq.to_string());
        let mut meta = Metadata::new();
        meta.insert(metadata::COLLECTION, publish.topic.clone());
        meta.insert(metadata::SOURCE_CONNECTOR_ID, self.id.clone());
        meta.insert(metadata::READ_AT, read_at.to_owned());
        meta.insert("mqtt.qos", (publish.qos as u8).to_string());
        meta.insert("mqtt.retain", publish.retain.to_string());
        meta.insert("mqtt.dup", publish.dup.to_string());
        meta.insert("mqtt.packetId", publish.pkid.to_string());
        let mut record = Record::new(position, publish.payload.clone());
        record.metadata = meta;
        if publish.qos != QoS::AtMostOnce {
            lock(&open.unacked).push_back((seq, publish));
        }
        record
    }
}

#[async_trait]
impl Source for MqttSource {
    async fn open(&self) -> Result<(), ConnectorError> {
        let server = self.server();
        let sub = &self.config.subscription;
        let options = conn::options(&self.config.connection, sub.clean_session, &self.who)?;
        let (client, mut events, _) = conn::connect(options, &self.who, &server).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let filters: Vec<SubscribeFilter> = sub
            .topics
            .0
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), sub.qos.rumqttc()))
            .collect();
        client.subscribe_many(filters).await.map_err(|e| {
            ConnectorError::transient(format!("{}: cannot subscribe on {server}: {e}", self.who))
        })?;
        // Wait for the SUBACK; a persistent session's queued messages may come first.
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let _ = tx.send(Ok(publish));
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    for (code, topic) in ack.return_codes.iter().zip(&sub.topics.0) {
                        if *code == SubscribeReasonCode::Failure {
                            return Err(ConnectorError::config(format!(
                                "{}: the MQTT broker at {server} refused the subscription to {topic:?}",
                                self.who
                            )));
                        }
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(conn::error(
                        &e,
                        &self.who,
                        &format!("subscribing on {server}"),
                    ));
                }
            }
        }
        let (acks_tx, acks_rx) = tokio::sync::watch::channel(0);
        let task = tokio::spawn(run_events(events, tx, acks_tx, self.who.clone(), server));
        *lock(&self.state) = Some(Arc::new(Open {
            client,
            incoming: tokio::sync::Mutex::new(rx),
            unacked: Mutex::new(VecDeque::new()),
            barriers_sent: AtomicU64::new(0),
            barriers_done: acks_rx,
            events: EventTask::new(task),
        }));
        Ok(())
    }

    async fn read(&self) -> Result<Option<Vec<Record>>, ConnectorError> {
        let open = self.open_state()?;
        let mut incoming = unless_stopped(&self.stop, open.incoming.lock(), &self.who).await?;
        // Cancel-safe: a message leaves the channel only in the poll that returns it.
        let first = match unless_stopped(&self.stop, incoming.recv(), &self.who).await? {
            Some(Ok(publish)) => publish,
            Some(Err(message)) => return Err(ConnectorError::transient(message)),
            None => {
                return Err(ConnectorError::transient(format!(
                    "{}: the connection to {} ended",
                    self.who,
                    self.server()
                )));
            }
        };
        let read_at = unix_nanos_now().to_string();
        let mut records = Vec::with_capacity(self.config.batch_size.min(64));
        records.push(self.record(&open, first, &read_at));
        while records.len() < self.config.batch_size {
            match incoming.try_recv() {
                Ok(Ok(publish)) => records.push(self.record(&open, publish, &read_at)),
                // An error or the end: the next read reports it.
                _ => break,
            }
        }
        Ok(Some(records))
    }

    async fn ack(&self, positions: &[Position]) -> Result<(), ConnectorError> {
        let Some(last) = positions.last() else {
            return Ok(());
        };
        let open = self.open_state()?;
        let seq = std::str::from_utf8(last.as_bytes())
            .ok()
            .and_then(|p| p.strip_prefix(&self.prefix))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                ConnectorError::internal(format!(
                    "{}: position {last} was not read by this source",
                    self.who
                ))
            })?;
        let released: Vec<Publish> = {
            let mut unacked = lock(&open.unacked);
            let mut released = Vec::new();
            while unacked.front().is_some_and(|(s, _)| *s <= seq) {
                if let Some((_, publish)) = unacked.pop_front() {
                    released.push(publish);
                }
            }
            released
        };
        let lost = || {
            ConnectorError::transient(format!(
                "{}: cannot acknowledge messages to {}: the connection ended",
                self.who,
                self.server()
            ))
        };
        for publish in &released {
            open.client.ack(publish).await.map_err(|_| lost())?;
        }
        if released.is_empty() {
            return Ok(());
        }
        // A PUBACK written just before the connection drops can be discarded unread by
        // the broker (a socket closed with unread data resets). The broker handles a
        // client's packets in order, so the UNSUBACK of an UNSUBSCRIBE sent after the
        // PUBACKs says it has handled them: only then has the source acknowledged.
        open.client
            .unsubscribe(format!("funnel/ack-barrier/{}", self.prefix))
            .await
            .map_err(|_| lost())?;
        let target = open.barriers_sent.fetch_add(1, Ordering::Relaxed) + 1;
        let mut done = open.barriers_done.clone();
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Err(ConnectorError::transient(format!("{}: torn down", self.who))),
            result = done.wait_for(|n| *n >= target) => result.map(drop).map_err(|_| lost()),
        }
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.stop.cancel();
        let open = lock(&self.state).take();
        if let Some(open) = open {
            // A DISCONNECT keeps the persistent session: what was not acknowledged is
            // sent again to the next connection with this client ID.
            open.events.close(&open.client).await;
        }
        Ok(())
    }
}
