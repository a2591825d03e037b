//! [`connect`]: a TCP connect that waits out a partition as Linux does, instead of being
//! refused at once as turmoil's is.

use crate::env::Env;
use std::time::Duration;

/// Linux's SYN retransmissions (`tcp_syn_retries` = 6): 1 s, doubling each time.
const SYN_RETRIES: u32 = 6;
const SYN_RTO_INITIAL: Duration = Duration::from_secs(1);

/// Opens a TCP connection from host `from` to `to:port` as a real network would: a host that
/// is up but has nothing listening (or a killed process) refuses at once; a host the network
/// cannot reach (a partition, lost replies, no power) drops the SYN, which is retried after
/// 1, 2, 4, ... s until it gets through or the retries run out (`TimedOut`). turmoil alone
/// refuses at once in both cases. Callers put their own connect timeout around it.
///
/// `from` and `to` name processes. The network sees machines: a process that shares its
/// machine with `to` connects over loopback (127.0.0.1), which no partition cuts; any other
/// connects to `to`'s machine, and a partition is judged between the two machines.
pub async fn connect(env: &Env, from: &str, to: &str, port: u16) -> std::io::Result<turmoil::net::TcpStream> {
    let (from_machine, to_machine) = (env.machine_of(from), env.machine_of(to));
    if from != to && from_machine == to_machine {
        return turmoil::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).await;
    }
    let mut rto = SYN_RTO_INITIAL;
    for _ in 0..=SYN_RETRIES {
        let blocked = env
            .0
            .unreachable
            .borrow()
            .contains(&(from_machine.clone(), to_machine.clone()));
        if !blocked {
            return turmoil::net::TcpStream::connect((to_machine.as_str(), port)).await;
        }
        tokio::time::sleep(rto).await;
        rto *= 2;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("connect to {to}:{port} timed out"),
    ))
}
