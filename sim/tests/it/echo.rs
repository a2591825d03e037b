//! `echo`: the smallest design with a network between producer and consumer. A reply that
//! does not arrive within `timeout` makes the publish `info`, and the client reconnects
//! (a connection whose segments `lose_replies` dropped hangs: turmoil's TCP has no
//! retransmission, so the harness holds partitioned links instead of dropping).

use sim::fault::Topology;
use sim::history::{EventKind, MsgId};
use sim::{Design, Env};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turmoil::net::TcpListener;

pub const PORT: u16 = 7000;

pub struct Echo {
    pub messages: u64,
    pub interval: Duration,
    pub timeout: Duration,
    done: Rc<Cell<bool>>,
}

impl Echo {
    pub fn new(messages: u64) -> Echo {
        Echo {
            messages,
            interval: Duration::from_millis(5),
            timeout: Duration::from_millis(50),
            done: Rc::new(Cell::new(false)),
        }
    }
}

impl Design for Echo {
    fn topology(&self) -> Topology {
        Topology::new(vec!["client".into(), "server".into()])
    }

    fn install<'a>(&'a self, sim: &mut turmoil::Sim<'a>, env: &Env) {
        let server_env = env.clone();
        env.process("server")
            .install(sim, move || server(server_env.clone()));
        let client_env = env.clone();
        let (messages, interval, timeout, done) =
            (self.messages, self.interval, self.timeout, self.done.clone());
        env.process("client").install(sim, move || {
            client(client_env.clone(), messages, interval, timeout, done.clone())
        });
    }

    fn pending(&self, _env: &Env) -> Option<String> {
        (!self.done.get()).then(|| "client still publishing".to_string())
    }
}

async fn server(env: Env) -> turmoil::Result {
    let process = env.process("server");
    let _running = process.start();
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (env, process) = (env.clone(), process.clone());
        tokio::task::spawn_local(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                process.checkpoint().await;
                let Ok(id) = line.trim().parse::<u64>() else {
                    return;
                };
                env.record(
                    "server",
                    EventKind::Deliver {
                        id: MsgId(id),
                        attempt: 1,
                        consumer: "server".into(),
                        partition: None,
                        node: None,
                        offset: None,
                    },
                );
                env.record(
                    "server",
                    EventKind::Effect {
                        id: MsgId(id),
                        consumer: "server".into(),
                    },
                );
                if write.write_all(b"ok\n").await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn client(
    env: Env,
    messages: u64,
    interval: Duration,
    timeout: Duration,
    done: Rc<Cell<bool>>,
) -> turmoil::Result {
    let process = env.process("client");
    let _running = process.start();
    let mut connection: Option<(
        BufReader<turmoil::net::tcp::OwnedReadHalf>,
        turmoil::net::tcp::OwnedWriteHalf,
    )> = None;
    for id in 1..=messages {
        process.sleep(interval).await;
        env.record(
            "client",
            EventKind::Publish {
                id: MsgId(id),
                producer: "client".into(),
                seq: id,
                key: None,
            },
        );
        if connection.is_none() {
            match tokio::time::timeout(timeout, sim::connect(&env, "client", "server", PORT)).await {
                Ok(Ok(stream)) => {
                    let (read, write) = stream.into_split();
                    connection = Some((BufReader::new(read), write));
                }
                _ => {
                    env.record(
                        "client",
                        EventKind::PublishFail {
                            id: MsgId(id),
                            error: "connect failed".into(),
                        },
                    );
                    continue;
                }
            }
        }
        let (read, write) = connection.as_mut().expect("connected above");
        let request = format!("{id}\n");
        let exchange = async {
            write.write_all(request.as_bytes()).await?;
            let mut reply = String::new();
            read.read_line(&mut reply).await?;
            if reply.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(())) => env.record("client", EventKind::publish_ok(MsgId(id))),
            Ok(Err(e)) => {
                env.record(
                    "client",
                    EventKind::PublishInfo {
                        id: MsgId(id),
                        reason: format!("connection error: {e}"),
                    },
                );
                connection = None;
            }
            Err(_) => {
                env.record(
                    "client",
                    EventKind::PublishInfo {
                        id: MsgId(id),
                        reason: "timed out".into(),
                    },
                );
                connection = None;
            }
        }
    }
    done.set(true);
    // Stay up like a real client process would; the harness ends the run.
    std::future::pending::<()>().await;
    Ok(())
}
