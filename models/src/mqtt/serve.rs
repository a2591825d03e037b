//! `jetsam serve mqtt broker [flags]`: the MQTT broker as a real server, with flags named as
//! mosquitto's configuration options, listed in `models::designs()` through [`SERVERS`].

use super::broker::BrokerConfig;
use super::real::run_in;
use crate::server::{block_on, shutdown_signal, ServeError, ServerInfo};
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The roles of the `mqtt` design that run as real servers.
pub const SERVERS: &[ServerInfo] = &[ServerInfo {
    role: "broker",
    about: "an MQTT 3.1/3.1.1/5 broker like mosquitto 2.0: QoS 0/1/2, sessions, retained and \
            will messages, keepalive, persistence under --persistence-location",
    run: run_broker,
}];

#[derive(Parser, Debug)]
#[command(name = "jetsam serve mqtt broker", about = "an MQTT broker as a real server")]
struct BrokerArgs {
    /// `listener` port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    #[arg(long, default_value_t = BrokerConfig::default().max_inflight_messages)]
    max_inflight_messages: u32,
    #[arg(long, default_value_t = BrokerConfig::default().max_queued_messages)]
    max_queued_messages: u32,
    /// `persistence true`: load state at start, save it every --autosave-interval seconds
    /// and at shutdown.
    #[arg(long)]
    persistence: bool,
    /// `autosave_interval`, in seconds.
    #[arg(long, default_value_t = BrokerConfig::default().autosave_interval_s)]
    autosave_interval: u64,
    /// `persistence_location`: the directory of the snapshot file.
    #[arg(long, default_value = ".")]
    persistence_location: PathBuf,
    /// `max_packet_size`, in bytes.
    #[arg(long, default_value_t = BrokerConfig::default().max_packet_size)]
    max_packet_size: u32,
}

fn run_broker(flags: &[String]) -> Result<(), ServeError> {
    let program = "jetsam serve mqtt broker".to_string();
    let args = BrokerArgs::try_parse_from(std::iter::once(program).chain(flags.iter().cloned()))?;
    let config = BrokerConfig {
        max_inflight_messages: args.max_inflight_messages,
        max_queued_messages: args.max_queued_messages,
        persistence: args.persistence,
        autosave_interval_s: args.autosave_interval,
        max_packet_size: args.max_packet_size,
        ..BrokerConfig::default()
    };
    let address = SocketAddr::new(args.bind_address, args.port);
    block_on(async move {
        // Bound before the banner, so a taken port is one error line that names it.
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| std::io::Error::new(error.kind(), format!("{address}: {error}")))?;
        eprintln!(
            "jetsam mqtt broker: {address}, data {}",
            args.persistence_location.display()
        );
        run_in(listener, config, args.persistence_location, shutdown_signal()).await
    })
}
