//! HTTP/1.1 for nsqd's and nsqlookupd's APIs and their clients, on hyper's connection-level
//! APIs. Generic over the stream, so it serves turmoil and tokio sockets alike; hyper is
//! given no timer and no executor, so it reads no clock and spawns nothing (the connection
//! future runs on the caller's task, or on a `spawn_local` task for the client).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};

/// nsqd's `--max-body-size` default: the largest request body read (an `/mpub`).
pub const BODY_MAX: usize = 5 * 1024 * 1024;
/// Go's `http.DefaultMaxHeaderBytes`; hyper's own limit for HTTP/1 heads is lower, so this
/// is what hyper buffers at most.
const HEAD_BUFFER_MAX: usize = 1 << 20;

/// One request as the APIs see it.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The path, percent-decoded as Go's `url.URL.Path` is.
    pub path: &'a str,
    /// The raw query (`a=1&b=2`); decode it with [`query_param`].
    pub query: &'a str,
    pub body: &'a [u8],
}

/// An answer: a status and a body (JSON if it starts with `{`, plain text otherwise).
pub type HttpResponse = (u16, String);

fn content_type(body: &str) -> &'static str {
    if body.starts_with('{') {
        "application/json; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// The value of `name` in a URL query, percent-decoded (`+` is a space), as Go's
/// `url.ParseQuery` gives it: the first of repeated keys.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn error_body(message: &str) -> String {
    serde_json::json!({ "message": message }).to_string()
}

async fn answer<F>(request: Request<Incoming>, handle: &F) -> Response<Full<Bytes>>
where
    F: Fn(HttpRequest<'_>) -> HttpResponse,
{
    let (parts, body) = request.into_parts();
    let (status, text) = match Limited::new(body, BODY_MAX).collect().await {
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            (413, error_body("BODY_TOO_BIG"))
        }
        Err(_) => (400, error_body("INVALID_REQUEST")),
        Ok(collected) => {
            let body = collected.to_bytes();
            let raw_path = parts.uri.path();
            let path: String = percent_decode(raw_path);
            handle(HttpRequest {
                method: parts.method.as_str(),
                path: &path,
                query: parts.uri.query().unwrap_or_default(),
                body: &body,
            })
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(text.clone())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type(&text)),
    );
    response
}

/// `%XX` escapes in a path decoded (Go's router matches the decoded path).
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves HTTP/1.1 requests on one connection (keep-alive, as Go's server does) with
/// `handle`, until the client closes it.
pub async fn serve<S, F>(stream: S, handle: F) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(HttpRequest<'_>) -> HttpResponse,
{
    let handle = &handle;
    let service = hyper::service::service_fn(move |request| async move {
        Ok::<_, Infallible>(answer(request, handle).await)
    });
    hyper::server::conn::http1::Builder::new()
        .max_buf_size(HEAD_BUFFER_MAX)
        .serve_connection(TokioIo::new(stream), service)
        .await
        .map_err(io::Error::other)
}

/// Sends one request and returns (status, body). The connection is driven on a
/// `spawn_local` task, ending with the request.
pub async fn request<S>(
    stream: S,
    method: &str,
    host: &str,
    target: &str,
    body: Vec<u8>,
) -> io::Result<(u16, String)>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let driving = tokio::task::spawn_local(connection);
    let request = Request::builder()
        .method(method)
        .uri(target)
        .header(hyper::header::HOST, host)
        .header(hyper::header::ACCEPT, "application/vnd.nsq; version=1.0")
        .body(Full::new(Bytes::from(body)))
        .map_err(io::Error::other)?;
    let result = async {
        let response = sender.send_request(request).await.map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), BODY_MAX)
            .collect()
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
    .await;
    driving.abort();
    result
}

/// Sends `GET target` and returns (status, body).
pub async fn get<S>(stream: S, host: &str, target: &str) -> io::Result<(u16, String)>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    request(stream, "GET", host, target, Vec::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_decoded_as_go_does() {
        assert_eq!(query_param("topic=a%2Eb&x=1", "topic").as_deref(), Some("a.b"));
        assert_eq!(query_param("topic=a+b", "topic").as_deref(), Some("a b"));
        assert_eq!(query_param("topic=1&topic=2", "topic").as_deref(), Some("1"));
        assert_eq!(query_param("x=1", "topic"), None);
        assert_eq!(percent_decode("/topic%2Fcreate"), "/topic/create");
        assert_eq!(percent_decode("/bad%zz"), "/bad%zz");
    }

    #[test]
    fn a_request_and_its_answer_cross_a_stream() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let (client, server) = tokio::io::duplex(64 * 1024);
            tokio::task::spawn_local(serve(server, |r: HttpRequest<'_>| {
                let topic = query_param(r.query, "topic").unwrap_or_default();
                (200, format!("{} {} {topic} {}", r.method, r.path, r.body.len()))
            }));
            let answer = request(client, "POST", "nsqd", "/pub?topic=a%20b", b"hello".to_vec()).await;
            assert_eq!(answer.unwrap(), (200, "POST /pub a b 5".to_string()));
        });
    }
}
