//! The message brokers under faults: RabbitMQ and Mosquitto (MQTT), each as the source
//! of a pipeline writing to a file while a publisher keeps publishing.
//!
//! - SIGKILL five times at random moments: nothing is lost, duplicates stay within the
//!   in-flight bound, and after a graceful SIGTERM a restart writes nothing twice;
//! - the broker itself restarting under the running pipeline: Funnel restarts the
//!   pipeline with backoff, reconnects, and loses nothing.
//!
//! The restart drills stop and start the shared local broker (`rabbitmqctl shutdown`
//! then `rabbitmq-server -detached`; Mosquitto by the PID in its pid file, then
//! `mosquitto -d`): they are designed for it, and hold the brokers' lock (a file lock,
//! so also against the broker drills of another test process) so no other drill of
//! this suite uses a broker meanwhile. A loaded machine may take minutes to restart
//! RabbitMQ: the drills wait for the broker with a deadline of [`BROKER_RESTART`], and
//! cap Funnel's restart delay at [`RESTART_MAX_DELAY`] so that once the broker is back,
//! they wait on Funnel and not on a backoff that doubled all the while the broker was
//! down. Without a broker the drills are skipped, except under `CI=true`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Drill, Rng, after_text, assert_nothing_lost, assert_says, skip};
use crate::pipelines::{connector, file_destination, pipeline};

/// Held by every broker drill, so a restart drill runs alone: an exclusive lock on a
/// file in the temporary directory, released when dropped.
struct BrokerLock(#[allow(dead_code)] std::fs::File);

/// Waits for the brokers' lock.
fn lock_brokers() -> BrokerLock {
    let path = std::env::temp_dir().join("funnel-drill-brokers.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    file.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    BrokerLock(file)
}

/// How long a broker may take to go away or to come back: on a loaded machine
/// RabbitMQ's shutdown and boot each take minutes, not seconds.
const BROKER_RESTART: Duration = Duration::from_secs(300);

/// The longest restart delay (`--pipelines.error-recovery.max-delay`) of Funnel in the
/// restart drills. By default the delay doubles on every failed restart up to 10
/// minutes: a broker down for two minutes would leave Funnel waiting over a minute
/// more after the broker is back. An operator whose broker restarts caps it alike.
const RESTART_MAX_DELAY: &str = "2s";

fn unique(tag: &str) -> String {
    funnel_test_utils::name::unique("funnel-drill", tag, '-')
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Waits until the broker's `port` is `open` (or closed), at most [`BROKER_RESTART`].
fn wait_port(port: u16, open: bool) {
    let start = Instant::now();
    while port_open(port) != open {
        assert!(
            start.elapsed() < BROKER_RESTART,
            "port {port} did not {} within {BROKER_RESTART:?}",
            if open { "open" } else { "close" }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "port {port} {} after {:?}",
        if open { "open" } else { "closed" },
        start.elapsed()
    );
}

/// The line of message `i`.
fn message(i: u64) -> String {
    format!("message {i:07}")
}

/// A publisher running in the background: messages `1..`, one every `pause`, until
/// stopped; `published()` counts those the broker confirmed.
struct Publisher {
    stop: Arc<AtomicBool>,
    confirmed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    fn published(&self) -> u64 {
        self.confirmed.load(Ordering::SeqCst)
    }

    /// Stops publishing; the number of messages published, every one confirmed.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.published()
    }
}

// ---------------------------------------------------------------------------------
// RabbitMQ.

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long the drill's own RabbitMQ client waits for any one answer of the broker.
const RABBIT_CALL: Duration = Duration::from_secs(5);

fn rabbit() -> Option<BrokerLock> {
    let guard = lock_brokers();
    if port_open(5672) {
        Some(guard)
    } else {
        skip(
            "RabbitMQ is not reachable on 127.0.0.1:5672 (scripts/setup-services.sh starts it)",
            "connection refused",
        );
        None
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Declares a durable queue.
fn declare(queue: &str) {
    runtime().block_on(async {
        let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "ok".into()).await;
    });
}

/// Publishes persistent messages to `queue` with publisher confirms, reconnecting when
/// the broker goes away; a message counts once confirmed, and an unconfirmed one is
/// published again (so it may be in the queue twice).
fn rabbit_publisher(queue: &str, pause: Duration, after: u64) -> Publisher {
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(after));
    let thread = std::thread::spawn({
        let (stop, confirmed, queue) =
            (Arc::clone(&stop), Arc::clone(&confirmed), queue.to_owned());
        move || {
            runtime().block_on(async move {
                while !stop.load(Ordering::SeqCst) {
                    // Every broker call has a deadline: a broker that goes away can leave
                    // a connect or a confirm unanswered, and the publisher must go on
                    // with a new connection once it is back.
                    let opened = tokio::time::timeout(RABBIT_CALL, async {
                        let conn = lapin::Connection::connect(
                            AMQP_URL,
                            lapin::ConnectionProperties::default(),
                        )
                        .await?;
                        let channel = conn.create_channel().await?;
                        channel
                            .confirm_select(lapin::options::ConfirmSelectOptions::default())
                            .await?;
                        Ok::<_, lapin::Error>((conn, channel))
                    })
                    .await;
                    let Ok(Ok((conn, channel))) = opened else {
                        eprintln!("publisher: cannot open a channel: {opened:?}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    while !stop.load(Ordering::SeqCst) {
                        let next = confirmed.load(Ordering::SeqCst) + 1;
                        let acked = tokio::time::timeout(RABBIT_CALL, async {
                            channel
                                .basic_publish(
                                    "".into(),
                                    queue.as_str().into(),
                                    lapin::options::BasicPublishOptions::default(),
                                    message(next).as_bytes(),
                                    lapin::BasicProperties::default().with_delivery_mode(2),
                                )
                                .await?
                                .await
                        })
                        .await;
                        match acked {
                            Ok(Ok(c)) if c.is_ack() => {
                                confirmed.store(next, Ordering::SeqCst);
                            }
                            other => {
                                eprintln!("publisher: message {next} not confirmed: {other:?}");
                                break;
                            }
                        }
                        tokio::time::sleep(pause).await;
                    }
                    // A connection the broker reset may never answer its close.
                    let _ = tokio::time::timeout(RABBIT_CALL, conn.close(200, "ok".into())).await;
                }
            });
        }
    });
    Publisher {
        stop,
        confirmed,
        thread: Some(thread),
    }
}

fn rabbitmq_source(queue: &str) -> String {
    connector(
        "src",
        "source",
        "rabbitmq",
        &[
            ("url", AMQP_URL),
            ("queue.name", queue),
            ("sdk.batch.size", "100"),
        ],
    )
}

fn delete_queue(queue: &str) {
    runtime().block_on(async {
        if let Ok(conn) =
            lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default()).await
            && let Ok(channel) = conn.create_channel().await
        {
            let _ = channel
                .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
                .await;
            let _ = conn.close(200, "ok".into()).await;
        }
    });
}

// ---------------------------------------------------------------------------------
// Mosquitto.

fn mosquitto() -> Option<BrokerLock> {
    let guard = lock_brokers();
    if port_open(1883) {
        Some(guard)
    } else {
        skip(
            "Mosquitto is not reachable on 127.0.0.1:1883 (scripts/setup-services.sh starts it)",
            "connection refused",
        );
        None
    }
}

/// Creates the persistent session `client_id` subscribed to `topic` at QoS 1 with the
/// broker's own client, so messages are kept for the source from now on.
fn mqtt_session(client_id: &str, topic: &str) {
    let status = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", "1883", "-q", "1", "-c", "-E"])
        .args(["-i", client_id, "-t", topic])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "mosquitto_sub could not create the session"
    );
}

/// Publishes at QoS 1 with the broker's own client (`mosquitto_pub -l`, one message per
/// line), starting it again when the broker goes away; messages `1..` one every `pause`.
/// A message counts once it was handed to a `mosquitto_pub` that then exited cleanly
/// (it waits for every PUBACK before it exits).
fn mqtt_publisher(topic: &str, pause: Duration) -> Publisher {
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let thread = std::thread::spawn({
        let (stop, confirmed, topic) =
            (Arc::clone(&stop), Arc::clone(&confirmed), topic.to_owned());
        move || {
            while !stop.load(Ordering::SeqCst) {
                let mut child = Command::new("mosquitto_pub")
                    .args(["-h", "127.0.0.1", "-p", "1883", "-q", "1", "-l"])
                    .args(["-t", &topic])
                    .stdin(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                let first = confirmed.load(Ordering::SeqCst) + 1;
                let mut next = first;
                // Up to 200 messages per client run, so a confirmed count is never far
                // behind what was written.
                while !stop.load(Ordering::SeqCst) && next < first + 200 {
                    if writeln!(stdin, "{}", message(next)).is_err() {
                        break;
                    }
                    next += 1;
                    std::thread::sleep(pause);
                }
                drop(stdin);
                if child.wait().unwrap().success() {
                    confirmed.store(next - 1, Ordering::SeqCst);
                } else {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    });
    Publisher {
        stop,
        confirmed,
        thread: Some(thread),
    }
}

fn mqtt_source(topic: &str, client_id: &str) -> String {
    connector(
        "src",
        "source",
        "mqtt",
        &[
            ("url", "tcp://127.0.0.1:1883"),
            ("topic", topic),
            ("clientId", client_id),
            ("sdk.batch.size", "100"),
        ],
    )
}

fn end_mqtt_session(client_id: &str) {
    let _ = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "1883",
            "-i",
            client_id,
            "-t",
            "x",
            "-E",
        ])
        .status();
}

// ---------------------------------------------------------------------------------
// The drills.

/// The numbers of the messages a file destination wrote.
fn numbers(drill: &Drill) -> Vec<u64> {
    drill
        .records("out.jsonl")
        .iter()
        .map(|r| after_text(r)["message ".len()..].parse().unwrap())
        .collect()
}

/// Kills Funnel five times at random moments while `publisher` runs, stops the
/// publisher, waits for every message, stops Funnel with SIGTERM; then checks nothing
/// was lost, duplicates stay within `bound`, and a restart after the graceful stop
/// writes only the new message `publish_one` adds.
fn kill_drill(
    name: &str,
    drill: &Drill,
    publisher: Publisher,
    bound: usize,
    publish_one: impl FnOnce(u64),
) {
    let mut rng = Rng::new(name);
    let mut funnel = drill.start(&[]);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(rng.between(300, 1500)));
        funnel.signal("KILL", drill);
        funnel = drill.start(&[]);
    }
    let published = publisher.stop();
    drill.wait_for("every message is written", Duration::from_secs(120), || {
        numbers(drill).contains(&published)
    });
    funnel.signal("TERM", drill);
    let got = numbers(drill);
    assert_nothing_lost(name, 1..=published, &got, drill);
    let duplicates = got.len() - published as usize;
    assert!(
        duplicates <= bound,
        "drill {name}: {duplicates} duplicates after 5 kills, more than the bound {bound}"
    );
    eprintln!("drill {name}: {published} messages, {duplicates} duplicates after 5 kills");

    // After a graceful stop, a restart writes nothing twice.
    let before = got.len();
    let mut funnel = drill.start(&[]);
    publish_one(published + 1);
    drill.wait_for(
        "the new message is written",
        Duration::from_secs(60),
        || numbers(drill).contains(&(published + 1)),
    );
    funnel.signal("TERM", drill);
    let after = numbers(drill);
    assert_eq!(
        &after[before..],
        [published + 1],
        "drill {name}: a restart after SIGTERM wrote again what was written before"
    );
}

#[test]
fn rabbitmq_to_file_loses_no_message_through_sigkills_while_a_publisher_runs() {
    let Some(_broker) = rabbit() else { return };
    let queue = unique("kill");
    declare(&queue);
    let drill = Drill::new(&pipeline(
        &rabbitmq_source(&queue),
        &file_destination("./out.jsonl"),
    ));
    let publisher = rabbit_publisher(&queue, Duration::from_millis(2), 0);
    // At most the prefetch window (2048 + one batch) is read and not released at a kill.
    kill_drill(
        "rabbitmq_to_file_kill",
        &drill,
        publisher,
        5 * (2048 + 100),
        |i| {
            rabbit_publish_one(&queue, i);
        },
    );
    delete_queue(&queue);
}

/// Publishes message `i` alone.
fn rabbit_publish_one(queue: &str, i: u64) {
    let publisher = rabbit_publisher(queue, Duration::from_millis(100), i - 1);
    while publisher.published() < i {
        std::thread::sleep(Duration::from_millis(10));
    }
    publisher.stop();
}

#[test]
fn mqtt_to_file_loses_no_message_through_sigkills_while_a_publisher_runs() {
    let Some(_broker) = mosquitto() else { return };
    let topic = unique("kill");
    let client = unique("c");
    mqtt_session(&client, &topic);
    let drill = Drill::new(&pipeline(
        &mqtt_source(&topic, &client),
        &file_destination("./out.jsonl"),
    ));
    let publisher = mqtt_publisher(&topic, Duration::from_millis(2));
    // At most the broker's in-flight window (max_inflight_messages 1000) is read and
    // not released at a kill.
    kill_drill("mqtt_to_file_kill", &drill, publisher, 5 * 1000, |i| {
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", "1883", "-q", "1", "-t", &topic])
            .args(["-m", &message(i)])
            .spawn()
            .unwrap();
        assert!(child.wait().unwrap().success());
    });
    end_mqtt_session(&client);
}

/// Runs `restart` under a pipeline fed by `publisher`; everything published before,
/// during and after is written, and the log says the pipeline restarted with backoff.
fn restart_drill(name: &str, drill: &Drill, publisher: Publisher, restart: impl FnOnce()) {
    let mut funnel = drill.start(&["--pipelines.error-recovery.max-delay", RESTART_MAX_DELAY]);
    drill.wait_for(
        "the first messages are written",
        Duration::from_secs(60),
        || numbers(drill).len() >= 200,
    );
    drill.mark("restarting the broker");
    let restarting = Instant::now();
    restart();
    drill.mark(&format!(
        "the broker is back after {:?}",
        restarting.elapsed()
    ));
    let resumed = publisher.published() + 200;
    drill.wait_for(
        "publishing goes on after the restart",
        Duration::from_secs(120),
        || publisher.published() >= resumed,
    );
    let published = publisher.stop();
    drill.wait_for("every message is written", Duration::from_secs(120), || {
        numbers(drill).contains(&published)
    });
    funnel.signal("TERM", drill);
    assert_nothing_lost(name, 1..=published, &numbers(drill), drill);
    assert_says(
        name,
        &drill.log(),
        &["restarting with backoff", "pipeline=p"],
    );
}

#[test]
fn rabbitmq_to_file_loses_no_message_when_rabbitmq_restarts() {
    let Some(_broker) = rabbit() else { return };
    let queue = unique("restart");
    declare(&queue);
    let drill = Drill::new(&pipeline(
        &rabbitmq_source(&queue),
        &file_destination("./out.jsonl"),
    ));
    let publisher = rabbit_publisher(&queue, Duration::from_millis(5), 0);
    restart_drill("rabbitmq_to_file_restart", &drill, publisher, || {
        let stopped = Command::new("rabbitmqctl")
            .arg("shutdown")
            .status()
            .unwrap();
        assert!(stopped.success(), "rabbitmqctl shutdown failed");
        wait_port(5672, false);
        let started = Command::new("rabbitmq-server")
            .arg("-detached")
            .status()
            .unwrap();
        assert!(started.success(), "rabbitmq-server -detached failed");
        wait_port(5672, true);
    });
    delete_queue(&queue);
}

#[test]
fn mqtt_to_file_loses_no_message_when_mosquitto_restarts() {
    let Some(_broker) = mosquitto() else { return };
    let topic = unique("restart");
    let client = unique("c");
    mqtt_session(&client, &topic);
    let drill = Drill::new(&pipeline(
        &mqtt_source(&topic, &client),
        &file_destination("./out.jsonl"),
    ));
    let publisher = mqtt_publisher(&topic, Duration::from_millis(5));
    restart_drill("mqtt_to_file_restart", &drill, publisher, || {
        let pid = std::fs::read_to_string("/run/mosquitto/mosquitto.pid").unwrap();
        // SIGTERM: Mosquitto saves its sessions (persistence true) and exits.
        let stopped = Command::new("kill").arg(pid.trim()).status().unwrap();
        assert!(stopped.success(), "could not stop Mosquitto");
        wait_port(1883, false);
        let started = Command::new("mosquitto")
            .args(["-d", "-c", "/etc/mosquitto/mosquitto.conf"])
            .status()
            .unwrap();
        assert!(started.success(), "mosquitto -d failed");
        wait_port(1883, true);
    });
    end_mqtt_session(&client);
}
