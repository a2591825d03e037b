//! The turmoil driver for nsqlookupd: its sans-I/O core behind simulated TCP and HTTP.

use super::lookupd::{Lookupd, LookupdOptions, LOOKUPD_HTTP_PORT, LOOKUPD_TCP_PORT};
use super::lookupd_driver::{serve_http, serve_peer};
use sim::Env;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use turmoil::net::TcpListener;

pub async fn run(env: Env, host: String, mut options: LookupdOptions) -> turmoil::Result {
    options.broadcast_address = host.clone();
    options.tcp_port = LOOKUPD_TCP_PORT;
    options.http_port = LOOKUPD_HTTP_PORT;
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
                tokio::task::spawn_local(serve_http(core.clone(), stream, now.clone()));
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
                let (core, now, process) = (core.clone(), now.clone(), process.clone());
                tokio::task::spawn_local(async move {
                    serve_peer(core, stream, remote.to_string(), now, || process.checkpoint()).await;
                });
            }
        }
    }
    http_task.abort();
    Ok(())
}
