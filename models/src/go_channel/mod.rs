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
//! The unsafe shutdowns (issue 15): `close_while_sending` closes the channel from a SIGTERM
//! handler while producers still send; Go's runtime panics ("send on closed channel") and
//! exits with status 2, so everything buffered, and everything processed but not yet written
//! out, is lost (a crash verdict with the status and the panic's text). `os_exit` ends `main`
//! with `os.Exit`, so the deferred `w.Flush()` of the consumers' writer (`write_buffer`) never
//! runs and the processed messages still in it are lost. `bare_receive` (`v := <-ch` in a
//! bare `for`) processes zero values without end once the channel is closed: phantoms, and a
//! program that never exits.
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

/// Go's runtime exit status after an unrecovered panic (`runtime.fatalpanic` → `exit(2)`).
pub const GO_PANIC_EXIT_STATUS: i32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shutdown {
    /// `for v := range ch`: drains everything, stops at close.
    Correct,
    /// `select` on quit and data, `ok` ignored.
    Careless,
    /// `for v := range ch`, but a SIGTERM handler closes the channel at once while producers
    /// may still be sending: "send on closed channel" (or main's "close of closed channel")
    /// panics and the process exits with status 2, losing everything buffered.
    CloseWhileSending,
    /// `for v := range ch`, but main ends with `os.Exit(exit_status)`: the deferred
    /// `w.Flush()` of the consumers' writer never runs.
    OsExit,
    /// `for { v := <-ch; process(v) }`: after close every receive yields the zero value at
    /// once, so it processes message 0 over and over (needs `processing_ms` >= 1) and never
    /// returns; the program never exits, and a stop ends in SIGKILL after `stop_grace_ms`.
    BareReceive,
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
    /// Processed messages the consumers' shared `bufio.Writer` holds before it writes them
    /// out (their effects); 0 writes each one through. main's deferred `w.Flush()` writes the
    /// rest at exit, unless `os.Exit` skips it.
    #[schemars(range(max = 10_000))]
    pub write_buffer: u32,
    /// The status `shutdown = "os_exit"` passes to `os.Exit` (`log.Fatal` uses 1).
    #[schemars(range(min = 0, max = 255))]
    pub exit_status: i32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            capacity: 16,
            shutdown: Shutdown::Correct,
            consumers: 1,
            processing_ms: 2,
            write_buffer: 0,
            exit_status: 0,
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
    if config.shutdown == Shutdown::BareReceive && config.processing_ms == 0 {
        // Go would spin a core at 100%; a simulated handler that takes no time never lets
        // simulated time move on.
        return Err(ScenarioError {
            path: scenario.path.clone(),
            line: None,
            message: "config.processing_ms: at least 1 with shutdown = \"bare_receive\", whose loop spins on zero values".into(),
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
        // A Go panic's exit is a crash verdict, which no excuse covers; `os.Exit` skipping a
        // deferred call is Go's documented behaviour, like the careless select's backlog.
        Promise {
            text: "exactly once, FIFO per channel, while the process lives (reference table row 23)".into(),
            properties,
            excuses: vec![
                Excuse::fault("kill", HOST),
                Excuse::fault("power_fail", HOST),
                Excuse::note("select.quit_with_backlog"),
                Excuse::note("defer.flush_skipped"),
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

/// What Go's runtime does when the program ends itself: a goroutine's unrecovered panic, or
/// `os.Exit`, ends the whole process at once (no other goroutine's code and no deferred call
/// of `main` runs). `program` returns as soon as it is set, which drops every goroutine.
#[derive(Default)]
struct Exit {
    exiting: std::cell::Cell<bool>,
    wake: Notify,
}

impl Exit {
    /// The first exit wins: a second panic racing the first never gets printed.
    fn exit(&self, env: &Env, status: i32, message: &str) {
        if !self.exiting.replace(true) {
            env.exit(HOST, status, message);
            self.wake.notify_one(); // a permit: `wait` sees it even if it polls later
        }
    }

    fn exiting(&self) -> bool {
        self.exiting.get()
    }

    async fn wait(&self) {
        self.wake.notified().await;
    }
}

/// The consumers' shared `bufio.Writer` (`w := bufio.NewWriter(out); defer w.Flush()`): an
/// effect takes hold when the buffer is written out, when full or by the deferred `Flush`.
struct Writer {
    buffered: std::cell::RefCell<Vec<(MsgId, String)>>,
    size: usize,
}

impl Writer {
    fn write(&self, env: &Env, id: MsgId, consumer: &str) {
        self.buffered.borrow_mut().push((id, consumer.to_string()));
        if self.buffered.borrow().len() >= self.size {
            self.flush(env);
        }
    }

    fn flush(&self, env: &Env) {
        let buffered = std::mem::take(&mut *self.buffered.borrow_mut());
        for (id, consumer) in buffered {
            env.record(
                HOST,
                EventKind::Effect {
                    id,
                    consumer: consumer.into(),
                },
            );
        }
    }

    fn len(&self) -> usize {
        self.buffered.borrow().len()
    }
}

/// What every goroutine of one incarnation shares.
struct Program {
    env: Env,
    process: Process,
    config: Config,
    ch: GoChan<MsgId>,
    quit: GoChan<()>,
    writer: Writer,
    exit: Exit,
}

/// The Go program, one incarnation of the process.
async fn program(
    env: Env,
    config: Config,
    producers: u32,
    pace: (Duration, Duration),
    source: Rc<Source>,
) -> turmoil::Result {
    let process = env.process(HOST);
    let _running = process.start();
    let wake = Rc::new(Notify::new());
    let program = Rc::new(Program {
        ch: GoChan::new(config.capacity as usize, wake.clone()),
        quit: GoChan::new(0, wake),
        // A buffer of 0 writes each effect through (`size` 1 flushes on every write).
        writer: Writer {
            buffered: std::cell::RefCell::new(Vec::new()),
            size: config.write_buffer.max(1) as usize,
        },
        exit: Exit::default(),
        env,
        process,
        config,
    });
    // `biased`: the exit is looked at first, so nothing of `main` runs once it is set (and
    // tokio's own random branch choice stays out of the run).
    tokio::select! {
        biased;
        () = program.exit.wait() => Ok(()),
        result = main(program.clone(), producers, pace, source) => result,
    }
}

/// Go's `main`: start the goroutines, wait for the producers, close, wait for the consumers,
/// and leave through the deferred `w.Flush()` (or around it, with `os.Exit`).
async fn main(
    program: Rc<Program>,
    producers: u32,
    (interval, start_at): (Duration, Duration),
    source: Rc<Source>,
) -> turmoil::Result {
    let (env, process, config) = (&program.env, &program.process, &program.config);
    let consumer_tasks: Vec<_> = (1..=config.consumers)
        .map(|index| tokio::task::spawn_local(consume(program.clone(), format!("consumer-{index}"))))
        .collect();
    let mut producer_tasks = Vec::new();
    for index in 1..=producers {
        // A restarted process is a new producer session whose sequence starts again, so
        // per-producer order is judged per incarnation (as Kafka scopes it per producer id).
        let name = format!("producer-{index}@{}", process.incarnation());
        let (program, source) = (program.clone(), source.clone());
        producer_tasks.push(tokio::task::spawn_local(async move {
            let start = start_at.saturating_sub(Duration::from_micros(program.env.now().0));
            produce(&program, &name, &source, interval, start).await
        }));
    }
    if config.shutdown == Shutdown::CloseWhileSending {
        tokio::task::spawn_local(close_on_sigterm(program.clone()));
    }
    // wg.Wait() on the producers, then close(ch); close(quit).
    for task in producer_tasks {
        task.await?;
    }
    if process.stop_requested() {
        env.note(HOST, "shutdown.on_stop");
    }
    if !program.ch.is_empty() {
        env.note(HOST, "shutdown.with_backlog");
    }
    if let Err(panic) = program.ch.close() {
        program.exit.exit(
            env,
            GO_PANIC_EXIT_STATUS,
            &format!("{} (goroutine 1 [main])", panic.message()),
        );
        return Ok(());
    }
    program.quit.close().expect("only main closes quit, once");
    for task in consumer_tasks {
        task.await?;
    }
    exit_main(&program);
    Ok(())
}

/// The end of `main`: its deferred `w.Flush()` runs on return, and `os.Exit` skips it ("The
/// program terminates immediately; deferred functions are not run": Go's `os.Exit` doc).
fn exit_main(program: &Program) {
    let env = &program.env;
    if program.config.shutdown != Shutdown::OsExit {
        program.writer.flush(env);
        return;
    }
    let status = program.config.exit_status;
    if program.writer.len() > 0 {
        env.note_with(
            HOST,
            "defer.flush_skipped",
            format!(
                "{} processed message(s) still in the writer's buffer",
                program.writer.len()
            ),
        );
    }
    program.exit.exit(
        env,
        status,
        &format!("os.Exit({status}): deferred functions not run"),
    );
}

/// The careless shortcut: `go func() { <-sigterm; close(ch) }()`, while producers may still be
/// sending. A producer blocked on the full channel panics at once; one that checks for the
/// signal first returns, and then `main`'s own `close(ch)` panics. Either way: status 2.
async fn close_on_sigterm(program: Rc<Program>) {
    program.process.stopping().await;
    program.env.note_with(
        HOST,
        "chan.closed_while_sending",
        format!("{} value(s) buffered", program.ch.len()),
    );
    program.ch.close().expect("the first close, before main's");
}

async fn produce(program: &Program, name: &str, source: &Source, interval: Duration, start: Duration) {
    let (env, process) = (&program.env, &program.process);
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
                producer: name.into(),
                seq,
                key,
            },
        );
        match program.ch.send(id).await {
            Ok(true) => env.note(HOST, "chan.send_blocked"),
            Ok(false) => {}
            Err(panic) => {
                // The publish stays open: the process dies before the producer learns anything.
                let message = format!("{} (goroutine {name})", panic.message());
                program.exit.exit(env, GO_PANIC_EXIT_STATUS, &message);
                return;
            }
        }
        env.record(HOST, EventKind::publish_ok(id));
        if !interval.is_zero() {
            process.sleep(interval).await;
        }
    }
}

async fn handle(program: &Program, consumer: &str, id: MsgId) {
    let env = &program.env;
    env.record(
        HOST,
        EventKind::Deliver {
            id,
            attempt: 1,
            consumer: consumer.into(),
            partition: None,
            node: None,
            offset: None,
        },
    );
    program
        .process
        .sleep(Duration::from_millis(program.config.processing_ms))
        .await;
    if program.exit.exiting() {
        return; // the process is gone; this goroutine only has not been dropped yet
    }
    program.writer.write(env, id, consumer);
}

async fn consume(program: Rc<Program>, name: String) {
    match program.config.shutdown {
        Shutdown::Careless => consume_careless(&program, &name).await,
        Shutdown::Correct | Shutdown::CloseWhileSending | Shutdown::OsExit => {
            consume_correct(&program, &name).await
        }
        Shutdown::BareReceive => consume_bare(&program, &name).await,
    }
}

/// `for { v := <-ch; process(v) }`: no `ok`, and no way out of the loop.
async fn consume_bare(program: &Program, name: &str) {
    let mut spinning = false;
    loop {
        program.process.checkpoint().await;
        let id = match program.ch.recv().await {
            Some(id) => id,
            None => {
                // Closed and drained: the zero value, at once, on every receive from now on.
                if !spinning {
                    program.env.note(HOST, "chan.zero_value");
                    spinning = true;
                }
                MsgId::ZERO
            }
        };
        handle(program, name, id).await;
    }
}

/// `for v := range ch { process(v) }`
async fn consume_correct(program: &Program, name: &str) {
    loop {
        program.process.checkpoint().await;
        match program.ch.recv().await {
            Some(id) => handle(program, name, id).await,
            None => return,
        }
    }
}

/// `for { select { case <-quit: return; case v := <-ch: process(v) } }`, `ok` ignored.
async fn consume_careless(program: &Program, name: &str) {
    let (env, ch, quit) = (&program.env, &program.ch, &program.quit);
    loop {
        program.process.checkpoint().await;
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
        handle(program, name, id).await;
    }
}
