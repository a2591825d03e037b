//! Interop: `jetsam nsqd` and `jetsam lookupd` as real servers on 127.0.0.1, used by a real
//! NSQ client (the tokio-nsq crate): publish, discover through lookupd, consume, REQ and FIN;
//! then a `kill -9` and restart that keeps what nsqd keeps.

use super::jetsam;
// tokio-nsq's API takes a HashSet; this is a real client outside any simulation.
#[allow(clippy::disallowed_types)]
use std::collections::HashSet;
use std::process::{Child, Stdio};
use std::time::Duration;
use tokio_nsq::{
    NSQChannel, NSQConsumerConfig, NSQConsumerConfigSources, NSQConsumerLookupConfig, NSQEvent, NSQMessage,
    NSQProducerConfig, NSQRequeueDelay, NSQTopic,
};

/// Bound on every wait, so a broken server fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(20);

/// A free port below Linux's ephemeral range (32768 and up), so that once a killed server
/// lets go of it, no client's outgoing connection can take it as its source port before the
/// server restarts on it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Test processes run side by side with consecutive pids: spread their ranges apart.
    let base = 20_000 + ((u64::from(std::process::id()) * 7_919) % 10_000) as u16;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::SeqCst) % 2_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[String]) -> Server {
    Server(
        jetsam()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

struct Ports {
    lookupd_tcp: u16,
    lookupd_http: u16,
    nsqd_tcp: u16,
    nsqd_http: u16,
}

fn nsqd_args(ports: &Ports, data: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "nsqd".into(),
        "--tcp-address".into(),
        format!("127.0.0.1:{}", ports.nsqd_tcp),
        "--http-address".into(),
        format!("127.0.0.1:{}", ports.nsqd_http),
        "--lookupd-tcp-address".into(),
        format!("127.0.0.1:{}", ports.lookupd_tcp),
        "--broadcast-address".into(),
        "127.0.0.1".into(),
        "--data-path".into(),
        data.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn publish(nsqd_tcp: u16, topic: &str, bodies: &[&str]) {
    let topic = NSQTopic::new(topic).unwrap();
    let mut producer = NSQProducerConfig::new(format!("127.0.0.1:{nsqd_tcp}")).build();
    let healthy = tokio::time::timeout(WAIT, producer.consume())
        .await
        .expect("producer connects");
    assert!(matches!(healthy, Some(NSQEvent::Healthy())), "{healthy:?}");
    for body in bodies {
        producer.publish(&topic, body.as_bytes().to_vec()).await.unwrap();
        let ack = tokio::time::timeout(WAIT, producer.consume())
            .await
            .expect("PUB answered");
        assert!(matches!(ack, Some(NSQEvent::Ok())), "{ack:?}");
    }
}

async fn next_message(consumer: &mut tokio_nsq::NSQConsumer) -> NSQMessage {
    tokio::time::timeout(WAIT, consumer.consume_filtered())
        .await
        .expect("a message arrives")
        .expect("consumer open")
}

#[allow(clippy::disallowed_types)] // tokio-nsq's API takes a HashSet
fn consumer(lookupd_http: u16, topic: &str) -> tokio_nsq::NSQConsumer {
    let mut addresses = HashSet::new();
    addresses.insert(format!("http://127.0.0.1:{lookupd_http}"));
    NSQConsumerConfig::new(NSQTopic::new(topic).unwrap(), NSQChannel::new("interop").unwrap())
        .set_max_in_flight(1)
        .set_sources(NSQConsumerConfigSources::Lookup(
            NSQConsumerLookupConfig::new()
                .set_poll_interval(Duration::from_millis(500))
                .set_addresses(addresses),
        ))
        .build()
}

fn ports() -> Ports {
    Ports {
        lookupd_tcp: free_port(),
        lookupd_http: free_port(),
        nsqd_tcp: free_port(),
        nsqd_http: free_port(),
    }
}

fn lookupd(ports: &Ports) -> Server {
    start(&[
        "lookupd".into(),
        "--tcp-address".into(),
        format!("127.0.0.1:{}", ports.lookupd_tcp),
        "--http-address".into(),
        format!("127.0.0.1:{}", ports.lookupd_http),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_publishes_and_consumes_through_jetsam_lookupd_with_req_and_fin() {
    let ports = ports();
    let data = std::env::temp_dir().join(format!("jetsam-interop-{}-a", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let _lookupd = lookupd(&ports);
    wait_for_port(ports.lookupd_tcp).await;
    let _nsqd = start(&nsqd_args(&ports, &data, &[]));
    wait_for_port(ports.nsqd_tcp).await;

    publish(ports.nsqd_tcp, "interop", &["first"]).await;
    let mut consumer = consumer(ports.lookupd_http, "interop");
    let message = next_message(&mut consumer).await;
    assert_eq!((message.body.as_slice(), message.attempt), (&b"first"[..], 1));
    message.requeue(NSQRequeueDelay::NoDelay).await;
    let again = next_message(&mut consumer).await;
    assert_eq!(
        (again.body.as_slice(), again.attempt),
        (&b"first"[..], 2),
        "REQ 0 redelivers at once"
    );
    again.finish().await;

    publish(ports.nsqd_tcp, "interop", &["second"]).await;
    let second = next_message(&mut consumer).await;
    assert_eq!(
        (second.body.as_slice(), second.attempt),
        (&b"second"[..], 1),
        "the FIN'd message does not come back"
    );
    second.finish().await;

    // nsqd's /stats names the tokio-nsq consumer with what its IDENTIFY said, and counts
    // its three deliveries, one REQ and two FINs (the last FIN may still be on its way).
    let mut client = serde_json::Value::Null;
    for _ in 0..100 {
        let stats = http_get(
            ports.nsqd_http,
            "/stats?format=json&topic=interop&channel=interop",
        )
        .await;
        client = stats["topics"][0]["channels"][0]["clients"][0].clone();
        if client["finish_count"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let user_agent = client["user_agent"].as_str().unwrap_or_default();
    assert!(user_agent.starts_with("tokio_nsq/"), "{client}");
    assert_eq!(client["state"], 3, "subscribed: {client}");
    assert_eq!(client["message_count"], 3, "{client}");
    assert_eq!(client["requeue_count"], 1, "{client}");
    assert_eq!(client["finish_count"], 2, "{client}");
    assert_eq!(client["in_flight_count"], 0, "{client}");
    assert!(client["remote_address"]
        .as_str()
        .unwrap_or_default()
        .starts_with("127.0.0.1:"));
    let _ = std::fs::remove_dir_all(&data);
}

/// A GET to nsqd's HTTP API over HTTP/1.0 (the answer ends with the connection), as JSON.
async fn http_get(port: u16, target: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("nsqd answers")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a header and a body");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_jetsam_nsqd_keeps_its_disk_queue() {
    let ports = ports();
    let data = std::env::temp_dir().join(format!("jetsam-interop-{}-b", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let _lookupd = lookupd(&ports);
    wait_for_port(ports.lookupd_tcp).await;
    // --mem-queue-size 0: every message goes to the disk queue, which a kill -9 keeps (the
    // writes are in the page cache even though nothing was fsynced yet). go-diskqueue finds
    // its messages again only through its metadata file, written at its first sync (every
    // --sync-timeout, 2 s): a kill before that starts an empty queue, as nsqd's does.
    let nsqd = start(&nsqd_args(&ports, &data, &["--mem-queue-size", "0"]));
    wait_for_port(ports.nsqd_tcp).await;
    publish(ports.nsqd_tcp, "durable", &["m1", "m2", "m3"]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    drop(nsqd); // SIGKILL
    let _nsqd = start(&nsqd_args(&ports, &data, &["--mem-queue-size", "0"]));
    wait_for_port(ports.nsqd_tcp).await;
    let mut consumer = consumer(ports.lookupd_http, "durable");
    let mut got = Vec::new();
    for _ in 0..3 {
        let message = next_message(&mut consumer).await;
        got.push(String::from_utf8(message.body.clone()).unwrap());
        message.finish().await;
    }
    got.sort();
    assert_eq!(got, vec!["m1", "m2", "m3"]);
    let _ = std::fs::remove_dir_all(&data);
}
