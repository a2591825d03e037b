"""Real MQTT clients (paho-mqtt 2.x, MQTT 3.1.1) against a broker: jetsam's or mosquitto.

Usage: python3 paho_flows.py HOST PORT PHASE
PHASE: qos | session | retained | will | will-child

qos: a subscriber granted QoS 2 on jetsam/qos/#; a publisher sends ten messages at each of
QoS 0, 1 and 2, waiting for each one's acknowledgement (none for QoS 0). The subscriber gets
all thirty, each at its publish QoS (min(publish, granted)), in publish order per QoS, once.

session: a subscriber with CleanSession=0 subscribes (QoS 1 and QoS 2 topics) and
disconnects; five messages at each QoS are published while it is away; it reconnects with
CleanSession=0, sees session present, and gets all ten, each QoS in publish order. A QoS 0
message published while it was away is not queued (mosquitto's queue_qos0_messages false).

retained: a retained QoS 1 message reaches a later subscriber with RETAIN=1; after an empty
retained message on the same topic a new subscriber gets nothing.

will: a child process (this script, phase will-child) connects with a QoS 1 will and is
killed with SIGKILL, so its socket closes without DISCONNECT; a subscriber gets the will. A
client that sends DISCONNECT before closing has its will discarded.

Every wait is bounded; the script exits non-zero with one line saying what failed.
"""

import os
import queue
import signal
import subprocess
import sys
import time

import paho.mqtt
import paho.mqtt.client as mqtt

DEADLINE_S = 10
# How long "nothing arrives" is watched for.
SILENCE_S = 1.0
MESSAGES_PER_QOS = 10


def fail(message):
    print(f"FAILED: {message}", flush=True)
    sys.exit(1)


def get(events, what):
    try:
        return events.get(timeout=DEADLINE_S)
    except queue.Empty:
        fail(f"no {what} within {DEADLINE_S} s")


class Client:
    """A paho client on its own network thread, its callbacks turned into queues."""

    def __init__(self, host, port, client_id, clean_session=True, will=None):
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.messages = queue.Queue()
        self.client_id = client_id
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        # No reconnecting behind the test's back: a lost connection is a failure here.
        client.reconnect_delay_set(min_delay=60, max_delay=60)
        if will is not None:
            client.will_set(*will)
        client.on_connect = lambda _c, _u, flags, reason, _p: self.connacks.put(
            (flags.session_present, reason)
        )
        client.on_subscribe = lambda _c, _u, mid, reasons, _p: self.subacks.put((mid, reasons))
        client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client = client
        client.connect(host, port, keepalive=30)
        client.loop_start()
        self.session_present, reason = get(self.connacks, f"CONNACK for {client_id}")
        if reason.is_failure:
            fail(f"{client_id}: CONNACK {reason}")

    def subscribe(self, topic, qos):
        result, mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            fail(f"{self.client_id}: subscribe {topic}: {mqtt.error_string(result)}")
        acked_mid, reasons = get(self.subacks, f"SUBACK for {topic}")
        granted = [reason.value for reason in reasons]
        if acked_mid != mid or granted != [qos]:
            fail(f"{self.client_id}: SUBACK {acked_mid} {granted}, want {mid} [{qos}]")

    def publish(self, topic, payload, qos, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=DEADLINE_S)
        if not info.is_published():
            fail(f"{self.client_id}: {topic} {payload!r} at QoS {qos} not acknowledged")

    def receive(self, count, what):
        return [get(self.messages, f"{what} ({i + 1} of {count})") for i in range(count)]

    def expect_nothing(self, what):
        try:
            message = self.messages.get(timeout=SILENCE_S)
        except queue.Empty:
            return
        fail(f"{self.client_id}: {what}, got {message.topic} {message.payload!r}")

    def disconnect(self):
        """A clean DISCONNECT."""
        self.client.disconnect()
        self.client.loop_stop()


def describe(message):
    return (message.topic, message.payload.decode(), message.qos, message.retain)


def by_qos(messages):
    grouped = {}
    for message in messages:
        grouped.setdefault(message.qos, []).append(message.payload.decode())
    return grouped


def qos(host, port):
    subscriber = Client(host, port, "jetsam-qos-sub")
    subscriber.subscribe("jetsam/qos/#", 2)
    publisher = Client(host, port, "jetsam-qos-pub")
    for level in (0, 1, 2):
        for i in range(MESSAGES_PER_QOS):
            publisher.publish(f"jetsam/qos/{level}", f"q{level}-{i}", level)
    got = subscriber.receive(3 * MESSAGES_PER_QOS, "published messages")
    subscriber.expect_nothing("a message past the thirty published")
    for message in got:
        want = int(message.topic.rsplit("/", 1)[1])
        if message.qos != want or message.retain:
            fail(f"delivered {describe(message)}, want QoS {want} without RETAIN")
    grouped = by_qos(got)
    for level in (0, 1, 2):
        want = [f"q{level}-{i}" for i in range(MESSAGES_PER_QOS)]
        if grouped.get(level) != want:
            fail(f"QoS {level}: got {grouped.get(level)}, want {want} in order")
    publisher.disconnect()
    subscriber.disconnect()
    print(f"QoS 0, 1, 2: {len(got)} messages, each once, in order", flush=True)


def session(host, port):
    client_id = "jetsam-session-sub"
    # A clean session first, so an earlier run's session cannot answer for this one.
    Client(host, port, client_id).disconnect()
    subscriber = Client(host, port, client_id, clean_session=False)
    if subscriber.session_present:
        fail("session present on a new session")
    subscriber.subscribe("jetsam/session/1", 1)
    subscriber.subscribe("jetsam/session/2", 2)
    subscriber.disconnect()
    publisher = Client(host, port, "jetsam-session-pub")
    publisher.publish("jetsam/session/1", "qos0-while-away", 0)
    for i in range(5):
        publisher.publish("jetsam/session/1", f"q1-{i}", 1)
        publisher.publish("jetsam/session/2", f"q2-{i}", 2)
    publisher.disconnect()
    resumed = Client(host, port, client_id, clean_session=False)
    if not resumed.session_present:
        fail("session present is 0 on a CleanSession=0 resume")
    got = resumed.receive(10, "messages queued while away")
    resumed.expect_nothing("nothing past the ten queued (QoS 0 is not queued)")
    grouped = by_qos(got)
    for level in (1, 2):
        want = [f"q{level}-{i}" for i in range(5)]
        if grouped.get(level) != want:
            fail(f"QoS {level} while away: got {grouped.get(level)}, want {want}")
    resumed.disconnect()
    Client(host, port, client_id).disconnect()
    print("persistent session: session present, 10 queued messages in order", flush=True)


def retained(host, port):
    topic = "jetsam/retained"
    publisher = Client(host, port, "jetsam-retained-pub")
    publisher.publish(topic, "kept", 1, retain=True)
    first = Client(host, port, "jetsam-retained-sub-1")
    first.subscribe(topic, 1)
    (message,) = first.receive(1, "the retained message")
    if describe(message) != (topic, "kept", 1, True):
        fail(f"retained message arrived as {describe(message)}")
    # Clearing it: current subscribers get the empty message (without RETAIN, being live).
    publisher.publish(topic, b"", 1, retain=True)
    (cleared,) = first.receive(1, "the empty retained message")
    if describe(cleared) != (topic, "", 1, False):
        fail(f"the empty retained message arrived as {describe(cleared)}")
    second = Client(host, port, "jetsam-retained-sub-2")
    second.subscribe(topic, 1)
    second.expect_nothing("a retained message after an empty one cleared it")
    for client in (publisher, first, second):
        client.disconnect()
    print("retained: delivered with RETAIN=1, cleared by an empty payload", flush=True)


def will(host, port):
    subscriber = Client(host, port, "jetsam-will-sub")
    subscriber.subscribe("jetsam/will/#", 1)
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), host, str(port), "will-child"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        if line.strip() != "CONNECTED":
            fail(f"the will child said {line!r}")
        subscriber.expect_nothing("a will while its client lives")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=DEADLINE_S)
    (message,) = subscriber.receive(1, "the killed client's will")
    if describe(message) != ("jetsam/will/child", "child died", 1, False):
        fail(f"will arrived as {describe(message)}")
    polite = Client(host, port, "jetsam-will-polite", will=("jetsam/will/polite", "should not", 1))
    polite.disconnect()
    subscriber.expect_nothing("the will of a client that sent DISCONNECT")
    subscriber.disconnect()
    print("will: published for a killed client, not after DISCONNECT", flush=True)


def will_child(host, port):
    Client(host, port, "jetsam-will-child", will=("jetsam/will/child", "child died", 1))
    print("CONNECTED", flush=True)
    time.sleep(60)


def main():
    host, port, phase = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    phases = {
        "qos": qos,
        "session": session,
        "retained": retained,
        "will": will,
        "will-child": will_child,
    }
    if phase not in phases:
        fail(f"unknown phase {phase!r}")
    if phase != "will-child":
        print(f"paho-mqtt {paho.mqtt.__version__}", flush=True)
    phases[phase](host, port)
    if phase != "will-child":
        print("OK", flush=True)


if __name__ == "__main__":
    main()
