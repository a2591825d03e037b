//! The relay's MQTT publish: paho's session core ([`Client`]) on one connection, a QoS 1
//! PUBLISH per row and its token waited for (`token.Wait()`), which paho completes at the
//! PUBACK (reference §3.5). The relay's client has a clean session: a relay that loses its
//! connection starts a new one, and the rows it had not seen acknowledged are still
//! unmarked, so the next poll publishes them again instead of paho's store.

use crate::mqtt::client::{Client, ClientOptions, ClientOut, PublishError, Token};
use crate::mqtt::packet::QoS;
use crate::mqtt::sim_broker::BROKER_PORT;
use crate::mqtt::sim_client::Subscribed;
use crate::source::encode_value;
use sim::history::MsgId;
use sim::Env;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpStream;

/// How much of the broker's bytes one read takes.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// How often the relay looks whether every subscriber has subscribed yet.
const READY_POLL: Duration = Duration::from_millis(10);

/// One connection and the session core on it.
struct Session {
    client: Client,
    stream: TcpStream,
}

pub struct MqttPublisher {
    broker: String,
    topic: String,
    /// The connect, CONNACK and PUBACK timeout (the relay's publish timeout).
    timeout: Duration,
    subscribed: (Subscribed, u32),
    session: Option<Session>,
}

/// What the relay waits for on the connection.
enum Wanted {
    Connack,
    Puback(Token),
}

impl MqttPublisher {
    pub fn new(
        broker: String,
        topic: String,
        timeout: Duration,
        subscribed: (Subscribed, u32),
    ) -> MqttPublisher {
        MqttPublisher {
            broker,
            topic,
            timeout,
            subscribed,
            session: None,
        }
    }

    /// Publishes message `id` at QoS 1 and waits for its PUBACK; false on a refusal, a lost
    /// connection or no PUBACK within the timeout (the connection is then dropped).
    pub async fn publish(&mut self, env: &Env, me: &str, id: MsgId) -> bool {
        let (subscribed, subscribers) = &self.subscribed;
        while subscribed.count() < *subscribers {
            tokio::time::sleep(READY_POLL).await;
        }
        if self.session.is_none() && !self.connect(env, me).await {
            return false;
        }
        let session = self.session.as_mut().expect("connected above");
        let now_ms = env.now().0 / 1000;
        let mut outs = Vec::new();
        session.client.on_tick(now_ms, &mut outs);
        let token =
            session
                .client
                .publish(now_ms, &self.topic, encode_value(id), QoS::AtLeastOnce, &mut outs);
        let acknowledged = self.exchange(env, me, outs, Wanted::Puback(token)).await;
        if !acknowledged {
            self.session = None;
        }
        acknowledged
    }

    /// Dials the broker and waits for a CONNACK that accepts the relay's session.
    async fn connect(&mut self, env: &Env, me: &str) -> bool {
        let dial = sim::connect(env, me, &self.broker, BROKER_PORT);
        let stream = match tokio::time::timeout(self.timeout, dial).await {
            Ok(Ok(stream)) => stream,
            _ => {
                env.note(me, "relay.mqtt_connect_failed");
                return false;
            }
        };
        let mut client = Client::new(ClientOptions::new(me));
        let mut outs = Vec::new();
        client.on_open(env.now().0 / 1000, &mut outs);
        self.session = Some(Session { client, stream });
        if self.exchange(env, me, outs, Wanted::Connack).await {
            return true;
        }
        env.note(me, "relay.mqtt_connect_failed");
        self.session = None;
        false
    }

    /// Writes what the core sends and feeds it what the broker answers until `wanted`
    /// comes; false on a close, a refusal, a failed token, or the timeout.
    async fn exchange(&mut self, env: &Env, me: &str, mut outs: Vec<ClientOut>, wanted: Wanted) -> bool {
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let session = self.session.as_mut().expect("a session to exchange on");
            for out in std::mem::take(&mut outs) {
                match out {
                    ClientOut::Send(bytes) => {
                        let written = session.stream.write_all(&bytes).await;
                        if written.is_err() {
                            return false;
                        }
                    }
                    ClientOut::Close | ClientOut::Refused { .. } => return false,
                    ClientOut::Connected { .. } if matches!(wanted, Wanted::Connack) => return true,
                    ClientOut::Completed { token, result } => {
                        if let Wanted::Puback(mine) = wanted {
                            if token == mine {
                                return puback(env, me, result);
                            }
                        }
                    }
                    ClientOut::Note { kind, detail } => env.note_with(me, kind, detail),
                    _ => {}
                }
            }
            let read = tokio::select! {
                biased;
                read = session.stream.read(&mut chunk) => Some(read),
                () = &mut deadline => None,
            };
            let n = match read {
                Some(Ok(n)) if n > 0 => n,
                Some(_) => return false, // closed
                None => {
                    env.note(me, "relay.mqtt_unanswered");
                    return false;
                }
            };
            let now_ms = env.now().0 / 1000;
            session
                .client
                .on_bytes(now_ms, &chunk[..n], &mut *env.rng(), &mut outs);
        }
    }
}

fn puback(env: &Env, me: &str, result: Result<(), PublishError>) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => {
            env.note_with(me, "relay.mqtt_refused", format!("{error:?}"));
            false
        }
    }
}
