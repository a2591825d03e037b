//! `jetsam serve nsq nsqd|lookupd [flags]`: NSQ's real servers, with flags named as nsqd's
//! and nsqlookupd's. Durations are written as NSQ writes them: 60s, 250ms, 15m, 1h.

use super::lookupd::LookupdOptions;
use super::nsqd::NsqdOptions;
use super::real::{run_lookupd, run_nsqd, LookupdServer, NsqdServer};
use crate::server::{block_on, parse_duration_ms, shutdown_signal, ServeError, ServerInfo};
use clap::Parser;
use std::path::PathBuf;

/// The roles of the `nsq` design that run as real servers.
pub const SERVERS: &[ServerInfo] = &[
    ServerInfo {
        role: "nsqd",
        about: "nsqd: the V2 TCP protocol, /ping and /info over HTTP, disk queues under --data-path",
        run: nsqd,
    },
    ServerInfo {
        role: "lookupd",
        about: "nsqlookupd: registrations over TCP, /lookup, /channels, /nodes over HTTP",
        run: lookupd,
    },
];

#[derive(Parser)]
#[command(name = "jetsam serve nsq nsqd", about = "nsqd as a real server")]
struct NsqdArgs {
    #[arg(long, default_value = "0.0.0.0:4150")]
    tcp_address: std::net::SocketAddr,
    #[arg(long, default_value = "0.0.0.0:4151")]
    http_address: std::net::SocketAddr,
    /// A lookupd's TCP address (repeatable).
    #[arg(long = "lookupd-tcp-address")]
    lookupd_tcp_address: Vec<String>,
    /// Address announced to lookupds (default: the TCP address's IP, or 127.0.0.1).
    #[arg(long)]
    broadcast_address: Option<String>,
    #[arg(long, default_value = ".")]
    data_path: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    mem_queue_size: usize,
    #[arg(long, default_value = "60s", value_parser = parse_duration_ms)]
    msg_timeout: u64,
    #[arg(long, default_value = "15m", value_parser = parse_duration_ms)]
    max_msg_timeout: u64,
    #[arg(long, default_value_t = 2500)]
    sync_every: u64,
    #[arg(long, default_value = "2s", value_parser = parse_duration_ms)]
    sync_timeout: u64,
    #[arg(long, default_value_t = 2500)]
    max_rdy_count: i64,
    #[arg(long, default_value = "100ms", value_parser = parse_duration_ms)]
    queue_scan_interval: u64,
}

#[derive(Parser)]
#[command(name = "jetsam serve nsq lookupd", about = "nsqlookupd as a real server")]
struct LookupdArgs {
    #[arg(long, default_value = "0.0.0.0:4160")]
    tcp_address: std::net::SocketAddr,
    #[arg(long, default_value = "0.0.0.0:4161")]
    http_address: std::net::SocketAddr,
    #[arg(long, default_value = "5m", value_parser = parse_duration_ms)]
    inactive_producer_timeout: u64,
    #[arg(long, default_value = "45s", value_parser = parse_duration_ms)]
    tombstone_lifetime: u64,
}

fn parse<T: Parser>(role: &str, flags: &[String]) -> Result<T, clap::Error> {
    let program = format!("jetsam serve nsq {role}");
    T::try_parse_from(std::iter::once(program).chain(flags.iter().cloned()))
}

fn nsqd(flags: &[String]) -> Result<(), ServeError> {
    let args: NsqdArgs = parse("nsqd", flags)?;
    let broadcast_address = args.broadcast_address.unwrap_or_else(|| {
        let ip = args.tcp_address.ip();
        if ip.is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            ip.to_string()
        }
    });
    let options = NsqdOptions {
        mem_queue_size: args.mem_queue_size,
        msg_timeout_ms: args.msg_timeout,
        max_msg_timeout_ms: args.max_msg_timeout,
        sync_every: args.sync_every,
        sync_timeout_ms: args.sync_timeout,
        max_rdy_count: args.max_rdy_count,
        queue_scan_interval_ms: args.queue_scan_interval,
        ..Default::default()
    };
    let server = NsqdServer {
        tcp_address: args.tcp_address,
        http_address: args.http_address,
        lookupd_tcp_addresses: args.lookupd_tcp_address,
        data_path: args.data_path,
        broadcast_address,
        options,
    };
    eprintln!(
        "jetsam nsqd: TCP {} HTTP {} data {}",
        server.tcp_address,
        server.http_address,
        server.data_path.display()
    );
    block_on(run_nsqd(server, shutdown_signal()))
}

fn lookupd(flags: &[String]) -> Result<(), ServeError> {
    let args: LookupdArgs = parse("lookupd", flags)?;
    let server = LookupdServer {
        tcp_address: args.tcp_address,
        http_address: args.http_address,
        options: LookupdOptions {
            inactive_producer_timeout_ms: args.inactive_producer_timeout,
            tombstone_lifetime_ms: args.tombstone_lifetime,
            ..Default::default()
        },
    };
    eprintln!(
        "jetsam lookupd: TCP {} HTTP {}",
        server.tcp_address, server.http_address
    );
    block_on(run_lookupd(server, shutdown_signal()))
}
