//! Just enough HTTP/1.1 for nsqlookupd's API: one request per connection (`Connection:
//! close`), GET and POST without bodies that matter. Generic over the stream, so it serves
//! turmoil and tokio sockets alike.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HEAD_MAX: usize = 16 * 1024;
const BODY_MAX: usize = 4 * 1024 * 1024;

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buffer: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(end + 4);
        }
        if buffer.len() > HEAD_MAX {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "HTTP head too long"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-request",
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Serves one request with `handle(method, target) -> (status, body)`, then closes.
pub async fn serve<S, F>(mut stream: S, handle: F) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&str, &str) -> (u16, String),
{
    let mut buffer = Vec::new();
    let head_end = read_head(&mut stream, &mut buffer).await?;
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let (status, body) = if method.is_empty() || !target.starts_with('/') {
        (400, r#"{"message":"INVALID_REQUEST"}"#.to_string())
    } else {
        handle(method, target)
    };
    let content_type = if body.starts_with('{') {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Sends `GET target` and returns (status, body).
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    target: &str,
) -> io::Result<(u16, String)> {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: application/vnd.nsq; version=1.0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = Vec::new();
    let head_end = read_head(&mut stream, &mut buffer).await?;
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = buffer[head_end..].to_vec();
    let mut chunk = [0u8; 4096];
    while length.is_none_or(|len| body.len() < len) && body.len() < BODY_MAX {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if let Some(len) = length {
        body.truncate(len);
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
