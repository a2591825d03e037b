//! `jetsam serve kafka broker [flags]`: a single Kafka node (broker and controller in one
//! process, KRaft's combined mode) as a real server, with flags named as Kafka's broker
//! configs (`listeners`, `advertised.listeners`, `log.dirs`, `min.insync.replicas`,
//! `num.partitions`). Until the Kafka design is registered in `models::designs()`, reach it
//! through [`SERVERS`] or [`run_broker`].

use super::real::{run, KafkaServer};
use crate::server::{block_on, shutdown_signal, ServeError, ServerInfo};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The roles of the `kafka` design that run as real servers.
pub const SERVERS: &[ServerInfo] = &[ServerInfo {
    role: "broker",
    about: "a single Kafka node (broker 1 and its controller): Produce, Fetch, Metadata, \
            CreateTopics, InitProducerId... on Kafka's wire protocol, logs under --log-dirs",
    run: run_broker,
}];

#[derive(Parser, Debug)]
#[command(
    name = "jetsam serve kafka broker",
    about = "a single Kafka node as a real server"
)]
struct BrokerArgs {
    /// `listeners`: the address clients connect to (`PLAINTEXT://` may be written before it).
    #[arg(long = "listen-address", alias = "listeners", default_value = "127.0.0.1:9092", value_parser = parse_listener)]
    listen_address: SocketAddr,
    /// `advertised.listeners`: host:port that Metadata names for this broker (default: the
    /// listen address, 127.0.0.1 if it is unspecified).
    #[arg(long)]
    advertised_address: Option<String>,
    /// `log.dirs`: partition logs go in `<topic>-<partition>/` under it.
    #[arg(long, default_value = "/tmp/kraft-combined-logs")]
    log_dirs: PathBuf,
    /// `min.insync.replicas`, for acks=all produce requests.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    min_insync_replicas: u16,
    /// `num.partitions`: a CreateTopics that asks for -1 partitions gets this many.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=1024))]
    num_partitions: i32,
}

/// `127.0.0.1:9092` or Kafka's `PLAINTEXT://127.0.0.1:9092`.
fn parse_listener(text: &str) -> Result<SocketAddr, String> {
    let address = text.strip_prefix("PLAINTEXT://").unwrap_or(text);
    address
        .parse()
        .map_err(|_| format!("`{text}` is not an address like 127.0.0.1:9092"))
}

/// The flags as the server's settings.
fn server(flags: &[String]) -> Result<KafkaServer, clap::Error> {
    let program = "jetsam serve kafka broker".to_string();
    let args = BrokerArgs::try_parse_from(std::iter::once(program).chain(flags.iter().cloned()))?;
    Ok(KafkaServer {
        listen_address: args.listen_address,
        advertised_address: args.advertised_address,
        log_dirs: args.log_dirs,
        min_insync_replicas: usize::from(args.min_insync_replicas),
        num_partitions: args.num_partitions,
    })
}

/// Parses the flags (without the program name) and serves until Ctrl-C or SIGTERM.
pub fn run_broker(flags: &[String]) -> Result<(), ServeError> {
    let server = server(flags)?;
    eprintln!(
        "jetsam kafka broker: listening on {} logs in {}",
        server.listen_address,
        server.log_dirs.display()
    );
    block_on(run(server, shutdown_signal()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_are_named_as_kafkas_configs() {
        let parsed = server(&flags(
            "--listeners PLAINTEXT://127.0.0.1:19092 --advertised-address kafka:9092 \
             --log-dirs /tmp/k --min-insync-replicas 2 --num-partitions 3",
        ))
        .unwrap();
        assert_eq!(parsed.listen_address, "127.0.0.1:19092".parse().unwrap());
        assert_eq!(parsed.advertised_address.as_deref(), Some("kafka:9092"));
        assert_eq!(parsed.log_dirs, PathBuf::from("/tmp/k"));
        assert_eq!((parsed.min_insync_replicas, parsed.num_partitions), (2, 3));
        let defaults = server(&[]).unwrap();
        assert_eq!(defaults.listen_address, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(defaults.num_partitions, 1);
        assert!(server(&flags("--num-partitions 0")).is_err());
        assert!(server(&flags("--listen-address nowhere")).is_err());
    }
}
