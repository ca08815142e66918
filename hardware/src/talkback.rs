//! Talkback: Opus RTP from a WebRTC viewer's microphone, decoded and played
//! on the device (a speaker, a file, any GStreamer sink).
//!
//! The packets go through `rtpjitterbuffer`, which reorders them and
//! conceals gaps, so the output keeps time even on a lossy Wi-Fi link.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Where talkback audio goes, as configured (`streams[].talkback`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TalkbackSink {
    /// Not played.
    None,
    /// The system's default output (`autoaudiosink`).
    Auto,
    /// An ALSA device, e.g. `hw:1`.
    Alsa(String),
    /// PulseAudio / PipeWire's default sink.
    Pulse,
    /// A WAV file (written whole when the viewer stops talking).
    File(PathBuf),
    /// A GStreamer description of a sink taking raw audio.
    Pipeline(String),
}

/// A talkback setting that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected none, auto, alsa:DEVICE, pulse, file:PATH.wav or pipeline:GST-SINK ({0})")]
pub struct TalkbackSinkError(String);

impl FromStr for TalkbackSink {
    type Err = TalkbackSinkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let need = |v: &str, what: &str| {
            if v.trim().is_empty() {
                Err(TalkbackSinkError(format!("{what} is empty")))
            } else {
                Ok(v.to_owned())
            }
        };
        Ok(match s {
            "none" => TalkbackSink::None,
            "auto" => TalkbackSink::Auto,
            "pulse" => TalkbackSink::Pulse,
            _ => {
                if let Some(d) = s.strip_prefix("alsa:") {
                    TalkbackSink::Alsa(need(d, "the ALSA device")?)
                } else if let Some(p) = s.strip_prefix("file:") {
                    TalkbackSink::File(PathBuf::from(need(p, "the file path")?))
                } else if let Some(p) = s.strip_prefix("pipeline:") {
                    TalkbackSink::Pipeline(need(p, "the pipeline")?)
                } else {
                    return Err(TalkbackSinkError(format!("{s:?} is none of these")));
                }
            }
        })
    }
}

impl fmt::Display for TalkbackSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TalkbackSink::None => f.write_str("none"),
            TalkbackSink::Auto => f.write_str("auto"),
            TalkbackSink::Alsa(d) => write!(f, "alsa:{d}"),
            TalkbackSink::Pulse => f.write_str("pulse"),
            TalkbackSink::File(p) => write!(f, "file:{}", p.display()),
            TalkbackSink::Pipeline(p) => write!(f, "pipeline:{p}"),
        }
    }
}

impl TalkbackSink {
    fn description(&self) -> Option<String> {
        // Properties are quoted for gst-launch syntax; a path with a quote
        // in it is refused by GStreamer's parser with its own message.
        Some(match self {
            TalkbackSink::None => return None,
            TalkbackSink::Auto => "autoaudiosink".into(),
            TalkbackSink::Alsa(d) => format!("alsasink device=\"{d}\""),
            TalkbackSink::Pulse => "pulsesink".into(),
            TalkbackSink::File(p) => format!("wavenc ! filesink location=\"{}\"", p.display()),
            TalkbackSink::Pipeline(p) => p.clone(),
        })
    }
}

/// Why a talkback player could not start.
#[derive(Debug, thiserror::Error)]
pub enum TalkbackError {
    /// Configured as `none`.
    #[error("this stream has no talkback output (talkback = \"none\")")]
    Disabled,
    /// GStreamer refused the pipeline.
    #[error("talkback pipeline {pipeline:?}: {message}")]
    Pipeline {
        /// The description.
        pipeline: String,
        /// GStreamer's message.
        message: String,
    },
}

/// A running talkback player: push RTP, drop (or [`finish`](Self::finish))
/// to end it.
pub struct TalkbackPlayer {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    packets: u64,
}

impl TalkbackPlayer {
    /// Start playing into `sink`.
    pub fn start(sink: &TalkbackSink) -> Result<Self, TalkbackError> {
        let out = sink.description().ok_or(TalkbackError::Disabled)?;
        let description = format!(
            "appsrc name=src is-live=true do-timestamp=true format=time \
             ! rtpjitterbuffer latency=60 ! rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample \
             ! {out}"
        );
        let error = |message: String| TalkbackError::Pipeline {
            pipeline: description.clone(),
            message,
        };
        gst::init().map_err(|e| error(e.to_string()))?;
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| error(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| error("not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| error("no appsrc".into()))?;
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            // A busy sound card: release what did start.
            let _ = pipeline.set_state(gst::State::Null);
            return Err(error(format!("cannot play: {e}")));
        }
        Ok(TalkbackPlayer {
            pipeline,
            src,
            packets: 0,
        })
    }

    /// One RTP packet (header included) of Opus.
    pub fn push_rtp(&mut self, packet: &[u8]) {
        if packet.len() < 12 {
            return;
        }
        if self.packets == 0 {
            // The caps name the payload type the viewer negotiated (111 in
            // Chromium, 109 in Firefox): the jitter buffer drops packets
            // of any other.
            let caps = gst::Caps::builder("application/x-rtp")
                .field("media", "audio")
                .field("clock-rate", 48_000i32)
                .field("encoding-name", "OPUS")
                .field("payload", i32::from(packet[1] & 0x7f))
                .build();
            self.src.set_caps(Some(&caps));
        }
        self.packets += 1;
        let _ = self.src.push_buffer(gst::Buffer::from_slice(packet.to_vec()));
    }

    /// Packets pushed so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// End the stream and wait (up to 2 s) for the sink to finish, so a
    /// file is complete.
    pub fn finish(self) {
        // Drop does the work.
    }

    fn stop(&mut self) {
        let _ = self.src.end_of_stream();
        if let Some(bus) = self.pipeline.bus() {
            let _ = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(Duration::from_secs(2).as_millis() as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for TalkbackPlayer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_print_back() {
        for s in [
            "none",
            "auto",
            "pulse",
            "alsa:hw:1",
            "file:/tmp/t.wav",
            "pipeline:fakesink",
        ] {
            assert_eq!(s.parse::<TalkbackSink>().unwrap().to_string(), s);
        }
        for bad in ["", "speaker", "file:", "alsa: "] {
            let e = bad.parse::<TalkbackSink>().unwrap_err().to_string();
            assert!(e.contains("expected none, auto"), "{e}");
        }
        assert!(matches!(
            TalkbackPlayer::start(&TalkbackSink::None),
            Err(TalkbackError::Disabled)
        ));
    }

    #[test]
    fn opus_rtp_is_decoded_into_a_wav_file() {
        // Real Opus from GStreamer's own encoder and payloader, as a browser
        // would send it, played into a file. Payload type 109 is Firefox's:
        // whatever the viewer negotiated is played.
        gst::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("talk.wav");
        let source = gst::parse::launch(
            "audiotestsrc num-buffers=50 samplesperbuffer=960 freq=440 ! audio/x-raw,rate=48000,channels=2 \
             ! opusenc ! rtpopuspay pt=109 ! appsink name=out sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let out = source.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
        source.set_state(gst::State::Playing).unwrap();
        let mut player = TalkbackPlayer::start(&TalkbackSink::File(wav.clone())).unwrap();
        while let Ok(sample) = out.pull_sample() {
            let buf = sample.buffer().unwrap().map_readable().unwrap();
            player.push_rtp(&buf);
            // Live pacing: the jitter buffer expects packets about in time.
            std::thread::sleep(Duration::from_millis(5));
        }
        source.set_state(gst::State::Null).unwrap();
        assert!(player.packets() >= 50, "{} packets", player.packets());
        player.finish();
        let bytes = std::fs::read(&wav).unwrap();
        assert_eq!(&bytes[..4], b"RIFF", "not a WAV file");
        let samples: Vec<i16> = bytes[44..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert!(samples.len() > 48_000 / 4, "{} samples", samples.len());
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 3000, "the decoded tone is silent (peak {peak})");
    }
}
