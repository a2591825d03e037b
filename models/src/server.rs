//! Real servers from the design registry: `jetsam serve DESIGN ROLE [flags]`.
//!
//! A design lists the roles it can run as real servers (the same code as in the simulation,
//! on tokio sockets, a real data directory and the real clock). Each role parses its own
//! flags, named as the real server's, so the CLI needs to know nothing about any design.

use std::future::Future;

/// One role of a design that runs as a real server.
pub struct ServerInfo {
    pub role: &'static str,
    pub about: &'static str,
    /// Parses the flags (without the program name) and serves until Ctrl-C or SIGTERM.
    pub run: fn(&[String]) -> Result<(), ServeError>,
}

/// Why a server did not run: its flags (clap's error, or `--help`), or I/O.
#[derive(Debug)]
pub enum ServeError {
    Usage(clap::Error),
    Io(std::io::Error),
}

impl From<clap::Error> for ServeError {
    fn from(error: clap::Error) -> ServeError {
        ServeError::Usage(error)
    }
}

impl From<std::io::Error> for ServeError {
    fn from(error: std::io::Error) -> ServeError {
        ServeError::Io(error)
    }
}

/// Resolves on Ctrl-C or SIGTERM: the graceful shutdown the real servers do on those signals.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

/// Runs a server future on a current-thread runtime with a `LocalSet`, as the cores are
/// single-threaded (`Rc`) by design.
pub fn block_on(future: impl Future<Output = std::io::Result<()>>) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, future)?;
    Ok(())
}

/// `250ms`, `2s`, `15m`, `1h` (or a bare number of milliseconds) as milliseconds: durations
/// as NSQ's and Kafka's flags write them.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 60s or 250ms"))?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_as_nsq_writes_them() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2s"), Ok(2_000));
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("40"), Ok(40));
        assert!(parse_duration_ms("2d").is_err());
        assert!(parse_duration_ms("s").is_err());
        assert!(parse_duration_ms("99999999999999999999h").is_err());
    }
}
