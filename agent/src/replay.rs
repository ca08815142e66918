//! `edge-agent replay`: resend a capture's UDP payloads with their original
//! pacing, so a recorded LIDAR can stand in for a live one.

use std::collections::BTreeSet;
use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hardware::sensor::pcap::Replayer;
use tracing::info;

use crate::cli::ReplayArgs;

/// `udp://HOST:PORT` or `udp://HOST`.
fn parse_target(to: &str) -> Result<(String, Option<u16>)> {
    let rest = to
        .strip_prefix("udp://")
        .with_context(|| format!("--to {to:?}: expected udp://HOST:PORT or udp://HOST"))?;
    if rest.is_empty() {
        bail!("--to {to:?}: the host is missing");
    }
    // An IPv6 literal keeps its brackets; its port follows "]:".
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
            if h.contains(':') && !h.starts_with('[') {
                (rest.to_owned(), None)
            } else {
                let port: u16 = p
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .with_context(|| format!("--to {to:?}: port {p:?} is not 1 to 65535"))?;
                (h.to_owned(), Some(port))
            }
        }
        _ => (rest.to_owned(), None),
    };
    Ok((host, port))
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed {} must be a number greater than zero", args.speed);
    }
    let (host, to_port) = parse_target(&args.to)?;
    let data = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let (replayer, stats) = Replayer::from_capture(&data, args.speed, args.looping)
        .with_context(|| format!("{} is not a usable capture", args.file.display()))?;
    let ports: BTreeSet<u16> = replayer.clone().take(replayer.len()).map(|d| d.dst_port).collect();
    // (take: a looping replayer never ends.)
    let only = match (args.from_port, to_port) {
        (Some(p), _) => Some(p),
        (None, Some(p)) if ports.contains(&p) => Some(p),
        _ => None,
    };
    let replayer = match only {
        Some(p) => {
            if !ports.contains(&p) {
                bail!(
                    "{} has no datagrams to port {p}; it has {:?}",
                    args.file.display(),
                    ports
                );
            }
            replayer.only_ports(&[p])
        }
        None => replayer,
    };
    if replayer.is_empty() {
        bail!("{} holds no UDP datagrams to replay", args.file.display());
    }
    let socket = UdpSocket::bind("0.0.0.0:0").context("cannot open a UDP socket")?;
    let resolve = |port: u16| -> Result<std::net::SocketAddr> {
        (host.as_str(), port)
            .to_socket_addrs()
            .with_context(|| format!("--to {:?}: cannot resolve {host}", args.to))?
            .next()
            .with_context(|| format!("--to {:?}: {host} has no address", args.to))
    };
    info!(
        file = %args.file.display(),
        datagrams = replayer.len(),
        skipped = stats.records - stats.udp,
        "replaying"
    );
    let start = Instant::now();
    // Pace against the schedule, not the previous send, so sleeps that
    // overshoot do not add up over a long replay.
    let mut due = Duration::ZERO;
    let (mut sent, mut bytes) = (0u64, 0u64);
    let mut target_cache: Option<(u16, std::net::SocketAddr)> = None;
    for item in replayer {
        due += item.delay;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let port = to_port.unwrap_or(item.dst_port);
        let addr = match target_cache {
            Some((p, a)) if p == port => a,
            _ => {
                let a = resolve(port)?;
                target_cache = Some((port, a));
                a
            }
        };
        socket
            .send_to(item.payload, addr)
            .with_context(|| format!("cannot send to {addr}"))?;
        sent += 1;
        bytes += item.payload.len() as u64;
    }
    println!(
        "replayed {sent} datagram(s), {bytes} byte(s) from {} in {:.3} s",
        args.file.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_what_is_wrong() {
        assert_eq!(
            parse_target("udp://127.0.0.1:7502").unwrap(),
            ("127.0.0.1".into(), Some(7502))
        );
        assert_eq!(parse_target("udp://localhost").unwrap(), ("localhost".into(), None));
        assert_eq!(parse_target("udp://[::1]:2368").unwrap(), ("[::1]".into(), Some(2368)));
        assert!(parse_target("tcp://x:1").unwrap_err().to_string().contains("udp://"));
        assert!(parse_target("udp://x:0").unwrap_err().to_string().contains("port"));
        assert!(parse_target("udp://x:99999").unwrap_err().to_string().contains("99999"));
    }
}
