//! Serving nsqlookupd's sans-I/O core over any stream: a peer (nsqd) connection and one HTTP
//! request. Shared by the turmoil and tokio drivers.

use super::http;
use super::lookupd::{Lookupd, PeerOutput};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Serves one nsqd's TCP connection until it ends; then the peer leaves every registration.
pub async fn serve_peer<S, N, P, PF>(
    core: Rc<RefCell<Lookupd>>,
    stream: S,
    remote: String,
    now: N,
    checkpoint: P,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    N: Fn() -> Duration,
    P: Fn() -> PF,
    PF: Future<Output = ()>,
{
    let peer = core.borrow_mut().connect(now());
    let (mut read, mut write) = tokio::io::split(stream);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match read.read(&mut chunk).await {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        checkpoint().await;
        let outputs = core.borrow_mut().receive(peer, &chunk[..n], &remote, now());
        for output in outputs {
            match output {
                PeerOutput::Send(bytes) => {
                    if write.write_all(&bytes).await.is_err() {
                        break 'conn;
                    }
                }
                PeerOutput::Close => break 'conn,
            }
        }
    }
    core.borrow_mut().disconnect(peer);
}

/// Serves one HTTP connection's requests.
pub async fn serve_http<S, N>(core: Rc<RefCell<Lookupd>>, stream: S, now: N)
where
    S: AsyncRead + AsyncWrite + Unpin,
    N: Fn() -> Duration,
{
    let _ = http::serve(stream, |request: http::HttpRequest<'_>| {
        let target = format!("{}?{}", request.path, request.query);
        core.borrow_mut().http(request.method, &target, now())
    })
    .await;
}
