//! A transformer process (consume-transform-produce, reference §2.5, KIP-98/KIP-447): a
//! member of its own consumer group reading the input topic read_committed, and a
//! transactional producer (`transactional.id` `<host>-txn`, stable across restarts so a new
//! incarnation's InitProducerId fences the one before and aborts its open transaction)
//! writing each polled batch to the output topic in one transaction, with the batch's
//! offsets sent to it (`sendOffsetsToTransaction`) or committed after it. Both run in one
//! process, as the Java application's loop does on one thread; the feed hands each batch
//! from the poll loop to the producer and its outcome back.

use super::consumer::{run_consumer, CommitStrategy, ConsumerSettings, Transform};
use super::producer::{run_transform_producer, ProducerSettings};
use super::transform_feed::TransformFeed;
use sim::Env;
use std::rc::Rc;

/// The transformer's `transactional.id`, from its host.
pub fn transactional_id(host: &str) -> String {
    format!("{host}-txn")
}

/// One incarnation: a fresh feed, the producer beside the poll loop; the process ends when
/// the poll loop does (stopped, or its producer fenced).
pub async fn run_transformer(
    env: Env,
    host: String,
    producer: ProducerSettings,
    mut consumer: ConsumerSettings,
    offsets_in_transaction: bool,
) -> turmoil::Result {
    let feed = Rc::new(TransformFeed::default());
    let Some(group) = consumer.group.as_mut() else {
        env.note(&host, "transformer.bad_config");
        return Ok(());
    };
    group.commit = CommitStrategy::Transaction;
    group.transform = Some(Transform {
        feed: feed.clone(),
        offsets_in_transaction,
    });
    let writer = tokio::task::spawn_local(run_transform_producer(env.clone(), host.clone(), producer, feed));
    let result = run_consumer(env, host, consumer, None).await;
    writer.abort();
    result
}
