//! Video encoder choice: hardware first, software as the fallback, and the
//! gst-launch text that feeds each encoder (sensors.md §5).
//!
//! | board | H.264 | H.265 |
//! |---|---|---|
//! | Raspberry Pi 4 (`/dev/video11`) | `v4l2h264enc`, level pinned in caps, SPS/PPS on every IDR | `x265enc` |
//! | Raspberry Pi 5 | `x264enc` (there is no encoder) | `x265enc` |
//! | Jetson with `/dev/v4l2-nvenc` | `nvv4l2h264enc`, idrinterval = iframeinterval | `nvv4l2h265enc` |
//! | Jetson Orin Nano (no NVENC) | `x264enc` | `x265enc` |
//! | x86 with a render node | `vah264enc`, else `vaapih264enc` | `vah265enc`, `vaapih265enc` |
//! | anything else | `x264enc`, else `openh264enc` | `x265enc` |

use std::fmt;

use crate::capture::CaptureOptions;
use crate::platform::{Board, Platform};
use crate::source::VideoCodecChoice;

/// An encoder family; [`VideoEncoder::element`] names the element for a codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VideoEncoder {
    /// Raspberry Pi 4's bcm2835-codec through V4L2 M2M (H.264 only).
    V4l2,
    /// NVIDIA Jetson NVENC through the L4T V4L2 plugins.
    Nvidia,
    /// VA-API (Intel, AMD) through GStreamer's `va` plugin.
    Va,
    /// VA-API through the older gstreamer-vaapi plugin.
    Vaapi,
    /// x264 / x265 on the CPU.
    Software,
    /// Cisco's OpenH264 on the CPU (H.264 only), when x264 is missing.
    OpenH264,
}

/// Every family, best first: the order in which encoders are tried.
pub const ENCODER_PREFERENCE: [VideoEncoder; 6] = [
    VideoEncoder::V4l2,
    VideoEncoder::Nvidia,
    VideoEncoder::Va,
    VideoEncoder::Vaapi,
    VideoEncoder::Software,
    VideoEncoder::OpenH264,
];

impl VideoEncoder {
    /// The element that encodes `codec`, or `None` if this family cannot.
    pub fn element(self, codec: VideoCodecChoice) -> Option<&'static str> {
        use VideoCodecChoice::{H264, H265};
        match (self, codec) {
            (VideoEncoder::V4l2, H264) => Some("v4l2h264enc"),
            (VideoEncoder::V4l2, H265) => None,
            (VideoEncoder::Nvidia, H264) => Some("nvv4l2h264enc"),
            (VideoEncoder::Nvidia, H265) => Some("nvv4l2h265enc"),
            (VideoEncoder::Va, H264) => Some("vah264enc"),
            (VideoEncoder::Va, H265) => Some("vah265enc"),
            (VideoEncoder::Vaapi, H264) => Some("vaapih264enc"),
            (VideoEncoder::Vaapi, H265) => Some("vaapih265enc"),
            (VideoEncoder::Software, H264) => Some("x264enc"),
            (VideoEncoder::Software, H265) => Some("x265enc"),
            (VideoEncoder::OpenH264, H264) => Some("openh264enc"),
            (VideoEncoder::OpenH264, H265) => None,
        }
    }

    /// Whether the work happens off the CPU.
    pub fn is_hardware(self) -> bool {
        !matches!(self, VideoEncoder::Software | VideoEncoder::OpenH264)
    }

    /// Whether this machine has what the family needs besides the element:
    /// the device node or the board. The Pi 4 encoder is `/dev/video11`;
    /// Orin Nano ships `nvv4l2h264enc` but has no `/dev/v4l2-nvenc`, and the
    /// element then fails with "Cannot identify device".
    pub fn has_device(self, platform: &Platform) -> bool {
        match self {
            VideoEncoder::V4l2 => {
                platform.board.is_raspberry_pi()
                    && platform.board != Board::RaspberryPi5
                    && platform.has_device("/dev/video11")
            }
            VideoEncoder::Nvidia => platform.has_device("/dev/v4l2-nvenc"),
            VideoEncoder::Va | VideoEncoder::Vaapi => platform.render_node().is_some(),
            VideoEncoder::Software | VideoEncoder::OpenH264 => true,
        }
    }

    /// Whether the encoder can take this picture size and rate: the Pi 4
    /// encoder stops at level 4.x (1080p30, 245 760 macroblocks/s).
    pub fn supports(self, settings: &EncodeSettings) -> bool {
        match self {
            VideoEncoder::V4l2 => {
                let mbs = u64::from(settings.width.div_ceil(16)) * u64::from(settings.height.div_ceil(16));
                settings.width <= 1920 && settings.height <= 1920 && mbs * u64::from(settings.fps) <= 245_760
            }
            _ => true,
        }
    }
}

impl fmt::Display for VideoEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VideoEncoder::V4l2 => "v4l2",
            VideoEncoder::Nvidia => "nvidia",
            VideoEncoder::Va => "va",
            VideoEncoder::Vaapi => "vaapi",
            VideoEncoder::Software => "software",
            VideoEncoder::OpenH264 => "openh264",
        })
    }
}

/// What the encoder is asked to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodeSettings {
    /// H.264 or H.265.
    pub codec: VideoCodecChoice,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Frames from one IDR to the next: one per fragment, so every fragment
    /// starts on a key frame and none runs longer than asked.
    pub key_int: u32,
}

impl EncodeSettings {
    /// The settings [`CaptureOptions`] ask for.
    pub fn from_options(opts: &CaptureOptions) -> Self {
        let key_int = (opts.fragment_duration.as_secs_f64() * f64::from(opts.fps))
            .round()
            .max(1.0) as u32;
        EncodeSettings {
            codec: opts.video_codec,
            width: opts.width,
            height: opts.height,
            fps: opts.fps,
            bitrate_kbps: opts.video_bitrate_kbps,
            key_int,
        }
    }
}

/// Where raw frames live when they reach the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMemory {
    /// Ordinary system memory (v4l2src, libcamerasrc, videotestsrc, jpegdec).
    System,
    /// Jetson NVMM buffers (nvarguscamerasrc, nvv4l2decoder).
    Nvmm,
}

/// The encoders this machine can use for `settings`, best first: those
/// whose element is installed, whose device exists and which take the size.
/// Empty when nothing can encode the codec.
pub fn encoder_candidates(platform: &Platform, settings: &EncodeSettings) -> Vec<VideoEncoder> {
    ENCODER_PREFERENCE
        .into_iter()
        .filter(|e| {
            e.element(settings.codec).is_some_and(|el| platform.has_element(el))
                && e.has_device(platform)
                && e.supports(settings)
        })
        .collect()
}

/// x264/x265 speed by board: the Pis and unknown ARM boards need the
/// fastest preset to keep 1080p30 in real time; a Jetson's A78 cores can
/// afford a little more; a PC more still.
pub fn software_preset(board: Board) -> &'static str {
    match board {
        Board::RaspberryPi4 | Board::RaspberryPi5 | Board::RaspberryPi => "ultrafast",
        Board::JetsonOrinNx | Board::JetsonOrinNano | Board::JetsonAgxOrin | Board::Jetson | Board::Other => {
            "superfast"
        }
        Board::X86 => "veryfast",
    }
}

/// The gst-launch text from raw frames in `memory` to an encoded
/// elementary stream: conversion, the encoder (named `encoder`, so its
/// errors can be told apart and the next candidate tried), and for the
/// Pi 4 the level caps without which v4l2h264enc refuses anything above
/// 128×96.
pub fn encoder_chain(
    encoder: VideoEncoder,
    settings: &EncodeSettings,
    memory: RawMemory,
    platform: &Platform,
) -> String {
    let EncodeSettings {
        codec,
        bitrate_kbps: kbps,
        key_int,
        ..
    } = *settings;
    let bps = u64::from(kbps) * 1000;
    let element = encoder.element(codec).unwrap_or("x264enc");
    let to_system_i420 = match memory {
        RawMemory::System => "videoconvert ! video/x-raw,format=I420",
        RawMemory::Nvmm => "nvvidconv ! video/x-raw,format=I420",
    };
    match encoder {
        VideoEncoder::V4l2 => {
            // The ISP converts and scales for free; videoconvert would cost
            // the CPU what the hardware encoder saves.
            let convert = if platform.has_element("v4l2convert") {
                "v4l2convert"
            } else {
                "videoconvert ! video/x-raw,format=I420"
            };
            format!(
                "{convert} ! {element} name=encoder \
                 extra-controls=\"controls,repeat_sequence_header=1,h264_i_frame_period={key_int},video_bitrate={bps}\" \
                 ! video/x-h264,level=(string)4.1"
            )
        }
        VideoEncoder::Nvidia => {
            let convert = match memory {
                RawMemory::System => "nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! ",
                RawMemory::Nvmm => "",
            };
            format!(
                "{convert}{element} name=encoder bitrate={bps} iframeinterval={key_int} idrinterval={key_int} \
                 insert-sps-pps=true control-rate=1 preset-level=1 maxperf-enable=true"
            )
        }
        VideoEncoder::Va => {
            let convert = match memory {
                RawMemory::Nvmm => "nvvidconv ! video/x-raw,format=NV12",
                RawMemory::System if platform.has_element("vapostproc") => {
                    "vapostproc ! video/x-raw(memory:VAMemory),format=NV12"
                }
                RawMemory::System => "videoconvert ! video/x-raw,format=NV12",
            };
            format!("{convert} ! {element} name=encoder bitrate={kbps} key-int-max={key_int} b-frames=0 rate-control=cbr")
        }
        VideoEncoder::Vaapi => format!(
            "vaapipostproc ! {element} name=encoder bitrate={kbps} keyframe-period={key_int} max-bframes=0 rate-control=cbr"
        ),
        VideoEncoder::Software => {
            let preset = software_preset(platform.board);
            // Scene-cut detection puts extra IDRs wherever the picture
            // changes, which makes fragments irregular; key frames come
            // from key-int-max alone. x264enc negotiates 4:4:4 (High
            // 4:4:4, which few decoders play) unless I420 is forced right
            // in front of it.
            let options = match codec {
                VideoCodecChoice::H264 => "bframes=0 option-string=scenecut=0",
                VideoCodecChoice::H265 => "option-string=scenecut=0:bframes=0",
            };
            format!(
                "{to_system_i420} ! {element} name=encoder tune=zerolatency speed-preset={preset} \
                 key-int-max={key_int} bitrate={kbps} {options}"
            )
        }
        VideoEncoder::OpenH264 => format!(
            "{to_system_i420} ! {element} name=encoder bitrate={bps} gop-size={key_int} rate-control=bitrate \
             complexity=low"
        ),
    }
}

/// The parser and caps that turn an encoded elementary stream into what the
/// appsinks take: AVC/HVC1 access units, with SPS/PPS (and VPS) repeated
/// in-band before every IDR so a decoder joining late, or following a
/// restarted source whose parameters changed, can decode.
pub fn parse_chain(codec: VideoCodecChoice) -> &'static str {
    match codec {
        VideoCodecChoice::H264 => "h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au",
        VideoCodecChoice::H265 => "h265parse config-interval=-1 ! video/x-h265,stream-format=hvc1,alignment=au",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(codec: VideoCodecChoice, width: u32, height: u32, fps: u32) -> EncodeSettings {
        EncodeSettings {
            codec,
            width,
            height,
            fps,
            bitrate_kbps: 2000,
            key_int: 60,
        }
    }

    #[test]
    fn pi4_encoder_takes_1080p30_but_not_1080p60_or_4k() {
        let enc = VideoEncoder::V4l2;
        assert!(enc.supports(&settings(VideoCodecChoice::H264, 1920, 1080, 30)));
        assert!(enc.supports(&settings(VideoCodecChoice::H264, 1280, 720, 60)));
        assert!(!enc.supports(&settings(VideoCodecChoice::H264, 1920, 1080, 60)));
        assert!(!enc.supports(&settings(VideoCodecChoice::H264, 3840, 2160, 15)));
    }

    #[test]
    fn h265_is_not_offered_by_families_that_lack_it() {
        assert_eq!(VideoEncoder::V4l2.element(VideoCodecChoice::H265), None);
        assert_eq!(VideoEncoder::OpenH264.element(VideoCodecChoice::H265), None);
        assert_eq!(
            VideoEncoder::Nvidia.element(VideoCodecChoice::H265),
            Some("nvv4l2h265enc")
        );
    }
}
