//! Tracks and fragment metadata as stored in the index: a small versioned
//! binary form, so a reader rebuilds exactly the [`Track`]s (codec private
//! data included) that a fragment was written with.

use bytes::Bytes;
use fragmenter::codec::g711::Law;
use fragmenter::fragment::Metadata;
use fragmenter::media::{
    AudioCodec, AudioTrack, SensorCodecId, SensorKind, SensorTrack, TrackMedia, VideoCodec, VideoTrack,
};
use fragmenter::{Track, TrackId};

use super::frame_index::{get_varint, put_varint};

const TRACKS_VERSION: u8 = 1;

/// Tracks to bytes.
pub(crate) fn encode_tracks(tracks: &[Track]) -> Vec<u8> {
    let mut b = vec![TRACKS_VERSION, tracks.len() as u8];
    for t in tracks {
        b.push(t.id.get());
        put_bytes(&mut b, t.name.as_bytes());
        match &t.media {
            TrackMedia::Video(v) => {
                b.push(0);
                match &v.codec {
                    VideoCodec::H264 { avcc } => {
                        b.push(0);
                        put_bytes(&mut b, avcc);
                    }
                    VideoCodec::H265 { hvcc } => {
                        b.push(1);
                        put_bytes(&mut b, hvcc);
                    }
                }
                put_varint(&mut b, v.width.into());
                put_varint(&mut b, v.height.into());
            }
            TrackMedia::Audio(a) => {
                b.push(1);
                match &a.codec {
                    AudioCodec::Aac { asc } => {
                        b.push(0);
                        put_bytes(&mut b, asc);
                    }
                    AudioCodec::Opus { pre_skip } => {
                        b.push(1);
                        put_varint(&mut b, (*pre_skip).into());
                    }
                    AudioCodec::G711(law) => {
                        b.push(2);
                        b.push(match law {
                            Law::ALaw => 0,
                            Law::MuLaw => 1,
                        });
                    }
                }
                put_varint(&mut b, a.sample_rate.into());
                b.push(a.channels);
            }
            TrackMedia::Sensor(s) => {
                b.push(2);
                b.push(match s.kind {
                    SensorKind::Lidar => 0,
                    SensorKind::Radar => 1,
                    SensorKind::Data => 2,
                });
                put_bytes(&mut b, s.codec_id.as_str().as_bytes());
                put_bytes(&mut b, &s.private);
            }
        }
    }
    b
}

/// Bytes to tracks; `Err` says what did not parse.
pub(crate) fn decode_tracks(b: &[u8]) -> Result<Vec<Track>, String> {
    let mut r = Reader { b, pos: 0 };
    let v = r.u8()?;
    if v != TRACKS_VERSION {
        return Err(format!("track set version {v}, expected {TRACKS_VERSION}"));
    }
    let n = r.u8()?;
    let mut out = Vec::with_capacity(n.into());
    for _ in 0..n {
        let id = TrackId::new(r.u8()?).map_err(|e| e.to_string())?;
        let name = r.string()?;
        let media: TrackMedia = match r.u8()? {
            0 => {
                let codec = match r.u8()? {
                    0 => VideoCodec::H264 { avcc: r.bytes()? },
                    1 => VideoCodec::H265 { hvcc: r.bytes()? },
                    c => return Err(format!("unknown video codec {c}")),
                };
                VideoTrack {
                    codec,
                    width: r.u32()?,
                    height: r.u32()?,
                }
                .into()
            }
            1 => {
                let codec = match r.u8()? {
                    0 => AudioCodec::Aac { asc: r.bytes()? },
                    1 => AudioCodec::Opus {
                        pre_skip: u16::try_from(r.varint()?).map_err(|_| "pre_skip overflows")?,
                    },
                    2 => AudioCodec::G711(match r.u8()? {
                        0 => Law::ALaw,
                        1 => Law::MuLaw,
                        l => return Err(format!("unknown G.711 law {l}")),
                    }),
                    c => return Err(format!("unknown audio codec {c}")),
                };
                AudioTrack {
                    codec,
                    sample_rate: r.u32()?,
                    channels: r.u8()?,
                }
                .into()
            }
            2 => {
                let kind = match r.u8()? {
                    0 => SensorKind::Lidar,
                    1 => SensorKind::Radar,
                    2 => SensorKind::Data,
                    k => return Err(format!("unknown sensor kind {k}")),
                };
                let codec_id = SensorCodecId::new(&r.string()?).map_err(|e| e.to_string())?;
                SensorTrack {
                    kind,
                    codec_id,
                    private: r.bytes()?,
                }
                .into()
            }
            k => return Err(format!("unknown track kind {k}")),
        };
        // Not Track::new: the name was already cut when first stored.
        out.push(Track { id, name, media });
    }
    Ok(out)
}

/// Fragment metadata (KVS tags) to bytes; empty for none.
pub(crate) fn encode_metadata(m: &[Metadata]) -> Vec<u8> {
    let mut b = Vec::new();
    if m.is_empty() {
        return b;
    }
    put_varint(&mut b, m.len() as u64);
    for item in m {
        put_bytes(&mut b, item.name.as_bytes());
        put_bytes(&mut b, item.value.as_bytes());
    }
    b
}

pub(crate) fn decode_metadata(b: &[u8]) -> Result<Vec<Metadata>, String> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader { b, pos: 0 };
    let n = r.varint()?;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Metadata {
            name: r.string()?,
            value: r.string()?,
        });
    }
    Ok(out)
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    put_varint(b, v.len() as u64);
    b.extend_from_slice(v);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, String> {
        let v = *self
            .b
            .get(self.pos)
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        self.pos += 1;
        Ok(v)
    }
    fn varint(&mut self) -> Result<u64, String> {
        let at = self.pos;
        get_varint(self.b, &mut self.pos).ok_or_else(|| format!("bad varint at byte {at}"))
    }
    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| format!("value overflows at byte {}", self.pos))
    }
    fn slice(&mut self) -> Result<&[u8], String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "length overflows".to_owned())?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| format!("{n} bytes at byte {} run past the end", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn bytes(&mut self) -> Result<Bytes, String> {
        Ok(Bytes::copy_from_slice(self.slice()?))
    }
    fn string(&mut self) -> Result<String, String> {
        let at = self.pos;
        String::from_utf8(self.slice()?.to_vec()).map_err(|_| format!("invalid UTF-8 at byte {at}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_track_kind_round_trips() {
        let id = |n| TrackId::new(n).unwrap();
        let sets = vec![
            vec![
                Track::new(
                    id(1),
                    "video",
                    VideoTrack {
                        codec: VideoCodec::H265 {
                            hvcc: Bytes::from_static(&[1, 2, 3]),
                        },
                        width: 1920,
                        height: 1080,
                    },
                ),
                Track::new(
                    id(2),
                    "audio",
                    AudioTrack {
                        codec: AudioCodec::Opus { pre_skip: 312 },
                        sample_rate: 48_000,
                        channels: 2,
                    },
                ),
                Track::new(
                    id(3),
                    "lidar",
                    SensorTrack {
                        kind: SensorKind::Lidar,
                        codec_id: SensorCodecId::new("O_OUSTER/LIDAR_PACKET").unwrap(),
                        private: Bytes::from_static(b"{}"),
                    },
                ),
            ],
            vec![
                Track::new(
                    id(1),
                    "v",
                    VideoTrack {
                        codec: VideoCodec::H264 {
                            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f]),
                        },
                        width: 640,
                        height: 360,
                    },
                ),
                Track::new(
                    id(2),
                    "a",
                    AudioTrack {
                        codec: AudioCodec::Aac {
                            asc: Bytes::from_static(&[0x11, 0x90]),
                        },
                        sample_rate: 48_000,
                        channels: 2,
                    },
                ),
            ],
            vec![Track::new(
                id(1),
                "pcmu",
                AudioTrack {
                    codec: AudioCodec::G711(Law::MuLaw),
                    sample_rate: 8000,
                    channels: 1,
                },
            )],
        ];
        for s in sets {
            assert_eq!(decode_tracks(&encode_tracks(&s)).unwrap(), s);
        }
        let m = vec![Metadata {
            name: "site".into(),
            value: "north gate".into(),
        }];
        assert_eq!(decode_metadata(&encode_metadata(&m)).unwrap(), m);
        assert!(decode_tracks(&[1, 1, 1, 200]).unwrap_err().contains("byte"));
    }
}
