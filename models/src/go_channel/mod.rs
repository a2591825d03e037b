//! `go-channel`: producers and consumers in one process joined by a Go channel
//! (reference §6 and designs table row 23).
//!
//! The process is the Go program people write:
//!
//! ```go
//! for msg := range source { ch <- msg }        // each producer; stops early on SIGTERM
//! wg.Wait(); close(ch); close(quit)            // after every producer returned
//! // consumer, correct:                        // consumer, careless:
//! for v := range ch { process(v) }             // for { select {
//!                                              //   case <-quit: return
//!                                              //   case v := <-ch: process(v) } } // ok ignored
//! ```
//!
//! What the reference predicts, and the bundled scenarios check: nothing is lost while the
//! process lives; a `kill` or `power_fail` loses everything buffered (and the message being
//! processed); the careless consumer loses what is still buffered when `select` picks `quit`
//! (a uniform pseudo-random choice when both are ready) and processes zero values (phantom
//! message 0) when it picks the closed channel after it drained.
//!
//! A publish is `ok` when the send completes (the channel took the value). A producer killed
//! while blocked on a full channel never learns the outcome: that publish is `info`.

pub mod chan;

use crate::source::Source;
use chan::GoChan;
use serde::{Deserialize, Serialize};
use sim::checker::OrderScope;
use sim::fault::Topology;
use sim::history::{EventKind, MsgId};
use sim::promise::{Excuse, Promise};
use sim::scenario::{Scenario, ScenarioError, Workload};
use sim::verdict::Property;
use sim::{Design, Env, Process};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;

pub const HOST: &str = "app";

/// Upper bounds, so a typo cannot build a runaway process.
pub const CAPACITY_MAX: u32 = 100_000;
pub const CONSUMERS_MAX: u32 = 64;
pub const PRODUCERS_MAX: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shutdown {
    /// `for v := range ch`: drains everything, stops at close.
    Correct,
    /// `select` on quit and data, `ok` ignored.
    Careless,
}

/// The `go-channel` design's `[config]`. The doc comments are what `jetsam list` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Channel buffer size; 0 is an unbuffered (rendezvous) channel.
    #[schemars(range(max = 100_000))]
    pub capacity: u32,
    /// Which consumer loop the program uses.
    pub shutdown: Shutdown,
    /// Consumer goroutines receiving from the one channel.
    #[schemars(range(min = 1, max = 64))]
    pub consumers: u32,
    /// Time the consumer's handler takes per message before its effect is applied.
    pub processing_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            capacity: 16,
            shutdown: Shutdown::Correct,
            consumers: 1,
            processing_ms: 2,
        }
    }
}

pub struct GoChannel {
    config: Config,
    workload: Workload,
    source: Rc<Source>,
}

pub fn build(scenario: &Scenario) -> Result<Box<dyn Design>, ScenarioError> {
    // Bounds on capacity and consumers come from `Config`'s schema (`design_config`).
    let config: Config = scenario.design_config()?;
    assert!(config.capacity <= CAPACITY_MAX && (1..=CONSUMERS_MAX).contains(&config.consumers));
    if scenario.workload.producers > PRODUCERS_MAX {
        return Err(ScenarioError {
            path: scenario.path.clone(),
            line: None,
            message: format!("workload.producers: at most {PRODUCERS_MAX} for go-channel"),
        });
    }
    Ok(Box::new(GoChannel::new(config, scenario.workload.clone())))
}

impl GoChannel {
    pub fn new(config: Config, workload: Workload) -> GoChannel {
        let source = Rc::new(Source::new(&workload));
        GoChannel {
            config,
            workload,
            source,
        }
    }
}

impl Design for GoChannel {
    /// One process, `app`: its producers and consumers are goroutines, so a fault on either
    /// is a fault on the whole program.
    fn topology(&self) -> Topology {
        Topology::new(vec![HOST.to_string()]).with_role("app", [HOST])
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        let env = env.clone();
        let config = self.config.clone();
        let producers = self.workload.producers;
        let pace = (
            Duration::from_millis(self.workload.publish_interval_ms),
            Duration::from_millis(self.workload.start_ms),
        );
        let source = self.source.clone();
        env.process(HOST).install(sim, move || {
            program(env.clone(), config.clone(), producers, pace, source.clone())
        });
    }

    /// Reference table row 23: a FIFO hand-off, exactly once, while the process lives. A
    /// crash loses what the channel buffered; closing it while a careless `select` picks
    /// quit loses the backlog (both documented). Order is per channel, so with one consumer
    /// each producer's order holds.
    fn promise(&self) -> Promise {
        let mut properties = vec![Property::ExactlyOnce];
        if self.config.consumers == 1 {
            properties.push(Property::Ordered(OrderScope::Producer));
        }
        Promise {
            text: "exactly once, FIFO per channel, while the process lives (reference table row 23)".into(),
            properties,
            excuses: vec![
                Excuse::fault("kill", HOST),
                Excuse::fault("power_fail", HOST),
                Excuse::note("select.quit_with_backlog"),
            ],
        }
    }

    fn pending(&self, env: &Env) -> Option<String> {
        let unpublished = self.source.unpublished();
        let running = env.process(HOST).is_running();
        match (unpublished, running) {
            (0, false) => None,
            (0, true) => Some("app is still running (consumers not finished)".into()),
            (n, _) => Some(format!("{n} message(s) not yet published by the source")),
        }
    }
}

/// The Go program, one incarnation of the process.
async fn program(
    env: Env,
    config: Config,
    producers: u32,
    (interval, start_at): (Duration, Duration),
    source: Rc<Source>,
) -> turmoil::Result {
    let process = env.process(HOST);
    let _running = process.start();
    let wake = Rc::new(Notify::new());
    let ch: Rc<GoChan<MsgId>> = Rc::new(GoChan::new(config.capacity as usize, wake.clone()));
    let quit: Rc<GoChan<()>> = Rc::new(GoChan::new(0, wake));

    let mut consumer_tasks = Vec::new();
    for index in 1..=config.consumers {
        let name = format!("consumer-{index}");
        let (env, process, ch, quit) = (env.clone(), process.clone(), ch.clone(), quit.clone());
        consumer_tasks.push(tokio::task::spawn_local(async move {
            match config.shutdown {
                Shutdown::Correct => consume_correct(&env, &process, &name, &ch, config.processing_ms).await,
                Shutdown::Careless => {
                    consume_careless(&env, &process, &name, &ch, &quit, config.processing_ms).await
                }
            }
        }));
    }
    let mut producer_tasks = Vec::new();
    for index in 1..=producers {
        // A restarted process is a new producer session whose sequence starts again, so
        // per-producer order is judged per incarnation (as Kafka scopes it per producer id).
        let name = format!("producer-{index}@{}", process.incarnation());
        let (env, process, ch, source) = (env.clone(), process.clone(), ch.clone(), source.clone());
        producer_tasks.push(tokio::task::spawn_local(async move {
            let start = start_at.saturating_sub(Duration::from_micros(env.now().0));
            produce(&env, &process, &name, &ch, &source, interval, start).await
        }));
    }
    // wg.Wait() on the producers, then close(ch); close(quit).
    for task in producer_tasks {
        task.await?;
    }
    if process.stop_requested() {
        env.note(HOST, "shutdown.on_stop");
    }
    let backlog = ch.len();
    if backlog > 0 {
        env.note(HOST, "shutdown.with_backlog");
    }
    ch.close();
    quit.close();
    for task in consumer_tasks {
        task.await?;
    }
    Ok(())
}

async fn produce(
    env: &Env,
    process: &Process,
    name: &str,
    ch: &GoChan<MsgId>,
    source: &Source,
    interval: Duration,
    start: Duration,
) {
    let mut seq = 0;
    process.sleep(start).await;
    loop {
        process.checkpoint().await;
        if process.stop_requested() {
            return; // SIGTERM: stop taking new work
        }
        let Some((id, key)) = source.take() else {
            return;
        };
        seq += 1;
        env.record(
            HOST,
            EventKind::Publish {
                id,
                producer: name.to_string(),
                seq,
                key,
            },
        );
        if ch.send(id).await {
            env.note(HOST, "chan.send_blocked");
        }
        env.record(HOST, EventKind::publish_ok(id));
        if !interval.is_zero() {
            process.sleep(interval).await;
        }
    }
}

async fn handle(env: &Env, process: &Process, consumer: &str, id: MsgId, processing_ms: u64) {
    env.record(
        HOST,
        EventKind::Deliver {
            id,
            attempt: 1,
            consumer: consumer.to_string(),
            partition: None,
            node: None,
            offset: None,
        },
    );
    process.sleep(Duration::from_millis(processing_ms)).await;
    env.record(
        HOST,
        EventKind::Effect {
            id,
            consumer: consumer.to_string(),
        },
    );
}

/// `for v := range ch { process(v) }`
async fn consume_correct(env: &Env, process: &Process, name: &str, ch: &GoChan<MsgId>, processing_ms: u64) {
    loop {
        process.checkpoint().await;
        match ch.recv().await {
            Some(id) => handle(env, process, name, id, processing_ms).await,
            None => return,
        }
    }
}

/// `for { select { case <-quit: return; case v := <-ch: process(v) } }`, `ok` ignored.
async fn consume_careless(
    env: &Env,
    process: &Process,
    name: &str,
    ch: &GoChan<MsgId>,
    quit: &GoChan<()>,
    processing_ms: u64,
) {
    loop {
        process.checkpoint().await;
        let notified = ch.wake().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let quit_ready = quit.recv_ready();
        let data_ready = ch.recv_ready();
        // Go picks uniformly among the ready cases; case order gives no priority.
        let take_quit = match (quit_ready, data_ready) {
            (false, false) => {
                notified.await;
                continue;
            }
            (true, false) => true,
            (false, true) => false,
            (true, true) => env.choose(2) == 0,
        };
        if take_quit {
            if !ch.is_empty() {
                env.note(HOST, "select.quit_with_backlog");
            }
            return;
        }
        let received = ch.try_recv_now().expect("data case was ready");
        let id = match received {
            Some(id) => id,
            None => {
                // `v := <-ch` on a closed, drained channel: the zero value, ok == false.
                env.note(HOST, "chan.zero_value");
                MsgId::ZERO
            }
        };
        handle(env, process, name, id, processing_ms).await;
    }
}
