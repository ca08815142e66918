//! UDP datagrams from pcap / pcapng captures, and paced replay.
//!
//! Backs `edge-agent replay FILE.pcap --to udp://HOST:PORT [--speed X]
//! [--loop]`: [`PcapReader`] yields each UDP datagram with its capture
//! time and ports, and [`Replayer`] yields them again with the delay to
//! wait before sending each at a speed factor. No sockets here.
//!
//! Link types: Ethernet (with 802.1Q/802.1ad tags), Linux cooked (SLL and
//! SLL2), BSD loopback, raw IPv4. IPv4 only; IP fragments are not
//! reassembled (captures of Ouster traffic are taken after reassembly)
//! and are counted and skipped, as is anything that is not UDP.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use fragmenter::Timestamp;
use pcap_parser::nom;
use pcap_parser::pcapng::{parse_block_be, parse_block_le, Block};
use pcap_parser::{Linktype, PcapError as RawError};

/// Why a capture could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    /// Neither a pcap nor a pcapng file.
    #[error("not a pcap or pcapng capture: the first 4 bytes are {got:02X?} (expected a pcap magic such as D4 C3 B2 A1, or a pcapng section header 0A 0D 0D 0A)")]
    NotACapture {
        /// The first bytes.
        got: Vec<u8>,
    },
    /// A record or block is damaged (not merely cut short at the end).
    #[error("capture damaged at byte {offset}: {reason}")]
    Damaged {
        /// Byte offset of the record or block.
        offset: usize,
        /// What the parser said.
        reason: String,
    },
}

/// Counters of a [`PcapReader`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapStats {
    /// Packet records read.
    pub records: u64,
    /// UDP datagrams yielded.
    pub udp: u64,
    /// Records that are not IP (ARP, LLDP, …).
    pub non_ip: u64,
    /// IPv6 records.
    pub ipv6: u64,
    /// IPv4 records that are not UDP.
    pub non_udp: u64,
    /// IPv4 fragments.
    pub fragments: u64,
    /// Records cut short by the snap length.
    pub truncated: u64,
    /// Records with inconsistent header lengths.
    pub malformed: u64,
    /// Records of a link type this reader does not decode.
    pub unsupported_linktype: u64,
    /// The file ends inside a record (capture stopped mid-write).
    pub truncated_tail: bool,
}

/// One UDP datagram of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Capture time (UTC).
    pub timestamp: Timestamp,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The UDP payload.
    pub payload: &'a [u8],
}

impl UdpDatagram<'_> {
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.dst.port()
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: Linktype,
    /// Timestamp units per second.
    resolution: u64,
    /// Seconds added to every timestamp.
    offset_s: i64,
}

enum Source<'a> {
    Legacy {
        rest: &'a [u8],
        offset: usize,
        big_endian: bool,
        modified: bool,
        nanos: bool,
        linktype: Linktype,
    },
    Ng {
        rest: &'a [u8],
        offset: usize,
        /// Byte order of the current section (from its header block).
        big_endian: bool,
        interfaces: Vec<Interface>,
        last_ts: Timestamp,
    },
    Done,
}

/// Reads UDP datagrams from a whole capture held in memory.
pub struct PcapReader<'a> {
    data_len: usize,
    source: Source<'a>,
    stats: PcapStats,
}

impl std::fmt::Debug for PcapReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapReader")
            .field("len", &self.data_len)
            .field("stats", &self.stats)
            .finish()
    }
}

/// A raw record: capture time, link type, frame bytes.
type Record<'a> = (Timestamp, Linktype, &'a [u8]);

const PCAPNG_SHB: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

impl<'a> PcapReader<'a> {
    /// Open a capture (pcap in either byte order, µs or ns, or pcapng).
    pub fn new(data: &'a [u8]) -> Result<Self, PcapError> {
        let not = || PcapError::NotACapture {
            got: data[..data.len().min(4)].to_vec(),
        };
        let source = if data.starts_with(&PCAPNG_SHB) {
            let (_, shb) = pcap_parser::pcapng::parse_sectionheaderblock(data).map_err(|e| PcapError::Damaged {
                offset: 0,
                reason: format!("pcapng section header: {}", describe(&e)),
            })?;
            Source::Ng {
                rest: data,
                offset: 0,
                big_endian: shb.big_endian(),
                interfaces: Vec::new(),
                last_ts: Timestamp::EPOCH,
            }
        } else {
            let (rest, h) = pcap_parser::parse_pcap_header(data).map_err(|_| not())?;
            Source::Legacy {
                rest,
                offset: data.len() - rest.len(),
                big_endian: h.is_bigendian(),
                modified: h.is_modified_format(),
                nanos: h.is_nanosecond_precision(),
                linktype: h.network,
            }
        };
        Ok(PcapReader {
            data_len: data.len(),
            source,
            stats: PcapStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> &PcapStats {
        &self.stats
    }

    /// Read every UDP datagram. A file cut inside its last record is
    /// accepted (see [`PcapStats::truncated_tail`]); damage elsewhere is an
    /// error.
    pub fn read_all(data: &'a [u8]) -> Result<(Vec<UdpDatagram<'a>>, PcapStats), PcapError> {
        let mut r = PcapReader::new(data)?;
        let mut out = Vec::new();
        for d in &mut r {
            out.push(d?);
        }
        Ok((out, r.stats))
    }

    /// The next raw record: (time, link type, frame bytes).
    fn next_record(&mut self) -> Option<Result<Record<'a>, PcapError>> {
        loop {
            match &mut self.source {
                Source::Done => return None,
                Source::Legacy {
                    rest,
                    offset,
                    big_endian,
                    modified,
                    nanos,
                    linktype,
                } => {
                    if rest.is_empty() {
                        self.source = Source::Done;
                        return None;
                    }
                    let r = if *modified {
                        pcap_parser::parse_pcap_frame_modified(rest)
                    } else if *big_endian {
                        pcap_parser::parse_pcap_frame_be(rest)
                    } else {
                        pcap_parser::parse_pcap_frame(rest)
                    };
                    match r {
                        Ok((r2, b)) => {
                            *offset += rest.len() - r2.len();
                            *rest = r2;
                            let frac = if *nanos {
                                u64::from(b.ts_usec)
                            } else {
                                u64::from(b.ts_usec) * 1_000
                            };
                            let ns = u64::from(b.ts_sec).saturating_mul(1_000_000_000).saturating_add(frac);
                            let lt = *linktype;
                            self.stats.records += 1;
                            return Some(Ok((Timestamp::from_nanos(ns), lt, b.data)));
                        }
                        Err(nom::Err::Incomplete(_)) => {
                            self.stats.truncated_tail = true;
                            self.source = Source::Done;
                            return None;
                        }
                        Err(e) => {
                            let off = *offset;
                            self.source = Source::Done;
                            return Some(Err(PcapError::Damaged {
                                offset: off,
                                reason: describe(&e),
                            }));
                        }
                    }
                }
                Source::Ng {
                    rest,
                    offset,
                    big_endian,
                    interfaces,
                    last_ts,
                } => {
                    if rest.is_empty() {
                        self.source = Source::Done;
                        return None;
                    }
                    let parsed = if *big_endian {
                        parse_block_be(rest)
                    } else {
                        parse_block_le(rest)
                    };
                    let block = match parsed {
                        Ok((r2, b)) => {
                            *offset += rest.len() - r2.len();
                            *rest = r2;
                            b
                        }
                        Err(nom::Err::Incomplete(_)) | Err(nom::Err::Error(RawError::Incomplete(_))) => {
                            self.stats.truncated_tail = true;
                            self.source = Source::Done;
                            return None;
                        }
                        Err(e) => {
                            let off = *offset;
                            self.source = Source::Done;
                            return Some(Err(PcapError::Damaged {
                                offset: off,
                                reason: describe(&e),
                            }));
                        }
                    };
                    match block {
                        Block::SectionHeader(shb) => {
                            // A new section: its own byte order and interfaces.
                            *big_endian = shb.big_endian();
                            interfaces.clear();
                        }
                        Block::InterfaceDescription(idb) => interfaces.push(Interface {
                            linktype: idb.linktype,
                            // An invalid if_tsresol falls back to the
                            // pcapng default, microseconds.
                            resolution: idb.ts_resolution().filter(|&r| r > 0).unwrap_or(1_000_000),
                            offset_s: idb.ts_offset(),
                        }),
                        Block::EnhancedPacket(epb) => {
                            self.stats.records += 1;
                            let Some(iface) = interfaces.get(epb.if_id as usize).copied() else {
                                self.stats.malformed += 1;
                                continue;
                            };
                            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ns = u128::from(raw) * 1_000_000_000 / u128::from(iface.resolution);
                            let ns =
                                i128::try_from(ns).unwrap_or(i128::MAX) + i128::from(iface.offset_s) * 1_000_000_000;
                            let ts = Timestamp::from_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX));
                            *last_ts = ts;
                            let data: &'a [u8] = epb.data;
                            let n = (epb.caplen as usize).min(data.len());
                            return Some(Ok((ts, iface.linktype, &data[..n])));
                        }
                        Block::SimplePacket(spb) => {
                            self.stats.records += 1;
                            // Simple packets carry no time: reuse the last.
                            let Some(iface) = interfaces.first().copied() else {
                                self.stats.malformed += 1;
                                continue;
                            };
                            let data: &'a [u8] = spb.data;
                            let n = (spb.origlen as usize).min(data.len());
                            return Some(Ok((*last_ts, iface.linktype, &data[..n])));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

fn describe<E: std::fmt::Debug>(e: &nom::Err<E>) -> String {
    let s = format!("{e:?}");
    // Parser errors can embed the remaining input: keep messages short.
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

impl<'a> Iterator for PcapReader<'a> {
    type Item = Result<UdpDatagram<'a>, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (ts, lt, frame) = match self.next_record()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            match decode_frame(lt, frame) {
                Ok((src, dst, payload)) => {
                    self.stats.udp += 1;
                    return Some(Ok(UdpDatagram {
                        timestamp: ts,
                        src: SocketAddr::V4(src),
                        dst: SocketAddr::V4(dst),
                        payload,
                    }));
                }
                Err(skip) => match skip {
                    Skip::NonIp => self.stats.non_ip += 1,
                    Skip::Ipv6 => self.stats.ipv6 += 1,
                    Skip::NonUdp => self.stats.non_udp += 1,
                    Skip::Fragment => self.stats.fragments += 1,
                    Skip::Truncated => self.stats.truncated += 1,
                    Skip::Malformed => self.stats.malformed += 1,
                    Skip::Linktype => self.stats.unsupported_linktype += 1,
                },
            }
        }
    }
}

enum Skip {
    NonIp,
    Ipv6,
    NonUdp,
    Fragment,
    Truncated,
    Malformed,
    Linktype,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
const LINKTYPE_LINUX_SLL2: i32 = 276;

fn be16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(o)?, *b.get(o + 1)?]))
}

/// Link layer → (ethertype, network-layer bytes).
fn link_payload(lt: Linktype, f: &[u8]) -> Result<(u16, &[u8]), Skip> {
    match lt.0 {
        // Ethernet, possibly VLAN-tagged (at most two tags: 802.1ad + Q).
        1 => {
            let mut et = be16(f, 12).ok_or(Skip::Truncated)?;
            let mut off = 14;
            for _ in 0..2 {
                if et == ETHERTYPE_VLAN || et == ETHERTYPE_QINQ {
                    et = be16(f, off + 2).ok_or(Skip::Truncated)?;
                    off += 4;
                }
            }
            Ok((et, f.get(off..).ok_or(Skip::Truncated)?))
        }
        // Linux cooked capture v1: protocol at 14, payload at 16.
        113 => Ok((be16(f, 14).ok_or(Skip::Truncated)?, f.get(16..).ok_or(Skip::Truncated)?)),
        LINKTYPE_LINUX_SLL2 => Ok((be16(f, 0).ok_or(Skip::Truncated)?, f.get(20..).ok_or(Skip::Truncated)?)),
        // BSD loopback: a 4-byte address family in the writer's byte order.
        0 => {
            let fam = f.get(..4).ok_or(Skip::Truncated)?;
            let le = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let be = u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let et = if le == 2 || be == 2 { ETHERTYPE_IPV4 } else { 0 };
            Ok((et, &f[4..]))
        }
        // Raw IP: the version nibble says which.
        101 | 228 | 12 | 14 => {
            let v = f.first().ok_or(Skip::Truncated)? >> 4;
            Ok((
                match v {
                    4 => ETHERTYPE_IPV4,
                    6 => ETHERTYPE_IPV6,
                    _ => 0,
                },
                f,
            ))
        }
        _ => Err(Skip::Linktype),
    }
}

/// Decode link, IPv4 and UDP headers down to the UDP payload.
fn decode_frame(lt: Linktype, f: &[u8]) -> Result<(SocketAddrV4, SocketAddrV4, &[u8]), Skip> {
    let (et, ip) = link_payload(lt, f)?;
    match et {
        ETHERTYPE_IPV4 => {}
        ETHERTYPE_IPV6 => return Err(Skip::Ipv6),
        _ => return Err(Skip::NonIp),
    }
    let v_ihl = *ip.first().ok_or(Skip::Truncated)?;
    if v_ihl >> 4 != 4 {
        return Err(Skip::Malformed);
    }
    let ihl = usize::from(v_ihl & 0x0F) * 4;
    if ihl < 20 {
        return Err(Skip::Malformed);
    }
    if ip.len() < ihl {
        return Err(Skip::Truncated);
    }
    let total = usize::from(be16(ip, 2).ok_or(Skip::Truncated)?);
    if total < ihl {
        return Err(Skip::Malformed);
    }
    // Ethernet pads short frames: trust the IP length, not the frame's.
    if ip.len() < total {
        return Err(Skip::Truncated);
    }
    let flags_frag = be16(ip, 6).ok_or(Skip::Truncated)?;
    if flags_frag & 0x3FFF != 0 {
        // More-fragments set or a non-zero offset.
        return Err(Skip::Fragment);
    }
    if ip[9] != 17 {
        return Err(Skip::NonUdp);
    }
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = &ip[ihl..total];
    let sport = be16(udp, 0).ok_or(Skip::Truncated)?;
    let dport = be16(udp, 2).ok_or(Skip::Truncated)?;
    let ulen = usize::from(be16(udp, 4).ok_or(Skip::Truncated)?);
    if ulen < 8 || ulen > udp.len() {
        return Err(Skip::Malformed);
    }
    Ok((
        SocketAddrV4::new(src_ip, sport),
        SocketAddrV4::new(dst_ip, dport),
        &udp[8..ulen],
    ))
}

/// Why a replay could not be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// The speed factor is not a positive number.
    #[error(
        "replay speed {0} is invalid: expected a number above 0 (1 = real time, 2 = twice as fast, inf = no pauses)"
    )]
    Speed(f64),
}

/// One datagram to send, after waiting `delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayItem<'a> {
    /// Time to wait after sending the previous datagram.
    pub delay: Duration,
    /// The UDP payload.
    pub payload: &'a [u8],
    /// Original destination port (to map 7502/7503/2368 onto the target).
    pub dst_port: u16,
    /// Original capture time.
    pub timestamp: Timestamp,
}

/// Datagrams with the pauses that reproduce the capture's timing at a
/// speed factor, optionally looping forever.
#[derive(Clone, Debug)]
pub struct Replayer<'a> {
    datagrams: Vec<UdpDatagram<'a>>,
    speed: f64,
    looping: bool,
    next: usize,
    prev: Option<Timestamp>,
}

impl<'a> Replayer<'a> {
    /// Replay `datagrams` at `speed` (> 0; `f64::INFINITY` = no pauses).
    pub fn new(datagrams: Vec<UdpDatagram<'a>>, speed: f64, looping: bool) -> Result<Self, ReplayError> {
        if speed.is_nan() || speed <= 0.0 {
            return Err(ReplayError::Speed(speed));
        }
        Ok(Replayer {
            datagrams,
            speed,
            looping,
            next: 0,
            prev: None,
        })
    }

    /// Read a capture and replay its UDP datagrams.
    pub fn from_capture(
        data: &'a [u8],
        speed: f64,
        looping: bool,
    ) -> Result<(Self, PcapStats), ReplayFromCaptureError> {
        let (d, stats) = PcapReader::read_all(data)?;
        Ok((Replayer::new(d, speed, looping)?, stats))
    }

    /// Keep only datagrams sent to these ports.
    pub fn only_ports(mut self, ports: &[u16]) -> Self {
        self.datagrams.retain(|d| ports.contains(&d.dst_port()));
        self
    }

    /// Datagrams per pass.
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// No datagrams at all.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    fn scaled(&self, gap: Duration) -> Duration {
        Duration::try_from_secs_f64(gap.as_secs_f64() / self.speed).unwrap_or(Duration::MAX)
    }
}

/// [`Replayer::from_capture`] failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayFromCaptureError {
    /// The capture.
    #[error(transparent)]
    Capture(#[from] PcapError),
    /// The speed.
    #[error(transparent)]
    Speed(#[from] ReplayError),
}

impl<'a> Iterator for Replayer<'a> {
    type Item = ReplayItem<'a>;

    fn next(&mut self) -> Option<ReplayItem<'a>> {
        if self.datagrams.is_empty() {
            return None;
        }
        let mut restarted = false;
        if self.next >= self.datagrams.len() {
            if !self.looping {
                return None;
            }
            self.next = 0;
            restarted = true;
        }
        let d = self.datagrams[self.next];
        self.next += 1;
        let gap = if restarted {
            // Between passes, wait one mean inter-datagram gap so the rate
            // stays steady across the seam.
            let n = self.datagrams.len();
            let span = self.datagrams[n - 1]
                .timestamp
                .saturating_since(self.datagrams[0].timestamp);
            if n > 1 {
                span / (n as u32 - 1).max(1)
            } else {
                Duration::ZERO
            }
        } else {
            // Out-of-order capture times give no pause rather than a wrap.
            self.prev.map_or(Duration::ZERO, |p| d.timestamp.saturating_since(p))
        };
        self.prev = Some(d.timestamp);
        Some(ReplayItem {
            delay: self.scaled(gap),
            payload: d.payload,
            dst_port: d.dst_port(),
            timestamp: d.timestamp,
        })
    }
}

/// Build a classic little-endian µs pcap of Ethernet/IPv4/UDP records
/// (tests and fixtures).
pub fn write_pcap(records: &[(Timestamp, u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (ts, port, payload) in records {
        let f = ethernet_udp([192, 168, 1, 201], [192, 168, 1, 100], 40_000, *port, payload);
        let ns = ts.as_nanos();
        out.extend_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ns % 1_000_000_000 / 1_000) as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    out
}

/// An Ethernet frame carrying one IPv4/UDP datagram (checksums zero).
pub fn ethernet_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: u64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn written_captures_read_back() {
        let a = [1u8, 2, 3];
        let b = vec![7u8; 2000];
        let file = write_pcap(&[(ts(0), 2368, &a), (ts(10), 7502, &b)]);
        let (d, s) = PcapReader::read_all(&file).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].payload, &a);
        assert_eq!(d[0].dst_port(), 2368);
        assert_eq!(d[0].src, "192.168.1.201:40000".parse().unwrap());
        assert_eq!(d[1].payload, b.as_slice());
        assert_eq!(d[1].timestamp, ts(10));
        assert_eq!(s.records, 2);
        assert_eq!(s.udp, 2);
        assert!(!s.truncated_tail);
    }

    #[test]
    fn non_udp_fragments_and_short_records_are_counted() {
        let mut recs: Vec<Vec<u8>> = Vec::new();
        let mut tcp = ethernet_udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b"x");
        tcp[14 + 9] = 6;
        recs.push(tcp);
        let mut frag = ethernet_udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b"x");
        frag[14 + 6] = 0x20; // more fragments
        recs.push(frag);
        let mut arp = ethernet_udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b"x");
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        recs.push(arp);
        let cut = ethernet_udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, &[0; 100]);
        recs.push(cut[..60].to_vec());
        let mut bad_udp = ethernet_udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b"xy");
        bad_udp[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&500u16.to_be_bytes());
        recs.push(bad_udp);
        // An 802.1Q-tagged UDP frame is fine.
        let plain = ethernet_udp([1, 1, 1, 1], [2, 2, 2, 2], 1, 9, b"ok");
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&plain[12..]);
        recs.push(tagged);
        let mut file = write_pcap(&[]);
        for r in &recs {
            file.extend_from_slice(&0u32.to_le_bytes());
            file.extend_from_slice(&0u32.to_le_bytes());
            file.extend_from_slice(&(r.len() as u32).to_le_bytes());
            file.extend_from_slice(&(r.len() as u32).to_le_bytes());
            file.extend_from_slice(r);
        }
        // And a record cut by the end of the file.
        file.extend_from_slice(&[0; 10]);
        let (d, s) = PcapReader::read_all(&file).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].payload, b"ok");
        assert_eq!(
            (s.non_udp, s.fragments, s.non_ip, s.truncated, s.malformed),
            (1, 1, 1, 1, 1)
        );
        assert!(s.truncated_tail);
    }

    #[test]
    fn garbage_is_not_a_capture() {
        assert!(matches!(
            PcapReader::new(b"hello world"),
            Err(PcapError::NotACapture { .. })
        ));
        assert!(matches!(PcapReader::new(b""), Err(PcapError::NotACapture { .. })));
    }

    #[test]
    fn pcapng_is_read_too() {
        fn block(t: u32, body: &[u8]) -> Vec<u8> {
            let len = 12 + body.len().div_ceil(4) * 4;
            let mut b = t.to_le_bytes().to_vec();
            b.extend_from_slice(&(len as u32).to_le_bytes());
            b.extend_from_slice(body);
            b.resize(len - 4, 0);
            b.extend_from_slice(&(len as u32).to_le_bytes());
            b
        }
        let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut idb = 1u16.to_le_bytes().to_vec();
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&65_535u32.to_le_bytes());
        let frame = ethernet_udp([10, 0, 0, 1], [10, 0, 0, 2], 5, 7502, b"ouster");
        let t_us: u64 = 1_700_000_000_123_456;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((t_us >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(t_us as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&frame);
        epb.resize(20 + frame.len().div_ceil(4) * 4, 0);
        let mut file = block(0x0A0D_0D0A, &shb);
        file.extend(block(1, &idb));
        let epb_at = file.len();
        file.extend(block(6, &epb));
        let (d, s) = PcapReader::read_all(&file).unwrap();
        assert_eq!(d.len(), 1, "{s:?}");
        assert_eq!(d[0].payload, b"ouster");
        assert_eq!(d[0].timestamp.as_nanos(), t_us * 1_000);
        // Cut inside the last block: accepted, flagged.
        let (d, s) = PcapReader::read_all(&file[..file.len() - 5]).unwrap();
        assert!(d.is_empty() && s.truncated_tail);
        // Trailing length differing from the leading one: damaged, with where.
        let mut bad = file.clone();
        let n = bad.len();
        bad[n - 4] ^= 0x04;
        let e = PcapReader::read_all(&bad).unwrap_err();
        assert!(
            matches!(e, PcapError::Damaged { offset, .. } if offset == epb_at),
            "{e}"
        );
    }

    #[test]
    fn replay_paces_by_capture_time_and_loops() {
        let p = [0u8; 4];
        let file = write_pcap(&[(ts(0), 7502, &p), (ts(10), 7503, &p), (ts(30), 7502, &p)]);
        let (r, _) = Replayer::from_capture(&file, 2.0, false).unwrap();
        let d: Vec<Duration> = r.map(|i| i.delay).collect();
        assert_eq!(
            d,
            vec![Duration::ZERO, Duration::from_millis(5), Duration::from_millis(10)]
        );
        let (r, _) = Replayer::from_capture(&file, 1.0, true).unwrap();
        let items: Vec<ReplayItem> = r.only_ports(&[7502]).take(5).collect();
        assert_eq!(items.len(), 5);
        assert_eq!(items[1].delay, Duration::from_millis(30));
        assert_eq!(items[2].delay, Duration::from_millis(30)); // the seam: mean gap
        assert!(items.iter().all(|i| i.dst_port == 7502));
        let (r, _) = Replayer::from_capture(&file, f64::INFINITY, false).unwrap();
        assert!(r.map(|i| i.delay).all(|d| d.is_zero()));
        for bad in [0.0, -1.0, f64::NAN] {
            assert!(Replayer::new(Vec::new(), bad, false).is_err());
        }
        assert_eq!(Replayer::new(Vec::new(), 1.0, true).unwrap().next(), None);
    }
}
