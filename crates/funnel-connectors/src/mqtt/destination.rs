//! The MQTT destination: publishes each record at the configured QoS and acks it after
//! the broker's PUBACK (QoS 1) or PUBCOMP (QoS 2), in write order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use funnel_core::{ConnectorError, Destination, DestinationAck, RecordError};
use funnel_record::{Position, Record};
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet};

use super::config::MqttDestinationConfig;
use super::conn::{self, CLOSE_TIMEOUT, EventTask};
use crate::ack::AckQueue;
use crate::format::RecordFormat;
use crate::util::lock;

/// An MQTT destination; see the [module docs](super).
pub struct MqttDestination {
    who: String,
    config: MqttDestinationConfig,
    /// How each record becomes its bytes.
    format: RecordFormat,
    state: Mutex<Option<Arc<Open>>>,
    acks: Arc<AckQueue>,
    tracker: Arc<Mutex<Tracker>>,
}

struct Open {
    client: AsyncClient,
    events: EventTask,
}

/// A written record on its way to being acknowledged.
enum Entry {
    /// Handed to the client; its packet ID is not known yet.
    Sent(Position),
    /// On the wire with this packet ID; `true` once the broker acknowledged it.
    Published(u16, Position, bool),
    /// Never published (its topic could not be made).
    Failed(Position, RecordError),
}

/// Records in write order, from handed to the client to acknowledged by the broker.
#[derive(Default)]
struct Tracker {
    entries: VecDeque<Entry>,
}

impl Tracker {
    /// The client put the next message on the wire with `pkid` (0 for QoS 0, which
    /// is done once sent).
    fn published(&mut self, pkid: u16) {
        for entry in &mut self.entries {
            if let Entry::Sent(position) = entry {
                *entry = Entry::Published(pkid, std::mem::take(position), pkid == 0);
                return;
            }
        }
    }

    /// The broker acknowledged `pkid`.
    fn acknowledged(&mut self, pkid: u16) {
        for entry in &mut self.entries {
            if let Entry::Published(id, _, done) = entry
                && *id == pkid
                && !*done
            {
                *done = true;
                return;
            }
        }
    }

    /// The acks of the finished prefix, in write order.
    fn release(&mut self) -> Vec<DestinationAck> {
        let mut acks = Vec::new();
        while let Some(front) = self.entries.front() {
            match front {
                Entry::Published(_, _, true) | Entry::Failed(..) => {}
                _ => break,
            }
            match self.entries.pop_front() {
                Some(Entry::Published(_, position, _)) => acks.push(DestinationAck::ok(position)),
                Some(Entry::Failed(position, error)) => {
                    acks.push(DestinationAck::nack(position, error));
                }
                _ => break,
            }
        }
        acks
    }
}

/// Polls the event loop, turning broker acknowledgements into record acks, until the
/// connection ends.
async fn run_events(
    mut events: EventLoop,
    tracker: Arc<Mutex<Tracker>>,
    acks: Arc<AckQueue>,
    who: String,
    server: String,
    qos: u8,
) {
    loop {
        let event = events.poll().await;
        let released = match event {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut t = lock(&tracker);
                t.published(pkid);
                t.release()
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) if qos == 1 => {
                let mut t = lock(&tracker);
                t.acknowledged(ack.pkid);
                t.release()
            }
            Ok(Event::Incoming(Packet::PubComp(comp))) if qos == 2 => {
                let mut t = lock(&tracker);
                t.acknowledged(comp.pkid);
                t.release()
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    while events.poll().await.is_ok() {}
                })
                .await;
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                acks.fail(format!(
                    "{who}: the connection to the MQTT broker at {server} ended: {e}"
                ));
                return;
            }
        };
        if !released.is_empty() {
            acks.push(released);
        }
    }
}

impl MqttDestination {
    /// A destination for `config`; `id` is the connector ID.
    /// Records are encoded in `format` (`sdk.record.format`).
    pub fn new(id: &str, config: MqttDestinationConfig, format: RecordFormat) -> Self {
        Self {
            who: format!("mqtt destination {id}"),
            config,
            format,
            state: Mutex::new(None),
            acks: Arc::new(AckQueue::new()),
            tracker: Arc::default(),
        }
    }

    fn server(&self) -> String {
        self.config.connection.url.address()
    }

    fn topic(&self, record: &Record) -> Result<String, RecordError> {
        let topic = self.config.publish.topic.0.render(record).map_err(|e| {
            RecordError::msg(format!("{}: the topic template failed: {e}", self.who))
        })?;
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(RecordError::msg(format!(
                "{}: {topic:?} is not a topic to publish to (empty, or with a wildcard)",
                self.who
            )));
        }
        Ok(topic)
    }
}

#[async_trait]
impl Destination for MqttDestination {
    async fn open(&self) -> Result<(), ConnectorError> {
        let server = self.server();
        let options = conn::options(
            &self.config.connection,
            self.config.publish.clean_session,
            &self.who,
        )?;
        let (client, events, _) = conn::connect(options, &self.who, &server).await?;
        let task = tokio::spawn(run_events(
            events,
            Arc::clone(&self.tracker),
            Arc::clone(&self.acks),
            self.who.clone(),
            server,
            self.config.publish.qos.0,
        ));
        *lock(&self.state) = Some(Arc::new(Open {
            client,
            events: EventTask::new(task),
        }));
        Ok(())
    }

    async fn write(&self, records: &[Record]) -> Result<(), ConnectorError> {
        let open = lock(&self.state).clone().ok_or_else(|| {
            ConnectorError::internal(format!("{}: write before open or after teardown", self.who))
        })?;
        self.acks.check()?;
        let qos = self.config.publish.qos.rumqttc();
        let retain = self.config.publish.retain;
        for record in records {
            let encoded = self
                .topic(record)
                .and_then(|topic| Ok((topic, self.format.to_vec(record)?)));
            let (topic, body) = match encoded {
                Ok(encoded) => encoded,
                Err(error) => {
                    let released = {
                        let mut t = lock(&self.tracker);
                        t.entries
                            .push_back(Entry::Failed(record.position.clone(), error));
                        t.release()
                    };
                    if !released.is_empty() {
                        self.acks.push(released);
                    }
                    continue;
                }
            };
            lock(&self.tracker)
                .entries
                .push_back(Entry::Sent(record.position.clone()));
            open.client
                .publish(topic, qos, retain, body)
                .await
                .map_err(|e| {
                    ConnectorError::transient(format!(
                        "{}: publishing to {} failed: {e}",
                        self.who,
                        self.server()
                    ))
                })?;
        }
        Ok(())
    }

    async fn ack(&self) -> Result<Vec<DestinationAck>, ConnectorError> {
        self.acks.next().await
    }

    async fn teardown(&self) -> Result<(), ConnectorError> {
        self.acks.close(format!("{}: torn down", self.who));
        let open = lock(&self.state).take();
        if let Some(open) = open {
            open.events.close(&open.client).await;
        }
        Ok(())
    }
}
