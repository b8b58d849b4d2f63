//! Shared by the nats tests: the test server (127.0.0.1:4222 with JetStream and
//! max_payload 8 MB, see `scripts/nats-server.sh`), unique streams removed when a test
//! ends, and reading a stream back with the NATS client.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use funnel_connectors::{Settings, destination, source};
pub use funnel_core::settings_of as settings;
use funnel_core::{Destination, Source};
use funnel_record::{Position, Record};
pub use funnel_test_utils::connectors::raw;

pub const URL: &str = "nats://127.0.0.1:4222";
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A client, or `None` (skip) without a server; under `CI=true` a missing server fails.
pub async fn client() -> Option<async_nats::Client> {
    match async_nats::connect(URL).await {
        Ok(client) => Some(client),
        Err(e) => {
            funnel_test_utils::skip_without(&format!("NATS is not reachable at {URL}: {e}"));
            None
        }
    }
}

/// A stream of its own (`FT_<tag>_<pid>_<nanos>`, subjects `<subject prefix>.>`),
/// deleted when dropped.
pub struct TestStream {
    pub js: jetstream::Context,
    pub name: String,
    /// The prefix of its subjects; `subject()` is the one most tests publish on.
    pub prefix: String,
}

impl TestStream {
    pub async fn new(client: &async_nats::Client, tag: &str) -> Self {
        let name = funnel_test_utils::name::unique("FT", tag, '_');
        let prefix = funnel_test_utils::name::unique("ft", tag, '.');
        let js = jetstream::new(client.clone());
        js.create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{prefix}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
        Self { js, name, prefix }
    }

    pub fn subject(&self) -> String {
        format!("{}.in", self.prefix)
    }

    /// Publishes each payload and waits for its publish ack.
    pub async fn publish(&self, subject: &str, payloads: &[Bytes]) {
        let mut acks = Vec::with_capacity(payloads.len());
        for payload in payloads {
            acks.push(
                self.js
                    .publish(subject.to_owned(), payload.clone())
                    .await
                    .unwrap(),
            );
            if acks.len() >= 512 {
                for ack in acks.drain(..) {
                    ack.await.unwrap();
                }
            }
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }

    /// The stream, as the server has it now.
    pub async fn handle(&self) -> stream::Stream {
        self.js.get_stream(&self.name).await.unwrap()
    }

    /// Every message in the stream, in order: subject, headers and payload.
    pub async fn messages(&self) -> Vec<async_nats::jetstream::message::StreamMessage> {
        let stream = self.handle().await;
        let last = stream.get_info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            // Nothing is ever deleted: an error is a timeout under load, tried again.
            let mut tries = 0;
            loop {
                match stream.get_raw_message(seq).await {
                    Ok(message) => {
                        out.push(message);
                        break;
                    }
                    Err(e) if tries < 20 => {
                        tries += 1;
                        eprintln!("reading back message {seq}: {e}; trying again");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("cannot read back message {seq}: {e}"),
                }
            }
        }
        out
    }

    /// Source settings reading this stream with consumer `durable`.
    pub fn source_settings(&self, durable: &str, extra: &[(&str, &str)]) -> Settings {
        let mut s = settings(&[
            ("urls", URL),
            ("stream", &self.name),
            ("subject", &format!("{}.>", self.prefix)),
            ("durable", durable),
        ]);
        s.extend(settings(extra));
        s
    }

    pub fn source(
        &self,
        durable: &str,
        extra: &[(&str, &str)],
        resume: Option<Position>,
    ) -> Arc<dyn Source> {
        source(
            "nats",
            "pipe:nats",
            &self.source_settings(durable, extra),
            resume,
        )
        .unwrap()
    }

    pub fn destination(&self, id: &str, extra: &[(&str, &str)]) -> Arc<dyn Destination> {
        let mut s = settings(&[("urls", URL), ("subject", &format!("{}.out", self.prefix))]);
        s.extend(settings(extra));
        destination("nats", id, &s).unwrap()
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropped inside a runtime: clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(client) = async_nats::connect(URL).await {
                    let _ = jetstream::new(client).delete_stream(&name).await;
                }
            });
        })
        .join();
    }
}

/// The payload of the record a destination published as OpenCDC JSON.
pub fn payload_of_json(body: &[u8]) -> Bytes {
    raw(&Record::from_json(body).expect("an OpenCDC JSON record"))
}
