//! The consumer group leader's partition assignors, as the Java consumer's `RangeAssignor`
//! (the first of `partition.assignment.strategy`'s defaults) and `RoundRobinAssignor` compute
//! them, and the consumer protocol's subscription and assignment bytes (JoinGroup's member
//! metadata and SyncGroup's assignments: a big-endian i16 version, then the body at it).
//!
//! Sans I/O: the leader calls [`Assignor::assign`] with what the JoinGroup answer said about
//! every member and the partition counts Metadata gave it.
#![deny(clippy::too_many_lines)]

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment, ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::BTreeMap;

/// Members one assignment may name: a JoinGroup answer claiming more is refused rather than
/// assigned (Kafka's `group.max.size` is unbounded by default; ours is a sanity bound).
pub const GROUP_MEMBERS_MAX: usize = 1024;
/// Partitions per topic an assignor accepts (the client's own metadata bound).
pub const ASSIGNED_TOPIC_PARTITIONS_MAX: i32 = 4096;
/// The consumer protocol version the Java client (3.5+) writes for subscriptions and
/// assignments; readers accept any version up to it and read a later one at it, as Java's
/// `ConsumerProtocol` does.
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// A `partition.assignment.strategy` this model implements, by its protocol name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Assignor {
    /// Per topic, consecutive ranges of partitions to members in member-id order; the first
    /// `partitions % members` members get one more.
    Range,
    /// Every partition of every subscribed topic, in (topic, partition) order, dealt to the
    /// members in member-id order in turn, skipping members not subscribed to its topic.
    RoundRobin,
}

impl Assignor {
    /// The protocol name in JoinGroup, as Java's assignors name themselves.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        [Assignor::Range, Assignor::RoundRobin]
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// Each member's partitions, per topic, from the members' subscribed topics and each
    /// topic's partition count. Topics without a count (unknown to Metadata) get nothing.
    /// Every member appears in the answer, with nothing if nothing is left for it.
    pub fn assign(
        self,
        partitions_per_topic: &BTreeMap<String, i32>,
        subscriptions: &BTreeMap<String, Vec<String>>,
    ) -> Result<BTreeMap<String, BTreeMap<String, Vec<i32>>>, String> {
        if subscriptions.len() > GROUP_MEMBERS_MAX {
            return Err(format!(
                "{} members: at most {GROUP_MEMBERS_MAX}",
                subscriptions.len()
            ));
        }
        if let Some((topic, n)) = partitions_per_topic
            .iter()
            .find(|(_, n)| !(0..=ASSIGNED_TOPIC_PARTITIONS_MAX).contains(*n))
        {
            return Err(format!("topic {topic}: {n} partitions"));
        }
        let mut assignment: BTreeMap<String, BTreeMap<String, Vec<i32>>> = subscriptions
            .keys()
            .map(|member| (member.clone(), BTreeMap::new()))
            .collect();
        match self {
            Assignor::Range => range(partitions_per_topic, subscriptions, &mut assignment),
            Assignor::RoundRobin => round_robin(partitions_per_topic, subscriptions, &mut assignment),
        }
        Ok(assignment)
    }
}

/// Java's `RangeAssignor`: member ids sort the members (a BTreeMap's keys already are).
fn range(
    partitions_per_topic: &BTreeMap<String, i32>,
    subscriptions: &BTreeMap<String, Vec<String>>,
    assignment: &mut BTreeMap<String, BTreeMap<String, Vec<i32>>>,
) {
    for (topic, partitions) in partitions_per_topic {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        let n = members.len() as i32;
        let (per_member, with_extra) = (partitions / n, partitions % n);
        for (i, member) in members.into_iter().enumerate() {
            let i = i as i32;
            let start = per_member * i + i.min(with_extra);
            let length = per_member + i32::from(i < with_extra);
            if length > 0 {
                let mine = assignment.get_mut(member).expect("every member is in the answer");
                mine.insert(topic.clone(), (start..start + length).collect());
            }
        }
    }
}

/// Java's `RoundRobinAssignor`: a circular iterator over the sorted members, advanced past
/// members not subscribed to the partition's topic.
fn round_robin(
    partitions_per_topic: &BTreeMap<String, i32>,
    subscriptions: &BTreeMap<String, Vec<String>>,
    assignment: &mut BTreeMap<String, BTreeMap<String, Vec<i32>>>,
) {
    let members: Vec<&String> = subscriptions.keys().collect();
    if members.is_empty() {
        return;
    }
    let mut next = 0;
    for (topic, partitions) in partitions_per_topic {
        if !subscriptions.values().any(|topics| topics.contains(topic)) {
            continue;
        }
        for partition in 0..*partitions {
            while !subscriptions[members[next % members.len()]].contains(topic) {
                next += 1;
            }
            let member = members[next % members.len()];
            next += 1;
            let mine = assignment.get_mut(member).expect("every member is in the answer");
            mine.entry(topic.clone()).or_default().push(partition);
        }
    }
}

/// A member's JoinGroup metadata for `topics`, at [`CONSUMER_PROTOCOL_VERSION`]. The eager
/// protocol revokes everything before it joins, so it names no owned partitions.
pub fn encode_subscription(topics: &[String], generation_id: i32) -> Bytes {
    let body = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| StrBytes::from_string(t.clone())).collect())
        .with_generation_id(generation_id);
    versioned(&body)
}

/// The topics a member's JoinGroup metadata subscribes to.
pub fn decode_subscription(metadata: &Bytes) -> Result<Vec<String>, String> {
    let (mut body, version) = version_of(metadata)?;
    Layout(&body).subscription(version)?;
    let subscription =
        ConsumerProtocolSubscription::decode(&mut body, version).map_err(|e| format!("subscription: {e}"))?;
    Ok(subscription.topics.iter().map(|t| t.to_string()).collect())
}

/// One member's SyncGroup assignment bytes.
pub fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Bytes {
    let assigned = partitions
        .iter()
        .map(|(topic, partitions)| {
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(partitions.clone())
        })
        .collect();
    let body = ConsumerProtocolAssignment::default().with_assigned_partitions(assigned);
    versioned(&body)
}

/// The partitions of `topic` a SyncGroup answer's assignment gives this member. Empty bytes
/// are an empty assignment (what the coordinator sends a member the leader left out).
pub fn decode_assignment(bytes: &Bytes, topic: &str) -> Result<Vec<i32>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (mut body, version) = version_of(bytes)?;
    Layout(&body).assignment()?;
    let assignment =
        ConsumerProtocolAssignment::decode(&mut body, version).map_err(|e| format!("assignment: {e}"))?;
    let mut partitions: Vec<i32> = assignment
        .assigned_partitions
        .iter()
        .filter(|tp| tp.topic.0.as_str() == topic)
        .flat_map(|tp| tp.partitions.iter().copied())
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    if partitions.len() > ASSIGNED_TOPIC_PARTITIONS_MAX as usize {
        return Err(format!("assignment: {} partitions", partitions.len()));
    }
    Ok(partitions)
}

fn versioned(body: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    body.encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .expect("a consumer protocol body encodes at its own version");
    buf.freeze()
}

/// The version prefix, and the body to read at it (a later version is read as ours: its
/// new fields come after ours, as Kafka's consumer protocol guarantees).
fn version_of(bytes: &Bytes) -> Result<(Bytes, i16), String> {
    let mut body = bytes.clone();
    if body.remaining() < 2 {
        return Err("consumer protocol bytes without a version".into());
    }
    let version = body.get_i16();
    if version < 0 {
        return Err(format!("consumer protocol version {version}"));
    }
    Ok((body, version.min(CONSUMER_PROTOCOL_VERSION)))
}

/// A walk over consumer protocol bytes (never flexible, versions 0-3) that refuses any
/// length claiming more than the bytes left, before kafka-protocol reserves memory for it:
/// its decoder calls `Vec::with_capacity` with the claimed count, and a four-byte lie would
/// abort the process (the same reason as `wire_schema`).
struct Layout<'a>(&'a [u8]);

impl Layout<'_> {
    fn subscription(mut self, version: i16) -> Result<(), String> {
        self.array(2, |s| s.string())?;
        self.bytes()?;
        if version >= 1 {
            self.array(6, Layout::topic_partitions)?;
        }
        if version >= 2 {
            self.take(4)?;
        }
        if version >= 3 {
            self.string()?;
        }
        Ok(())
    }

    fn assignment(mut self) -> Result<(), String> {
        self.array(6, Layout::topic_partitions)?;
        self.bytes()
    }

    fn topic_partitions(&mut self) -> Result<(), String> {
        self.string()?;
        self.array(4, |s| s.take(4))
    }

    fn take(&mut self, n: usize) -> Result<(), String> {
        if n > self.0.len() {
            return Err(format!(
                "consumer protocol: {n} bytes claimed, {} left",
                self.0.len()
            ));
        }
        self.0 = &self.0[n..];
        Ok(())
    }

    fn length(&mut self, width: usize) -> Result<i64, String> {
        let Some(raw) = self.0.get(..width) else {
            return Err("consumer protocol: truncated length".into());
        };
        let value = match width {
            2 => i64::from(i16::from_be_bytes([raw[0], raw[1]])),
            _ => i64::from(i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])),
        };
        self.0 = &self.0[width..];
        Ok(value)
    }

    fn string(&mut self) -> Result<(), String> {
        let n = self.length(2)?;
        self.take(usize::try_from(n).unwrap_or(0))
    }

    fn bytes(&mut self) -> Result<(), String> {
        let n = self.length(4)?;
        self.take(usize::try_from(n).unwrap_or(0))
    }

    fn array(
        &mut self,
        element_min: usize,
        mut element: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let n = usize::try_from(self.length(4)?).unwrap_or(0);
        if n.saturating_mul(element_min) > self.0.len() {
            return Err(format!(
                "consumer protocol: {n} elements claimed, {} bytes left",
                self.0.len()
            ));
        }
        (0..n).try_for_each(|_| element(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        spec.iter()
            .map(|(m, topics)| (m.to_string(), topics.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(spec: &[(&str, i32)]) -> BTreeMap<String, i32> {
        spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn of<'a>(a: &'a BTreeMap<String, BTreeMap<String, Vec<i32>>>, m: &str, t: &str) -> &'a [i32] {
        a[m].get(t).map(Vec::as_slice).unwrap_or(&[])
    }

    #[test]
    fn range_gives_the_first_members_the_extra_partitions() {
        // RangeAssignor's javadoc: C0 [t0p0, t0p1], C1 [t0p2] for three partitions, two members.
        let subs = members(&[("c0", &["t0", "t1"]), ("c1", &["t0", "t1"])]);
        let a = Assignor::Range
            .assign(&counts(&[("t0", 3), ("t1", 3)]), &subs)
            .unwrap();
        assert_eq!(of(&a, "c0", "t0"), &[0, 1]);
        assert_eq!(of(&a, "c1", "t0"), &[2]);
        assert_eq!(of(&a, "c0", "t1"), &[0, 1]);
        assert_eq!(of(&a, "c1", "t1"), &[2]);
    }

    #[test]
    fn round_robin_deals_across_topics() {
        // RoundRobinAssignor's javadoc: C0 [t0p0, t0p2, t1p1], C1 [t0p1, t1p0, t1p2].
        let subs = members(&[("c0", &["t0", "t1"]), ("c1", &["t0", "t1"])]);
        let a = Assignor::RoundRobin
            .assign(&counts(&[("t0", 3), ("t1", 3)]), &subs)
            .unwrap();
        assert_eq!(of(&a, "c0", "t0"), &[0, 2]);
        assert_eq!(of(&a, "c0", "t1"), &[1]);
        assert_eq!(of(&a, "c1", "t0"), &[1]);
        assert_eq!(of(&a, "c1", "t1"), &[0, 2]);
    }

    #[test]
    fn round_robin_skips_members_not_subscribed() {
        // The javadoc's unequal subscriptions: C0 [t0], C1 [t0, t1], C2 [t0, t1, t2]; t0 has
        // one partition, t1 two, t2 three.
        let subs = members(&[
            ("c0", &["t0"]),
            ("c1", &["t0", "t1"]),
            ("c2", &["t0", "t1", "t2"]),
        ]);
        let a = Assignor::RoundRobin
            .assign(&counts(&[("t0", 1), ("t1", 2), ("t2", 3)]), &subs)
            .unwrap();
        assert_eq!(of(&a, "c0", "t0"), &[0]);
        assert_eq!(of(&a, "c1", "t1"), &[0]);
        assert_eq!(of(&a, "c2", "t1"), &[1]);
        assert_eq!(of(&a, "c2", "t2"), &[0, 1, 2]);
    }

    #[test]
    fn more_members_than_partitions_leaves_some_empty() {
        let subs = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let a = assignor.assign(&counts(&[("t", 2)]), &subs).unwrap();
            assert_eq!(of(&a, "a", "t"), &[0]);
            assert_eq!(of(&a, "b", "t"), &[1]);
            assert!(of(&a, "c", "t").is_empty(), "{assignor:?}");
            assert_eq!(a.len(), 3, "every member is answered");
        }
    }

    #[test]
    fn every_partition_goes_to_exactly_one_member() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            for n_members in 1..6 {
                for n_partitions in 0..12 {
                    let subs: BTreeMap<String, Vec<String>> = (0..n_members)
                        .map(|i| (format!("m{i}"), vec!["t".into()]))
                        .collect();
                    let a = assignor.assign(&counts(&[("t", n_partitions)]), &subs).unwrap();
                    let mut all: Vec<i32> = a
                        .values()
                        .flat_map(|t| t.get("t").cloned().unwrap_or_default())
                        .collect();
                    all.sort_unstable();
                    assert_eq!(all, (0..n_partitions).collect::<Vec<_>>(), "{assignor:?}");
                    let sizes: Vec<usize> = a.values().map(|t| t.get("t").map_or(0, Vec::len)).collect();
                    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(max - min <= 1, "{assignor:?} balanced: {sizes:?}");
                }
            }
        }
    }

    #[test]
    fn bounds_are_refused_not_assigned() {
        let subs = members(&[("a", &["t"])]);
        assert!(Assignor::Range.assign(&counts(&[("t", -1)]), &subs).is_err());
        assert!(Assignor::Range.assign(&counts(&[("t", 1 << 20)]), &subs).is_err());
        let many: BTreeMap<String, Vec<String>> = (0..=GROUP_MEMBERS_MAX)
            .map(|i| (format!("m{i:05}"), vec![]))
            .collect();
        assert!(Assignor::RoundRobin.assign(&counts(&[("t", 1)]), &many).is_err());
    }

    #[test]
    fn subscription_and_assignment_bytes_round_trip() {
        let topics = vec!["orders".to_string()];
        let metadata = encode_subscription(&topics, 4);
        assert_eq!(&metadata[..2], &[0, 3], "the version prefix");
        assert_eq!(decode_subscription(&metadata).unwrap(), topics);
        let mut mine = BTreeMap::new();
        mine.insert("orders".to_string(), vec![2, 0]);
        mine.insert("other".to_string(), vec![1]);
        let bytes = encode_assignment(&mine);
        assert_eq!(decode_assignment(&bytes, "orders").unwrap(), vec![0, 2]);
        assert_eq!(
            decode_assignment(&Bytes::new(), "orders").unwrap(),
            Vec::<i32>::new()
        );
    }

    #[test]
    fn a_version_0_subscription_from_an_older_client_is_read() {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("orders")])
            .encode(&mut buf, 0)
            .unwrap();
        assert_eq!(
            decode_subscription(&buf.freeze()).unwrap(),
            vec!["orders".to_string()]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            &b"\x00"[..],
            &b"\xff\xff"[..],
            &b"\x00\x03\xff\xff\xff\x7f"[..],
        ] {
            let bytes = Bytes::copy_from_slice(bytes);
            assert!(decode_subscription(&bytes).is_err(), "{bytes:?}");
        }
        assert!(decode_assignment(&Bytes::from_static(b"\x00\x03\x7f\xff\xff\xff"), "t").is_err());
    }
}
