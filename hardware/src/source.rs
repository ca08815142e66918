//! What to capture, as written on a command line or in a config file (the
//! `video` and `audio` fields of a `[[streams]]` entry), and which codecs to
//! encode into.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where video comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoSource {
    /// `test`: a synthetic SMPTE pattern with a running-time overlay,
    /// encoded on the fly; needs no hardware.
    Test,
    /// `v4l2:/dev/videoN`: a V4L2 camera (USB UVC webcams). Native H.264 is
    /// passed through; MJPEG and raw formats are encoded.
    V4l2(PathBuf),
    /// `libcamera` or `libcamera:NAME`: a Raspberry Pi CSI camera through
    /// libcamerasrc (the first camera, or the one libcamera calls NAME).
    Libcamera(Option<String>),
    /// `argus:N`: a Jetson CSI camera through nvarguscamerasrc, sensor N.
    Argus(u32),
    /// `rtsp://…` or `rtsps://…`: an IP camera; H.264/H.265 and its audio
    /// (AAC, G.711, Opus) are passed through.
    Rtsp(String),
    /// `file:PATH`: an H.264 or H.265 file (MP4, Matroska, MPEG-TS...),
    /// played as fast as possible without re-encoding.
    File(PathBuf),
    /// `pipeline:DESC`: the user's own gst-launch description. Each of its
    /// chains ends unlinked; edge-agent links every output by what it
    /// carries: H.264/H.265 passed through, raw video and MJPEG encoded,
    /// AAC/Opus/G.711 passed through and raw audio encoded (when
    /// `audio = source`). End a chain whose output could be anything (a
    /// `queue`, a `decodebin`) with `capsfilter caps=video/x-raw` or the
    /// like, so edge-agent can tell what it is before it runs.
    Pipeline(String),
}

/// Where audio comes from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AudioSource {
    /// `test`: a 440 Hz sine.
    Test,
    /// `none`: no audio track.
    None,
    /// `source`: whatever the video source carries: a file's or an RTSP
    /// camera's own audio (passed through), a user pipeline's audio output,
    /// the test tone for the test source, nothing for cameras.
    #[default]
    FromSource,
    /// `alsa:DEVICE`: an ALSA capture device, e.g. `alsa:hw:1` or
    /// `alsa:hw:1,0` (see `arecord -l`).
    Alsa(String),
    /// `pulse` or `pulse:DEVICE`: the PulseAudio (or PipeWire) default
    /// source, or a named one (see `pactl list sources short`).
    Pulse(Option<String>),
}

/// A video codec to encode into (sources we pass through keep theirs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum VideoCodecChoice {
    /// H.264 / AVC: what every player and KVS console plays.
    #[default]
    H264,
    /// H.265 / HEVC: half the bits, fewer players.
    H265,
}

/// An audio codec to encode a microphone (or the test tone) into. One
/// microphone may feed two of them at once, e.g. AAC for HLS and KVS and
/// Opus for WebRTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AudioCodecChoice {
    /// AAC-LC: HLS, DASH, KVS.
    Aac,
    /// Opus at 48 kHz: WebRTC.
    Opus,
    /// G.711 A-law, 8 kHz mono: telephony, some KVS WebRTC peers.
    Alaw,
    /// G.711 µ-law, 8 kHz mono.
    Mulaw,
}

const VIDEO_KINDS: &str = "test, v4l2:/dev/videoN, libcamera, argus:N, rtsp://…, file:PATH, pipeline:DESC";
const AUDIO_KINDS: &str = "test, none, source, alsa:DEVICE, pulse";

/// A source string that does not name a usable source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The part before `:` is not a kind we know.
    #[error("unknown source kind {kind:?} in {value:?}: expected {VIDEO_KINDS}")]
    UnknownKind {
        /// The kind as written.
        kind: String,
        /// The whole source string.
        value: String,
    },
    /// The kind is right but its argument is not.
    #[error("source {value:?} is invalid: {reason}")]
    Invalid {
        /// The whole source string.
        value: String,
        /// What is wrong and what was expected.
        reason: &'static str,
    },
    /// An audio source string we do not know.
    #[error("unknown audio source {value:?}: expected {AUDIO_KINDS}")]
    UnknownAudio {
        /// The audio source string.
        value: String,
    },
    /// An audio source of a known kind with a bad argument.
    #[error("audio source {value:?} is invalid: {reason}")]
    InvalidAudio {
        /// The audio source string.
        value: String,
        /// What is wrong and what was expected.
        reason: &'static str,
    },
    /// A codec name we do not encode into.
    #[error("unknown {what} codec {value:?}: expected {expected}")]
    UnknownCodec {
        /// `video` or `audio`.
        what: &'static str,
        /// The codec as written.
        value: String,
        /// The codec names accepted.
        expected: &'static str,
    },
}

impl FromStr for VideoSource {
    type Err = SourceError;

    fn from_str(value: &str) -> Result<Self, SourceError> {
        let (kind, arg) = match value.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (value, None),
        };
        let invalid = |reason| {
            Err(SourceError::Invalid {
                value: value.to_owned(),
                reason,
            })
        };
        match (kind, arg) {
            ("test", None) => Ok(VideoSource::Test),
            ("test", Some(_)) => invalid("test takes no argument: expected test"),
            ("file", Some(path)) if !path.is_empty() => Ok(VideoSource::File(PathBuf::from(path))),
            ("file", _) => invalid("the path is empty: expected file:PATH"),
            ("v4l2", Some(path)) if !path.is_empty() => Ok(VideoSource::V4l2(PathBuf::from(path))),
            ("v4l2", _) => invalid("the device is missing: expected v4l2:/dev/videoN"),
            ("libcamera", None) => Ok(VideoSource::Libcamera(None)),
            ("libcamera", Some(name)) if !name.is_empty() => Ok(VideoSource::Libcamera(Some(name.to_owned()))),
            ("libcamera", Some(_)) => invalid("the camera name is empty: expected libcamera or libcamera:NAME"),
            ("argus", Some(n)) => match n.parse::<u32>() {
                Ok(n) => Ok(VideoSource::Argus(n)),
                Err(_) => invalid("the sensor id is not a number: expected argus:N, e.g. argus:0"),
            },
            ("argus", None) => invalid("the sensor id is missing: expected argus:N, e.g. argus:0"),
            ("rtsp" | "rtsps", Some(rest)) => {
                let Some(after) = rest.strip_prefix("//") else {
                    return invalid("expected rtsp://HOST[:PORT]/PATH");
                };
                let authority = after.split('/').next().unwrap_or_default();
                let host = authority.rsplit('@').next().unwrap_or_default();
                if host.is_empty() || host.starts_with(':') {
                    return invalid("the host is missing: expected rtsp://HOST[:PORT]/PATH");
                }
                if value.chars().any(|c| c.is_whitespace() || c == '"') {
                    return invalid("URLs may not contain spaces or quotes: percent-encode them");
                }
                Ok(VideoSource::Rtsp(value.to_owned()))
            }
            ("rtsp" | "rtsps", None) => invalid("expected rtsp://HOST[:PORT]/PATH"),
            ("pipeline", Some(desc)) if !desc.trim().is_empty() => Ok(VideoSource::Pipeline(desc.trim().to_owned())),
            ("pipeline", _) => invalid("the description is empty: expected pipeline:GST-LAUNCH-DESCRIPTION"),
            (kind, _) => Err(SourceError::UnknownKind {
                kind: kind.to_owned(),
                value: value.to_owned(),
            }),
        }
    }
}

impl VideoSource {
    /// Whether frames come in real time from a device or the network (and
    /// so a stall or an end of stream means "restart", not "done").
    /// `None` for user pipelines, which say so only once started.
    pub fn is_live(&self) -> Option<bool> {
        match self {
            VideoSource::Test => Some(true),
            VideoSource::File(_) => Some(false),
            VideoSource::Pipeline(_) => None,
            VideoSource::V4l2(_) | VideoSource::Libcamera(_) | VideoSource::Argus(_) | VideoSource::Rtsp(_) => {
                Some(true)
            }
        }
    }

    /// The source as written, with any RTSP password replaced by `***`, for
    /// logs and messages.
    pub fn redacted(&self) -> String {
        match self {
            VideoSource::Rtsp(url) => redact_url(url),
            other => other.to_string(),
        }
    }
}

/// `rtsp://user:secret@host/…` → `rtsp://user:***@host/…`: a source string
/// fit for logs and error messages. Anything without a password is
/// returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl fmt::Display for VideoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoSource::Test => f.write_str("test"),
            VideoSource::V4l2(path) => write!(f, "v4l2:{}", path.display()),
            VideoSource::Libcamera(None) => f.write_str("libcamera"),
            VideoSource::Libcamera(Some(name)) => write!(f, "libcamera:{name}"),
            VideoSource::Argus(n) => write!(f, "argus:{n}"),
            VideoSource::Rtsp(url) => f.write_str(url),
            VideoSource::File(path) => write!(f, "file:{}", path.display()),
            VideoSource::Pipeline(desc) => write!(f, "pipeline:{desc}"),
        }
    }
}

impl FromStr for AudioSource {
    type Err = SourceError;

    fn from_str(value: &str) -> Result<Self, SourceError> {
        let invalid = |reason| {
            Err(SourceError::InvalidAudio {
                value: value.to_owned(),
                reason,
            })
        };
        match value.split_once(':') {
            None => match value {
                "test" => Ok(AudioSource::Test),
                "none" => Ok(AudioSource::None),
                // `from-source` is the spelling of the first release.
                "source" | "from-source" => Ok(AudioSource::FromSource),
                "pulse" => Ok(AudioSource::Pulse(None)),
                "alsa" => invalid("the device is missing: expected alsa:DEVICE, e.g. alsa:hw:1"),
                _ => Err(SourceError::UnknownAudio {
                    value: value.to_owned(),
                }),
            },
            Some(("alsa", device)) if !device.is_empty() && !device.contains(char::is_whitespace) => {
                Ok(AudioSource::Alsa(device.to_owned()))
            }
            Some(("alsa", _)) => invalid("the device is empty or has spaces: expected alsa:DEVICE, e.g. alsa:hw:1"),
            Some(("pulse", device)) if !device.is_empty() && !device.contains(char::is_whitespace) => {
                Ok(AudioSource::Pulse(Some(device.to_owned())))
            }
            Some(("pulse", _)) => invalid("the device is empty or has spaces: expected pulse or pulse:SOURCE-NAME"),
            Some(_) => Err(SourceError::UnknownAudio {
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for AudioSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioSource::Test => f.write_str("test"),
            AudioSource::None => f.write_str("none"),
            AudioSource::FromSource => f.write_str("source"),
            AudioSource::Alsa(device) => write!(f, "alsa:{device}"),
            AudioSource::Pulse(None) => f.write_str("pulse"),
            AudioSource::Pulse(Some(device)) => write!(f, "pulse:{device}"),
        }
    }
}

impl FromStr for VideoCodecChoice {
    type Err = SourceError;

    fn from_str(value: &str) -> Result<Self, SourceError> {
        match value.to_ascii_lowercase().as_str() {
            "h264" | "h.264" | "avc" => Ok(VideoCodecChoice::H264),
            "h265" | "h.265" | "hevc" => Ok(VideoCodecChoice::H265),
            _ => Err(SourceError::UnknownCodec {
                what: "video",
                value: value.to_owned(),
                expected: "h264, h265",
            }),
        }
    }
}

impl fmt::Display for VideoCodecChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VideoCodecChoice::H264 => "h264",
            VideoCodecChoice::H265 => "h265",
        })
    }
}

impl FromStr for AudioCodecChoice {
    type Err = SourceError;

    fn from_str(value: &str) -> Result<Self, SourceError> {
        match value.to_ascii_lowercase().as_str() {
            "aac" => Ok(AudioCodecChoice::Aac),
            "opus" => Ok(AudioCodecChoice::Opus),
            "alaw" | "pcma" | "g711a" => Ok(AudioCodecChoice::Alaw),
            "mulaw" | "ulaw" | "pcmu" | "g711u" => Ok(AudioCodecChoice::Mulaw),
            _ => Err(SourceError::UnknownCodec {
                what: "audio",
                value: value.to_owned(),
                expected: "aac, opus, alaw, mulaw",
            }),
        }
    }
}

impl fmt::Display for AudioCodecChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AudioCodecChoice::Aac => "aac",
            AudioCodecChoice::Opus => "opus",
            AudioCodecChoice::Alaw => "alaw",
            AudioCodecChoice::Mulaw => "mulaw",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_video_kind_parses() {
        for (text, want) in [
            ("test", VideoSource::Test),
            ("file:/tmp/a b.mp4", VideoSource::File(PathBuf::from("/tmp/a b.mp4"))),
            // Only the first colon separates the kind, so paths may hold colons.
            ("file:x:y.mkv", VideoSource::File(PathBuf::from("x:y.mkv"))),
            ("v4l2:/dev/video0", VideoSource::V4l2(PathBuf::from("/dev/video0"))),
            ("libcamera", VideoSource::Libcamera(None)),
            (
                "libcamera:/base/soc/i2c0mux/i2c@1/imx708@1a",
                VideoSource::Libcamera(Some("/base/soc/i2c0mux/i2c@1/imx708@1a".to_owned())),
            ),
            ("argus:1", VideoSource::Argus(1)),
            (
                "rtsp://admin:pw@192.168.1.64:554/Streaming/Channels/101",
                VideoSource::Rtsp("rtsp://admin:pw@192.168.1.64:554/Streaming/Channels/101".to_owned()),
            ),
            (
                "rtsps://cam.local/live",
                VideoSource::Rtsp("rtsps://cam.local/live".to_owned()),
            ),
            (
                "pipeline:videotestsrc ! x264enc",
                VideoSource::Pipeline("videotestsrc ! x264enc".to_owned()),
            ),
        ] {
            assert_eq!(text.parse::<VideoSource>().unwrap(), want, "{text}");
            assert_eq!(want.to_string(), text);
        }
    }

    #[test]
    fn audio_sources_parse_and_print() {
        for (text, want) in [
            ("test", AudioSource::Test),
            ("none", AudioSource::None),
            ("source", AudioSource::FromSource),
            ("alsa:hw:1,0", AudioSource::Alsa("hw:1,0".to_owned())),
            ("pulse", AudioSource::Pulse(None)),
            (
                "pulse:alsa_input.usb-mic.mono",
                AudioSource::Pulse(Some("alsa_input.usb-mic.mono".to_owned())),
            ),
        ] {
            assert_eq!(text.parse::<AudioSource>().unwrap(), want, "{text}");
            assert_eq!(want.to_string(), text);
        }
        assert_eq!("from-source".parse::<AudioSource>().unwrap(), AudioSource::FromSource);
    }

    #[test]
    fn unknown_kind_names_kind_and_value() {
        let err = "foo:bar".parse::<VideoSource>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown source kind "foo" in "foo:bar": expected test, v4l2:/dev/videoN, libcamera, argus:N, rtsp://…, file:PATH, pipeline:DESC"#
        );
        let err = "camera".parse::<VideoSource>().unwrap_err();
        assert!(matches!(err, SourceError::UnknownKind { ref kind, .. } if kind == "camera"));
    }

    #[test]
    fn malformed_arguments_are_refused_naming_the_value() {
        for value in [
            "file:",
            "file",
            "test:1",
            "v4l2",
            "v4l2:",
            "argus",
            "argus:zero",
            "rtsp://",
            "rtsp:cam",
            "rtsp://:554/x",
            "rtsp://cam/a b",
            "pipeline:",
            "pipeline:  ",
            "libcamera:",
        ] {
            let err = value.parse::<VideoSource>().unwrap_err();
            assert!(matches!(err, SourceError::Invalid { .. }), "{value}: {err}");
            assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
        }
    }

    #[test]
    fn bad_audio_is_refused_naming_the_value() {
        let err = "mic".parse::<AudioSource>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown audio source "mic": expected test, none, source, alsa:DEVICE, pulse"#
        );
        for value in ["alsa", "alsa:", "pulse:", "alsa:hw 1"] {
            let err = value.parse::<AudioSource>().unwrap_err();
            assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
        }
    }

    #[test]
    fn codecs_parse_and_unknown_ones_name_the_value() {
        assert_eq!("H265".parse::<VideoCodecChoice>().unwrap(), VideoCodecChoice::H265);
        assert_eq!("opus".parse::<AudioCodecChoice>().unwrap(), AudioCodecChoice::Opus);
        assert_eq!("pcmu".parse::<AudioCodecChoice>().unwrap(), AudioCodecChoice::Mulaw);
        let err = "vp8".parse::<VideoCodecChoice>().unwrap_err();
        assert_eq!(err.to_string(), r#"unknown video codec "vp8": expected h264, h265"#);
        let err = "mp3".parse::<AudioCodecChoice>().unwrap_err();
        assert!(err.to_string().contains("\"mp3\""), "{err}");
    }

    #[test]
    fn rtsp_passwords_are_redacted() {
        let s: VideoSource = "rtsp://admin:hunter2@10.0.0.5/stream1".parse().unwrap();
        assert_eq!(s.redacted(), "rtsp://admin:***@10.0.0.5/stream1");
        let s: VideoSource = "rtsp://10.0.0.5/a@b".parse().unwrap();
        assert_eq!(s.redacted(), "rtsp://10.0.0.5/a@b");
    }
}
