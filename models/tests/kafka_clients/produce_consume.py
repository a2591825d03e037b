"""Real Kafka clients against jetsam's Kafka server (issue 10).

Usage: python3 produce_consume.py HOST:PORT[,HOST:PORT...] PHASE
PHASE: first | after-restart | cluster | before-kill | after-kill

first: with kafka-python and then with confluent-kafka (librdkafka), each in turn,
create a topic with the client's admin API, produce N records with acks=all and
idempotence (so InitProducerId is exercised), and read them back with the *other*
client, checking every value and its order.

after-restart (the same log directory, a new server process): new idempotent
producers of both clients append to the topics, and both clients read every record,
old and new. A restarted broker must not hand out producer ids again: the
partitions remember the old producers' sequence numbers from their logs.

cluster (three brokers, min.insync.replicas=3): a topic with three replicas per
partition, produced to by both clients with acks=all, so every acknowledged record
is on all three brokers, copied between them over TCP; both clients read it all
from the leaders.

before-kill, after-kill (three brokers, min.insync.replicas=2, broker 2 killed in
between): both clients produce before and after; after the kill they must find the
new leader of broker 2's partitions once the controller fences it, retry what timed
out without duplicating it (idempotence), and read every record exactly once. Consumers here
assign() partitions and commit nothing; groups are group_consume.py's.

Every wait is bounded; the script exits non-zero with one line saying what failed.
"""

import sys
import time

RECORDS = 200
PARTITIONS = 2
DEADLINE_S = 30


def fail(message):
    print(f"FAILED: {message}", flush=True)
    sys.exit(1)


def expected(prefix):
    """The values produced, per partition, in the order produced."""
    return {
        p: [f"{prefix}-{p}-{i}".encode() for i in range(RECORDS) if i % PARTITIONS == p]
        for p in range(PARTITIONS)
    }


def check(client, got, want):
    for partition, values in want.items():
        if got.get(partition, []) != values:
            fail(
                f"{client}: partition {partition} read {len(got.get(partition, []))} "
                f"records, want {len(values)}; first differences: "
                f"{[(a, b) for a, b in zip(got.get(partition, []), values) if a != b][:3]}"
            )


def kafka_python_create(bootstrap, topic, replication_factor=1):
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=10000)
    admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=replication_factor)]
    )
    admin.close()


def kafka_python_produce(bootstrap, topic, values):
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=10000,
        max_block_ms=10000,
    )
    futures = []
    for partition, records in values.items():
        for value in records:
            futures.append(producer.send(topic, value=value, partition=partition))
    for future in futures:
        metadata = future.get(timeout=DEADLINE_S)
        if metadata.offset < 0:
            fail(f"kafka-python: produce answered offset {metadata.offset}")
    producer.flush(timeout=DEADLINE_S)
    producer.close(timeout=10)


def kafka_python_consume(bootstrap, topic, want):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=10000,
    )
    consumer.assign([TopicPartition(topic, p) for p in want])
    got = {p: [] for p in want}
    total = sum(len(v) for v in want.values())
    deadline = time.monotonic() + DEADLINE_S
    while sum(len(v) for v in got.values()) < total and time.monotonic() < deadline:
        for tp, messages in consumer.poll(timeout_ms=500).items():
            got[tp.partition].extend(m.value for m in messages)
    consumer.close()
    return got


def confluent_create(bootstrap, topic):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
        request_timeout=10,
    )
    for name, future in futures.items():
        future.result(timeout=DEADLINE_S)


def confluent_produce(bootstrap, topic, values):
    from confluent_kafka import Producer

    errors = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": DEADLINE_S * 1000,
        }
    )

    def delivered(error, message):
        if error is not None:
            errors.append(str(error))

    for partition, records in values.items():
        for value in records:
            producer.produce(topic, value=value, partition=partition, on_delivery=delivered)
            producer.poll(0)
    left = producer.flush(DEADLINE_S)
    if left:
        fail(f"confluent-kafka: {left} records not delivered in {DEADLINE_S} s")
    if errors:
        fail(f"confluent-kafka: delivery failed: {errors[:3]}")


def confluent_consume(bootstrap, topic, want):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # librdkafka requires a group.id for a Consumer even when it only assigns;
            # nothing is committed, so the coordinator is never needed.
            "group.id": "jetsam-assign-only",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in want])
    got = {p: [] for p in want}
    total = sum(len(v) for v in want.values())
    deadline = time.monotonic() + DEADLINE_S
    while sum(len(v) for v in got.values()) < total and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            fail(f"confluent-kafka consumer: {message.error()}")
        got[message.partition()].append(message.value())
    consumer.close()
    return got


def first(bootstrap):
    want = expected("kp")
    kafka_python_create(bootstrap, "from-kafka-python")
    kafka_python_produce(bootstrap, "from-kafka-python", want)
    print("kafka-python: created a topic and produced", RECORDS, "records", flush=True)
    check("confluent-kafka consumer", confluent_consume(bootstrap, "from-kafka-python", want), want)
    print("confluent-kafka: read them all back", flush=True)

    want = expected("ck")
    confluent_create(bootstrap, "from-confluent")
    confluent_produce(bootstrap, "from-confluent", want)
    print("confluent-kafka: created a topic and produced", RECORDS, "records", flush=True)
    check("kafka-python consumer", kafka_python_consume(bootstrap, "from-confluent", want), want)
    print("kafka-python: read them all back", flush=True)


def after_restart(bootstrap):
    old, by_kafka_python, by_confluent = expected("ck"), expected("kp2"), expected("ck2")
    kafka_python_produce(bootstrap, "from-confluent", by_kafka_python)
    confluent_produce(bootstrap, "from-confluent", by_confluent)
    print("after a restart: both clients produced", RECORDS, "records each", flush=True)
    want = {p: old[p] + by_kafka_python[p] + by_confluent[p] for p in old}
    check("kafka-python consumer", kafka_python_consume(bootstrap, "from-confluent", want), want)
    check("confluent-kafka consumer", confluent_consume(bootstrap, "from-confluent", want), want)
    print("after a restart: both clients read every record, old and new", flush=True)


def cluster(bootstrap):
    kafka_python_create(bootstrap, "replicated", replication_factor=3)
    by_kafka_python, by_confluent = expected("kp3"), expected("ck3")
    kafka_python_produce(bootstrap, "replicated", by_kafka_python)
    confluent_produce(bootstrap, "replicated", by_confluent)
    print("three brokers: both clients produced", RECORDS, "records each, on all replicas", flush=True)
    want = {p: by_kafka_python[p] + by_confluent[p] for p in by_kafka_python}
    check("kafka-python consumer", kafka_python_consume(bootstrap, "replicated", want), want)
    check("confluent-kafka consumer", confluent_consume(bootstrap, "replicated", want), want)
    print("three brokers: both clients read every record", flush=True)


def before_kill(bootstrap):
    kafka_python_create(bootstrap, "failover", replication_factor=3)
    by_kafka_python, by_confluent = expected("kp4"), expected("ck4")
    kafka_python_produce(bootstrap, "failover", by_kafka_python)
    confluent_produce(bootstrap, "failover", by_confluent)
    want = {p: by_kafka_python[p] + by_confluent[p] for p in by_kafka_python}
    check("confluent-kafka consumer", confluent_consume(bootstrap, "failover", want), want)
    print("before the kill: both clients produced and read", 2 * RECORDS, "records", flush=True)


def after_kill(bootstrap):
    # Produces wait until the controller fences the killed broker (broker.session.timeout.ms,
    # 9 s): then its partitions get new leaders, and leaders stop waiting for it as a follower
    # (KIP-841's eligibility check). The deadline leaves room on a loaded machine.
    global DEADLINE_S
    DEADLINE_S = 90
    old = {p: expected("kp4")[p] + expected("ck4")[p] for p in range(PARTITIONS)}
    by_kafka_python, by_confluent = expected("kp5"), expected("ck5")
    kafka_python_produce(bootstrap, "failover", by_kafka_python)
    confluent_produce(bootstrap, "failover", by_confluent)
    print("after the kill: both clients produced", RECORDS, "records each", flush=True)
    want = {p: old[p] + by_kafka_python[p] + by_confluent[p] for p in old}
    check("kafka-python consumer", kafka_python_consume(bootstrap, "failover", want), want)
    check("confluent-kafka consumer", confluent_consume(bootstrap, "failover", want), want)
    print("after the kill: both clients read every record once, in order", flush=True)


def main():
    bootstrap, phase = sys.argv[1], sys.argv[2]
    import kafka
    import confluent_kafka

    print(
        f"kafka-python {kafka.__version__}, confluent-kafka {confluent_kafka.__version__} "
        f"(librdkafka {confluent_kafka.libversion()[0]})",
        flush=True,
    )
    phases = {
        "first": first,
        "after-restart": after_restart,
        "cluster": cluster,
        "before-kill": before_kill,
        "after-kill": after_kill,
    }
    phases[phase](bootstrap)
    print("OK", flush=True)


if __name__ == "__main__":
    main()
