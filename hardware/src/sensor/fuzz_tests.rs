//! Property tests: no parser panics on arbitrary input, and the mmWave
//! framer's output does not depend on how the stream was chunked.

use std::sync::Arc;

use bytes::Bytes;
use fragmenter::{Timestamp, TrackId};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Value;

use super::assembler::{unpack_packets, MmwaveAssembler, OusterAssembler, VelodyneAssembler};
use super::mmwave::{self, DetectedPoint, FrameBuilder, MmwaveFramer};
use super::ouster::{self, LidarPacket, OusterMeta};
use super::pcap::{self, PcapReader};
use super::points::decode_frame;
use super::uri::SensorUri;
use super::velodyne::{self, DataPacket};

const T0: u64 = 1_700_000_000_000_000_000;

fn track() -> TrackId {
    TrackId::new(1).unwrap()
}

fn small_meta() -> Arc<OusterMeta> {
    Arc::new(
        OusterMeta::from_json(
            r#"{"beam_altitude_angles":[1,0,-1,-2],"beam_azimuth_angles":[0,0,0,0],
            "data_format":{"columns_per_frame":64,"columns_per_packet":4,"pixels_per_column":4,
            "udp_profile_lidar":"RNG19_RFL8_SIG16_NIR16"},"initialization_id":3,"prod_sn":9,"lidar_mode":"64x10"}"#,
        )
        .unwrap(),
    )
}

/// Bytes that are sometimes the right size with a valid-looking start, so
/// the deeper checks are reached too.
fn near_valid(len: usize, prefix: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), len).prop_map(move |mut b| {
        let n = prefix.len().min(b.len());
        b[..n].copy_from_slice(&prefix[..n]);
        b
    })
}

fn velodyne_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..1300),
        near_valid(velodyne::DATA_PACKET_LEN, vec![0xFF, 0xEE]),
        (0u16..36_000, 0u16..300, any::<u32>(), any::<u8>()).prop_map(|(az, step, ts, id)| {
            let a = std::array::from_fn(|b| (u32::from(az) + u32::from(step) * b as u32) as u16 % 36_000);
            velodyne::build_data_packet(
                &a,
                &|b, c| velodyne::Channel {
                    distance: (b * c) as u16,
                    intensity: c as u8,
                },
                ts,
                velodyne::ReturnMode::from_byte(0x37 + (id % 4)),
                velodyne::Model::from_product_id(if id % 3 == 0 { id } else { 0x28 }),
            )
        }),
    ]
}

/// JSON values built from the metadata's own keys, to reach every branch
/// of the metadata reader with wrong types and ranges.
fn json_value() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "beam_altitude_angles",
        "beam_azimuth_angles",
        "data_format",
        "lidar_data_format",
        "beam_intrinsics",
        "sensor_info",
        "config_params",
        "columns_per_frame",
        "columns_per_packet",
        "pixels_per_column",
        "column_window",
        "pixel_shift_by_row",
        "udp_profile_lidar",
        "lidar_mode",
        "prod_sn",
        "initialization_id",
        "lidar_origin_to_beam_origin_mm",
        "lidar_to_sensor_transform",
        "lidar_intrinsics",
        "beam_to_lidar_transform",
        "udp_port_lidar",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..3000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        prop::sample::select(vec![
            "1024x10",
            "64x10",
            "LEGACY",
            "FUSA_RNG15_RFL8_NIR8_DUAL",
            "x",
            "992137000142"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec((keys.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn mmwave_stream() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let piece = prop_oneof![
        // A frame with a few points.
        (0u32..1000, 0usize..6).prop_map(|(n, k)| {
            let p: Vec<DetectedPoint> = (0..k)
                .map(|i| DetectedPoint {
                    x: i as f32,
                    y: n as f32,
                    z: 0.5,
                    velocity: -1.0,
                })
                .collect();
            FrameBuilder::new(n).points(&p).tlv(mmwave::TLV_STATS, &[1; 24]).build()
        }),
        // Garbage, sometimes with a stray magic word or its start.
        vec(any::<u8>(), 0..64),
        Just(mmwave::MAGIC[..5].to_vec()),
        Just(mmwave::MAGIC.to_vec()),
        // A frame that lost bytes in the middle.
        (1u32..1000, 1usize..40).prop_map(|(n, cut)| {
            let f = FrameBuilder::new(n).points(&[DetectedPoint::default(); 8]).build();
            let mut g = f[..40].to_vec();
            g.extend_from_slice(&f[40 + cut.min(f.len() - 40)..]);
            g
        }),
    ];
    (vec(piece, 0..12), vec(1usize..200, 0..40)).prop_map(|(pieces, cuts)| (pieces.concat(), cuts))
}

fn frames_of(stream: &[u8], cuts: &[usize]) -> (Vec<Bytes>, mmwave::FramerStats) {
    let mut fr = MmwaveFramer::new();
    let mut out = Vec::new();
    let mut rest = stream;
    for &c in cuts {
        let n = c.min(rest.len());
        out.extend(fr.push_and_collect(&rest[..n]));
        rest = &rest[n..];
    }
    out.extend(fr.push_and_collect(rest));
    (out, fr.stats())
}

proptest! {
    // No regression files: they would land outside this module's folder.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn velodyne_parsers_never_panic(b in velodyne_like()) {
        if let Ok(p) = DataPacket::parse(&b) {
            let _ = p.wraps_inside();
            if let Ok(d) = velodyne::PointDecoder::new(p.model()) {
                let mut pts = Vec::new();
                d.decode(&p, &mut pts);
                prop_assert!(pts.iter().all(|q| q.x.is_finite() && q.y.is_finite() && q.z.is_finite()));
            }
        }
        let _ = velodyne::parse_position(&b);
        let mut pos = vec![0u8; 512];
        let n = b.len().min(306);
        pos[206..206 + n.min(128)].copy_from_slice(&b[..n.min(128)]);
        let _ = velodyne::parse_position(&pos);
        if let Ok(s) = std::str::from_utf8(&b) {
            let _ = velodyne::Nmea::parse(s).map(|n| n.utc());
        }
    }

    #[test]
    fn velodyne_assembler_never_panics_and_accounts_for_every_packet(
        pkts in vec((velodyne_like(), 0u64..5_000_000_000), 0..40)
    ) {
        let mut a = VelodyneAssembler::new(track());
        let mut t = T0;
        let mut frames = Vec::new();
        for (p, dt) in &pkts {
            t += dt;
            frames.extend(a.push(Timestamp::from_nanos(t), p));
            a.push_position(Timestamp::from_nanos(t), p);
        }
        frames.extend(a.flush());
        let s = a.stats().clone();
        prop_assert_eq!(s.packets, pkts.len() as u64);
        prop_assert_eq!(s.accepted + s.total_skipped(), s.packets);
        let packed: usize = frames.iter().map(|f| unpack_packets(&f.frame.data).unwrap().len()).sum();
        prop_assert_eq!(packed as u64, s.accepted);
        prop_assert!(frames.windows(2).all(|w| w[0].frame.pts < w[1].frame.pts));
    }

    #[test]
    fn ouster_packets_never_panic(
        b in prop_oneof![
            vec(any::<u8>(), 0..300),
            near_valid(small_meta().format.packet_size, vec![1, 0]),
        ],
        dt in vec(0u64..200_000_000, 1..4),
    ) {
        let m = small_meta();
        if let Ok(p) = LidarPacket::parse(&m, &b) {
            let _ = (p.header(), p.check_pairing(&m), p.crc_status());
            let lut = m.xyz_lut();
            let mut pts = Vec::new();
            ouster::decode_points(&p, &lut, &mut pts);
        }
        let mut a = OusterAssembler::new(track(), Arc::clone(&m));
        let mut t = T0;
        for d in dt {
            t += d;
            a.push(Timestamp::from_nanos(t), &b);
        }
        let _ = a.flush();
        let s = a.stats();
        prop_assert_eq!(s.accepted + s.total_skipped(), s.packets);
    }

    #[test]
    fn ouster_metadata_never_panics(v in json_value(), text in ".{0,200}") {
        if let Ok(m) = OusterMeta::from_value(&v) {
            prop_assert_eq!(m.beam_altitude_angles.len(), m.pixels_per_column);
            prop_assert!(m.format.packet_size <= ouster::MAX_PACKET_SIZE);
            let _ = (m.packets_per_frame(), m.columns_in_window());
            if m.columns_per_frame * m.pixels_per_column <= 1 << 16 {
                let _ = m.xyz_lut().point(0, 0, 1000);
            }
        }
        let _ = OusterMeta::from_json(&text);
        let _ = OusterMeta::from_json(&v.to_string());
    }

    #[test]
    fn mmwave_framing_does_not_depend_on_chunking((stream, cuts) in mmwave_stream()) {
        let (whole, ws) = frames_of(&stream, &[]);
        let (chunked, cs) = frames_of(&stream, &cuts);
        prop_assert_eq!(&whole, &chunked);
        prop_assert_eq!(ws, cs);
        for f in &whole {
            // Every frame yielded has a consistent header and TLVs.
            prop_assert_eq!(f.len() % 32, 0);
            let h = mmwave::FrameHeader::read(f).unwrap();
            prop_assert_eq!(h.total_packet_len as usize, f.len());
        }
    }

    #[test]
    fn mmwave_parsers_never_panic(b in vec(any::<u8>(), 0..400), cuts in vec(1usize..50, 0..10)) {
        let _ = mmwave::parse_frame(&b);
        let mut framed = mmwave::MAGIC.to_vec();
        framed.extend_from_slice(&b);
        let _ = mmwave::parse_frame(&framed);
        let _ = frames_of(&framed, &cuts);
        let mut a = MmwaveAssembler::new(track());
        let mut frames = a.push(Timestamp::from_nanos(T0), &framed);
        frames.extend(a.push(Timestamp::from_nanos(T0), &FrameBuilder::new(1).build()));
        prop_assert!(frames.windows(2).all(|w| w[0].frame.pts < w[1].frame.pts));
    }

    #[test]
    fn pcap_reader_never_panics(
        b in vec(any::<u8>(), 0..600),
        prefix in prop::sample::select(vec![
            vec![],
            vec![0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 1, 0, 0, 0],
            vec![0xA1, 0xB2, 0xC3, 0xD4, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 113],
            vec![0x4D, 0x3C, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 101, 0, 0, 0],
            vec![0x0A, 0x0D, 0x0D, 0x0A, 28, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0,
                 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 28, 0, 0, 0],
        ]),
    ) {
        let mut file = prefix.clone();
        file.extend_from_slice(&b);
        if let Ok(r) = PcapReader::new(&file) {
            for d in r.flatten() {
                prop_assert!(d.payload.len() < file.len());
            }
        }
        // A valid capture whose records are arbitrary frames.
        let mut cap = pcap::write_pcap(&[]);
        for chunk in b.chunks(97) {
            cap.extend_from_slice(&[0; 8]);
            cap.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            cap.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            cap.extend_from_slice(chunk);
        }
        let (_, s) = PcapReader::read_all(&cap).unwrap();
        prop_assert_eq!(s.records as usize, b.chunks(97).count());
    }

    #[test]
    fn sensor_uris_never_panic(
        s in ".{0,80}",
        scheme in prop::sample::select(vec!["velodyne:udp://", "ouster:udp://", "mmwave:", "", "ouster:udp://[", "mmwave:/dev/x?config="]),
        tail in "[a-z0-9:/?&=%\\[\\].]{0,40}",
    ) {
        let _ = s.parse::<SensorUri>();
        let u = format!("{scheme}{tail}");
        if let Ok(parsed) = u.parse::<SensorUri>() {
            prop_assert_eq!(parsed.to_string().parse::<SensorUri>(), Ok(parsed));
        }
    }

    #[test]
    fn payload_decoding_never_panics(
        payload in vec(any::<u8>(), 0..2000),
        codec in prop::sample::select(vec![
            "O_VELODYNE/HDL32E_PACKET", "O_VELODYNE/VLP16_PACKET", "O_VELODYNE/VLS128_PACKET",
            "O_OUSTER/LIDAR_PACKET", "O_TIMMWAVE/OOB_UART", "O_NOPE",
        ]),
        private in vec(any::<u8>(), 0..64),
    ) {
        let _ = unpack_packets(&payload);
        let _ = decode_frame(codec, &private, &payload);
        let _ = decode_frame(codec, b"{\"vendor\":\"x\",\"model\":\"y\",\"ouster_metadata\":{}}", &payload);
    }
}
