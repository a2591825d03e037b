//! The turmoil driver for nsqlookupd: its sans-I/O core behind simulated TCP and HTTP.

use super::http;
use super::lookupd::{Lookupd, LookupdOptions, PeerOutput, LOOKUPD_HTTP_PORT, LOOKUPD_TCP_PORT};
use sim::Env;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpListener;

pub async fn run(env: Env, host: String, options: LookupdOptions) -> turmoil::Result {
    let process = env.process(&host);
    let _running = process.start();
    let core = Rc::new(RefCell::new(Lookupd::new(options)));
    let now = {
        let env = env.clone();
        move || Duration::from_micros(env.now().0)
    };
    let http_listener = TcpListener::bind(("0.0.0.0", LOOKUPD_HTTP_PORT)).await?;
    let http_task = {
        let (core, now, process) = (core.clone(), now.clone(), process.clone());
        tokio::task::spawn_local(async move {
            while let Ok((stream, _)) = http_listener.accept().await {
                process.checkpoint().await;
                let (core, now) = (core.clone(), now.clone());
                tokio::task::spawn_local(async move {
                    let _ = http::serve(stream, |method, target| {
                        core.borrow_mut().http(method, target, now())
                    })
                    .await;
                });
            }
        })
    };
    let tcp_listener = TcpListener::bind(("0.0.0.0", LOOKUPD_TCP_PORT)).await?;
    loop {
        tokio::select! {
            biased;
            _ = process.stopping() => break,
            accepted = tcp_listener.accept() => {
                let (stream, remote) = accepted?;
                let peer = core.borrow_mut().connect(now());
                let (core, now, process) = (core.clone(), now.clone(), process.clone());
                tokio::task::spawn_local(async move {
                    let (mut read, mut write) = stream.into_split();
                    let mut chunk = vec![0u8; 16 * 1024];
                    'conn: loop {
                        let n = match read.read(&mut chunk).await {
                            Ok(n) if n > 0 => n,
                            _ => break,
                        };
                        process.checkpoint().await;
                        let outputs = core.borrow_mut().receive(peer, &chunk[..n], &remote.to_string(), now());
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
                    // The connection is gone: nsqlookupd drops the peer's registrations at once.
                    core.borrow_mut().disconnect(peer);
                });
            }
        }
    }
    http_task.abort();
    Ok(())
}
