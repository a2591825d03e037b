//! The turmoil driver for nsqd: the shared [`Driver`] with the simulation's clock, RNG,
//! history notes and pause checkpoints, on simulated sockets and the host's simulated disk.

use super::nsqd::{Nsqd, NsqdOptions};
use super::nsqd_driver::{Announce, Context, Driver};
use rand_chacha::ChaCha8Rng;
use sim::disk::SimDisk;
use sim::world::EPOCH_UNIX_SECONDS;
use sim::{Env, Process};
use std::cell::{RefCell, RefMut};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;
use turmoil::net::TcpListener;

pub const NSQD_TCP_PORT: u16 = 4150;
pub const NSQD_HTTP_PORT: u16 = 4151;

/// Where the design can see each nsqd's live core (for its drain probe only).
pub type Registry = Rc<RefCell<BTreeMap<String, Weak<RefCell<Nsqd<SimDisk>>>>>>;

pub struct SimContext {
    env: Env,
    host: String,
    process: Process,
}

impl Context for SimContext {
    fn now(&self) -> Duration {
        Duration::from_micros(self.env.now().0)
    }
    fn rng(&self) -> RefMut<'_, ChaCha8Rng> {
        self.env.rng()
    }
    fn note(&self, name: &str) {
        self.env.note(&self.host, name);
    }
    fn gauge(&self, name: &str, value: i64) {
        self.env.record(
            &self.host,
            sim::history::EventKind::Gauge {
                name: name.into(),
                value,
            },
        );
    }
    async fn checkpoint(&self) {
        self.process.checkpoint().await
    }
    async fn sleep(&self, duration: Duration) {
        self.process.sleep(duration).await
    }
}

/// The nsqd process on `host`, with `node_id` as its --node-id.
pub async fn run(
    env: Env,
    host: String,
    node_id: u16,
    options: NsqdOptions,
    lookupds: Vec<String>,
    registry: Registry,
) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let now = Duration::from_micros(env.now().0);
    let core = Nsqd::open(options, env.disk(&host), node_id, EPOCH_UNIX_SECONDS * 1000, now);
    let driver = Driver::new(
        SimContext {
            env: env.clone(),
            host: host.clone(),
            process: process.clone(),
        },
        core,
    );
    registry
        .borrow_mut()
        .insert(host.clone(), Rc::downgrade(&driver.core));
    driver.note_disk(); // what reopening the disk queues found
    let announce = Announce {
        broadcast_address: host.clone(),
        tcp_port: NSQD_TCP_PORT,
        http_port: NSQD_HTTP_PORT,
    };
    // A lookupd is named by its host (its TCP port implied) or, for HTTP, as host:port.
    let (me, connect_env) = (host.clone(), env.clone());
    let mut tasks = driver.start_lookup_peers(lookupds, announce, move |address: String| {
        let (me, env) = (me.clone(), connect_env.clone());
        async move {
            let (to, port) = match address.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().unwrap_or(super::lookupd::LOOKUPD_TCP_PORT),
                ),
                None => (address.clone(), super::lookupd::LOOKUPD_TCP_PORT),
            };
            sim::connect(&env, &me, &to, port).await
        }
    });
    tasks.push(tokio::task::spawn_local(driver.clone().tick_loop()));
    let http_listener = TcpListener::bind(("0.0.0.0", NSQD_HTTP_PORT)).await?;
    let http_driver = driver.clone();
    tasks.push(tokio::task::spawn_local(async move {
        while let Ok((stream, _)) = http_listener.accept().await {
            tokio::task::spawn_local(http_driver.clone().serve_http(stream));
        }
    }));
    let listener = TcpListener::bind(("0.0.0.0", NSQD_TCP_PORT)).await?;
    loop {
        tokio::select! {
            biased;
            _ = process.stopping() => break,
            accepted = listener.accept() => {
                let (stream, remote) = accepted?;
                let (read, write) = stream.into_split();
                driver.serve(read, write, &remote.to_string());
            }
        }
    }
    // SIGTERM: nsqd's Exit flushes every queue to disk and persists its metadata.
    for task in tasks {
        task.abort();
    }
    if let Err(e) = driver.shutdown() {
        tracing::warn!(host, error = %e, "nsqd close");
    }
    env.note(&host, "nsqd.graceful_exit");
    Ok(())
}
