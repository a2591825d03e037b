//! Kafka's wire protocol, sans I/O, for the broker and for our simulated clients (reference
//! §2.9; Kafka's protocol guide, "Network", "Requests", "ApiVersions"; issue 10).
//!
//! - Every request and response is a frame: a 4-byte big-endian size, then that many bytes.
//! - A request is a request header (api key, api version, correlation id, client id; header
//!   v2 adds tagged fields and is used by an API's flexible versions, v1 before) and a body.
//! - A response is a response header (correlation id; v1 adds tagged fields) and a body. The
//!   `ApiVersions` response always has a v0 header, whatever its version (KIP-511), since the
//!   client cannot yet know what the broker supports.
//!
//! Messages are kafka-protocol's types; this module adds the framing, the header versions, the
//! table of the APIs we implement ([`SUPPORTED_APIS`]) and Kafka's broker behaviour on a request
//! it does not understand:
//! - `ApiVersions` at a version the broker does not know is answered at v0 with
//!   `UNSUPPORTED_VERSION` and the broker's `ApiVersions` range, so the client retries with a
//!   version it has (KIP-511; Kafka's `RequestContext.isUnsupportedApiVersionsRequest`,
//!   `ApiVersionsRequest.getErrorResponse`). See [`Inbound::UnsupportedApiVersions`].
//! - Any other API at a version (or an api key) the broker does not enable is not answered:
//!   Kafka's `SocketServer` (`Processor.parseRequestHeader`) throws
//!   `UnsupportedVersionException`/`InvalidRequestException`, and `processCompletedReceives`
//!   logs "Closing socket for ... because of error" and closes the connection. So does a body
//!   that does not parse. [`decode_request`] returns a [`RequestError`] that says why, for the
//!   driver to log before it closes. Real clients never get there: they pick versions from the
//!   `ApiVersions` answer.
//!
//! Every decoder here returns an error, never panics, on bytes from the network. Encoding
//! panics instead: a message our own code built that its version cannot carry is our bug.

use std::fmt;
use std::ops::RangeInclusive;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::wire_schema;

/// Kafka's `socket.request.max.bytes` default: the broker closes a connection whose next
/// frame claims more (`NetworkReceive`: "Invalid receive (size = ... larger than ...)").
pub const KAFKA_REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;

/// Our bound on a frame, both ways. Smaller than Kafka's 100 MiB because every simulated
/// connection may hold a partial frame and no client we run sends more than about 1 MB in one
/// request (kafka-python's `max_request_size` and the Java client's `max.request.size` are
/// 1 MiB, librdkafka's `message.max.bytes` 1,000,000); our consumers ask for fetches far below
/// it. A frame over this closes the connection, as one over Kafka's limit does.
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The size prefix of a frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// Kafka's `UNSUPPORTED_VERSION` error code.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// One API we implement and the versions we accept and advertise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupportedApi {
    pub api_key: ApiKey,
    pub version_min: i16,
    pub version_max: i16,
}

impl SupportedApi {
    pub fn versions(&self) -> RangeInclusive<i16> {
        self.version_min..=self.version_max
    }
}

const fn api(api_key: ApiKey, version_min: i16, version_max: i16) -> SupportedApi {
    SupportedApi {
        api_key,
        version_min,
        version_max,
    }
}

/// The APIs and versions we implement: the one table [`api_versions_response`] advertises and
/// [`decode_request`] enforces. A client picks, per API, the highest version both sides have,
/// so advertising fewer than a client knows is fine. The floors are Kafka 4.0's (KIP-896
/// removed older versions; kafka-protocol 0.18 has the same floors). Reference §2.9 lists what
/// kafka-python 3.0 / librdkafka 2.16 used against a broker advertising more:
/// - `ApiVersions` 0..=4: v4 (kafka-python) and v3 (librdkafka); v0 answers unknown versions.
/// - `Metadata` 0..=12: both use v12. v13 only adds a top-level error for re-bootstrap.
/// - `Produce` 3..=10: v9 and v10. v11 needs nothing new from us, v12 is KIP-890's
///   transactions v2 and v13 names topics by id.
/// - `Fetch` 4..=12: kafka-python used v12, librdkafka v16; v13+ name topics by id (KIP-516),
///   which our broker does not assign, so librdkafka will use v12 here.
/// - `ListOffsets` 1..=9: v9 and v7.
/// - `CreateTopics` 2..=7: v7 and v4.
/// - `InitProducerId` 0..=4: both use v4; v5 (KIP-890) and v6 (KIP-939) are for transactions.
/// - `FindCoordinator` 0..=6: v6 and v2.
/// - `OffsetForLeaderEpoch` 2..=4: consumers validate positions after a leader change with it
///   (KIP-320; librdkafka sends v2), followers truncate with it (KIP-101).
/// - The classic group protocol (issue 12, `group_coordinator`): `JoinGroup` 4..=9 (v7 and
///   v5 seen; v4+ answers a new member MEMBER_ID_REQUIRED first), `SyncGroup` 0..=5 (v5 / v3),
///   `Heartbeat` 0..=4 (v4 / v3), `LeaveGroup` 0..=5 (v5 / v1), `OffsetCommit` 2..=9 (v8 /
///   v9; v10 names topics by id), `OffsetFetch` 5..=9 (v8 / v9; v8 batches groups). The
///   handler does not know a request's version, only its body, so an answer must encode at
///   every version the body could come from: OffsetFetch starts at v5, the first to carry a
///   committed leader epoch (Kafka's floor is v1), and ListGroups/DescribeGroups, whose
///   answers' fields depend on versions their bodies do not tell apart, are left out.
///   JoinGroup starts at v4: v3's body is v4's, and only v4+ clients understand the
///   MEMBER_ID_REQUIRED every new member gets first (KIP-394).
/// - `AddPartitionsToTxn` 0..=3: v3 (kafka-python) and v0 (librdkafka); v4+ are KIP-890's
///   broker-to-broker verification, which clients never send.
/// - `EndTxn` 0..=5: v3 and v1; v5 answers the bumped epoch of transaction version 2, which
///   clients use only when the broker finalizes the `transaction.version` feature (we do not).
/// - `WriteTxnMarkers` 1..=1: broker to broker, the coordinator's markers to a partition's
///   leader (Kafka 4.0 dropped v0, KIP-896; v2 adds KIP-890's transaction version, which we
///   do not finalize).
/// - `AddOffsetsToTxn` 0..=3 and `TxnOffsetCommit` 0..=3 (consume-transform-produce); v4 of
///   each is KIP-890's transaction version 2, v5 of TxnOffsetCommit its new errors.
pub const SUPPORTED_APIS: [SupportedApi; 20] = [
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::Produce, 3, 10),
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 9),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::JoinGroup, 4, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 5, 9),
    api(ApiKey::AddPartitionsToTxn, 0, 3),
    api(ApiKey::EndTxn, 0, 5),
    api(ApiKey::WriteTxnMarkers, 1, 1),
    api(ApiKey::AddOffsetsToTxn, 0, 3),
    api(ApiKey::TxnOffsetCommit, 0, 3),
];

/// The versions of `api_key` we implement, if we implement it.
pub fn supported_versions(api_key: ApiKey) -> Option<RangeInclusive<i16>> {
    SUPPORTED_APIS
        .iter()
        .find(|api| api.api_key == api_key)
        .map(SupportedApi::versions)
}

/// The version a client should use for `api_key`: the highest that both our table and the
/// broker's `ApiVersions` answer have (what the Java client's `NodeApiVersions` and librdkafka
/// do), or `None` if there is none.
pub fn negotiate_version(broker: &ApiVersionsResponse, api_key: ApiKey) -> Option<i16> {
    let ours = supported_versions(api_key)?;
    let theirs = broker.api_keys.iter().find(|a| a.api_key == api_key as i16)?;
    let max = (*ours.end()).min(theirs.max_version);
    let min = (*ours.start()).max(theirs.min_version);
    (min <= max).then_some(max)
}

/// The `ApiVersions` answer built from [`SUPPORTED_APIS`], without features (we advertise
/// none; clients read an empty list as "no finalized features").
pub fn api_versions_response() -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS.iter().map(api_version).collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// Kafka's answer to an `ApiVersions` request at a version it does not know: v0,
/// `UNSUPPORTED_VERSION`, and only the `ApiVersions` range (`ApiVersionsRequest
/// .getErrorResponse`: "ApiKeys field is populated with the supported versions of the
/// ApiVersionsRequest when an UNSUPPORTED_VERSION error is returned").
pub fn unsupported_api_versions_response() -> ApiVersionsResponse {
    let api_versions = SUPPORTED_APIS[0];
    assert_eq!(
        api_versions.api_key,
        ApiKey::ApiVersions,
        "the table starts with ApiVersions"
    );
    ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(vec![api_version(&api_versions)])
}

fn api_version(api: &SupportedApi) -> ApiVersion {
    ApiVersion::default()
        .with_api_key(api.api_key as i16)
        .with_min_version(api.version_min)
        .with_max_version(api.version_max)
}

/// Declares the request and response enums over the APIs of [`SUPPORTED_APIS`], with the
/// dispatch kafka-protocol's `messages_enums` feature would give (not enabled in this
/// workspace, and it covers every API rather than ours).
macro_rules! messages {
    ($($name:ident: $request:ident, $response:ident;)*) => {
        /// A request body of an API we implement.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Request { $($name($request),)* }

        /// A response body of an API we implement.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Response { $($name($response),)* }

        impl Request {
            pub fn api_key(&self) -> ApiKey {
                match self { $(Request::$name(_) => ApiKey::$name,)* }
            }

            fn encode_body(&self, buf: &mut BytesMut, version: i16) -> Result<(), String> {
                match self { $(Request::$name(body) => body.encode(buf, version),)* }
                    .map_err(|error| error.to_string())
            }

            fn decode_body(api_key: ApiKey, buf: &mut Bytes, version: i16) -> Result<Request, String> {
                match api_key {
                    $(ApiKey::$name => $request::decode(buf, version).map(Request::$name),)*
                    other => return Err(format!("{other:?} is not implemented")),
                }
                .map_err(|error| error.to_string())
            }
        }

        impl Response {
            pub fn api_key(&self) -> ApiKey {
                match self { $(Response::$name(_) => ApiKey::$name,)* }
            }

            fn encode_body(&self, buf: &mut BytesMut, version: i16) -> Result<(), String> {
                match self { $(Response::$name(body) => body.encode(buf, version),)* }
                    .map_err(|error| error.to_string())
            }

            fn decode_body(api_key: ApiKey, buf: &mut Bytes, version: i16) -> Result<Response, String> {
                match api_key {
                    $(ApiKey::$name => $response::decode(buf, version).map(Response::$name),)*
                    other => return Err(format!("{other:?} is not implemented")),
                }
                .map_err(|error| error.to_string())
            }
        }
    };
}

messages! {
    ApiVersions: ApiVersionsRequest, ApiVersionsResponse;
    Metadata: MetadataRequest, MetadataResponse;
    Produce: ProduceRequest, ProduceResponse;
    Fetch: FetchRequest, FetchResponse;
    ListOffsets: ListOffsetsRequest, ListOffsetsResponse;
    CreateTopics: CreateTopicsRequest, CreateTopicsResponse;
    InitProducerId: InitProducerIdRequest, InitProducerIdResponse;
    FindCoordinator: FindCoordinatorRequest, FindCoordinatorResponse;
    OffsetForLeaderEpoch: OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
    JoinGroup: JoinGroupRequest, JoinGroupResponse;
    SyncGroup: SyncGroupRequest, SyncGroupResponse;
    Heartbeat: HeartbeatRequest, HeartbeatResponse;
    LeaveGroup: LeaveGroupRequest, LeaveGroupResponse;
    OffsetCommit: OffsetCommitRequest, OffsetCommitResponse;
    OffsetFetch: OffsetFetchRequest, OffsetFetchResponse;
    AddPartitionsToTxn: AddPartitionsToTxnRequest, AddPartitionsToTxnResponse;
    EndTxn: EndTxnRequest, EndTxnResponse;
    WriteTxnMarkers: WriteTxnMarkersRequest, WriteTxnMarkersResponse;
    AddOffsetsToTxn: AddOffsetsToTxnRequest, AddOffsetsToTxnResponse;
    TxnOffsetCommit: TxnOffsetCommitRequest, TxnOffsetCommitResponse;
}

// ---------------------------------------------------------------------------------------------
// Framing

/// A frame size the connection cannot accept; the connection is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Kafka: "Invalid receive (size = -1)".
    Negative { size: i32 },
    /// Kafka: "Invalid receive (size = ... larger than ...)".
    TooLarge { size: i32, frame_bytes_max: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Negative { size } => write!(f, "Invalid receive (size = {size})"),
            FrameError::TooLarge {
                size,
                frame_bytes_max,
            } => write!(f, "Invalid receive (size = {size} larger than {frame_bytes_max})"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits a byte stream into frames, incrementally: bytes go in as they arrive, whole frames
/// come out. It holds at most one partial frame between calls (so at most
/// `FRAME_PREFIX_BYTES + frame_bytes_max` bytes), and checks a frame's size as soon as its
/// prefix is in, before buffering its body. After an error it keeps returning that error:
/// the connection is to be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    frame_bytes_max: usize,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new(FRAME_BYTES_MAX)
    }
}

impl FrameDecoder {
    pub fn new(frame_bytes_max: usize) -> FrameDecoder {
        assert!(frame_bytes_max <= i32::MAX as usize, "a frame size is an int32");
        FrameDecoder {
            buffer: BytesMut::new(),
            frame_bytes_max,
            failed: None,
        }
    }

    /// Takes the bytes that arrived and returns the frames they complete, in order (without
    /// their size prefix). The returned frames are no larger than the input plus one partial
    /// frame, so memory stays bounded by what the caller reads.
    pub fn decode(&mut self, input: &[u8]) -> Result<Vec<Bytes>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.buffer.extend_from_slice(input);
        let mut frames = Vec::new();
        loop {
            match self.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return Ok(frames),
                Err(error) => {
                    self.buffer = BytesMut::new();
                    self.failed = Some(error.clone());
                    return Err(error);
                }
            }
        }
    }

    /// Bytes of a partial frame held for the next call.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buffer.len() < FRAME_PREFIX_BYTES {
            return Ok(None);
        }
        let size = i32::from_be_bytes([self.buffer[0], self.buffer[1], self.buffer[2], self.buffer[3]]);
        if size < 0 {
            return Err(FrameError::Negative { size });
        }
        if size as usize > self.frame_bytes_max {
            return Err(FrameError::TooLarge {
                size,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        if self.buffer.len() < FRAME_PREFIX_BYTES + size as usize {
            return Ok(None);
        }
        self.buffer.advance(FRAME_PREFIX_BYTES);
        Ok(Some(self.buffer.split_to(size as usize).freeze()))
    }
}

/// Writes a frame: the size prefix, then what `write` puts after it.
fn frame(write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    write(&mut buf);
    let size = buf.len() - FRAME_PREFIX_BYTES;
    assert!(
        size <= FRAME_BYTES_MAX,
        "we never build a frame over FRAME_BYTES_MAX ({size} bytes)"
    );
    buf[..FRAME_PREFIX_BYTES].copy_from_slice(&(size as i32).to_be_bytes());
    buf.freeze()
}

// ---------------------------------------------------------------------------------------------
// Broker side

/// A request frame, decoded.
#[derive(Clone, Debug, PartialEq)]
// One per frame, matched at once by the broker: boxing the request buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    Request {
        header: RequestHeader,
        request: Request,
    },
    /// `ApiVersions` at a version we do not implement. Kafka does not parse its body and
    /// answers [`unsupported_api_versions_response`] at v0 ([`encode_response`] does that).
    UnsupportedApiVersions {
        header: RequestHeader,
    },
}

impl Inbound {
    pub fn header(&self) -> &RequestHeader {
        match self {
            Inbound::Request { header, .. } | Inbound::UnsupportedApiVersions { header } => header,
        }
    }
}

/// A request the broker does not answer: it logs this and closes the connection, as Kafka's
/// `SocketServer` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Kafka: `InvalidRequestException("Unknown API key ...")`.
    UnknownApiKey { api_key: i16 },
    /// An API Kafka knows that we do not implement, or a version outside our table. Kafka:
    /// "Received request for api with key ... and unsupported version ...".
    UnsupportedVersion { api_key: i16, api_version: i16 },
    /// The header does not parse.
    InvalidHeader { reason: String },
    /// The body does not parse. Kafka: "Error getting request for apiKey ...".
    InvalidBody {
        api_key: i16,
        api_version: i16,
        reason: String,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::UnknownApiKey { api_key } => write!(f, "Unknown API key {api_key}"),
            RequestError::UnsupportedVersion { api_key, api_version } => write!(
                f,
                "Received request for api with key {api_key} and unsupported version {api_version}"
            ),
            RequestError::InvalidHeader { reason } => write!(f, "Invalid request header: {reason}"),
            RequestError::InvalidBody {
                api_key,
                api_version,
                reason,
            } => write!(
                f,
                "Error getting request for apiKey: {api_key}, apiVersion: {api_version}: {reason}"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// Decodes a request frame (without its size prefix), as Kafka's broker does: the api key and
/// version first, which give the header version, then the header, then the body.
pub fn decode_request(frame: Bytes) -> Result<Inbound, RequestError> {
    let (api_key, header, mut body) = decode_request_header(frame)?;
    let api_version = header.request_api_version;
    let Some(versions) = supported_versions(api_key) else {
        return Err(RequestError::UnsupportedVersion {
            api_key: api_key as i16,
            api_version,
        });
    };
    if !versions.contains(&api_version) {
        // KIP-511: a client sends the highest ApiVersions version it knows; the broker
        // answers one it does not know at v0 instead of closing (Kafka's
        // `ApiKeys.isVersionEnabled` accepts any ApiVersions version for this).
        if api_key == ApiKey::ApiVersions {
            return Ok(Inbound::UnsupportedApiVersions { header });
        }
        return Err(RequestError::UnsupportedVersion {
            api_key: api_key as i16,
            api_version,
        });
    }
    let invalid = |reason| RequestError::InvalidBody {
        api_key: api_key as i16,
        api_version,
        reason,
    };
    // Before kafka-protocol reserves memory for the lengths the body claims (wire_schema).
    wire_schema::check_request(api_key, api_version, &body).map_err(invalid)?;
    // Trailing bytes after the body are ignored, as Kafka's parser ignores them.
    let request = Request::decode_body(api_key, &mut body, api_version).map_err(invalid)?;
    Ok(Inbound::Request { header, request })
}

/// The header of a request frame and the bytes after it.
fn decode_request_header(mut frame: Bytes) -> Result<(ApiKey, RequestHeader, Bytes), RequestError> {
    if frame.len() < 4 {
        return Err(RequestError::InvalidHeader {
            reason: format!("{} bytes is too short for a request header", frame.len()),
        });
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key =
        ApiKey::try_from(api_key_raw).map_err(|_| RequestError::UnknownApiKey { api_key: api_key_raw })?;
    let header_version = api_key.request_header_version(api_version);
    let mut header =
        RequestHeader::decode(&mut frame, header_version).map_err(|error| RequestError::InvalidHeader {
            reason: error.to_string(),
        })?;
    // "Due to a quirk in the protocol, client ID is marked as nullable. However, we treat a
    // null client ID as equivalent to an empty client ID." (Kafka's `RequestHeader.parse`)
    if header.client_id.is_none() {
        header.client_id = Some(StrBytes::from_static_str(""));
    }
    Ok((api_key, header, frame))
}

/// The body version of the answer to a request: the request's, except for an `ApiVersions`
/// request at a version we do not implement, answered at v0 (Kafka's `RequestContext
/// .apiVersion`: "Use v0 when serializing an unhandled ApiVersion response").
pub fn response_version(header: &RequestHeader) -> i16 {
    let version = header.request_api_version;
    let api_versions = ApiKey::ApiVersions as i16;
    let unhandled = header.request_api_key == api_versions
        && !supported_versions(ApiKey::ApiVersions).is_some_and(|range| range.contains(&version));
    if unhandled {
        0
    } else {
        version
    }
}

/// Encodes the answer to the request with `header` as a frame: the response header (its
/// version depends on the api key and version) with the request's correlation id, then the
/// body. Panics if `response` is not for the request's API or cannot be carried at its
/// version: the broker built a wrong answer.
pub fn encode_response(header: &RequestHeader, response: &Response) -> Bytes {
    let api_key = response.api_key();
    assert_eq!(
        api_key as i16, header.request_api_key,
        "a response answers its request's API"
    );
    let version = response_version(header);
    let header_version = api_key.response_header_version(version);
    let response_header = ResponseHeader::default().with_correlation_id(header.correlation_id);
    frame(|buf| {
        response_header
            .encode(buf, header_version)
            .unwrap_or_else(|error| panic!("response header v{header_version}: {error}"));
        response
            .encode_body(buf, version)
            .unwrap_or_else(|error| panic!("{api_key:?} response v{version}: {error}"));
    })
}

// ---------------------------------------------------------------------------------------------
// Client side

/// What a client remembers of a request it sent, to decode the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Encodes a request as a frame with its header (header v1, or v2 for the API's flexible
/// versions). Panics if the version cannot carry the request: the client chose it.
pub fn encode_request(
    correlation_id: i32,
    client_id: &str,
    api_version: i16,
    request: &Request,
) -> (InFlight, Bytes) {
    let api_key = request.api_key();
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let header_version = api_key.request_header_version(api_version);
    let bytes = frame(|buf| {
        header
            .encode(buf, header_version)
            .unwrap_or_else(|error| panic!("request header v{header_version}: {error}"));
        request
            .encode_body(buf, api_version)
            .unwrap_or_else(|error| panic!("{api_key:?} request v{api_version}: {error}"));
    });
    let in_flight = InFlight {
        api_key,
        api_version,
        correlation_id,
    };
    (in_flight, bytes)
}

/// A response the client cannot use; the Java client closes the connection on these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseDecodeError {
    InvalidHeader {
        reason: String,
    },
    /// The Java client's `NetworkClient.correlate`: "Correlation id for response (...) does
    /// not match request (...)".
    CorrelationMismatch {
        expected: i32,
        actual: i32,
    },
    InvalidBody {
        api_key: i16,
        api_version: i16,
        reason: String,
    },
}

impl fmt::Display for ResponseDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseDecodeError::InvalidHeader { reason } => write!(f, "Invalid response header: {reason}"),
            ResponseDecodeError::CorrelationMismatch { expected, actual } => write!(
                f,
                "Correlation id for response ({actual}) does not match request ({expected})"
            ),
            ResponseDecodeError::InvalidBody {
                api_key,
                api_version,
                reason,
            } => write!(
                f,
                "Invalid response for api key {api_key} v{api_version}: {reason}"
            ),
        }
    }
}

impl std::error::Error for ResponseDecodeError {}

/// Decodes the answer to `in_flight` (a frame without its size prefix). An `ApiVersions`
/// answer that does not parse at the version sent is parsed again at v0, since a broker
/// answers an unknown version at v0 (the Java client's `ApiVersionsResponse.parse` does the
/// same).
pub fn decode_response(frame: Bytes, in_flight: &InFlight) -> Result<Response, ResponseDecodeError> {
    let header_version = in_flight.api_key.response_header_version(in_flight.api_version);
    let mut body = frame;
    let header = ResponseHeader::decode(&mut body, header_version).map_err(|error| {
        ResponseDecodeError::InvalidHeader {
            reason: error.to_string(),
        }
    })?;
    if header.correlation_id != in_flight.correlation_id {
        return Err(ResponseDecodeError::CorrelationMismatch {
            expected: in_flight.correlation_id,
            actual: header.correlation_id,
        });
    }
    let first = Response::decode_body(in_flight.api_key, &mut body.clone(), in_flight.api_version);
    match first {
        Err(_) if in_flight.api_key == ApiKey::ApiVersions && in_flight.api_version != 0 => {
            Response::decode_body(in_flight.api_key, &mut body, 0)
        }
        result => result,
    }
    .map_err(|reason| ResponseDecodeError::InvalidBody {
        api_key: in_flight.api_key as i16,
        api_version: in_flight.api_version,
        reason,
    })
}
