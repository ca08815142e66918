//! Talkback: a viewer's microphone played on the device. Playback only
//! receives the RTP; the agent supplies the output (a GStreamer sink, and
//! optionally a recorded track), so this crate needs no GStreamer.

use bytes::Bytes;

/// Opens a stream's talkback output.
pub trait TalkbackOutputs: Send + Sync {
    /// An output for `stream`, or `None` when the stream has none
    /// configured or another viewer is talking (the output says which in
    /// its error).
    fn open(&self, stream: &str) -> Result<Box<dyn TalkbackOutput>, String>;
}

/// One RTP packet of Opus (RFC 7587) from a viewer, as received and as the
/// WebRTC stack already parsed it.
#[derive(Clone, Debug)]
pub struct TalkbackPacket {
    /// The whole packet, header included (a jitter buffer reorders and
    /// times packets by it).
    pub rtp: Bytes,
    /// Its RTP timestamp (48 kHz).
    pub timestamp: u32,
    /// Its payload: one Opus packet.
    pub payload: Bytes,
}

/// One viewer's talkback while it lasts; dropping it ends the output
/// cleanly (a WAV file gets its header, a recording its last fragment).
pub trait TalkbackOutput: Send {
    /// The next packet.
    fn push(&mut self, packet: TalkbackPacket);
}
