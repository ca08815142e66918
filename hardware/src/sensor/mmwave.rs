//! TI mmWave out-of-box demo UART output (SDK 3.x; IWR6843, AWR1843, …).
//!
//! The data UART carries frames of: a magic word `02 01 04 03 06 05 08 07`,
//! a 40-byte header, TLVs, and padding to a multiple of 32 bytes
//! (`reference/sensors.md` §2.1). A serial line drops and garbles bytes, and
//! reads return arbitrary chunks, so [`MmwaveFramer`] rebuilds whole frames
//! from any chunking, skipping and counting garbage, and [`parse_frame`]
//! decodes one.
//!
//! SDK 1.x (36-byte header, Q-format points) and the TI "labs" formats are
//! not handled here.

use bytes::{Buf, Bytes, BytesMut};

use super::wire::{f32_le, i16_le, u32_le};

/// The magic word as it appears on the wire (u16 LE 0x0102 0x0304 0x0506 0x0708).
pub const MAGIC: [u8; 8] = [0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07];
/// Frame header bytes, magic included.
pub const HEADER_LEN: usize = 40;
/// Frames are padded to a multiple of this.
pub const FRAME_ALIGN: usize = 32;
/// TLV header bytes (type u32, length u32).
pub const TLV_HEADER_LEN: usize = 8;
/// Default largest frame accepted. A frame at 921600 baud and 10 fps is at
/// most ≈ 9 KiB; heat maps at low frame rates are bigger, so allow 256 KiB,
/// which still bounds how long a corrupt length can stall the framer.
pub const DEFAULT_MAX_FRAME_LEN: usize = 256 * 1024;

/// TLV type: detected points (x, y, z, velocity as f32).
pub const TLV_DETECTED_POINTS: u32 = 1;
/// TLV type: range profile.
pub const TLV_RANGE_PROFILE: u32 = 2;
/// TLV type: noise profile.
pub const TLV_NOISE_PROFILE: u32 = 3;
/// TLV type: statistics.
pub const TLV_STATS: u32 = 6;
/// TLV type: side info of detected points (snr, noise as i16, 0.1 dB).
pub const TLV_SIDE_INFO: u32 = 7;
/// TLV type: temperature statistics.
pub const TLV_TEMPERATURE: u32 = 9;

/// What was wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MmwaveError {
    /// Fewer bytes than a header.
    #[error("mmWave frame is {got} bytes: expected at least the {expected}-byte header")]
    Short {
        /// 40.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The frame does not start with the magic word.
    #[error("mmWave frame does not start with the magic word 02 01 04 03 06 05 08 07 (got {got:02X?})")]
    Magic {
        /// The first 8 bytes.
        got: Vec<u8>,
    },
    /// totalPacketLen disagrees with the bytes given or the rules.
    #[error("mmWave totalPacketLen at byte 12 is {header}: expected {expected} (got {got} bytes)")]
    Length {
        /// The header's totalPacketLen.
        header: u32,
        /// What it should be: the frame length, ≥ 40, a multiple of 32.
        expected: &'static str,
        /// Bytes given.
        got: usize,
    },
    /// A TLV runs past the end of the frame.
    #[error(
        "mmWave TLV {index} (type {tlv_type}) at byte {offset}: length {length} runs past the frame end at {frame_len}"
    )]
    TlvOverrun {
        /// TLV index.
        index: u32,
        /// TLV type.
        tlv_type: u32,
        /// Byte offset of its header.
        offset: usize,
        /// Its length field.
        length: u32,
        /// Frame length.
        frame_len: usize,
    },
    /// A TLV payload is not a whole number of records.
    #[error("mmWave TLV type {tlv_type} at byte {offset}: length {length} is not a multiple of {record} bytes")]
    TlvRecord {
        /// TLV type.
        tlv_type: u32,
        /// Byte offset of its header.
        offset: usize,
        /// Payload length.
        length: u32,
        /// Record size.
        record: usize,
    },
    /// The detected points TLV disagrees with numDetectedObj.
    #[error("mmWave TLV type {tlv_type} at byte {offset} holds {got} records: expected numDetectedObj = {expected}")]
    ObjectCount {
        /// TLV type.
        tlv_type: u32,
        /// Byte offset of its header.
        offset: usize,
        /// numDetectedObj.
        expected: u32,
        /// Records in the TLV.
        got: usize,
    },
}

/// The 40-byte frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FrameHeader {
    /// SDK version, Major·2²⁴ + Minor·2¹⁶ + Bugfix·2⁸ + Build.
    pub version: u32,
    /// Total frame bytes, header and padding included.
    pub total_packet_len: u32,
    /// Platform, e.g. 0xA6843.
    pub platform: u32,
    /// Frame counter.
    pub frame_number: u32,
    /// CPU cycle counter at frame time.
    pub time_cpu_cycles: u32,
    /// Detected objects (points).
    pub num_detected_obj: u32,
    /// TLVs following the header.
    pub num_tlvs: u32,
    /// Sub-frame (advanced frame config).
    pub sub_frame_number: u32,
}

impl FrameHeader {
    /// Read the header fields after the magic word (no checks beyond size).
    pub fn read(b: &[u8]) -> Option<FrameHeader> {
        Some(FrameHeader {
            version: u32_le(b, 8)?,
            total_packet_len: u32_le(b, 12)?,
            platform: u32_le(b, 16)?,
            frame_number: u32_le(b, 20)?,
            time_cpu_cycles: u32_le(b, 24)?,
            num_detected_obj: u32_le(b, 28)?,
            num_tlvs: u32_le(b, 32)?,
            sub_frame_number: u32_le(b, 36)?,
        })
    }
}

/// One detected point, metres and m/s.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct DetectedPoint {
    /// x (right), m.
    pub x: f32,
    /// y (forward), m.
    pub y: f32,
    /// z (up), m.
    pub z: f32,
    /// Radial velocity, m/s.
    pub velocity: f32,
}

/// Side info of one detected point, in 0.1 dB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SideInfo {
    /// Signal-to-noise ratio, 0.1 dB.
    pub snr: i16,
    /// Noise, 0.1 dB.
    pub noise: i16,
}

/// A decoded TLV.
#[derive(Clone, Debug, PartialEq)]
pub enum Tlv {
    /// Type 1.
    DetectedPoints(Vec<DetectedPoint>),
    /// Type 7.
    SideInfo(Vec<SideInfo>),
    /// Any other type, kept raw.
    Other {
        /// TLV type.
        tlv_type: u32,
        /// Payload.
        data: Bytes,
    },
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub struct MmwaveFrame {
    /// Header.
    pub header: FrameHeader,
    /// TLVs in order.
    pub tlvs: Vec<Tlv>,
}

impl MmwaveFrame {
    /// The detected points (empty when the frame has none).
    pub fn points(&self) -> &[DetectedPoint] {
        self.tlvs
            .iter()
            .find_map(|t| match t {
                Tlv::DetectedPoints(p) => Some(p.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// The side info (empty when absent).
    pub fn side_info(&self) -> &[SideInfo] {
        self.tlvs
            .iter()
            .find_map(|t| match t {
                Tlv::SideInfo(p) => Some(p.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }
}

/// Walk the TLVs of a frame, checking that each fits. Returns (type,
/// payload offset, payload length) for each.
fn walk_tlvs(frame: &[u8], h: &FrameHeader) -> Result<Vec<(u32, usize, usize)>, MmwaveError> {
    let mut out = Vec::with_capacity(h.num_tlvs.min(64) as usize);
    let mut off = HEADER_LEN;
    for index in 0..h.num_tlvs {
        let (Some(tlv_type), Some(length)) = (u32_le(frame, off), u32_le(frame, off + 4)) else {
            return Err(MmwaveError::TlvOverrun {
                index,
                tlv_type: u32_le(frame, off).unwrap_or(0),
                offset: off,
                length: 0,
                frame_len: frame.len(),
            });
        };
        // SDK 3.x: the length excludes the 8-byte TLV header.
        let start = off + TLV_HEADER_LEN;
        let end = start.checked_add(length as usize).filter(|&e| e <= frame.len());
        let Some(end) = end else {
            return Err(MmwaveError::TlvOverrun {
                index,
                tlv_type,
                offset: off,
                length,
                frame_len: frame.len(),
            });
        };
        out.push((tlv_type, start, length as usize));
        off = end;
    }
    Ok(out)
}

/// Check the header of a whole frame: magic, totalPacketLen equal to the
/// bytes given, ≥ 40 and a multiple of 32.
fn check_header(frame: &[u8]) -> Result<FrameHeader, MmwaveError> {
    if frame.len() < HEADER_LEN {
        return Err(MmwaveError::Short {
            expected: HEADER_LEN,
            got: frame.len(),
        });
    }
    if frame[..8] != MAGIC {
        return Err(MmwaveError::Magic {
            got: frame[..8].to_vec(),
        });
    }
    let h = FrameHeader::read(frame).ok_or(MmwaveError::Short {
        expected: HEADER_LEN,
        got: frame.len(),
    })?;
    if h.total_packet_len as usize != frame.len() || !valid_total_len(h.total_packet_len as usize, usize::MAX) {
        return Err(MmwaveError::Length {
            header: h.total_packet_len,
            expected: "the frame length, at least 40 and a multiple of 32",
            got: frame.len(),
        });
    }
    Ok(h)
}

fn valid_total_len(n: usize, max: usize) -> bool {
    n >= HEADER_LEN && n.is_multiple_of(FRAME_ALIGN) && n <= max
}

/// Decode one whole frame (as yielded by [`MmwaveFramer`]).
pub fn parse_frame(frame: &[u8]) -> Result<MmwaveFrame, MmwaveError> {
    let header = check_header(frame)?;
    let mut tlvs = Vec::new();
    for (tlv_type, start, len) in walk_tlvs(frame, &header)? {
        let data = &frame[start..start + len];
        let offset = start - TLV_HEADER_LEN;
        let records = |record: usize| {
            if len % record != 0 {
                return Err(MmwaveError::TlvRecord {
                    tlv_type,
                    offset,
                    length: len as u32,
                    record,
                });
            }
            let n = len / record;
            if n != header.num_detected_obj as usize {
                return Err(MmwaveError::ObjectCount {
                    tlv_type,
                    offset,
                    expected: header.num_detected_obj,
                    got: n,
                });
            }
            Ok(n)
        };
        tlvs.push(match tlv_type {
            TLV_DETECTED_POINTS => {
                let n = records(16)?;
                Tlv::DetectedPoints(
                    (0..n)
                        .map(|i| {
                            let o = i * 16;
                            DetectedPoint {
                                x: f32_le(data, o).unwrap_or(0.0),
                                y: f32_le(data, o + 4).unwrap_or(0.0),
                                z: f32_le(data, o + 8).unwrap_or(0.0),
                                velocity: f32_le(data, o + 12).unwrap_or(0.0),
                            }
                        })
                        .collect(),
                )
            }
            TLV_SIDE_INFO => {
                let n = records(4)?;
                Tlv::SideInfo(
                    (0..n)
                        .map(|i| SideInfo {
                            snr: i16_le(data, i * 4).unwrap_or(0),
                            noise: i16_le(data, i * 4 + 2).unwrap_or(0),
                        })
                        .collect(),
                )
            }
            _ => Tlv::Other {
                tlv_type,
                data: Bytes::copy_from_slice(data),
            },
        });
    }
    Ok(MmwaveFrame { header, tlvs })
}

/// Counters of a [`MmwaveFramer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Whole frames yielded.
    pub frames: u64,
    /// Bytes dropped while looking for a frame.
    pub garbage_bytes: u64,
    /// Magic words followed by an impossible totalPacketLen.
    pub bad_lengths: u64,
    /// Frames of a plausible length whose TLVs did not fit (lost bytes):
    /// the framer resynchronized inside them.
    pub bad_frames: u64,
}

/// Rebuilds whole frames from a byte stream cut anywhere.
///
/// Feed each serial read to [`MmwaveFramer::push`] and take frames with
/// [`MmwaveFramer::next_frame`]. Every decision depends only on the bytes
/// seen, never on where reads were cut, so any chunking yields the same
/// frames and the same counters.
#[derive(Debug)]
pub struct MmwaveFramer {
    buf: BytesMut,
    max_frame_len: usize,
    stats: FramerStats,
    /// Stream bytes consumed so far (garbage and frames): the stream
    /// offset of `buf[0]`.
    consumed: u64,
}

impl Default for MmwaveFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl MmwaveFramer {
    /// A framer accepting frames up to [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A framer accepting frames up to `max` bytes (at least one header).
    pub fn with_max_frame_len(max: usize) -> Self {
        MmwaveFramer {
            buf: BytesMut::with_capacity(16 * 1024),
            max_frame_len: max.max(HEADER_LEN),
            stats: FramerStats::default(),
            consumed: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Append bytes read from the UART.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn drop_garbage(&mut self, n: usize) {
        self.buf.advance(n);
        self.stats.garbage_bytes += n as u64;
        self.consumed += n as u64;
    }

    /// Stream bytes consumed so far (frames and garbage).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The next whole frame (raw bytes, magic to padding), if one is
    /// complete.
    pub fn next_frame(&mut self) -> Option<Bytes> {
        self.next_frame_at().map(|(_, f)| f)
    }

    /// Like [`MmwaveFramer::next_frame`], with the frame's offset in the
    /// stream (bytes pushed before its magic word), so a caller can tell
    /// when its first byte arrived.
    pub fn next_frame_at(&mut self) -> Option<(u64, Bytes)> {
        loop {
            // Align on a magic word; keep a tail that may be its start.
            match find_magic(&self.buf) {
                Some(0) => {}
                Some(i) => self.drop_garbage(i),
                None => {
                    let keep = partial_magic_suffix(&self.buf);
                    let n = self.buf.len() - keep;
                    self.drop_garbage(n);
                    return None;
                }
            }
            if self.buf.len() < HEADER_LEN {
                return None;
            }
            let h = FrameHeader::read(&self.buf)?;
            let total = h.total_packet_len as usize;
            if !valid_total_len(total, self.max_frame_len) {
                // A magic word inside data, or a garbled length: skip one
                // byte so the search moves past this magic.
                self.stats.bad_lengths += 1;
                self.drop_garbage(1);
                continue;
            }
            if self.buf.len() < total {
                return None;
            }
            // Bytes lost on the line make a frame swallow the start of the
            // next one: its magic word then shows up inside this frame (8
            // bytes that float data essentially never form). Resync there.
            if let Some(i) = find_magic(&self.buf[1..total]) {
                self.stats.bad_frames += 1;
                self.drop_garbage(i + 1);
                continue;
            }
            if walk_tlvs(&self.buf[..total], &h).is_err() {
                // Bytes were lost: the next frame's magic is probably
                // inside this one. Resynchronize from the next byte.
                self.stats.bad_frames += 1;
                self.drop_garbage(1);
                continue;
            }
            self.stats.frames += 1;
            let start = self.consumed;
            self.consumed += total as u64;
            return Some((start, self.buf.split_to(total).freeze()));
        }
    }

    /// Feed `data` and collect every frame it completes.
    pub fn push_and_collect(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.push(data);
        std::iter::from_fn(|| self.next_frame()).collect()
    }
}

fn find_magic(b: &[u8]) -> Option<usize> {
    // memchr-like scan on the first byte, then compare the rest.
    let mut i = 0;
    while i + MAGIC.len() <= b.len() {
        match b[i..b.len() - MAGIC.len() + 1].iter().position(|&x| x == MAGIC[0]) {
            None => return None,
            Some(p) => {
                let j = i + p;
                if b[j..j + MAGIC.len()] == MAGIC {
                    return Some(j);
                }
                i = j + 1;
            }
        }
    }
    None
}

/// Length of the longest suffix of `b` that is a proper prefix of the magic.
fn partial_magic_suffix(b: &[u8]) -> usize {
    (1..MAGIC.len())
        .rev()
        .find(|&k| k <= b.len() && b[b.len() - k..] == MAGIC[..k])
        .unwrap_or(0)
}

/// Builds valid frames: tests, and a synthetic serial source.
#[derive(Clone, Debug, Default)]
pub struct FrameBuilder {
    /// Header fields; totalPacketLen, numDetectedObj and numTLVs are filled
    /// in by [`FrameBuilder::build`].
    pub header: FrameHeader,
    points: Vec<DetectedPoint>,
    side: Vec<SideInfo>,
    others: Vec<(u32, Vec<u8>)>,
}

impl FrameBuilder {
    /// A builder for frame `frame_number` of an IWR6843 running SDK 3.5.
    pub fn new(frame_number: u32) -> Self {
        FrameBuilder {
            header: FrameHeader {
                version: 0x0305_0004,
                platform: 0xA6843,
                frame_number,
                ..FrameHeader::default()
            },
            ..FrameBuilder::default()
        }
    }

    /// Set the detected points (TLV 1; omitted when empty, as the demo does).
    pub fn points(mut self, points: &[DetectedPoint]) -> Self {
        self.points = points.to_vec();
        self
    }

    /// Set side info (TLV 7; must match the points in count to parse back).
    pub fn side_info(mut self, side: &[SideInfo]) -> Self {
        self.side = side.to_vec();
        self
    }

    /// Add a raw TLV after the others.
    pub fn tlv(mut self, tlv_type: u32, data: &[u8]) -> Self {
        self.others.push((tlv_type, data.to_vec()));
        self
    }

    /// The frame bytes, padded to a multiple of 32.
    pub fn build(&self) -> Vec<u8> {
        let mut tlvs: Vec<(u32, Vec<u8>)> = Vec::new();
        if !self.points.is_empty() {
            let mut d = Vec::with_capacity(self.points.len() * 16);
            for p in &self.points {
                for v in [p.x, p.y, p.z, p.velocity] {
                    d.extend_from_slice(&v.to_le_bytes());
                }
            }
            tlvs.push((TLV_DETECTED_POINTS, d));
        }
        if !self.side.is_empty() {
            let mut d = Vec::with_capacity(self.side.len() * 4);
            for s in &self.side {
                d.extend_from_slice(&s.snr.to_le_bytes());
                d.extend_from_slice(&s.noise.to_le_bytes());
            }
            tlvs.push((TLV_SIDE_INFO, d));
        }
        tlvs.extend(self.others.iter().cloned());
        let body: usize = tlvs.iter().map(|(_, d)| TLV_HEADER_LEN + d.len()).sum();
        let total = (HEADER_LEN + body).div_ceil(FRAME_ALIGN) * FRAME_ALIGN;
        let mut f = Vec::with_capacity(total);
        f.extend_from_slice(&MAGIC);
        let h = &self.header;
        for v in [
            h.version,
            total as u32,
            h.platform,
            h.frame_number,
            h.time_cpu_cycles,
            self.points.len() as u32,
            tlvs.len() as u32,
            h.sub_frame_number,
        ] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        for (t, d) in &tlvs {
            f.extend_from_slice(&t.to_le_bytes());
            f.extend_from_slice(&(d.len() as u32).to_le_bytes());
            f.extend_from_slice(d);
        }
        f.resize(total, 0);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(n: usize) -> Vec<DetectedPoint> {
        (0..n)
            .map(|i| DetectedPoint {
                x: i as f32,
                y: 2.0 * i as f32,
                z: -0.5,
                velocity: 0.25 * i as f32,
            })
            .collect()
    }

    #[test]
    fn a_built_frame_parses_back() {
        let side: Vec<SideInfo> = (0..3)
            .map(|i| SideInfo {
                snr: 100 + i,
                noise: -5,
            })
            .collect();
        let b = FrameBuilder::new(9)
            .points(&pts(3))
            .side_info(&side)
            .tlv(TLV_STATS, &[0; 24])
            .build();
        assert_eq!(b.len() % 32, 0);
        let f = parse_frame(&b).unwrap();
        assert_eq!(f.header.frame_number, 9);
        assert_eq!(f.header.num_detected_obj, 3);
        assert_eq!(f.header.num_tlvs, 3);
        assert_eq!(f.header.total_packet_len as usize, b.len());
        assert_eq!(f.points(), pts(3).as_slice());
        assert_eq!(f.side_info(), side.as_slice());
        assert!(matches!(&f.tlvs[2], Tlv::Other { tlv_type: 6, data } if data.len() == 24));
        let empty = parse_frame(&FrameBuilder::new(1).build()).unwrap();
        assert!(empty.points().is_empty() && empty.tlvs.is_empty());
    }

    #[test]
    fn frame_errors_say_where() {
        let b = FrameBuilder::new(1).points(&pts(2)).build();
        assert!(matches!(parse_frame(&b[..20]), Err(MmwaveError::Short { .. })));
        let mut bad = b.clone();
        bad[0] = 0;
        assert!(matches!(parse_frame(&bad), Err(MmwaveError::Magic { .. })));
        assert!(matches!(
            parse_frame(&b[..b.len() - 32]),
            Err(MmwaveError::Length { .. })
        ));
        let mut bad = b.clone();
        bad[44..48].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            parse_frame(&bad),
            Err(MmwaveError::TlvOverrun {
                index: 0,
                offset: 40,
                length: 1000,
                ..
            })
        ));
        let mut bad = b.clone();
        bad[28..32].copy_from_slice(&5u32.to_le_bytes());
        assert!(matches!(
            parse_frame(&bad),
            Err(MmwaveError::ObjectCount {
                expected: 5,
                got: 2,
                ..
            })
        ));
    }

    #[test]
    fn the_framer_resyncs_after_garbage() {
        let f1 = FrameBuilder::new(1).points(&pts(4)).build();
        let f2 = FrameBuilder::new(2).points(&pts(1)).build();
        let mut stream = b"noise\x02\x01\x04".to_vec();
        stream.extend_from_slice(&f1);
        stream.extend_from_slice(&[0xAA; 13]);
        stream.extend_from_slice(&f2);
        let mut fr = MmwaveFramer::new();
        let frames = fr.push_and_collect(&stream);
        assert_eq!(frames, vec![Bytes::from(f1), Bytes::from(f2)]);
        assert_eq!(fr.stats().garbage_bytes, 8 + 13);
        assert_eq!(fr.stats().frames, 2);
        assert_eq!(fr.buffered(), 0);
    }

    #[test]
    fn a_frame_with_lost_bytes_is_dropped_and_the_next_one_found() {
        let f1 = FrameBuilder::new(1).points(&pts(20)).build();
        let f2 = FrameBuilder::new(2).points(&pts(2)).build();
        let f3 = FrameBuilder::new(3).points(&pts(3)).build();
        let mut stream = f1[..f1.len() - 100].to_vec(); // lost its tail
        stream.extend_from_slice(&f2);
        stream.extend_from_slice(&f3);
        let mut fr = MmwaveFramer::new();
        let frames = fr.push_and_collect(&stream);
        assert_eq!(frames, vec![Bytes::from(f2), Bytes::from(f3)]);
        assert_eq!(fr.stats().bad_frames, 1, "{:?}", fr.stats());
        assert_eq!(fr.stats().garbage_bytes, f1.len() as u64 - 100);
    }

    #[test]
    fn absurd_lengths_are_skipped() {
        let mut junk = MAGIC.to_vec();
        junk.extend_from_slice(&[0; 4]);
        junk.extend_from_slice(&(u32::MAX - 31).to_le_bytes());
        junk.extend_from_slice(&[0; 24]);
        let f = FrameBuilder::new(5).build();
        junk.extend_from_slice(&f);
        let mut fr = MmwaveFramer::new();
        assert_eq!(fr.push_and_collect(&junk), vec![Bytes::from(f)]);
        assert_eq!(fr.stats().bad_lengths, 1);
        assert_eq!(fr.stats().garbage_bytes, 40);
    }

    #[test]
    fn partial_magic_is_kept_across_reads() {
        let f = FrameBuilder::new(5).build();
        let mut fr = MmwaveFramer::new();
        assert!(fr.push_and_collect(&f[..5]).is_empty());
        assert_eq!(fr.buffered(), 5);
        assert_eq!(fr.push_and_collect(&f[5..]), vec![Bytes::from(f)]);
        assert_eq!(fr.stats().garbage_bytes, 0);
    }
}
