//! A client's connection to one Kafka broker over turmoil, as the Java client's
//! `NetworkClient` keeps one: ApiVersions first (the versions used are the highest both
//! sides have), then requests with increasing correlation ids, answered in the order they
//! were sent (a broker processes one request per connection at a time, Kafka's
//! `SocketServer` mutes the channel until the answer is out), and matched to their requests
//! by correlation id. A reply that does not come in time closes the connection, and every
//! request in flight on it fails (`NetworkClient.handleTimedOutRequests`): with turmoil as
//! with a real socket, nothing later on that connection could be trusted.
//!
//! A produce with acks=0 expects no answer (`ProduceRequest.expectResponse`), so it takes
//! no place in the queue of answers.

use super::wire::{
    decode_response, encode_request, negotiate_version, FrameDecoder, InFlight, Request, Response,
};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use sim::Env;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Every broker listens here.
pub const KAFKA_PORT: u16 = 9092;
/// Requests awaiting an answer on one connection. The producer sends at most
/// `max.in.flight.requests.per.connection` (5 by default) and the consumer one at a time.
pub const CONNECTION_IN_FLIGHT_MAX: usize = 64;
/// The ApiVersions version a client opens with (the highest we implement).
const API_VERSIONS_VERSION: i16 = 3;

/// Why a request got no usable answer. After any of these but [`ConnError::Unsupported`]
/// the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// The broker could not be reached in time, or refused.
    Connect(String),
    /// No answer within the request timeout.
    Timeout,
    /// The connection closed with the request in flight, or was closed before.
    Closed,
    /// An answer that does not decode, or answers a request we did not send.
    Garbled(String),
    /// The broker and we share no version of this API.
    Unsupported(ApiKey),
    /// More than [`CONNECTION_IN_FLIGHT_MAX`] requests awaiting answers.
    TooManyInFlight,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Connect(reason) => write!(f, "cannot connect: {reason}"),
            ConnError::Timeout => write!(f, "request timed out"),
            ConnError::Closed => write!(f, "connection closed"),
            ConnError::Garbled(reason) => write!(f, "garbled answer: {reason}"),
            ConnError::Unsupported(api) => write!(f, "no common version of {api:?}"),
            ConnError::TooManyInFlight => write!(f, "too many requests in flight"),
        }
    }
}

impl std::error::Error for ConnError {}

/// An answer to come.
pub type Answer = oneshot::Receiver<Result<Response, ConnError>>;

type Waiting = VecDeque<(InFlight, oneshot::Sender<Result<Response, ConnError>>)>;

/// State the reader task shares with the connection.
#[derive(Default)]
struct Shared {
    waiting: RefCell<Waiting>,
    closed: Cell<bool>,
}

impl Shared {
    /// Fails every request in flight; later sends fail at once.
    fn close(&self, error: &ConnError) {
        self.closed.set(true);
        for (_, answer) in self.waiting.borrow_mut().drain(..) {
            let _ = answer.send(Err(error.clone()));
        }
    }
}

/// An open connection to one broker. Dropping it closes the socket.
pub struct Connection {
    broker: String,
    client_id: String,
    writer: OwnedWriteHalf,
    shared: Rc<Shared>,
    reader: JoinHandle<()>,
    versions: ApiVersionsResponse,
    next_correlation_id: i32,
    request_timeout: Duration,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.shared.close(&ConnError::Closed);
    }
}

impl Connection {
    /// Connects from `me` to `broker` and asks for its API versions.
    pub async fn open(
        env: &Env,
        me: &str,
        broker: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Connection, ConnError> {
        let stream =
            match tokio::time::timeout(connect_timeout, sim::connect(env, me, broker, KAFKA_PORT)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return Err(ConnError::Connect(format!("{broker}: {error}"))),
                Err(_) => return Err(ConnError::Connect(format!("{broker}: timed out"))),
            };
        let (read, writer) = stream.into_split();
        let shared = Rc::new(Shared::default());
        let reader = tokio::task::spawn_local(read_answers(read, shared.clone()));
        let mut connection = Connection {
            broker: broker.to_string(),
            client_id: me.to_string(),
            writer,
            shared,
            reader,
            versions: ApiVersionsResponse::default(),
            next_correlation_id: 0,
            request_timeout,
        };
        let hello = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("jetsam-java-client-model"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        match connection
            .request_at(&Request::ApiVersions(hello), API_VERSIONS_VERSION)
            .await?
        {
            Response::ApiVersions(versions) if versions.error_code == 0 => {
                connection.versions = versions;
                Ok(connection)
            }
            Response::ApiVersions(versions) => Err(ConnError::Garbled(format!(
                "ApiVersions error {}",
                versions.error_code
            ))),
            other => Err(ConnError::Garbled(format!(
                "{:?} for ApiVersions",
                other.api_key()
            ))),
        }
    }

    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        !self.shared.closed.get()
    }

    /// Requests awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.shared.waiting.borrow().len()
    }

    /// The version to send `api_key` at: the highest both sides have.
    pub fn version(&self, api_key: ApiKey) -> Result<i16, ConnError> {
        negotiate_version(&self.versions, api_key).ok_or(ConnError::Unsupported(api_key))
    }

    /// Sends `request` at its negotiated version and waits for the answer, at most the
    /// request timeout; on timeout the connection is closed.
    pub async fn request(&mut self, request: &Request) -> Result<Response, ConnError> {
        let version = self.version(request.api_key())?;
        self.request_at(request, version).await
    }

    async fn request_at(&mut self, request: &Request, version: i16) -> Result<Response, ConnError> {
        let Some(answer) = self.send_at(request, version).await? else {
            return Err(ConnError::Garbled("a request that expects no answer".into()));
        };
        match tokio::time::timeout(self.request_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ConnError::Closed),
            Err(_) => {
                self.close(&ConnError::Timeout);
                Err(ConnError::Timeout)
            }
        }
    }

    /// Sends `request` at its negotiated version without waiting: the answer to come, or
    /// `None` for a produce with acks=0. The caller times it out (and then calls
    /// [`Connection::close`]), as the producer's accumulator does.
    pub async fn send(&mut self, request: &Request) -> Result<Option<Answer>, ConnError> {
        let version = self.version(request.api_key())?;
        self.send_at(request, version).await
    }

    async fn send_at(&mut self, request: &Request, version: i16) -> Result<Option<Answer>, ConnError> {
        if !self.is_open() {
            return Err(ConnError::Closed);
        }
        if self.in_flight() >= CONNECTION_IN_FLIGHT_MAX {
            return Err(ConnError::TooManyInFlight);
        }
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let (in_flight, bytes) = encode_request(correlation_id, &self.client_id, version, request);
        let expects_answer = !matches!(request, Request::Produce(produce) if produce.acks == 0);
        let answer = expects_answer.then(|| {
            let (tx, rx) = oneshot::channel();
            self.shared.waiting.borrow_mut().push_back((in_flight, tx));
            rx
        });
        if self.writer.write_all(&bytes).await.is_err() {
            self.close(&ConnError::Closed);
            return Err(ConnError::Closed);
        }
        Ok(answer)
    }

    /// Closes the connection: every request in flight fails with `error`.
    pub fn close(&mut self, error: &ConnError) {
        self.reader.abort();
        self.shared.close(error);
    }
}

/// The reader task: frames in, each the answer to the oldest request waiting. EOF, a read
/// error, a frame too large, or an answer that does not match close the connection.
async fn read_answers(mut read: OwnedReadHalf, shared: Rc<Shared>) {
    let mut decoder = FrameDecoder::default();
    let mut chunk = vec![0u8; 64 * 1024];
    let error = loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => break ConnError::Closed,
            Ok(n) => n,
        };
        let frames = match decoder.decode(&chunk[..n]) {
            Ok(frames) => frames,
            Err(error) => break ConnError::Garbled(error.to_string()),
        };
        if let Some(error) = frames.into_iter().find_map(|frame| answer(&shared, frame).err()) {
            break error;
        }
    };
    shared.close(&error);
}

fn answer(shared: &Shared, frame: Bytes) -> Result<(), ConnError> {
    let Some((in_flight, tx)) = shared.waiting.borrow_mut().pop_front() else {
        return Err(ConnError::Garbled("an answer to no request".into()));
    };
    match decode_response(frame, &in_flight) {
        Ok(response) => {
            let _ = tx.send(Ok(response));
            Ok(())
        }
        Err(error) => {
            let error = ConnError::Garbled(error.to_string());
            let _ = tx.send(Err(error.clone()));
            Err(error)
        }
    }
}
