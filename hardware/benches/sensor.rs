//! Sensor packet throughput on one core: parsing + frame assembly.
//!
//! * VLP-32C-shaped packets (1206 B, 12 blocks, azimuth advancing, GPS
//!   time), pushed through [`VelodyneAssembler`];
//! * the real OS-0-32 capture (64 × 8448 B per frame, frame_id rewritten so
//!   every pass is a new frame), pushed through [`OusterAssembler`];
//! * TI mmWave frames cut into serial-sized chunks, through the framer.
//!
//! Besides criterion's report, each bench prints packets/s from a plain
//! timed loop and the ratio to the sensor's own packet rate. Sensor rates:
//! VLP-32C single return = 1 / (12 blocks × 55.296 µs) ≈ 1507 packets/s
//! (`reference/sensors.md` §1.1); HDL-32E = 1 / (12 × 46.08 µs) ≈ 1808/s;
//! an Ouster 1024x10 sends 64 packets × 10 Hz = 640/s (2048x10: 1280/s).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fragmenter::{Timestamp, TrackId};
use hardware::sensor::assembler::{MmwaveAssembler, OusterAssembler, VelodyneAssembler};
use hardware::sensor::mmwave::{DetectedPoint, FrameBuilder};
use hardware::sensor::ouster::OusterMeta;
use hardware::sensor::pcap::PcapReader;
use hardware::sensor::points::FrameDecoder;
use hardware::sensor::track::ouster_track;
use hardware::sensor::velodyne::{self, Channel, Model, ReturnMode};
use hardware::sensor::TimePolicy;

/// VLP-32C single-return packet rate: one packet per 12 × 55.296 µs.
const VLP32C_PACKETS_PER_S: f64 = 1.0 / (12.0 * 55.296e-6);
/// HDL-32E packet rate: one packet per 12 × 46.08 µs (the "≈ 1808/s").
const HDL32E_PACKETS_PER_S: f64 = 1.0 / (12.0 * 46.08e-6);
/// Ouster 2048x10: 128 packets of 16 columns, 10 times a second.
const OUSTER_2048X10_PACKETS_PER_S: f64 = 1280.0;
const T0: u64 = 1_700_000_000_000_000_000;

fn track() -> TrackId {
    TrackId::new(1).unwrap()
}

/// `n` VLP-32C packets at 10 Hz (≈ 150 per rotation, 0.24° per packet),
/// with GPS top-of-hour times consistent with the arrival times.
fn vlp32c_packets(n: usize) -> Vec<(Timestamp, Vec<u8>)> {
    let per_packet_ns = (1e9 / VLP32C_PACKETS_PER_S) as u64;
    (0..n)
        .map(|i| {
            let t = T0 + i as u64 * per_packet_ns;
            let az0 = (i as u32 * 240) % 36_000;
            let az = std::array::from_fn(|b| ((az0 + 20 * b as u32) % 36_000) as u16);
            let us = ((t / 1_000) % 3_600_000_000) as u32;
            let p = velodyne::build_data_packet(
                &az,
                &|b, c| Channel {
                    distance: (2_000 + 7 * b + 13 * c) as u16,
                    intensity: (b + c) as u8,
                },
                us,
                ReturnMode::Strongest,
                Model::Vlp32c,
            );
            (Timestamp::from_nanos(t), p)
        })
        .collect()
}

/// Packets per second of `run` (which handles `per_run` packets), timed
/// for about `budget`.
fn rate(per_run: usize, budget: Duration, mut run: impl FnMut()) -> f64 {
    run(); // warm up
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        run();
        runs += 1;
    }
    (runs as f64 * per_run as f64) / start.elapsed().as_secs_f64()
}

fn bench_velodyne(c: &mut Criterion) {
    let pkts = vlp32c_packets(1_500); // 10 rotations
    let run = || {
        let mut a = VelodyneAssembler::new(track());
        let mut frames = 0;
        for (t, p) in &pkts {
            frames += a.push(*t, p).len();
        }
        frames += usize::from(a.flush().is_some());
        black_box(frames)
    };
    let pps = rate(pkts.len(), Duration::from_millis(1_500), || {
        run();
    });
    println!(
        "velodyne VLP-32C-shaped: {:.0} packets/s on one core = {:.0}x a VLP-32C ({:.0}/s), {:.0}x an HDL-32E ({:.0}/s)",
        pps,
        pps / VLP32C_PACKETS_PER_S,
        VLP32C_PACKETS_PER_S,
        pps / HDL32E_PACKETS_PER_S,
        HDL32E_PACKETS_PER_S
    );
    let mut g = c.benchmark_group("velodyne");
    g.throughput(Throughput::Elements(pkts.len() as u64));
    g.bench_function("vlp32c_parse_assemble_1500_packets", |b| b.iter(run));
    g.finish();
}

fn data_dir() -> PathBuf {
    std::env::var_os("SENSOR_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
                .join("../../shared/data")
        })
}

fn bench_ouster(c: &mut Criterion) {
    let dir = data_dir().join("lidar/ouster");
    let (Ok(json), Ok(file)) = (
        std::fs::read_to_string(dir.join("OS-0-32-U1_v2.2.0_1024x10.json")),
        std::fs::read(dir.join("OS-0-32-U1_v2.2.0_1024x10.pcap")),
    ) else {
        println!("ouster bench skipped: sample capture not found under {}", dir.display());
        return;
    };
    let meta = Arc::new(OusterMeta::from_json(&json).unwrap());
    let (datagrams, _) = PcapReader::read_all(&file).unwrap();
    let frame: Vec<&[u8]> = datagrams
        .iter()
        .filter(|d| d.dst_port() == 7502)
        .map(|d| d.payload)
        .collect();
    // 10 frames: the real packets with frame_id (bytes 2..4) rewritten so
    // each pass is a new frame rather than duplicates.
    let mut pkts: Vec<(Timestamp, Vec<u8>)> = Vec::new();
    for f in 0..10u16 {
        for (i, p) in frame.iter().enumerate() {
            let mut p = p.to_vec();
            p[2..4].copy_from_slice(&(1453 + f).to_le_bytes());
            let t = T0 + u64::from(f) * 100_000_000 + i as u64 * 1_562_500;
            pkts.push((Timestamp::from_nanos(t), p));
        }
    }
    let run = || {
        let mut a = OusterAssembler::new(track(), Arc::clone(&meta));
        let mut frames = 0;
        for (t, p) in &pkts {
            frames += a.push(*t, p).len();
        }
        assert_eq!(frames, 10);
        black_box(frames)
    };
    let pps = rate(pkts.len(), Duration::from_millis(1_500), || {
        run();
    });
    println!(
        "ouster OS-0-32 capture (8448 B packets): {:.0} packets/s on one core = {:.0}x a VLP-32C's packet rate, {:.0}x an Ouster 2048x10 ({:.0}/s); {:.0} MB/s",
        pps,
        pps / VLP32C_PACKETS_PER_S,
        pps / OUSTER_2048X10_PACKETS_PER_S,
        OUSTER_2048X10_PACKETS_PER_S,
        pps * 8448.0 / 1e6
    );
    let mut g = c.benchmark_group("ouster");
    g.throughput(Throughput::Elements(pkts.len() as u64));
    g.bench_function("os0_32_parse_assemble_640_packets", |b| b.iter(run));
    g.finish();

    // Playback side: one assembled frame back to points.
    let mut a = OusterAssembler::new(track(), Arc::clone(&meta));
    let frame = pkts[..64].iter().flat_map(|(t, p)| a.push(*t, p)).next().unwrap().frame;
    let t = ouster_track(track(), &json, &TimePolicy::default()).unwrap();
    let decoder = FrameDecoder::new(t.mkv_codec_id(), &t.codec_private()).unwrap();
    let mut pts = Vec::new();
    let fps = rate(1, Duration::from_millis(500), || {
        pts.clear();
        decoder.decode_into(&frame.data, &mut pts).unwrap();
    });
    println!(
        "ouster OS-0-32 frame to points: {fps:.0} frames/s ({} points each; the sensor sends 10/s)",
        pts.len()
    );
    let mut g = c.benchmark_group("points");
    g.bench_function("os0_32_frame_to_points", |b| {
        b.iter(|| {
            pts.clear();
            decoder.decode_into(black_box(&frame.data), &mut pts).unwrap();
            black_box(pts.len())
        })
    });
    g.finish();
}

fn bench_mmwave(c: &mut Criterion) {
    let pts: Vec<DetectedPoint> = (0..64)
        .map(|i| DetectedPoint {
            x: i as f32,
            y: 1.0,
            z: 0.0,
            velocity: 0.5,
        })
        .collect();
    let mut stream = Vec::new();
    for n in 0..100 {
        stream.extend(FrameBuilder::new(n).points(&pts).build());
    }
    let run = || {
        let mut a = MmwaveAssembler::new(track());
        let mut frames = 0;
        for (i, chunk) in stream.chunks(256).enumerate() {
            frames += a.push(Timestamp::from_nanos(T0 + i as u64 * 1_000_000), chunk).len();
        }
        assert_eq!(frames, 100);
        black_box(frames)
    };
    let fps = rate(100, Duration::from_millis(500), || {
        run();
    });
    println!("mmwave: {fps:.0} frames/s of 64 points from 256-byte reads (a sensor sends 10–30/s)");
    let mut g = c.benchmark_group("mmwave");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("framer_assemble_100_frames", |b| b.iter(run));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench_velodyne, bench_ouster, bench_mmwave
}
criterion_main!(benches);
