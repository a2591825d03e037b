"""Real Kafka clients' transactions against jetsam's Kafka server (issue 12).

Usage: python3 transactions.py HOST:PORT

With each client in turn (confluent-kafka, then kafka-python, each on its own topic and
transactional.id): a transactional producer commits a transaction, aborts one, and commits
another. A read_committed consumer of the same client must read exactly the committed
records, in order; a read_uncommitted consumer (Kafka's default) reads the aborted ones too.
Consumers assign() partitions. Then consume-transform-produce's offsets: each client's
producer sends a group's offset to a transaction (AddOffsetsToTxn, TxnOffsetCommit) and
commits it, then another and aborts it; the group's committed offset is the first one.

Every wait is bounded; the script exits non-zero with one line saying what failed.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "txn-orders"
KP_TOPIC = "txn-orders-kafka-python"
RECORDS = 5
DEADLINE_S = 30


def fail(message):
    print(f"FAILED: {message}", flush=True)
    sys.exit(1)


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    for future in futures.values():
        try:
            future.result(timeout=DEADLINE_S)
        except KafkaException as error:
            fail(f"create topic: {error}")


def produce(bootstrap):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "jetsam-txn-test"})
    producer.init_transactions(DEADLINE_S)
    for prefix, commit in (("committed", True), ("aborted", False), ("last", True)):
        producer.begin_transaction()
        for i in range(RECORDS):
            producer.produce(TOPIC, value=f"{prefix}-{i}".encode(), partition=0)
        producer.flush(DEADLINE_S)
        if commit:
            producer.commit_transaction(DEADLINE_S)
        else:
            producer.abort_transaction(DEADLINE_S)


def read(bootstrap, isolation, want):
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused-assign-only",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    got = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < want and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            fail(f"{isolation}: {message.error()}")
        got.append(message.value().decode())
    # Nothing more may come: an aborted record after the last committed one would show here.
    end = time.monotonic() + 2
    while time.monotonic() < end:
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            got.append(message.value().decode())
    consumer.close()
    return got


def kafka_python_produce(bootstrap):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="jetsam-txn-test-kp")
    producer.init_transactions()
    for prefix, commit in (("committed", True), ("aborted", False), ("last", True)):
        producer.begin_transaction()
        for i in range(RECORDS):
            producer.send(KP_TOPIC, value=f"{prefix}-{i}".encode(), partition=0)
        producer.flush(DEADLINE_S)
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close(DEADLINE_S)


def kafka_python_read(bootstrap, isolation, want):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation,
        consumer_timeout_ms=2000,
    )
    consumer.assign([KpPartition(KP_TOPIC, 0)])
    consumer.seek(KpPartition(KP_TOPIC, 0), 0)
    got = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < want and time.monotonic() < deadline:
        for message in consumer:
            got.append(message.value.decode())
    # Nothing more may come (the iterator above stops after 2 s of nothing).
    for message in consumer:
        got.append(message.value.decode())
    consumer.close()
    return got


OFFSETS_COMMITTED = 3
OFFSETS_ABORTED = 8


def send_offsets(bootstrap):
    """confluent-kafka: offsets in a committed then an aborted transaction; the group's
    committed offset afterwards."""
    group = "jetsam-txn-offsets-ck"
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "jetsam-txn-offsets"})
    producer.init_transactions(DEADLINE_S)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    for offset, commit in ((OFFSETS_COMMITTED, True), (OFFSETS_ABORTED, False)):
        producer.begin_transaction()
        producer.produce(TOPIC, value=f"transformed-{offset}".encode(), partition=0)
        offsets = [TopicPartition(TOPIC, 0, offset)]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), DEADLINE_S)
        if commit:
            producer.commit_transaction(DEADLINE_S)
        else:
            producer.abort_transaction(DEADLINE_S)
    committed = consumer.committed([TopicPartition(TOPIC, 0)], timeout=DEADLINE_S)[0].offset
    consumer.close()
    return committed


def kafka_python_send_offsets(bootstrap):
    """kafka-python: the same, by group id."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpPartition
    from kafka.structs import OffsetAndMetadata

    group = "jetsam-txn-offsets-kp"
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="jetsam-txn-offsets-kp")
    producer.init_transactions()
    partition = KpPartition(KP_TOPIC, 0)
    for offset, commit in ((OFFSETS_COMMITTED, True), (OFFSETS_ABORTED, False)):
        producer.begin_transaction()
        producer.send(KP_TOPIC, value=f"transformed-{offset}".encode(), partition=0)
        producer.send_offsets_to_transaction({partition: OffsetAndMetadata(offset, "", -1)}, group)
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close(DEADLINE_S)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    committed = consumer.committed(partition)
    consumer.close()
    return committed


def main():
    bootstrap = sys.argv[1]
    create_topic(bootstrap, TOPIC)
    create_topic(bootstrap, KP_TOPIC)
    produce(bootstrap)
    committed = [f"committed-{i}" for i in range(RECORDS)] + [f"last-{i}" for i in range(RECORDS)]
    everything = (
        [f"committed-{i}" for i in range(RECORDS)]
        + [f"aborted-{i}" for i in range(RECORDS)]
        + [f"last-{i}" for i in range(RECORDS)]
    )
    got = read(bootstrap, "read_committed", len(committed))
    if got != committed:
        fail(f"read_committed read {got}, want {committed}")
    got = read(bootstrap, "read_uncommitted", len(everything))
    if got != everything:
        fail(f"read_uncommitted read {got}, want {everything}")
    print("confluent-kafka: committed, aborted, committed; read_committed saw only the committed")
    kafka_python_produce(bootstrap)
    got = kafka_python_read(bootstrap, "read_committed", len(committed))
    if got != committed:
        fail(f"kafka-python read_committed read {got}, want {committed}")
    got = kafka_python_read(bootstrap, "read_uncommitted", len(everything))
    if got != everything:
        fail(f"kafka-python read_uncommitted read {got}, want {everything}")
    print("kafka-python: committed, aborted, committed; read_committed saw only the committed")
    committed = send_offsets(bootstrap)
    if committed != OFFSETS_COMMITTED:
        fail(f"confluent-kafka: group offset {committed} after the transactions, want {OFFSETS_COMMITTED}")
    print("confluent-kafka: offsets sent to a committed transaction are the group's; an abort's are not")
    committed = kafka_python_send_offsets(bootstrap)
    if committed != OFFSETS_COMMITTED:
        fail(f"kafka-python: group offset {committed} after the transactions, want {OFFSETS_COMMITTED}")
    print("kafka-python: offsets sent to a committed transaction are the group's; an abort's are not")
    print("OK", flush=True)


if __name__ == "__main__":
    main()
