//! What to capture, as written on a command line or in a config file:
//! `test`, `file:PATH`, and (in later issues) cameras and network streams.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where video comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoSource {
    /// A synthetic SMPTE pattern with a running-time overlay, encoded to
    /// H.264 on the fly; needs no hardware.
    Test,
    /// An H.264 or H.265 file (MP4, Matroska, MPEG-TS...), played as fast as
    /// possible without re-encoding.
    File(PathBuf),
}

/// Where audio comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AudioSource {
    /// A 440 Hz sine encoded to AAC.
    Test,
    /// No audio track.
    None,
    /// Whatever the video source carries: a file's AAC track, the test tone
    /// for the test source.
    #[default]
    FromSource,
}

/// Source kinds that are planned but not implemented yet; kept apart from
/// unknown kinds so the error tells the user the spelling was right.
const PLANNED_KINDS: &[&str] = &["v4l2", "libcamera", "argus", "rtsp", "rtsps", "pipeline"];

/// A source string that does not name a usable source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The part before `:` is not a kind we know.
    #[error("unknown source kind {kind:?} in {value:?}: expected test, file:PATH")]
    UnknownKind {
        /// The kind as written.
        kind: String,
        /// The whole source string.
        value: String,
    },
    /// A kind that a later version will support.
    #[error("source kind {kind:?} in {value:?} is not supported yet: expected test, file:PATH")]
    NotSupportedYet {
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
    #[error("unknown audio source {value:?}: expected test, none, from-source")]
    UnknownAudio {
        /// The audio source string.
        value: String,
    },
}

impl FromStr for VideoSource {
    type Err = SourceError;

    fn from_str(value: &str) -> Result<Self, SourceError> {
        let (kind, arg) = match value.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (value, None),
        };
        match (kind, arg) {
            ("test", None) => Ok(VideoSource::Test),
            ("test", Some(_)) => Err(SourceError::Invalid {
                value: value.to_owned(),
                reason: "test takes no argument: expected test",
            }),
            ("file", Some(path)) if !path.is_empty() => Ok(VideoSource::File(PathBuf::from(path))),
            ("file", _) => Err(SourceError::Invalid {
                value: value.to_owned(),
                reason: "the path is empty: expected file:PATH",
            }),
            (kind, _) if PLANNED_KINDS.contains(&kind) => Err(SourceError::NotSupportedYet {
                kind: kind.to_owned(),
                value: value.to_owned(),
            }),
            (kind, _) => Err(SourceError::UnknownKind {
                kind: kind.to_owned(),
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for VideoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoSource::Test => f.write_str("test"),
            VideoSource::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl FromStr for AudioSource {
    type Err = SourceError;

    fn from_str(value: &str) -> Result<Self, SourceError> {
        match value {
            "test" => Ok(AudioSource::Test),
            "none" => Ok(AudioSource::None),
            "from-source" => Ok(AudioSource::FromSource),
            _ => Err(SourceError::UnknownAudio {
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for AudioSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AudioSource::Test => "test",
            AudioSource::None => "none",
            AudioSource::FromSource => "from-source",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_and_file_sources_parse() {
        assert_eq!("test".parse::<VideoSource>().unwrap(), VideoSource::Test);
        assert_eq!(
            "file:/tmp/a b.mp4".parse::<VideoSource>().unwrap(),
            VideoSource::File(PathBuf::from("/tmp/a b.mp4"))
        );
        // Only the first colon separates the kind, so paths may hold colons.
        assert_eq!(
            "file:x:y.mkv".parse::<VideoSource>().unwrap(),
            VideoSource::File(PathBuf::from("x:y.mkv"))
        );
    }

    #[test]
    fn sources_print_as_they_parse() {
        for s in ["test", "file:/data/clip.mp4"] {
            assert_eq!(s.parse::<VideoSource>().unwrap().to_string(), s);
        }
        for s in ["test", "none", "from-source"] {
            assert_eq!(s.parse::<AudioSource>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn unknown_kind_names_kind_and_value() {
        let err = "foo:bar".parse::<VideoSource>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown source kind "foo" in "foo:bar": expected test, file:PATH"#
        );
        let err = "camera".parse::<VideoSource>().unwrap_err();
        assert!(matches!(err, SourceError::UnknownKind { ref kind, .. } if kind == "camera"));
    }

    #[test]
    fn planned_kinds_say_not_supported_yet() {
        for (value, kind) in [
            ("v4l2:/dev/video0", "v4l2"),
            ("libcamera", "libcamera"),
            ("argus:0", "argus"),
            ("rtsp://cam.local/stream", "rtsp"),
            ("pipeline:videotestsrc ! fakesink", "pipeline"),
        ] {
            let err = value.parse::<VideoSource>().unwrap_err();
            assert_eq!(
                err,
                SourceError::NotSupportedYet {
                    kind: kind.to_owned(),
                    value: value.to_owned()
                }
            );
            let text = err.to_string();
            assert!(text.contains(value) && text.contains("not supported yet"), "{text}");
        }
    }

    #[test]
    fn malformed_arguments_are_refused() {
        for value in ["file:", "file", "test:1"] {
            let err = value.parse::<VideoSource>().unwrap_err();
            assert!(matches!(err, SourceError::Invalid { .. }), "{value}: {err}");
            assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
        }
    }

    #[test]
    fn unknown_audio_is_refused() {
        let err = "mic".parse::<AudioSource>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown audio source "mic": expected test, none, from-source"#
        );
    }
}
