//! A streaming Matroska writer with the layout Kinesis Video Streams accepts.
//!
//! One EBML header and one Segment of unknown size, then Info and Tracks,
//! then one Cluster of unknown size per fragment holding SimpleBlocks, each
//! Cluster followed by a Tags element when the fragment has metadata. Sizes
//! are "unknown" where the SDK writes them so, which is what makes the output
//! streamable: a frame's bytes can go on the wire the moment the frame
//! arrives, without knowing how long its Cluster will be.

use bytes::Bytes;

use super::ebml::{self, id};
use super::MkvError;
use crate::fragment::{FragmentEvent, Metadata};
use crate::media::{AudioCodec, Frame, Timestamp, Track, TrackMedia};
use crate::sink::ByteSink;

/// Header fields of the written file.
#[derive(Clone, Debug)]
pub struct MkvWriterOptions {
    /// Matroska SegmentUID.
    pub segment_uid: [u8; 16],
    /// Nanoseconds per timecode tick; KVS and the SDK use 1 ms.
    pub timecode_scale_ns: u64,
    /// Info Title, when set.
    pub title: Option<String>,
    /// Info MuxingApp and WritingApp.
    pub app: String,
}

impl Default for MkvWriterOptions {
    fn default() -> Self {
        MkvWriterOptions {
            segment_uid: [0; 16],
            timecode_scale_ns: 1_000_000,
            title: None,
            app: concat!("edge-agent ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Writes tracks and fragments as Matroska, one call per header, cluster
/// and frame.
#[derive(Debug)]
pub struct MkvWriter {
    tracks: Vec<Track>,
    opts: MkvWriterOptions,
    cluster_tick: Option<u64>,
    header_written: bool,
}

impl MkvWriter {
    /// A writer for these tracks.
    pub fn new(tracks: &[Track], opts: MkvWriterOptions) -> Result<Self, MkvError> {
        if opts.timecode_scale_ns == 0 {
            return Err(MkvError::TimecodeScale(0));
        }
        Ok(MkvWriter {
            tracks: tracks.to_vec(),
            opts,
            cluster_tick: None,
            header_written: false,
        })
    }

    /// The tracks written in the header.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The Matroska tick of a timestamp (rounded down).
    pub fn tick(&self, t: Timestamp) -> u64 {
        t.as_nanos() / self.opts.timecode_scale_ns
    }

    /// EBML header, Segment (unknown size), Info and Tracks. A PutMedia
    /// connection starts with this; so does every file.
    pub fn write_header(&mut self, sink: &mut impl ByteSink) {
        let mut ebml_body = Vec::with_capacity(40);
        ebml::put_uint(&mut ebml_body, id::EBML_VERSION, 1);
        ebml::put_uint(&mut ebml_body, id::EBML_READ_VERSION, 1);
        ebml::put_uint(&mut ebml_body, id::EBML_MAX_ID_LENGTH, 4);
        ebml::put_uint(&mut ebml_body, id::EBML_MAX_SIZE_LENGTH, 8);
        ebml::put_bytes(&mut ebml_body, id::DOC_TYPE, b"matroska");
        // CodecDelay and SeekPreRoll (Opus) are DocTypeVersion 4 elements;
        // otherwise keep the SDK's 2.
        let has_opus = self
            .tracks
            .iter()
            .any(|t| matches!(&t.media, TrackMedia::Audio(a) if matches!(a.codec, AudioCodec::Opus { .. })));
        ebml::put_uint(&mut ebml_body, id::DOC_TYPE_VERSION, if has_opus { 4 } else { 2 });
        ebml::put_uint(&mut ebml_body, id::DOC_TYPE_READ_VERSION, 2);
        ebml::put_master(sink, id::EBML, &ebml_body);

        ebml::put_id(sink, id::SEGMENT);
        sink.put_slice(&[ebml::UNKNOWN_SIZE]);

        let mut info = Vec::with_capacity(96);
        ebml::put_bytes(&mut info, id::SEGMENT_UID, &self.opts.segment_uid);
        ebml::put_uint8(&mut info, id::TIMECODE_SCALE, self.opts.timecode_scale_ns);
        if let Some(title) = &self.opts.title {
            ebml::put_bytes(&mut info, id::TITLE, title.as_bytes());
        }
        ebml::put_bytes(&mut info, id::MUXING_APP, self.opts.app.as_bytes());
        ebml::put_bytes(&mut info, id::WRITING_APP, self.opts.app.as_bytes());
        ebml::put_master(sink, id::INFO, &info);

        let mut tracks = Vec::with_capacity(256);
        for t in &self.tracks {
            let entry = track_entry(t);
            ebml::put_master(&mut tracks, id::TRACK_ENTRY, &entry);
        }
        ebml::put_master(sink, id::TRACKS, &tracks);
        self.header_written = true;
        self.cluster_tick = None;
    }

    /// Open a Cluster (unknown size) whose timecode is `start`, the first
    /// frame's presentation time.
    pub fn start_cluster(&mut self, start: Timestamp, sink: &mut impl ByteSink) -> Result<(), MkvError> {
        if !self.header_written {
            return Err(MkvError::NoHeader);
        }
        let tick = self.tick(start);
        ebml::put_id(sink, id::CLUSTER);
        sink.put_slice(&[ebml::UNKNOWN_SIZE]);
        ebml::put_uint8(sink, id::TIMECODE, tick);
        self.cluster_tick = Some(tick);
        Ok(())
    }

    /// One SimpleBlock: 13 header bytes then the payload, passed to the sink
    /// as the frame's own `Bytes` (never copied by a zero-copy sink).
    #[inline]
    pub fn write_frame(&mut self, frame: &Frame, sink: &mut impl ByteSink) -> Result<(), MkvError> {
        let cluster = self.cluster_tick.ok_or(MkvError::NoCluster)?;
        let rel = self.tick(frame.pts) as i128 - cluster as i128;
        let rel = i16::try_from(rel).map_err(|_| MkvError::BlockTimecode {
            pts: frame.pts,
            relative: rel as i64,
        })?;
        if frame.track.index() >= self.tracks.len() {
            return Err(MkvError::UnknownTrack(frame.track.get().into()));
        }
        // The SDK writes SimpleBlock sizes as 8-byte vints; keep its layout.
        let size = frame.data.len() as u64 + 4;
        let mut h = [0u8; 13];
        h[0] = 0xA3;
        h[1..9].copy_from_slice(&(size | (1u64 << 56)).to_be_bytes());
        h[9] = 0x80 | frame.track.get();
        h[10..12].copy_from_slice(&rel.to_be_bytes());
        h[12] = if frame.keyframe { 0x80 } else { 0x00 };
        sink.put_slice(&h);
        sink.put_bytes(frame.data.clone());
        Ok(())
    }

    /// Close the Cluster; its metadata, if any, follows as a Tags element
    /// (the Tags after a Cluster belong to that fragment, as KVS reads it).
    pub fn end_cluster(&mut self, metadata: &[Metadata], sink: &mut impl ByteSink) {
        self.cluster_tick = None;
        if metadata.is_empty() {
            return;
        }
        let mut tag = Vec::new();
        for m in metadata {
            let mut simple = Vec::with_capacity(m.name.len() + m.value.len() + 20);
            put_fixed8(&mut simple, id::TAG_NAME, m.name.as_bytes());
            put_fixed8(&mut simple, id::TAG_STRING, m.value.as_bytes());
            ebml::put_master_fixed(&mut tag, id::SIMPLE_TAG, &simple, 8);
        }
        let mut tags = Vec::with_capacity(tag.len() + 12);
        ebml::put_master_fixed(&mut tags, id::TAG, &tag, 8);
        ebml::put_master_fixed(sink, id::TAGS, &tags, 8);
    }

    /// Write one fragmenter event.
    pub fn write_event(&mut self, event: &FragmentEvent, sink: &mut impl ByteSink) -> Result<(), MkvError> {
        match event {
            FragmentEvent::Start { start, .. } => self.start_cluster(*start, sink),
            FragmentEvent::Frame(f) => self.write_frame(f, sink),
            FragmentEvent::End(summary) => {
                self.end_cluster(&summary.metadata, sink);
                Ok(())
            }
        }
    }
}

fn put_fixed8(sink: &mut Vec<u8>, element: u32, body: &[u8]) {
    ebml::put_master_fixed(sink, element, body, 8);
}

fn track_entry(t: &Track) -> Vec<u8> {
    let mut e = Vec::with_capacity(128);
    ebml::put_uint(&mut e, id::TRACK_NUMBER, t.id.get().into());
    ebml::put_uint8(&mut e, id::TRACK_UID, t.id.get().into());
    let track_type = match &t.media {
        TrackMedia::Video(_) => 1,
        TrackMedia::Audio(_) => 2,
        // "complex": the type matching an O_ codec ID, and what the SDK
        // writes for its UNKNOWN track type.
        TrackMedia::Sensor(_) => 3,
    };
    ebml::put_uint(&mut e, id::TRACK_TYPE, track_type);
    ebml::put_uint(&mut e, id::FLAG_LACING, 0);
    if !t.name.is_empty() {
        ebml::put_bytes(&mut e, id::NAME, t.name.as_bytes());
    }
    ebml::put_bytes(&mut e, id::CODEC_ID, t.mkv_codec_id().as_bytes());
    let private: Bytes = t.codec_private();
    if !private.is_empty() {
        ebml::put_bytes(&mut e, id::CODEC_PRIVATE, &private);
    }
    match &t.media {
        TrackMedia::Video(v) => {
            let mut video = Vec::with_capacity(12);
            ebml::put_uint(&mut video, id::PIXEL_WIDTH, v.width.into());
            ebml::put_uint(&mut video, id::PIXEL_HEIGHT, v.height.into());
            ebml::put_master(&mut e, id::VIDEO, &video);
        }
        TrackMedia::Audio(a) => {
            if let AudioCodec::Opus { pre_skip } = a.codec {
                // Matroska's Opus mapping requires both: the decoder delay and
                // the 80 ms pre-roll a seek needs to converge.
                ebml::put_uint(&mut e, id::CODEC_DELAY, u64::from(pre_skip) * 1_000_000_000 / 48_000);
                ebml::put_uint(&mut e, id::SEEK_PRE_ROLL, 80_000_000);
            }
            let mut audio = Vec::with_capacity(20);
            ebml::put_float(&mut audio, id::SAMPLING_FREQUENCY, f64::from(a.sample_rate));
            ebml::put_uint(&mut audio, id::CHANNELS, a.channels.into());
            if let AudioCodec::G711(_) = a.codec {
                ebml::put_uint(&mut audio, id::BIT_DEPTH, 8);
            }
            ebml::put_master(&mut e, id::AUDIO, &audio);
        }
        TrackMedia::Sensor(_) => {}
    }
    e
}
