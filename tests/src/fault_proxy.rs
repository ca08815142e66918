//! A TCP proxy on 127.0.0.1 that the upload fault tests put between a
//! sender and a gateway, and tell to misbehave the ways a flaky uplink
//! does: drop every connection, stall the ones that are open, or blackhole
//! everything (old and new connections alike) for a while.
//!
//! Threads and blocking sockets: the proxy must keep working however busy
//! the test's own runtime is, and it carries a few MB/s at most.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How often a paused pump looks again whether it may move bytes.
const POLL: Duration = Duration::from_millis(20);

/// One proxied connection.
struct Link {
    /// Which accept it was (to forget it once closed).
    id: u64,
    client: TcpStream,
    upstream: TcpStream,
    /// Set by [`FaultProxy::stall`]: this connection moves nothing until
    /// released, like a route that lost its packets but not its state.
    stalled: Arc<AtomicBool>,
}

#[derive(Default)]
struct Shared {
    blackhole: AtomicBool,
    stop: AtomicBool,
    links: Mutex<Vec<Link>>,
    accepted: AtomicU64,
    bytes_up: AtomicU64,
}

/// The proxy; it stops when dropped.
pub struct FaultProxy {
    /// The port senders connect to.
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listen on a free loopback port, forwarding to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let id = s.accepted.fetch_add(1, Ordering::SeqCst);
                        client.set_nonblocking(false).unwrap();
                        let s = s.clone();
                        thread::spawn(move || serve(id, client, upstream, &s));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
                    Err(_) => thread::sleep(POLL),
                }
            }
        });
        FaultProxy { port, shared }
    }

    /// Close every open connection, both ways, at once (a NAT losing its
    /// table, a Wi-Fi reassociation). New connections pass.
    pub fn drop_all(&self) -> usize {
        let links: Vec<Link> = std::mem::take(&mut *self.shared.links.lock().unwrap());
        for l in &links {
            let _ = l.client.shutdown(Shutdown::Both);
            let _ = l.upstream.shutdown(Shutdown::Both);
        }
        links.len()
    }

    /// Freeze every open connection (no byte either way) until
    /// [`FaultProxy::release`]; new connections pass. Returns how many
    /// were open (closed ones are forgotten).
    pub fn stall(&self) -> usize {
        let links = self.shared.links.lock().unwrap();
        for l in links.iter() {
            l.stalled.store(true, Ordering::SeqCst);
        }
        links.len()
    }

    /// Let stalled connections move again.
    pub fn release(&self) {
        for l in self.shared.links.lock().unwrap().iter() {
            l.stalled.store(false, Ordering::SeqCst);
        }
    }

    /// While on, nothing moves on any connection, and new ones are taken
    /// and held silent: what a sender sees when its route goes nowhere.
    pub fn blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::SeqCst);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.links.lock().unwrap().len()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from senders to the upstream.
    pub fn bytes_up(&self) -> u64 {
        self.shared.bytes_up.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.drop_all();
    }
}

fn serve(id: u64, client: TcpStream, upstream_port: u16, s: &Arc<Shared>) {
    // A connection taken during a blackhole waits, silent, for the route
    // to come back (or for its sender to give up).
    while s.blackhole.load(Ordering::SeqCst) && !s.stop.load(Ordering::SeqCst) {
        thread::sleep(POLL);
    }
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let stalled = Arc::new(AtomicBool::new(false));
    s.links.lock().unwrap().push(Link {
        id,
        client: client.try_clone().unwrap(),
        upstream: upstream.try_clone().unwrap(),
        stalled: stalled.clone(),
    });
    let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let (s2, st2) = (s.clone(), stalled.clone());
    let down = thread::spawn(move || pump(u2, c2, &s2, &st2, false));
    pump(client, upstream, s, &stalled, true);
    let _ = down.join();
    s.links.lock().unwrap().retain(|l| l.id != id);
}

/// Copy `from` → `to` while the faults allow; close both at the end.
fn pump(mut from: TcpStream, mut to: TcpStream, s: &Shared, stalled: &AtomicBool, up: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    // Reads time out so that a paused pump notices the fault ending.
    from.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    loop {
        if s.stop.load(Ordering::SeqCst) {
            break;
        }
        if s.blackhole.load(Ordering::SeqCst) || stalled.load(Ordering::SeqCst) {
            thread::sleep(POLL);
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // A fault that began during the read holds these bytes
                // until it ends: they were "in the network".
                while (s.blackhole.load(Ordering::SeqCst) || stalled.load(Ordering::SeqCst))
                    && !s.stop.load(Ordering::SeqCst)
                {
                    thread::sleep(POLL);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if up {
                    s.bytes_up.fetch_add(n as u64, Ordering::SeqCst);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_stalls_blackholes_and_drops() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let uport = upstream.local_addr().unwrap().port();
        // An echo server.
        thread::spawn(move || {
            for c in upstream.incoming() {
                let Ok(mut c) = c else { break };
                thread::spawn(move || {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = FaultProxy::start(uport);
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut b = [0u8; 5];
        c.write_all(b"hello").unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");

        // Stalled: nothing comes back until released.
        assert_eq!(proxy.stall(), 1);
        c.write_all(b"again").unwrap();
        assert!(c.read_exact(&mut b).is_err());
        proxy.release();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"again");

        // Blackhole: a new connection is taken but silent.
        proxy.blackhole(true);
        let mut d = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        d.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        d.write_all(b"later").unwrap();
        assert!(d.read_exact(&mut b).is_err());
        proxy.blackhole(false);
        d.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        d.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"later");

        // Dropped: both see the end.
        assert_eq!(proxy.drop_all(), 2);
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
        assert_eq!(proxy.accepted(), 2);
        assert_eq!(proxy.bytes_up(), 15);

        // A connection its client closed is forgotten: no longer counted
        // as open by the next stall.
        let mut e = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        e.write_all(b"x").unwrap();
        e.read_exact(&mut b[..1]).unwrap();
        assert_eq!(proxy.stall(), 1);
        proxy.release();
        drop(e);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while proxy.open() != 0 {
            assert!(std::time::Instant::now() < deadline, "a closed link is still counted");
            thread::sleep(POLL);
        }
    }
}
