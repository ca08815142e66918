//! Live sensor capture: a reader thread per sensor feeds the pure assemblers
//! from a UDP socket (Velodyne, Ouster), a serial port (TI mmWave) or a
//! SocketCAN socket (Continental ARS408, with the `socketcan` cargo feature)
//! and hands assembled frames over a bounded channel, so `SensorCapture`
//! looks like the video `Capture` to the code above it.
//!
//! Threads rather than an async runtime: one socket per sensor, a blocking
//! read with a short timeout, and no runtime to carry on a small device.

use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fragmenter::{Frame, Timestamp, Track, TrackId};
use tracing::{debug, info, warn};

#[cfg(feature = "socketcan")]
use super::ars408::{Ars408Assembler, Ars408Mode};
use super::assembler::{AssembledFrame, AssemblyStats, MmwaveAssembler, OusterAssembler, VelodyneAssembler};
use super::ouster::OusterMeta;
#[cfg(feature = "socketcan")]
use super::track::ars408_track;
use super::track::{mmwave_track, ouster_track, velodyne_track, TrackError};
use super::velodyne::DataPacket;
use super::{SensorUri, TimePolicy};
use crate::timestamps::now;

/// How long a read blocks before the thread checks whether to stop.
const POLL: Duration = Duration::from_millis(100);
/// Frames waiting for the consumer; a LIDAR frame is ~0.5 MB, so this bounds
/// memory at a few tens of MB if the consumer stalls.
const CHANNEL_CAPACITY: usize = 64;
/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65_536;

/// What went wrong starting or running a sensor capture.
#[derive(Debug, thiserror::Error)]
pub enum SensorCaptureError {
    /// The socket could not be bound.
    #[error("cannot listen on udp://{addr}: {error}")]
    Bind {
        /// HOST:PORT.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// A file or device named in the URI cannot be opened.
    #[error("cannot open {what} {}: {error}", path.display())]
    Open {
        /// Which field of the URI.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// Velodyne: the model comes from the first packet, and none came.
    #[error("no Velodyne data packet on udp://{addr} within {timeout:?}: cannot tell the model")]
    NoFirstPacket {
        /// HOST:PORT.
        addr: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The sensor track could not be described.
    #[error("sensor track: {0}")]
    Track(#[from] TrackError),
    /// The metadata file does not parse.
    #[error("Ouster metadata {}: {error}", path.display())]
    Metadata {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// Reading the socket or port failed while running.
    #[error("{source_uri}: read failed: {error}")]
    Read {
        /// The sensor URI.
        source_uri: String,
        /// Why.
        error: std::io::Error,
    },
    /// The source needs a cargo feature this build does not have.
    #[error("{source_uri} needs edge-agent built with --features {feature}")]
    NeedsFeature {
        /// The sensor URI.
        source_uri: String,
        /// The feature, e.g. `hardware/socketcan`.
        feature: &'static str,
    },
    /// No frame arrived within the consumer's timeout.
    #[error("{source_uri}: no frame for {timeout:?}")]
    Stalled {
        /// The sensor URI.
        source_uri: String,
        /// The timeout.
        timeout: Duration,
    },
}

enum Item {
    Frame(Frame),
    Error(SensorCaptureError),
    End,
}

/// A running sensor capture. Dropping it stops the reader thread.
pub struct SensorCapture {
    uri: SensorUri,
    tracks: Vec<Track>,
    rx: Receiver<Item>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<AssemblyStats>>,
    ended: bool,
}

/// Options for [`SensorCapture::start`].
#[derive(Clone, Debug)]
pub struct SensorOptions {
    /// The track number the sensor's frames carry.
    pub track: TrackId,
    /// Velodyne: how long to wait for the first packet (it names the model).
    pub first_packet_timeout: Duration,
    /// Sensor time versus arrival time.
    pub time_policy: TimePolicy,
}

impl Default for SensorOptions {
    fn default() -> Self {
        SensorOptions {
            track: TrackId::new(1).expect("1 is a track number"),
            first_packet_timeout: Duration::from_secs(10),
            time_policy: TimePolicy::default(),
        }
    }
}

/// One of the assemblers, fed the same way.
enum Assembler {
    Velodyne(VelodyneAssembler),
    Ouster(OusterAssembler),
    Mmwave(MmwaveAssembler),
    #[cfg(feature = "socketcan")]
    Ars408(Ars408Assembler),
}

impl Assembler {
    fn push(&mut self, arrival: Timestamp, bytes: &[u8]) -> Vec<AssembledFrame> {
        match self {
            Assembler::Velodyne(a) => a.push(arrival, bytes),
            Assembler::Ouster(a) => a.push(arrival, bytes),
            Assembler::Mmwave(a) => a.push(arrival, bytes),
            #[cfg(feature = "socketcan")]
            Assembler::Ars408(a) => a.push(arrival, bytes),
        }
    }

    fn flush(&mut self) -> Option<AssembledFrame> {
        match self {
            Assembler::Velodyne(a) => a.flush(),
            Assembler::Ouster(a) => a.flush(),
            // A TLV frame is emitted whole or not at all.
            Assembler::Mmwave(_) => None,
            #[cfg(feature = "socketcan")]
            Assembler::Ars408(a) => a.flush(),
        }
    }

    fn stats(&self) -> &AssemblyStats {
        match self {
            Assembler::Velodyne(a) => a.stats(),
            Assembler::Ouster(a) => a.stats(),
            Assembler::Mmwave(a) => a.stats(),
            #[cfg(feature = "socketcan")]
            Assembler::Ars408(a) => a.stats(),
        }
    }
}

/// Where bytes come from.
enum Input {
    Udp(UdpSocket),
    Serial(Box<dyn serialport::SerialPort>),
    /// Classic CAN frames, handed on in their 14-byte form
    /// ([`super::ars408::CanFrame::to_bytes`]).
    #[cfg(feature = "socketcan")]
    Can(socketcan::CanSocket),
}

impl Input {
    /// Read once; `Ok(None)` on a timeout.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        let r = match self {
            Input::Udp(s) => s.recv(buf),
            Input::Serial(p) => p.read(buf),
            #[cfg(feature = "socketcan")]
            Input::Can(s) => read_can(s, buf),
        };
        match r {
            Ok(n) => Ok(Some(n)),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Read one CAN frame (100 ms timeout) into `buf` in its 14-byte form.
#[cfg(feature = "socketcan")]
fn read_can(socket: &socketcan::CanSocket, buf: &mut [u8]) -> std::io::Result<usize> {
    use socketcan::{EmbeddedFrame, Frame, Socket};
    let f = socket.read_frame_timeout(POLL)?;
    let mut flags = 0;
    if f.is_extended() {
        flags |= super::ars408::FLAG_EXTENDED;
    }
    if f.is_remote_frame() {
        flags |= super::ars408::FLAG_REMOTE;
    }
    if f.is_error_frame() {
        flags |= super::ars408::FLAG_ERROR;
    }
    let mut frame = super::ars408::CanFrame::new(f.raw_id(), f.data());
    frame.flags = flags;
    frame.dlc = u8::try_from(f.dlc()).unwrap_or(u8::MAX);
    let b = frame.to_bytes();
    let out = buf
        .get_mut(..b.len())
        .ok_or_else(|| std::io::Error::other("CAN read buffer too small"))?;
    out.copy_from_slice(&b);
    Ok(b.len())
}

/// Open the SocketCAN interface of an ARS408 source.
#[cfg(feature = "socketcan")]
fn start_ars408(
    interface: &str,
    mode: Ars408Mode,
    opts: &SensorOptions,
) -> Result<(Track, Assembler, Input), SensorCaptureError> {
    use socketcan::Socket;
    let open_err = |e: std::io::Error| SensorCaptureError::Open {
        what: "CAN interface",
        path: PathBuf::from(interface),
        error: e.to_string(),
    };
    let socket = socketcan::CanSocket::open(interface).map_err(open_err)?;
    socket.set_read_timeout(POLL).map_err(open_err)?;
    let track = ars408_track(opts.track, mode, &opts.time_policy)?;
    let asm = Ars408Assembler::with_policy(opts.track, mode, opts.time_policy);
    Ok((track, Assembler::Ars408(asm), Input::Can(socket)))
}

fn bind(host: &str, port: u16) -> Result<UdpSocket, SensorCaptureError> {
    let addr = format!("{host}:{port}");
    let socket = UdpSocket::bind(&addr).map_err(|error| SensorCaptureError::Bind {
        addr: addr.clone(),
        error,
    })?;
    socket
        .set_read_timeout(Some(POLL))
        .map_err(|error| SensorCaptureError::Bind {
            addr: addr.clone(),
            error,
        })?;
    widen_receive_buffer(&socket, &addr);
    Ok(socket)
}

/// What a sensor socket asks the kernel to buffer: an Ouster OS-1-128
/// rotation at 1024×10 is about 1.6 MB, and the reader may be descheduled
/// for tens of milliseconds on a loaded Pi while packets keep coming.
const RECEIVE_BUFFER: usize = 4 << 20;

/// Ask for [`RECEIVE_BUFFER`]. Linux caps it at `net.core.rmem_max` (208 KB
/// on a stock Debian or Raspberry Pi OS: half a 32-beam Ouster rotation), so
/// say so and how to raise it rather than let packets drop silently.
fn widen_receive_buffer(socket: &UdpSocket, addr: &str) {
    let s = socket2::SockRef::from(socket);
    if let Err(e) = s.set_recv_buffer_size(RECEIVE_BUFFER) {
        warn!(%addr, error = %e, "cannot set the socket's receive buffer");
        return;
    }
    // Linux reports twice what it grants (the other half is its overhead).
    match s.recv_buffer_size() {
        Ok(got) if got / 2 < RECEIVE_BUFFER => warn!(
            %addr,
            receive_buffer_kb = got / 2048,
            wanted_kb = RECEIVE_BUFFER / 1024,
            "the kernel capped this sensor socket's receive buffer; bursts may drop packets \
             (raise it with: sysctl -w net.core.rmem_max={RECEIVE_BUFFER})"
        ),
        Ok(got) => debug!(%addr, receive_buffer_kb = got / 2048, "sensor socket receive buffer"),
        Err(e) => warn!(%addr, error = %e, "cannot read the socket's receive buffer size"),
    }
}

fn open_serial(
    what: &'static str,
    path: &Path,
    baud: u32,
) -> Result<Box<dyn serialport::SerialPort>, SensorCaptureError> {
    // Check the node first: serialport's error for a missing device does not
    // say which one.
    std::fs::metadata(path).map_err(|e| SensorCaptureError::Open {
        what,
        path: path.to_owned(),
        error: e.to_string(),
    })?;
    serialport::new(path.to_string_lossy(), baud)
        .timeout(POLL)
        .open()
        .map_err(|e| SensorCaptureError::Open {
            what,
            path: path.to_owned(),
            error: e.to_string(),
        })
}

/// Send a TI `.cfg` file to the CLI port, one command per line, waiting for
/// each prompt so the radar is not flooded.
fn send_config(port: &mut dyn serialport::SerialPort, text: &str) {
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('%'))
    {
        if let Err(e) = port.write_all(format!("{line}\n").as_bytes()) {
            warn!(command = line, error = %e, "mmWave config write failed");
            return;
        }
        let mut reply = [0u8; 256];
        let _ = port.read(&mut reply);
    }
}

impl SensorCapture {
    /// Open the socket or port, read what the track needs (Ouster metadata,
    /// the Velodyne model from its first packet), and start reading.
    pub fn start(uri: &SensorUri, opts: &SensorOptions) -> Result<Self, SensorCaptureError> {
        let policy = opts.time_policy;
        let mut first: Option<(Timestamp, Vec<u8>)> = None;
        let (track, assembler, input) = match uri {
            SensorUri::Ouster {
                host, port, metadata, ..
            } => {
                let json = std::fs::read_to_string(metadata).map_err(|e| SensorCaptureError::Open {
                    what: "Ouster metadata",
                    path: metadata.clone(),
                    error: e.to_string(),
                })?;
                let meta = OusterMeta::from_json(&json).map_err(|e| SensorCaptureError::Metadata {
                    path: metadata.clone(),
                    error: e.to_string(),
                })?;
                let track = ouster_track(opts.track, &json, &policy)?;
                let asm = OusterAssembler::with_policy(opts.track, Arc::new(meta), policy);
                (track, Assembler::Ouster(asm), Input::Udp(bind(host, *port)?))
            }
            SensorUri::Velodyne { host, port, .. } => {
                let socket = bind(host, *port)?;
                let deadline = std::time::Instant::now() + opts.first_packet_timeout;
                let mut buf = vec![0u8; MAX_DATAGRAM];
                let model = loop {
                    if std::time::Instant::now() >= deadline {
                        return Err(SensorCaptureError::NoFirstPacket {
                            addr: format!("{host}:{port}"),
                            timeout: opts.first_packet_timeout,
                        });
                    }
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            if let Ok(p) = DataPacket::parse(&buf[..n]) {
                                first = Some((now(), buf[..n].to_vec()));
                                break p.model();
                            }
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        }
                        Err(error) => {
                            return Err(SensorCaptureError::Bind {
                                addr: format!("{host}:{port}"),
                                error,
                            })
                        }
                    }
                };
                let track = velodyne_track(opts.track, model, None, &policy)?;
                let asm = VelodyneAssembler::with_policy(opts.track, policy);
                (track, Assembler::Velodyne(asm), Input::Udp(socket))
            }
            SensorUri::Mmwave {
                data,
                config,
                cfg,
                data_baud,
                config_baud,
            } => {
                let cfg_text = match cfg {
                    Some(p) => Some(std::fs::read_to_string(p).map_err(|e| SensorCaptureError::Open {
                        what: "mmWave cfg file",
                        path: p.clone(),
                        error: e.to_string(),
                    })?),
                    None => None,
                };
                let data_port = open_serial("mmWave data port", data, *data_baud)?;
                let mut config_port = open_serial("mmWave config port", config, *config_baud)?;
                if let Some(text) = &cfg_text {
                    send_config(config_port.as_mut(), text);
                }
                let track = mmwave_track(opts.track, "mmWave out-of-box demo", cfg_text.as_deref(), &policy)?;
                let asm = MmwaveAssembler::with_policy(opts.track, policy);
                (track, Assembler::Mmwave(asm), Input::Serial(data_port))
            }
            #[cfg(feature = "socketcan")]
            SensorUri::Ars408 { interface, mode } => start_ars408(interface, *mode, opts)?,
            #[cfg(not(feature = "socketcan"))]
            SensorUri::Ars408 { .. } => {
                return Err(SensorCaptureError::NeedsFeature {
                    source_uri: uri.to_string(),
                    feature: "hardware/socketcan",
                })
            }
        };

        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(AssemblyStats::default()));
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            let name = uri.to_string();
            std::thread::Builder::new()
                .name("sensor-capture".into())
                .spawn(move || read_loop(name, input, assembler, first, tx, stop, stats))
                .map_err(|e| SensorCaptureError::Open {
                    what: "reader thread",
                    path: PathBuf::new(),
                    error: e.to_string(),
                })?
        };
        info!(source = %uri, codec = track.mkv_codec_id(), "sensor capture started");
        Ok(SensorCapture {
            uri: uri.clone(),
            tracks: vec![track],
            rx,
            stop,
            thread: Some(thread),
            stats,
            ended: false,
        })
    }

    /// The sensor's track.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Parser and assembly counters so far.
    pub fn stats(&self) -> AssemblyStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The next assembled frame; `Ok(None)` after [`stop`](Self::stop) once
    /// the last frame is out.
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, SensorCaptureError> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(Item::Frame(f)) => Ok(Some(f)),
            Ok(Item::Error(e)) => Err(e),
            Ok(Item::End) | Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                Ok(None)
            }
            Err(RecvTimeoutError::Timeout) => Err(SensorCaptureError::Stalled {
                source_uri: self.uri.to_string(),
                timeout,
            }),
        }
    }

    /// Stop reading; the frame being assembled is still delivered (marked
    /// partial in the stats), then `next_frame` returns `Ok(None)`.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for SensorCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock a reader thread waiting on a full channel.
        while self.rx.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_loop(
    name: String,
    mut input: Input,
    mut assembler: Assembler,
    first: Option<(Timestamp, Vec<u8>)>,
    tx: SyncSender<Item>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<AssemblyStats>>,
) {
    let send = |frames: Vec<AssembledFrame>| frames.into_iter().all(|f| tx.send(Item::Frame(f.frame)).is_ok());
    if let Some((arrival, bytes)) = first {
        if !send(assembler.push(arrival, &bytes)) {
            return;
        }
    }
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        match input.read(&mut buf) {
            Ok(Some(0)) | Ok(None) => {}
            Ok(Some(n)) => {
                let frames = assembler.push(now(), &buf[..n]);
                if let Ok(mut s) = stats.lock() {
                    s.clone_from(assembler.stats());
                }
                if !send(frames) {
                    return;
                }
            }
            Err(error) => {
                let _ = tx.send(Item::Error(SensorCaptureError::Read {
                    source_uri: name.clone(),
                    error,
                }));
                return;
            }
        }
    }
    if let Some(f) = assembler.flush() {
        let _ = tx.send(Item::Frame(f.frame));
    }
    if let Ok(mut s) = stats.lock() {
        s.clone_from(assembler.stats());
    }
    let _ = tx.send(Item::End);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_sockets_get_the_receive_buffer_the_kernel_allows() {
        let Some(cap) = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
        else {
            eprintln!("SKIPPED: /proc/sys/net/core/rmem_max is not readable");
            return;
        };
        let socket = bind("127.0.0.1", 0).unwrap();
        // Linux reports double what it grants.
        let granted = socket2::SockRef::from(&socket).recv_buffer_size().unwrap() / 2;
        assert!(
            granted >= RECEIVE_BUFFER.min(cap),
            "granted {granted} bytes; asked {RECEIVE_BUFFER}, the kernel allows {cap}"
        );
    }
}
