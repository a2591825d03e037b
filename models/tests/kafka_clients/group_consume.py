"""Real Kafka consumer groups against jetsam's Kafka server (issue 12).

Usage: python3 group_consume.py HOST:PORT PHASE
PHASE: share | resume

share: a 3-partition topic, 300 records; a kafka-python KafkaConsumer and a
confluent-kafka Consumer join one group (subscribe, auto-commit off) and poll in
turn until they have read everything between them. Both must end up with
partitions of their own (disjoint, covering the three), and every record must be
read. Each commits what it processed (commitSync after each poll), then both close
(LeaveGroup).

resume (after the server restarted on the same log directory, so the coordinator
loaded the committed offsets from __consumer_offsets): 90 new records are produced;
a kafka-python consumer of the group must read exactly those, not the old ones,
and commit; then 90 more, and a confluent-kafka consumer of the group must read
exactly those.

Every wait is bounded; the script exits non-zero with one line saying what failed.
"""

import sys
import time

TOPIC = "grouped"
GROUP = "jetsam-group"
PARTITIONS = 3
DEADLINE_S = 60


def fail(message):
    print(f"FAILED: {message}", flush=True)
    sys.exit(1)


def produce(bootstrap, prefix, count):
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","), acks="all", request_timeout_ms=10000, max_block_ms=10000
    )
    values = [f"{prefix}-{i}".encode() for i in range(count)]
    futures = [producer.send(TOPIC, value=v, partition=i % PARTITIONS) for i, v in enumerate(values)]
    for future in futures:
        future.get(timeout=DEADLINE_S)
    producer.close(timeout=10)
    return set(values)


def kafka_python_consumer(bootstrap):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        request_timeout_ms=30000,
    )
    consumer.subscribe([TOPIC])
    return consumer


def confluent_consumer(bootstrap):
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
        }
    )
    consumer.subscribe([TOPIC])
    return consumer


def poll_kafka_python(consumer, seen):
    from kafka.errors import CommitFailedError, RebalanceInProgressError

    for _, messages in consumer.poll(timeout_ms=200).items():
        seen.extend(m.value for m in messages)
        try:
            consumer.commit()
        except (CommitFailedError, RebalanceInProgressError) as error:
            # A rebalance moved the partitions meanwhile: the new owner reads them again.
            print(f"kafka-python: commit failed during a rebalance: {error!r}", flush=True)


def poll_confluent(consumer, seen):
    messages = consumer.consume(num_messages=100, timeout=0.2)
    for message in messages:
        if message.error():
            fail(f"confluent-kafka consumer: {message.error()}")
        seen.append(message.value())
    if messages:
        from confluent_kafka import KafkaException

        try:
            consumer.commit(asynchronous=False)
        except KafkaException as error:
            print(f"confluent-kafka: commit failed during a rebalance: {error!r}", flush=True)


def share(bootstrap):
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=10000)
    admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()
    want = produce(bootstrap, "first", 300)
    kp, ck = kafka_python_consumer(bootstrap), confluent_consumer(bootstrap)
    kp_seen, ck_seen = [], []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        poll_kafka_python(kp, kp_seen)
        poll_confluent(ck, ck_seen)
        kp_parts = {tp.partition for tp in kp.assignment()}
        ck_parts = {tp.partition for tp in ck.assignment()}
        done = want <= set(kp_seen) | set(ck_seen)
        if done and kp_parts and ck_parts and not kp_parts & ck_parts:
            break
    print(f"kafka-python owns {sorted(kp_parts)} and read {len(kp_seen)}; "
          f"confluent-kafka owns {sorted(ck_parts)} and read {len(ck_seen)}", flush=True)
    if not kp_parts or not ck_parts or kp_parts & ck_parts or kp_parts | ck_parts != set(range(PARTITIONS)):
        fail(f"assignments are not a split of the partitions: {kp_parts} and {ck_parts}")
    missing = want - set(kp_seen) - set(ck_seen)
    if missing:
        fail(f"{len(missing)} records read by neither, e.g. {sorted(missing)[:3]}")
    # The group is stable now: these commits of the final positions must succeed.
    kp.commit()
    try:
        ck.commit(asynchronous=False)
    except Exception as error:  # librdkafka: nothing new to commit since the last one
        if "NO_OFFSET" not in str(error):
            fail(f"confluent-kafka: final commit failed: {error!r}")
    kp.close()
    ck.close()


def read_alone(make, poll, bootstrap, want, client):
    consumer = make(bootstrap)
    seen = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and not want <= set(seen):
        poll(consumer, seen)
    # A little longer: anything old re-read would show up now.
    end = time.monotonic() + 2
    while time.monotonic() < end:
        poll(consumer, seen)
    consumer.close()
    old = [v for v in seen if v not in want]
    if old:
        fail(f"{client} re-read {len(old)} records committed before, e.g. {old[:3]}")
    if not want <= set(seen):
        fail(f"{client} read {len(set(seen) & want)} of the {len(want)} new records")
    print(f"{client}: resumed at the committed offsets, read the {len(want)} new records", flush=True)


def resume(bootstrap):
    want = produce(bootstrap, "second", 90)
    read_alone(kafka_python_consumer, poll_kafka_python, bootstrap, want, "kafka-python")
    want = produce(bootstrap, "third", 90)
    read_alone(confluent_consumer, poll_confluent, bootstrap, want, "confluent-kafka")


def main():
    bootstrap, phase = sys.argv[1], sys.argv[2]
    {"share": share, "resume": resume}[phase](bootstrap)
    print("OK", flush=True)


if __name__ == "__main__":
    main()
