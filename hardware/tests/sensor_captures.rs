//! Golden tests of the sensor parsers and assemblers on real captures in
//! `shared/data/lidar` (see `shared/data/README.md` for where the expected
//! values come from). Each test skips, saying so, when the data folder is
//! absent; the same code is covered by synthetic unit tests in
//! `src/sensor`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fragmenter::{Timestamp, TrackId};
use hardware::sensor::assembler::{unpack_packets, OusterAssembler, SkipReason, TimeSource, VelodyneAssembler};
use hardware::sensor::ouster::{self, LidarPacket, MetaShape, OusterError, OusterMeta, Profile};
use hardware::sensor::pcap::{PcapReader, Replayer, UdpDatagram};
use hardware::sensor::points::decode_frame;
use hardware::sensor::track::{ouster_track, velodyne_track};
use hardware::sensor::velodyne::{self, DataPacket, Model, ReturnMode, VelodyneError};
use hardware::sensor::TimePolicy;

/// `shared/data` beside the workspace; `SENSOR_TEST_DATA` overrides it
/// (for running these tests from a copy of the crate elsewhere).
fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SENSOR_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
                .join("../../shared/data")
        });
    if dir.join("lidar").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: sample data folder {} is absent", dir.display());
        None
    }
}

fn read(dir: &std::path::Path, rel: &str) -> Vec<u8> {
    let p = dir.join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_text(dir: &std::path::Path, rel: &str) -> String {
    String::from_utf8(read(dir, rel)).unwrap()
}

fn lidar_datagrams(file: &[u8]) -> Vec<UdpDatagram<'_>> {
    let (d, stats) = PcapReader::read_all(file).unwrap();
    assert!(
        !stats.truncated_tail && stats.malformed == 0 && stats.fragments == 0,
        "{stats:?}"
    );
    d.into_iter().filter(|d| d.dst_port() == ouster::LIDAR_PORT).collect()
}

fn track() -> TrackId {
    TrackId::new(1).unwrap()
}

/// Assemble every datagram, timed by its capture time, then flush.
fn assemble(
    meta: &Arc<OusterMeta>,
    datagrams: &[UdpDatagram<'_>],
) -> (Vec<hardware::sensor::AssembledFrame>, OusterAssembler) {
    let mut a = OusterAssembler::new(track(), Arc::clone(meta));
    let mut frames = Vec::new();
    for d in datagrams {
        frames.extend(a.push(d.timestamp, d.payload));
    }
    frames.extend(a.flush());
    (frames, a)
}

const OS0_PCAP: &str = "lidar/ouster/OS-0-32-U1_v2.2.0_1024x10.pcap";
const OS0_JSON: &str = "lidar/ouster/OS-0-32-U1_v2.2.0_1024x10.json";
const OS1_64_PCAP: &str = "lidar/ouster/OS-1-64_1024x10_fw20.pcap";
const OS1_64_JSON: &str = "lidar/ouster/OS-1-64_sensor_config_reduced.json";
const OS1_128_PCAP: &str = "lidar/ouster/OS-1-128_767798045_1024x10_20230712_120049.pcap";
const OS1_128_JSON: &str = "lidar/ouster/OS-1-128_767798045_1024x10_20230712_120049.json";
const VLI16_PCAP: &str = "lidar/ouster/VLI-16-one-packet.pcap";
const HDL32E_BIN: &str = "lidar/velodyne/hdl32e-one-packet.bin";

#[test]
fn hdl32e_packet_decodes_to_the_readme_values() {
    let Some(dir) = data_dir() else { return };
    let bytes = read(&dir, HDL32E_BIN);
    let p = DataPacket::parse(&bytes).unwrap();
    for b in 0..12 {
        assert_eq!(p.flag(b), velodyne::FLAG_UPPER, "block {b}");
    }
    assert_eq!(p.return_mode(), ReturnMode::Strongest);
    assert_eq!(p.return_mode().byte(), 0x37);
    assert_eq!(p.product_id(), 0x21);
    assert_eq!(p.model(), Model::Hdl32e);
    assert_eq!(p.timestamp_us(), 757_034_951);
    assert_eq!(
        p.azimuths(),
        [22288, 22321, 22355, 22389, 22422, 22456, 22490, 22523, 22557, 22591, 22625, 22659]
    );
    assert!(!p.wraps_inside());
    let l0 = p.channel(0, 0);
    assert_eq!((l0.distance, l0.intensity), (1230, 9));
    let l1 = p.channel(0, 1);
    assert_eq!((l1.distance, l1.intensity), (2537, 4));
    let res = Model::Hdl32e.distance_resolution_m();
    assert!((f32::from(l0.distance) * res - 2.460).abs() < 1e-6);
    assert!((f32::from(l1.distance) * res - 5.074).abs() < 1e-6);

    // Points: laser 0 (−30.67°) at 2.460 m, laser 1 (−9.33°) at 5.074 m.
    let mut pts = Vec::new();
    velodyne::PointDecoder::new(Model::Hdl32e).unwrap().decode(&p, &mut pts);
    let r = |q: &hardware::sensor::Point| (q.x * q.x + q.y * q.y + q.z * q.z).sqrt();
    assert!((r(&pts[0]) - 2.460).abs() < 1e-4, "{:?}", pts[0]);
    assert!((pts[0].z / r(&pts[0]) - (-30.67f32).to_radians().sin()).abs() < 1e-4);
    assert!((r(&pts[1]) - 5.074).abs() < 1e-4);
    assert_eq!(pts[0].intensity_or_velocity, 9.0);

    // Through the assembler and the track, as playback sees it.
    let arrival = Timestamp::from_nanos(1_700_000_000_000_000_000);
    let mut a = VelodyneAssembler::new(track());
    assert!(a.push(arrival, &bytes).is_empty());
    let f = a.flush().unwrap();
    assert_eq!(unpack_packets(&f.frame.data).unwrap(), vec![bytes.as_slice()]);
    let t = velodyne_track(track(), Model::Hdl32e, None, &TimePolicy::default()).unwrap();
    assert_eq!(t.mkv_codec_id(), "O_VELODYNE/HDL32E_PACKET");
    let decoded = decode_frame(t.mkv_codec_id(), &t.codec_private(), &f.frame.data).unwrap();
    assert_eq!(decoded, pts);
}

#[test]
fn os0_32_pcap_assembles_into_exactly_one_full_frame() {
    let Some(dir) = data_dir() else { return };
    let json = read_text(&dir, OS0_JSON);
    let meta = Arc::new(OusterMeta::from_json(&json).unwrap());
    assert_eq!(meta.shape, MetaShape::Flat);
    assert_eq!(meta.profile, Profile::Dual);
    assert_eq!(
        (meta.columns_per_frame, meta.columns_per_packet, meta.pixels_per_column),
        (1024, 16, 32)
    );
    assert_eq!(meta.format.packet_size, 8448);
    assert_eq!(meta.init_id, Some(9_599_938));
    assert_eq!(meta.prod_sn, Some(992_137_000_142));
    assert_eq!(meta.prod_line.as_deref(), Some("OS-0-32-U1"));
    assert_eq!(meta.lidar_mode.as_deref(), Some("1024x10"));
    assert!((meta.lidar_origin_to_beam_origin_mm - 27.67).abs() < 1e-9);

    let file = read(&dir, OS0_PCAP);
    let (all, stats) = PcapReader::read_all(&file).unwrap();
    assert_eq!(stats.records, 74);
    assert_eq!(
        all.iter()
            .filter(|d| d.dst_port() == 7503 && d.payload.len() == 48)
            .count(),
        10
    );
    let lidar = lidar_datagrams(&file);
    assert_eq!(lidar.len(), 64);
    for d in &lidar {
        let p = LidarPacket::parse(&meta, d.payload).unwrap();
        let h = p.header();
        assert_eq!((h.packet_type, h.frame_id), (Some(1), 1453));
        assert_eq!((h.init_id, h.prod_sn), (meta.init_id, meta.prod_sn));
        p.check_pairing(&meta).unwrap();
        assert_eq!(p.crc_status(), ouster::CrcStatus::Absent);
    }

    let (frames, a) = assemble(&meta, &lidar);
    assert_eq!(
        frames.len(),
        1,
        "{:?}",
        frames.iter().map(|f| &f.info).collect::<Vec<_>>()
    );
    let f = &frames[0];
    assert_eq!(f.info.frame_id, Some(1453));
    assert!(f.info.complete);
    assert_eq!(
        (f.info.columns_seen, f.info.columns_expected, f.info.packets),
        (1024, 1024, 64)
    );
    // The sensor ran on its internal clock (≈ 516 s after boot): arrival.
    assert_eq!(f.info.time_source, TimeSource::Arrival);
    assert_eq!(f.frame.pts, lidar[0].timestamp);
    assert!(f.frame.keyframe);
    assert_eq!(a.stats().total_skipped(), 0);

    // Lossless: the payload unpacks to the pcap's UDP payloads byte for byte.
    let packed = unpack_packets(&f.frame.data).unwrap();
    assert_eq!(packed, lidar.iter().map(|d| d.payload).collect::<Vec<_>>());

    // Every column 0..1023 exactly once, and plausible ranges.
    let mut seen = vec![0u32; 1024];
    let mut valid = 0usize;
    let mut plausible = 0usize;
    for p in &packed {
        let p = LidarPacket::parse(&meta, p).unwrap();
        for c in p.columns() {
            seen[usize::from(c.measurement_id)] += 1;
            assert!(c.valid());
            for row in 0..32 {
                let r = c.pixel(row).range_mm;
                if r != 0 {
                    valid += 1;
                    if (300..=100_000).contains(&r) {
                        plausible += 1;
                    }
                }
            }
        }
    }
    assert!(seen.iter().all(|&n| n == 1));
    assert!(valid > 1024 * 32 / 2, "only {valid} returns");
    assert!(
        plausible * 100 >= valid * 95,
        "{plausible} of {valid} returns in 0.3..100 m"
    );

    // Points through the track descriptor, as playback decodes them.
    let t = ouster_track(track(), &json, &TimePolicy::default()).unwrap();
    let pts = decode_frame(t.mkv_codec_id(), &t.codec_private(), &f.frame.data).unwrap();
    assert!(pts.len() >= valid, "{} points, {valid} first returns", pts.len());
    let near = pts
        .iter()
        .filter(|q| (0.25..=100.5).contains(&(q.x * q.x + q.y * q.y + q.z * q.z).sqrt()))
        .count();
    assert!(near * 100 >= pts.len() * 95, "{near} of {} points in range", pts.len());
}

#[test]
fn legacy_os1_64_capture_decodes_with_reduced_metadata() {
    let Some(dir) = data_dir() else { return };
    let meta = Arc::new(OusterMeta::from_json(&read_text(&dir, OS1_64_JSON)).unwrap());
    assert_eq!(meta.shape, MetaShape::Reduced);
    assert_eq!(meta.profile, Profile::Legacy);
    assert_eq!(
        (meta.columns_per_frame, meta.columns_per_packet, meta.pixels_per_column),
        (1024, 16, 64)
    );
    assert_eq!(meta.format.packet_size, 12_608);
    let file = read(&dir, OS1_64_PCAP);
    let lidar = lidar_datagrams(&file);
    assert_eq!(lidar.len(), 64);
    for d in &lidar {
        let p = LidarPacket::parse(&meta, d.payload).unwrap();
        assert_eq!(p.frame_id(), 189);
        for c in p.columns() {
            assert_eq!(c.frame_id, Some(189));
            assert_eq!(c.status, 0xFFFF_FFFF);
            assert!(c.encoder_count.unwrap() < ouster::ENCODER_TICKS_PER_REV);
        }
    }
    let (frames, a) = assemble(&meta, &lidar);
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(f.info.frame_id, Some(189));
    assert!(f.info.complete);
    assert_eq!((f.info.columns_seen, f.info.packets), (1024, 64));
    assert_eq!(a.stats().total_skipped(), 0);
    let lut = meta.xyz_lut();
    let mut pts = Vec::new();
    for p in unpack_packets(&f.frame.data).unwrap() {
        ouster::decode_points(&LidarPacket::parse(&meta, p).unwrap(), &lut, &mut pts);
    }
    assert!(pts.len() > 1024 * 64 / 4, "{} points", pts.len());
}

#[test]
fn fusa_os1_128_partial_frame_is_reported_as_partial() {
    let Some(dir) = data_dir() else { return };
    let meta = Arc::new(OusterMeta::from_json(&read_text(&dir, OS1_128_JSON)).unwrap());
    assert_eq!(meta.shape, MetaShape::Nested);
    assert_eq!(meta.profile, Profile::FusaDual);
    assert_eq!((meta.columns_per_frame, meta.pixels_per_column), (1024, 128));
    assert_eq!(meta.format.packet_size, 16_640);
    assert_eq!((meta.init_id, meta.prod_sn), (Some(390_076), Some(122_246_000_293)));
    assert_eq!(&meta.pixel_shift_by_row[..4], &[12, 4, -4, -12]);
    let file = read(&dir, OS1_128_PCAP);
    let lidar = lidar_datagrams(&file);
    assert_eq!(lidar.len(), 8);
    for d in &lidar {
        let h = LidarPacket::parse(&meta, d.payload).unwrap().header();
        assert_eq!(
            (h.packet_type, h.frame_id, h.init_id, h.prod_sn),
            (Some(1), 229, Some(390_076), Some(122_246_000_293))
        );
    }
    let (frames, a) = assemble(&meta, &lidar);
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert_eq!(f.info.frame_id, Some(229));
    assert!(!f.info.complete);
    assert_eq!(
        (f.info.columns_seen, f.info.columns_expected, f.info.packets),
        (128, 1024, 8)
    );
    assert_eq!(a.stats().partial_frames, 1);
    assert_eq!(
        unpack_packets(&f.frame.data).unwrap(),
        lidar.iter().map(|d| d.payload).collect::<Vec<_>>()
    );
    let lut = meta.xyz_lut();
    let mut pts = Vec::new();
    for p in unpack_packets(&f.frame.data).unwrap() {
        ouster::decode_points(&LidarPacket::parse(&meta, p).unwrap(), &lut, &mut pts);
    }
    assert!(!pts.is_empty());
}

#[test]
fn vli16_packet_is_refused_by_both_parsers() {
    let Some(dir) = data_dir() else { return };
    let file = read(&dir, VLI16_PCAP);
    let (d, _) = PcapReader::read_all(&file).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].dst_port(), velodyne::DATA_PORT);
    let payload = d[0].payload;
    assert_eq!(payload.len(), 1212);
    assert_eq!(&payload[..2], &[0xFF, 0xEE]);

    let e = DataPacket::parse(payload).unwrap_err();
    assert_eq!(
        e,
        VelodyneError::Size {
            expected: 1206,
            got: 1212
        }
    );
    assert!(e.to_string().contains("1212"), "{e}");
    let mut v = VelodyneAssembler::new(track());
    assert!(v.push(d[0].timestamp, payload).is_empty());
    assert!(v.flush().is_none());
    assert_eq!(v.stats().skipped(SkipReason::Oversized), 1);

    for json in [OS0_JSON, OS1_64_JSON, OS1_128_JSON] {
        let meta = Arc::new(OusterMeta::from_json(&read_text(&dir, json)).unwrap());
        let e = LidarPacket::parse(&meta, payload).unwrap_err();
        assert!(
            matches!(e, OusterError::PacketSize { got: 1212, expected, .. } if expected == meta.format.packet_size),
            "{json}: {e}"
        );
        let mut o = OusterAssembler::new(track(), meta);
        assert!(o.push(d[0].timestamp, payload).is_empty());
        assert!(o.flush().is_none());
        assert_eq!(o.stats().total_skipped(), 1);
    }
}

#[test]
fn replay_reproduces_the_capture_timing() {
    let Some(dir) = data_dir() else { return };
    let file = read(&dir, OS0_PCAP);
    let (r, stats) = Replayer::from_capture(&file, 1.0, false).unwrap();
    assert_eq!(stats.udp, 74);
    let items: Vec<_> = r.collect();
    assert_eq!(items.len(), 74);
    let total: Duration = items.iter().map(|i| i.delay).sum();
    let span = items.last().unwrap().timestamp.saturating_since(items[0].timestamp);
    assert_eq!(total, span);
    assert!(
        span > Duration::from_millis(90) && span < Duration::from_millis(110),
        "{span:?}"
    );
    let (fast, _) = Replayer::from_capture(&file, 4.0, false).unwrap();
    let total4: Duration = fast.only_ports(&[7502]).map(|i| i.delay).sum();
    assert!(total4 < span / 3);
}
