//! The NSQ producer in the simulation: publishes its share of the workload to its own nsqd
//! (reference §1.4), recording each PUB as invoke/ok/fail/info, with the configured retry.

use super::client::{connect, encode_body, identify, ClientConfig};
use super::link::Link;
use super::protocol::{Command, FrameType};
use crate::source::Source;
use serde::{Deserialize, Serialize};
use sim::history::EventKind;
use sim::Env;
use std::rc::Rc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// One attempt; an unanswered PUB is `info`.
    None,
    /// Retry the same nsqd (reconnecting): a PUB applied but unanswered is published twice.
    Same,
    /// Retry the next nsqd: the duplicate gets a different nsqd message id.
    Another,
}

enum Outcome {
    Ok,
    /// Definitely not applied (not connected, or nsqd answered an error).
    Fail(String),
    /// Sent, and no answer: applied or not, nobody knows.
    Unknown(String),
}

/// What one publish request carries: PUB, DPUB (a deferral) or MPUB (a batch).
fn publish_command(config: &ClientConfig, bodies: &[Vec<u8>], defer: Duration) -> Command {
    let topic = config.topic.clone();
    match bodies {
        [body] if defer.is_zero() => Command::Pub {
            topic,
            body: body.clone(),
        },
        [body] => Command::Dpub {
            topic,
            defer_ms: defer.as_millis() as i64,
            body: body.clone(),
        },
        _ => {
            // nsqd has no deferred MPUB: a batch is never deferred.
            assert!(defer.is_zero() && !bodies.is_empty());
            Command::Mpub {
                topic,
                bodies: bodies.to_vec(),
            }
        }
    }
}

async fn publish_once(
    (env, me): (&Env, &str),
    link: &mut Option<Link>,
    host: &str,
    command: &Command,
    config: &ClientConfig,
) -> Outcome {
    if link.as_ref().is_none_or(|l| !l.sender.is_alive()) {
        let Some(mut fresh) = connect(env, me, host, config).await else {
            return Outcome::Fail(format!("cannot connect to {host}"));
        };
        match fresh
            .request(&identify(config, false), config.publish_timeout)
            .await
        {
            Some((FrameType::Response, _)) => *link = Some(fresh),
            _ => return Outcome::Fail(format!("IDENTIFY to {host} failed")),
        }
    }
    let active = link.as_mut().expect("connected above");
    match active.request(command, config.publish_timeout).await {
        Some((FrameType::Response, data)) if data == b"OK" => Outcome::Ok,
        Some((FrameType::Error, data)) => {
            *link = None;
            Outcome::Fail(String::from_utf8_lossy(&data).into_owned())
        }
        Some(_) | None => {
            // No answer in time. Responses are matched in order, so a late OK would answer the
            // wrong PUB: the connection is dropped and the next publish reconnects.
            *link = None;
            Outcome::Unknown(format!(
                "no response from {host} within {:?}",
                config.publish_timeout
            ))
        }
    }
}

/// A producer process: takes messages from the source and publishes them to its nsqd: one
/// PUB each, a DPUB for the `defer_fraction` of them, or MPUB batches of `mpub_batch`.
pub async fn run_producer(
    env: Env,
    host: String,
    nsqds: Vec<String>,
    home: usize,
    config: ClientConfig,
    source: Rc<Source>,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let name = format!("{host}@{}", process.incarnation());
    let mut links: Vec<Option<Link>> = nsqds.iter().map(|_| None).collect();
    let mut seq = 0;
    let now = Duration::from_micros(env.now().0);
    process.sleep(config.publish_start.saturating_sub(now)).await;
    let batch_max = config.mpub_batch.max(1) as usize;
    loop {
        process.checkpoint().await;
        if process.stop_requested() {
            return Ok(());
        }
        let mut ids = Vec::new();
        let mut bodies = Vec::new();
        while ids.len() < batch_max {
            let Some((id, key)) = source.take() else {
                break;
            };
            seq += 1;
            env.record(
                &host,
                EventKind::Publish {
                    id,
                    producer: name.as_str().into(),
                    seq,
                    key: key.clone(),
                },
            );
            bodies.push(encode_body(id, key.as_deref()));
            ids.push(id);
        }
        if ids.is_empty() {
            return Ok(());
        }
        let deferred = batch_max == 1
            && config.defer_fraction > 0.0
            && rand::Rng::random_bool(&mut *env.rng(), config.defer_fraction.min(1.0));
        let defer = if deferred { config.defer } else { Duration::ZERO };
        let command = publish_command(&config, &bodies, defer);
        publish_with_retry(
            (&env, &host),
            &mut links,
            &nsqds,
            home,
            &config,
            &process,
            &command,
            &ids,
        )
        .await;
        if !config.publish_interval.is_zero() {
            process.sleep(config.publish_interval).await;
        }
    }
}

/// One request (PUB, DPUB or MPUB) with the configured retry; its outcome is every one of
/// `ids`' outcome, as nsqd applies an MPUB whole or not at all.
#[allow(clippy::too_many_arguments)]
async fn publish_with_retry(
    (env, host): (&Env, &str),
    links: &mut [Option<Link>],
    nsqds: &[String],
    home: usize,
    config: &ClientConfig,
    process: &sim::Process,
    command: &Command,
    ids: &[sim::MsgId],
) {
    let mut target = home;
    let mut unknown = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = publish_once((env, host), &mut links[target], &nsqds[target], command, config).await;
        process.checkpoint().await;
        let retry_left = config.retry != Retry::None && attempt <= config.retries_max;
        match outcome {
            Outcome::Ok => {
                for id in ids {
                    env.record(host, EventKind::publish_ok(*id));
                }
                return;
            }
            Outcome::Unknown(reason) | Outcome::Fail(reason) if retry_left => {
                if unknown.is_none() {
                    unknown = Some(reason);
                }
                env.note(host, "producer.retry");
                if config.retry == Retry::Another {
                    target = (target + 1) % nsqds.len();
                }
            }
            Outcome::Unknown(reason) => {
                for id in ids {
                    let reason = reason.clone();
                    env.record(host, EventKind::PublishInfo { id: *id, reason });
                }
                return;
            }
            Outcome::Fail(error) => {
                // An earlier attempt may have been applied: then the outcome is unknown.
                for id in ids {
                    let kind = match &unknown {
                        Some(reason) => EventKind::PublishInfo {
                            id: *id,
                            reason: reason.clone(),
                        },
                        None => EventKind::PublishFail {
                            id: *id,
                            error: error.clone(),
                        },
                    };
                    env.record(host, kind);
                }
                return;
            }
        }
    }
}
