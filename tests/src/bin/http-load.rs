//! A small HTTP/1.1 load generator for the segment-serving benchmark: the
//! same requests, the same client, against the agent and against nginx.
//!
//!   http-load ADDR PATHS_FILE [CONNECTIONS] [SECONDS]
//!
//! Each connection is a keep-alive TCP stream on its own thread sending GETs
//! for the paths (one per line) round-robin, reading each response whole by
//! its Content-Length. Prints one line: requests/s, MB/s, errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: http-load ADDR PATHS_FILE [CONNECTIONS] [SECONDS]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let paths: Vec<String> = std::fs::read_to_string(&args[2])
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", args[2]))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!paths.is_empty(), "{} lists no paths", args[2]);
    let connections: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let seconds: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(5);

    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let paths = Arc::new(paths);
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let (addr, paths, stop) = (addr.clone(), paths.clone(), stop.clone());
            let (requests, bytes, errors) = (requests.clone(), bytes.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut k = i;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(stream) = TcpStream::connect(&addr) else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let mut w = stream.try_clone().expect("clone socket");
                    let mut r = BufReader::with_capacity(256 * 1024, stream);
                    while !stop.load(Ordering::Relaxed) {
                        let path = &paths[k % paths.len()];
                        k += 1;
                        if write!(w, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        match read_response(&mut r) {
                            Some((200, n)) => {
                                requests.fetch_add(1, Ordering::Relaxed);
                                bytes.fetch_add(n, Ordering::Relaxed);
                            }
                            Some(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            None => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = requests.load(Ordering::Relaxed);
    println!(
        "{:.1} requests/s {:.1} MB/s {} errors ({n} requests, {connections} connections, {elapsed:.1} s)",
        n as f64 / elapsed,
        bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
        errors.load(Ordering::Relaxed)
    );
}

/// Status and body length of one response; `None` when the connection is
/// unusable (closed, malformed, chunked — the benchmark's servers send
/// Content-Length for segments).
fn read_response(r: &mut impl BufRead) -> Option<(u16, u64)> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut len: Option<u64> = None;
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok();
            }
        }
    }
    let len = len?;
    let copied = std::io::copy(&mut r.take(len), &mut std::io::sink()).ok()?;
    (copied == len).then_some((status, len))
}
