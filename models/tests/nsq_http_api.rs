//! nsqd's HTTP API, as a real HTTP client sees it: Python's urllib against the real server
//! (`models::nsq::real::run_nsqd`, what `jetsam serve nsq nsqd` runs) on loopback ports.
//! Skipped when there is no python3, unless `JETSAM_REQUIRE_NSQ_CLIENTS` is set.

use models::nsq::nsqd::NsqdOptions;
use models::nsq::real::{run_nsqd, NsqdServer};
use std::process::Command;

/// The client's side: every request and what nsqd must answer, checked by urllib.
const SCRIPT: &str = r#"
import json, socket, struct, sys, time, urllib.request, urllib.error
base, tcp_port = sys.argv[1], int(sys.argv[2])

def call(method, path, body=None):
    request = urllib.request.Request(base + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()

for _ in range(50):
    try:
        if call("GET", "/ping") == (200, "OK"):
            break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("nsqd never answered /ping")

assert json.loads(call("GET", "/info")[1])["version"] == "1.3.0"
assert call("POST", "/topic/create?topic=orders") == (200, "")
assert call("POST", "/channel/create?topic=orders&channel=audit") == (200, "")
assert call("POST", "/pub?topic=orders", b"one") == (200, "OK")
assert call("POST", "/mpub?topic=orders", b"two\nthree\n\nfour\n") == (200, "OK")
binary = struct.pack(">i", 2) + struct.pack(">i", 4) + b"five" + struct.pack(">i", 3) + b"six"
assert call("POST", "/mpub?topic=orders&binary=true", binary) == (200, "OK")
status, body = call("POST", "/pub?topic=orders", b"")
assert (status, json.loads(body)["message"]) == (400, "MSG_EMPTY"), (status, body)
status, body = call("POST", "/pub?topic=bad%20name", b"x")
assert (status, json.loads(body)["message"]) == (400, "INVALID_TOPIC"), (status, body)
assert call("GET", "/nope")[0] == 404

def error(method, path):
    status, body = call(method, path)
    return status, json.loads(body)["message"]

# A consumer on the TCP protocol, named by IDENTIFY, shows up in the channel's clients.
consumer = socket.create_connection(("127.0.0.1", tcp_port))
identify = json.dumps({"client_id": "py-worker", "hostname": "py-host", "user_agent": "urllib-test/1.0"}).encode()
consumer.sendall(b"  V2IDENTIFY\n" + struct.pack(">i", len(identify)) + identify + b"SUB orders live\nRDY 1\n")
def frame():
    size = struct.unpack(">i", consumer.recv(4, socket.MSG_WAITALL))[0]
    data = consumer.recv(size, socket.MSG_WAITALL)
    return struct.unpack(">i", data[:4])[0], data[4:]
assert frame() == (0, b"OK") and frame() == (0, b"OK")

stats = json.loads(call("GET", "/stats?format=json")[1])
assert stats["health"] == "OK" and stats["version"] == "1.3.0" and "start_time" in stats
[topic] = [t for t in stats["topics"] if t["topic_name"] == "orders"]
assert topic["message_count"] == 6, topic
[channel, live] = topic["channels"]
assert channel["channel_name"] == "audit" and channel["depth"] == 6, channel
for key in ("backend_depth", "in_flight_count", "deferred_count", "message_count", "requeue_count",
            "timeout_count", "client_count", "clients", "paused", "e2e_processing_latency"):
    assert key in channel, key
assert live["channel_name"] == "live" and live["client_count"] == 1, live
[client] = live["clients"]
assert (client["client_id"], client["hostname"], client["user_agent"]) == ("py-worker", "py-host", "urllib-test/1.0"), client
assert client["state"] == 3 and client["ready_count"] == 1 and client["version"] == "V2", client
assert client["remote_address"].startswith("127.0.0.1:") and client["connect_ts"] > 0, client
for key in ("in_flight_count", "message_count", "finish_count", "requeue_count", "sample_rate", "tls"):
    assert key in client, key

# Pausing the channel stops deliveries; the topic's messages still reach it.
assert call("POST", "/channel/pause?topic=orders&channel=live") == (200, "")
assert call("POST", "/pub?topic=orders", b"seven") == (200, "OK")
consumer.settimeout(0.5)
try:
    frame()
    sys.exit("a paused channel delivered")
except socket.timeout:
    pass
consumer.settimeout(5)
[live] = [c for c in json.loads(call("GET", "/stats?format=json&topic=orders&channel=live")[1])["topics"][0]["channels"]]
assert live["paused"] and live["depth"] == 1, live
assert call("POST", "/channel/unpause?topic=orders&channel=live") == (200, "")
kind, data = frame()
assert kind == 2 and data.endswith(b"seven"), (kind, data)

# Emptying and deleting, with nsqd's errors.
assert error("POST", "/channel/empty?topic=orders&channel=nope") == (404, "CHANNEL_NOT_FOUND")
assert error("POST", "/channel/create?topic=nope&channel=x") == (404, "TOPIC_NOT_FOUND")
assert error("POST", "/topic/empty") == (400, "MISSING_ARG_TOPIC")
assert call("POST", "/channel/empty?topic=orders&channel=audit") == (200, "")
stats = json.loads(call("GET", "/stats?format=json&topic=orders")[1])
assert [c["depth"] for c in stats["topics"][0]["channels"]] == [0, 0], stats
assert call("POST", "/channel/delete?topic=orders&channel=live") == (200, "")
consumer.settimeout(5)
assert consumer.recv(1) == b"", "deleting the channel closed its consumer"
assert error("POST", "/channel/delete?topic=orders&channel=live") == (404, "CHANNEL_NOT_FOUND")

assert call("POST", "/topic/pause?topic=orders") == (200, "")
assert json.loads(call("GET", "/stats?format=json&topic=orders")[1])["topics"][0]["paused"]
assert call("POST", "/topic/pause?topic=missing")[0] == 404
assert call("POST", "/topic/unpause?topic=orders") == (200, "")
assert "orders" in call("GET", "/stats")[1]
assert call("POST", "/topic/delete?topic=orders") == (200, "")
assert error("POST", "/topic/delete?topic=orders") == (404, "TOPIC_NOT_FOUND")
assert json.loads(call("GET", "/stats?format=json")[1])["topics"] == []
print("ok")
"#;

#[test]
fn a_real_http_client_uses_nsqds_api() {
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("JETSAM_REQUIRE_NSQ_CLIENTS").is_none(),
            "python3 is missing"
        );
        eprintln!("skipped: no python3");
        return;
    }
    let free = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (tcp_address, http_address) = (free(), free());
    let data_path = std::env::temp_dir().join(format!("jetsam-nsq-http-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_path);
    let server = NsqdServer {
        tcp_address,
        http_address,
        lookupd_tcp_addresses: Vec::new(),
        data_path: data_path.clone(),
        broadcast_address: "127.0.0.1".to_string(),
        options: NsqdOptions::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A test outside any simulation: the server runs on its own thread, as a real server
    // beside its client (clippy.toml bans threads for simulations).
    #[allow(clippy::disallowed_methods)]
    let thread = std::thread::spawn(move || {
        models::server::block_on(run_nsqd(server, async move {
            let _ = stopped.await;
        }))
        .expect("nsqd serves");
    });
    let output = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(format!("http://{http_address}"))
        .arg(tcp_address.port().to_string())
        .output()
        .expect("python3 runs");
    let _ = stop.send(());
    thread.join().unwrap();
    let _ = std::fs::remove_dir_all(&data_path);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
