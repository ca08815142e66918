//! The uploader's answer to each kind of ERROR ACK (reference §5): a
//! scripted PutMedia endpoint (a thread here, reading the chunked MKV body
//! as it comes; no control plane, so the sender's `data_endpoint` names it
//! and its requests go unsigned) answers ERROR with a chosen ErrorId for the second fragment
//! it sees, once, and acknowledges everything else. A skip ErrorId must
//! leave that fragment Skipped and never sent again; a retry ErrorId must
//! have it sent again on the next connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_agent_tests::*;
use fragmenter::mkv::{MkvEvent, MkvReader};

/// Per cluster timecode: how many connections carried it.
type Seen = Arc<Mutex<HashMap<u64, u32>>>;

fn chunk(s: &mut TcpStream, line: &str) -> std::io::Result<()> {
    write!(s, "{:x}\r\n{line}\r\n", line.len())
}

/// Reads and drops the rest of the body for up to 2 s, as the gateway
/// does after an ERROR: closed with the body unread, the connection would
/// be reset, and the sender, still writing, could lose the ERROR.
fn drain(mut r: BufReader<TcpStream>) -> std::io::Result<()> {
    r.get_ref().set_read_timeout(Some(Duration::from_millis(100)))?;
    let until = std::time::Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 64 * 1024];
    while std::time::Instant::now() < until {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// One PutMedia connection: acknowledge clusters; the second new cluster of
/// all gets `error_id` the first time (then the connection ends).
fn serve(stream: TcpStream, seen: Seen, error_id: u32, errored: Arc<Mutex<bool>>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n")?;
    let mut mkv = MkvReader::default();
    let mut open: Option<u64> = None;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
        if n == 0 {
            return chunk(&mut out, "").and_then(|_| out.write_all(b"0\r\n\r\n"));
        }
        let mut data = vec![0; n + 2];
        r.read_exact(&mut data)?;
        mkv.feed(&data[..n]);
        while let Ok(Some(ev)) = mkv.next_event() {
            match ev {
                MkvEvent::ClusterStart { timecode, .. } => {
                    if let Some(t) = open.take() {
                        chunk(
                            &mut out,
                            &format!(r#"{{"EventType":"PERSISTED","FragmentTimecode":{t},"FragmentNumber":"{t}"}}"#),
                        )?;
                    }
                    let count = {
                        let mut s = seen.lock().unwrap();
                        let c = s.entry(timecode).or_default();
                        *c += 1;
                        (*c, s.len())
                    };
                    let mut e = errored.lock().unwrap();
                    if !*e && count.1 == 2 {
                        *e = true;
                        chunk(
                            &mut out,
                            &format!(r#"{{"EventType":"ERROR","FragmentTimecode":{timecode},"ErrorId":{error_id}}}"#),
                        )?;
                        out.write_all(b"0\r\n\r\n")?;
                        return drain(r);
                    }
                    chunk(
                        &mut out,
                        &format!(r#"{{"EventType":"BUFFERING","FragmentTimecode":{timecode}}}"#),
                    )?;
                    open = Some(timecode);
                }
                MkvEvent::ClusterEnd => {}
                _ => {}
            }
        }
    }
}

/// Runs a sender against an endpoint that answers `error_id` once; returns
/// the ErrorId'd fragment's send count and the sender's upload counts.
fn run(error_id: u32) -> (u32, serde_json::Value) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let errored = Arc::new(Mutex::new(false));
    {
        let (seen, errored) = (seen.clone(), errored.clone());
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let (seen, errored) = (seen.clone(), errored.clone());
                std::thread::spawn(move || {
                    let _ = serve(s, seen, error_id, errored);
                });
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let sport = free_tcp_port();
    let config = dir.path().join("sender.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{sport}\"\n\
             [[streams]]\nname = \"cam\"\nwidth = 320\nheight = 240\nbitrate_kbps = 500\nfragment_seconds = 1\n\
             [streams.upload]\nkvs_stream = \"cam\"\ndata_endpoint = \"http://127.0.0.1:{port}\"\nauth = \"none\"\n",
            dir.path().join("store")
        ),
    )
    .unwrap();
    let _sender = start_agent(&config, sport);
    // The ERROR, a backoff of about a second, a new connection, more fragments.
    wait_for(
        "the error and 4 more fragments persisted",
        Duration::from_secs(40),
        || {
            *errored.lock().unwrap()
                && api_stream(sport, "cam").is_some_and(|s| s["upload"]["persisted"].as_u64().unwrap_or(0) >= 4)
        },
    );
    let seen = seen.lock().unwrap().clone();
    let mut firsts: Vec<u64> = seen.keys().copied().collect();
    firsts.sort();
    let errored_fragment = firsts[1];
    let up = api_stream(sport, "cam").unwrap();
    (seen[&errored_fragment], up)
}

#[test]
fn a_skip_error_id_skips_the_fragment_for_good() {
    // 4006 INVALID_MKV_DATA: retrying would fail again.
    let (sends, up) = run(4006);
    assert_eq!(sends, 1, "a skipped fragment is never sent again: {up}");
    assert_eq!(up["upload"]["skipped"], 1, "{up}");
    assert_eq!(up["uploader"]["errors"]["4006"], 1, "{up}");
}

#[test]
fn a_retry_error_id_sends_the_fragment_again() {
    // 5000 INTERNAL_ERROR: the service's own failure.
    let (sends, up) = run(5000);
    assert_eq!(sends, 2, "sent again on the next connection: {up}");
    assert_eq!(up["upload"]["skipped"], 0, "{up}");
    assert_eq!(up["uploader"]["errors"]["5000"], 1, "{up}");
}
