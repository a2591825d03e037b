//! `jetsam serve kafka broker [flags]`: a single Kafka node (broker and controller in one
//! process, KRaft's combined mode) as a real server, with flags named as Kafka's broker
//! configs (`listeners`, `advertised.listeners`, `log.dirs`, `min.insync.replicas`,
//! `num.partitions`). `jetsam serve kafka cluster --brokers 3 [flags]`: that many brokers in
//! one process, on consecutive ports from `--listen-address`, one controller, replicating
//! between them over TCP. Until the Kafka design is registered in `models::designs()`, reach
//! them through [`SERVERS`], [`run_broker`] or [`run_cluster`].

use super::real::{run, run_cluster_on, KafkaServer};
use crate::server::{block_on, shutdown_signal, ServeError, ServerInfo};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The roles of the `kafka` design that run as real servers.
pub const SERVERS: &[ServerInfo] = &[
    ServerInfo {
        role: "broker",
        about: "a single Kafka node (broker 1 and its controller): Produce, Fetch, Metadata, \
                CreateTopics, InitProducerId... on Kafka's wire protocol, logs under --log-dirs",
        run: run_broker,
    },
    ServerInfo {
        role: "cluster",
        about: "--brokers Kafka brokers in one process on consecutive ports, one controller, \
                followers fetching from leaders over TCP; logs under --log-dirs/broker-<id>",
        run: run_cluster,
    },
];

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

#[derive(Parser, Debug)]
#[command(
    name = "jetsam serve kafka cluster",
    about = "Kafka brokers in one process, replicating over TCP"
)]
struct ClusterArgs {
    /// How many brokers (ids 1..=N; broker 1 is also the controller).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    brokers: u16,
    #[command(flatten)]
    broker: BrokerArgs,
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

/// The cluster's flags as each broker's settings: broker i on the listen port + i - 1,
/// advertised on the advertised port + i - 1, its logs in `<log-dirs>/broker-<i>`.
fn cluster(flags: &[String]) -> Result<Vec<KafkaServer>, clap::Error> {
    let program = "jetsam serve kafka cluster".to_string();
    let args = ClusterArgs::try_parse_from(std::iter::once(program).chain(flags.iter().cloned()))?;
    let first = args.broker;
    let mut servers = Vec::new();
    for index in 0..args.brokers {
        let port = first.listen_address.port().checked_add(index).ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                "--listen-address: the brokers' ports run past 65535\n",
            )
        })?;
        let advertised_address = match &first.advertised_address {
            None => None,
            Some(address) => Some(next_port(address, index)?),
        };
        servers.push(KafkaServer {
            listen_address: SocketAddr::new(first.listen_address.ip(), port),
            advertised_address,
            log_dirs: first.log_dirs.join(format!("broker-{}", index + 1)),
            min_insync_replicas: usize::from(first.min_insync_replicas),
            num_partitions: first.num_partitions,
        });
    }
    Ok(servers)
}

/// `host:port` with the port `offset` further on.
fn next_port(address: &str, offset: u16) -> Result<String, clap::Error> {
    let invalid = || {
        clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!("--advertised-address {address:?}: need host:port below 65536 for every broker\n"),
        )
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    let port = port.checked_add(offset).ok_or_else(invalid)?;
    Ok(format!("{host}:{port}"))
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

/// Parses the cluster's flags and serves every broker until Ctrl-C or SIGTERM.
pub fn run_cluster(flags: &[String]) -> Result<(), ServeError> {
    let servers = cluster(flags)?;
    for (index, server) in servers.iter().enumerate() {
        eprintln!(
            "jetsam kafka broker {}: listening on {} logs in {}",
            index + 1,
            server.listen_address,
            server.log_dirs.display()
        );
    }
    block_on(async move {
        let mut brokers = Vec::new();
        for server in servers {
            let listener = tokio::net::TcpListener::bind(server.listen_address).await?;
            brokers.push((server, listener));
        }
        run_cluster_on(brokers, shutdown_signal()).await
    })
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

    #[test]
    fn a_cluster_takes_consecutive_ports_and_a_directory_per_broker() {
        let brokers = cluster(&flags(
            "--brokers 3 --listen-address 127.0.0.1:19092 --advertised-address kafka:29092 \
             --log-dirs /tmp/k --min-insync-replicas 2",
        ))
        .unwrap();
        let ports: Vec<u16> = brokers.iter().map(|b| b.listen_address.port()).collect();
        assert_eq!(ports, [19092, 19093, 19094]);
        assert_eq!(brokers[2].advertised_address.as_deref(), Some("kafka:29094"));
        assert_eq!(brokers[1].log_dirs, PathBuf::from("/tmp/k/broker-2"));
        assert!(brokers.iter().all(|b| b.min_insync_replicas == 2));
        assert!(cluster(&flags("--brokers 3 --listen-address 127.0.0.1:65535")).is_err());
        assert!(cluster(&flags("--brokers 0")).is_err());
    }
}
