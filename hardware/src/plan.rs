//! Pipeline construction as pure functions: (source, options, [`Platform`])
//! → gst-launch text. Nothing here touches a device or starts GStreamer, so
//! the pipeline chosen for a Raspberry Pi 4, a Jetson or a PC with VA-API is
//! checked in table tests from a described platform.
//!
//! A plan has a fixed part ([`PipelinePlan::launch`]) and, for sources whose
//! streams are only known once they run (files, RTSP, user pipelines),
//! branches keyed by what a stream carries ([`PipelinePlan::branches`]),
//! linked as the streams appear. Every output ends in an appsink named
//! `video` (track 1), `audio` (track 2) or `audio2` (track 3).

use std::fmt;
use std::path::Path;

use fragmenter::TrackId;
use gstreamer as gst;

use crate::capture::{CaptureOptions, RtspTransport};
use crate::encoder::{encoder_candidates, encoder_chain, parse_chain, EncodeSettings, RawMemory, VideoEncoder};
use crate::error::CaptureError;
use crate::platform::{Camera, PixelFormat, Platform};
use crate::source::{AudioCodecChoice, AudioSource, VideoCodecChoice, VideoSource};

/// Properties of every appsink: no clock sync because frames are stamped
/// from buffer running time, not arrival; no last-sample so a zero-copy
/// frame's buffer is not kept alive by the sink.
const APPSINK_PROPS: &str = "sync=false enable-last-sample=false";

/// Decouples each stream of a demuxer from the others: without it, the
/// first sink to preroll blocks the demuxer's only thread and the other
/// sinks never get the data they need to preroll. Sized in time only, so
/// high bitrates do not hit a byte limit before a sparse audio stream
/// delivers its first packet.
const DEMUX_QUEUE: &str = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000";

/// What a stream carries, as far as linking it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// H.264 elementary stream.
    H264,
    /// H.265 elementary stream.
    H265,
    /// Uncompressed video.
    RawVideo,
    /// Motion JPEG.
    Jpeg,
    /// AAC.
    Aac,
    /// Opus.
    Opus,
    /// G.711 A-law.
    Alaw,
    /// G.711 µ-law.
    Mulaw,
    /// Uncompressed audio.
    RawAudio,
    /// RTP carrying H.264 (RFC 6184).
    RtpH264,
    /// RTP carrying H.265 (RFC 7798).
    RtpH265,
    /// RTP carrying AAC as MPEG4-GENERIC (RFC 3640).
    RtpAac,
    /// RTP carrying AAC as MP4A-LATM (RFC 6416).
    RtpAacLatm,
    /// RTP carrying G.711 A-law (PCMA).
    RtpPcma,
    /// RTP carrying G.711 µ-law (PCMU).
    RtpPcmu,
    /// RTP carrying Opus (RFC 7587).
    RtpOpus,
}

impl StreamKind {
    /// Whether the stream is video.
    pub fn is_video(self) -> bool {
        use StreamKind::*;
        matches!(self, H264 | H265 | RawVideo | Jpeg | RtpH264 | RtpH265)
    }

    /// What caps (as a demuxer, rtspsrc or a user pipeline offers them)
    /// carry; `None` for anything we do not capture.
    pub fn from_caps(caps: &gst::CapsRef) -> Option<StreamKind> {
        let s = caps.structure(0)?;
        Some(match s.name().as_str() {
            "video/x-h264" => StreamKind::H264,
            "video/x-h265" => StreamKind::H265,
            "video/x-raw" => StreamKind::RawVideo,
            "image/jpeg" => StreamKind::Jpeg,
            // MPEG-2 AAC (ADTS in transport streams) is the same bitstream.
            "audio/mpeg" => match s.get::<i32>("mpegversion") {
                Ok(2 | 4) => StreamKind::Aac,
                _ => return None,
            },
            "audio/x-opus" => StreamKind::Opus,
            "audio/x-alaw" => StreamKind::Alaw,
            "audio/x-mulaw" => StreamKind::Mulaw,
            "audio/x-raw" => StreamKind::RawAudio,
            // rtspsrc offers streams in select-stream as x-unknown (caps
            // from the SDP), and exposes them as x-rtp.
            "application/x-rtp" | "application/x-unknown" => {
                let encoding = s.get::<&str>("encoding-name").ok()?.to_ascii_uppercase();
                match encoding.as_str() {
                    "H264" => StreamKind::RtpH264,
                    "H265" => StreamKind::RtpH265,
                    "MPEG4-GENERIC" => StreamKind::RtpAac,
                    "MP4A-LATM" => StreamKind::RtpAacLatm,
                    "PCMA" => StreamKind::RtpPcma,
                    "PCMU" => StreamKind::RtpPcmu,
                    "OPUS" => StreamKind::RtpOpus,
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamKind::H264 => "h264",
            StreamKind::H265 => "h265",
            StreamKind::RawVideo => "raw-video",
            StreamKind::Jpeg => "jpeg",
            StreamKind::Aac => "aac",
            StreamKind::Opus => "opus",
            StreamKind::Alaw => "alaw",
            StreamKind::Mulaw => "mulaw",
            StreamKind::RawAudio => "raw-audio",
            StreamKind::RtpH264 => "rtp-h264",
            StreamKind::RtpH265 => "rtp-h265",
            StreamKind::RtpAac => "rtp-mpeg4-generic",
            StreamKind::RtpAacLatm => "rtp-mp4a-latm",
            StreamKind::RtpPcma => "rtp-pcma",
            StreamKind::RtpPcmu => "rtp-pcmu",
            StreamKind::RtpOpus => "rtp-opus",
        })
    }
}

/// An appsink and the track it feeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The track.
    pub track: TrackId,
    /// The appsink's name in the pipeline or branch.
    pub sink: &'static str,
}

/// What to link behind a stream of one kind once it appears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branch {
    /// What the stream carries.
    pub carries: StreamKind,
    /// gst-launch text from the stream to its appsink(s).
    pub description: String,
    /// The appsinks in `description`.
    pub outputs: Vec<Output>,
}

/// A pipeline to build, as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelinePlan {
    /// The fixed part, in gst-launch syntax: the whole pipeline for cameras
    /// and the test source; the source element(s) for files, RTSP and user
    /// pipelines (whose streams link to [`PipelinePlan::branches`]).
    pub launch: String,
    /// The appsinks in `launch`.
    pub outputs: Vec<Output>,
    /// Branches for streams found at run time, by what they carry.
    pub branches: Vec<Branch>,
    /// Whether the source runs in real time; `None` when only the running
    /// pipeline can tell (user pipelines).
    pub live: Option<bool>,
    /// The video encoder family, when we encode.
    pub encoder: Option<VideoEncoder>,
}

impl PipelinePlan {
    /// The branch for streams of this kind.
    pub fn branch(&self, kind: StreamKind) -> Option<&Branch> {
        self.branches.iter().find(|b| b.carries == kind)
    }

    /// The encoder element name, when we encode.
    pub fn encoder_element(&self, codec: VideoCodecChoice) -> Option<&'static str> {
        self.encoder.and_then(|e| e.element(codec))
    }
}

impl fmt::Display for PipelinePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.launch)?;
        for b in &self.branches {
            write!(f, "\n  [{}] {}", b.carries, b.description)?;
        }
        Ok(())
    }
}

fn appsink(name: &str) -> String {
    format!("appsink name={name} {APPSINK_PROPS}")
}

fn video_output() -> Output {
    Output {
        track: track(1),
        sink: "video",
    }
}

fn track(n: u8) -> TrackId {
    TrackId::new(n).expect("tracks 1 to 3 are valid")
}

/// Quote a property value for gst-launch when it holds anything but plain
/// path and device characters.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | ':' | '-' | '+'));
    if plain {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn need(platform: &Platform, element: &str, needed_for: &'static str) -> Result<(), CaptureError> {
    if platform.has_element(element) {
        Ok(())
    } else {
        Err(CaptureError::MissingElement {
            element: element.to_owned(),
            needed_for,
        })
    }
}

/// Every element a launch description uses must be installed; named here
/// rather than by a vaguer "no element" from the parser. Properties
/// (`a=b`), caps (`video/x-raw,…`) and pad references (`mic.`) are skipped.
fn need_all(platform: &Platform, description: &str, needed_for: &'static str) -> Result<(), CaptureError> {
    let mut token = String::new();
    let mut quoted = false;
    let mut tokens = Vec::new();
    for c in description.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                token.push(c);
            }
            c if c.is_whitespace() && !quoted => tokens.push(std::mem::take(&mut token)),
            c => token.push(c),
        }
    }
    tokens.push(token);
    for t in tokens {
        let is_element = !t.is_empty()
            && t != "!"
            && !t.contains('=')
            && !t.contains('/')
            && !t.contains('"')
            && !t.ends_with('.')
            && !t.starts_with('(');
        if is_element {
            need(platform, &t, needed_for)?;
        }
    }
    Ok(())
}

/// The plan for `video` (and its audio) on `platform`, with the best
/// encoder the platform has.
pub fn plan(video: &VideoSource, opts: &CaptureOptions, platform: &Platform) -> Result<PipelinePlan, CaptureError> {
    plan_with_encoder(video, opts, platform, None)
}

/// [`plan`] with a given encoder (`None`: the best candidate); capture
/// tries the next candidate when a hardware encoder fails to start.
pub fn plan_with_encoder(
    video: &VideoSource,
    opts: &CaptureOptions,
    platform: &Platform,
    encoder: Option<VideoEncoder>,
) -> Result<PipelinePlan, CaptureError> {
    let settings = EncodeSettings::from_options(opts);
    let pick_encoder = || -> Result<VideoEncoder, CaptureError> {
        if let Some(e) = encoder {
            return Ok(e);
        }
        encoder_candidates(platform, &settings)
            .into_iter()
            .next()
            .ok_or_else(|| no_encoder(settings.codec))
    };
    let audio = resolve_audio(video, &opts.audio);
    let mut plan = match video {
        VideoSource::Test => {
            need(platform, "videotestsrc", "the test video pattern")?;
            let enc = pick_encoder()?;
            let buffers = opts
                .num_buffers
                .map(|n| format!(" num-buffers={n}"))
                .unwrap_or_default();
            // Running time, not the wall clock: a non-live source makes many
            // frames per wall-clock second, and they should still differ.
            // The overlay only makes frames differ; without pango, capture works.
            let overlay = if platform.has_element("timeoverlay") {
                " ! timeoverlay font-desc=\"Sans 24\""
            } else {
                ""
            };
            let launch = format!(
                "videotestsrc is-live={live} pattern=smpte{buffers} \
                 ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1{overlay} \
                 ! {chain} ! {parse} ! {sink}",
                live = opts.live,
                w = opts.width,
                h = opts.height,
                fps = opts.fps,
                chain = encoder_chain(enc, &settings, RawMemory::System, platform),
                parse = parse_chain(settings.codec),
                sink = appsink("video"),
            );
            PipelinePlan {
                launch,
                outputs: vec![video_output()],
                branches: Vec::new(),
                live: Some(opts.live),
                encoder: Some(enc),
            }
        }
        VideoSource::V4l2(device) => {
            need(platform, "v4l2src", "V4L2 cameras")?;
            if !platform.has_device(device) {
                return Err(missing_video_device(video, device, platform));
            }
            v4l2_plan(
                video,
                device,
                platform.v4l2_camera(device),
                opts,
                &settings,
                platform,
                encoder,
            )?
        }
        VideoSource::Libcamera(name) => {
            need(
                platform,
                "libcamerasrc",
                "Raspberry Pi cameras (package gstreamer1.0-libcamera)",
            )?;
            let enc = pick_encoder()?;
            let camera = name
                .as_deref()
                .map(|n| format!(" camera-name={}", quote(n)))
                .unwrap_or_default();
            // libcamerasrc is picky: state size, rate and format, or
            // negotiation fails (sensors.md §5.1).
            let launch = format!(
                "libcamerasrc{camera} ! video/x-raw,width={w},height={h},framerate={fps}/1,format=NV12 \
                 ! {chain} ! {parse} ! {sink}",
                w = opts.width,
                h = opts.height,
                fps = opts.fps,
                chain = encoder_chain(enc, &settings, RawMemory::System, platform),
                parse = parse_chain(settings.codec),
                sink = appsink("video"),
            );
            camera_plan(launch, enc)
        }
        VideoSource::Argus(sensor) => {
            need(
                platform,
                "nvarguscamerasrc",
                "Jetson CSI cameras (NVIDIA L4T GStreamer plugins, nvargus-daemon)",
            )?;
            let enc = pick_encoder()?;
            // Buffers stay in NVMM up to NVENC; only a software encoder
            // makes nvvidconv copy them out.
            let launch = format!(
                "nvarguscamerasrc sensor-id={sensor} \
                 ! video/x-raw(memory:NVMM),width={w},height={h},format=NV12,framerate={fps}/1 \
                 ! {chain} ! {parse} ! {sink}",
                w = opts.width,
                h = opts.height,
                fps = opts.fps,
                chain = encoder_chain(enc, &settings, RawMemory::Nvmm, platform),
                parse = parse_chain(settings.codec),
                sink = appsink("video"),
            );
            camera_plan(launch, enc)
        }
        VideoSource::Rtsp(url) => {
            need(platform, "rtspsrc", "RTSP cameras (package gstreamer1.0-plugins-good)")?;
            let protocols = match opts.rtsp_transport {
                RtspTransport::Tcp => " protocols=tcp",
                RtspTransport::Udp => " protocols=udp",
                RtspTransport::Auto => "",
            };
            let launch = format!(
                "rtspsrc name=src location={} latency={}{protocols}",
                quote(url),
                opts.rtsp_latency_ms
            );
            let mut branches = vec![
                Branch {
                    carries: StreamKind::RtpH264,
                    description: format!(
                        "rtph264depay ! {} ! {}",
                        parse_chain(VideoCodecChoice::H264),
                        appsink("video")
                    ),
                    outputs: vec![video_output()],
                },
                Branch {
                    carries: StreamKind::RtpH265,
                    description: format!(
                        "rtph265depay ! {} ! {}",
                        parse_chain(VideoCodecChoice::H265),
                        appsink("video")
                    ),
                    outputs: vec![video_output()],
                },
            ];
            if audio == AudioSource::FromSource {
                branches.extend(rtp_audio_branches());
            }
            PipelinePlan {
                launch,
                outputs: Vec::new(),
                branches,
                live: Some(true),
                encoder: None,
            }
        }
        VideoSource::File(path) => file_plan(path, audio == AudioSource::FromSource),
        VideoSource::Pipeline(description) => {
            let mut branches = vec![
                Branch {
                    carries: StreamKind::H264,
                    description: format!("{} ! {}", parse_chain(VideoCodecChoice::H264), appsink("video")),
                    outputs: vec![video_output()],
                },
                Branch {
                    carries: StreamKind::H265,
                    description: format!("{} ! {}", parse_chain(VideoCodecChoice::H265), appsink("video")),
                    outputs: vec![video_output()],
                },
            ];
            let mut chosen = None;
            if let Ok(enc) = pick_encoder() {
                chosen = Some(enc);
                let chain = encoder_chain(enc, &settings, RawMemory::System, platform);
                let parse = parse_chain(settings.codec);
                branches.push(Branch {
                    carries: StreamKind::RawVideo,
                    description: format!("{chain} ! {parse} ! {}", appsink("video")),
                    outputs: vec![video_output()],
                });
                branches.push(Branch {
                    carries: StreamKind::Jpeg,
                    description: format!("jpegdec ! {chain} ! {parse} ! {}", appsink("video")),
                    outputs: vec![video_output()],
                });
            }
            if audio == AudioSource::FromSource {
                branches.push(Branch {
                    carries: StreamKind::Aac,
                    description: format!(
                        "aacparse ! audio/mpeg,mpegversion=4,stream-format=raw ! {}",
                        appsink("audio")
                    ),
                    outputs: vec![audio_output(0)],
                });
                for (kind, caps) in [
                    (StreamKind::Opus, "opusparse ! audio/x-opus"),
                    (StreamKind::Alaw, "audio/x-alaw"),
                    (StreamKind::Mulaw, "audio/x-mulaw"),
                ] {
                    branches.push(Branch {
                        carries: kind,
                        description: format!("{caps} ! {}", appsink("audio")),
                        outputs: vec![audio_output(0)],
                    });
                }
                let (encode, outputs) = encode_audio(&audio_codecs(opts)?, platform)?;
                branches.push(Branch {
                    carries: StreamKind::RawAudio,
                    description: format!("audioconvert ! audioresample ! audio/x-raw,rate=48000 ! {encode}"),
                    outputs,
                });
            }
            PipelinePlan {
                launch: description.clone(),
                outputs: Vec::new(),
                branches,
                live: None,
                encoder: chosen,
            }
        }
    };
    // A microphone or the test tone is a chain of its own beside the video.
    if let Some(src) = audio_source_element(video, &audio, opts, platform)? {
        let (encode, outputs) = encode_audio(&audio_codecs(opts)?, platform)?;
        let chain = format!("{src} ! {encode}");
        need_all(platform, &chain, "the audio source")?;
        plan.launch.push_str("  ");
        plan.launch.push_str(&chain);
        plan.outputs.extend(outputs);
    } else if !opts.audio_codecs.is_empty()
        && audio == AudioSource::FromSource
        && !matches!(video, VideoSource::Pipeline(_))
    {
        return Err(CaptureError::InvalidOption {
            field: "audio_codecs",
            value: codec_list(&opts.audio_codecs),
            expected: "nothing for audio = source on files, RTSP and user pipelines: their audio is passed \
                       through as it comes; codecs apply to test, alsa and pulse audio",
        });
    }
    if !matches!(video, VideoSource::Pipeline(_)) {
        need_all(platform, &plan.launch, "this source (see `edge-agent probe`)")?;
    }
    Ok(plan)
}

/// What `audio = source` means for each video source: passed through for
/// files, RTSP and user pipelines, the test tone for the test source, and
/// nothing for cameras (a camera's microphone is an ALSA device).
fn resolve_audio(video: &VideoSource, audio: &AudioSource) -> AudioSource {
    match (video, audio) {
        (VideoSource::Test, AudioSource::FromSource) => AudioSource::Test,
        (VideoSource::V4l2(_) | VideoSource::Libcamera(_) | VideoSource::Argus(_), AudioSource::FromSource) => {
            AudioSource::None
        }
        (_, a) => a.clone(),
    }
}

fn camera_plan(launch: String, enc: VideoEncoder) -> PipelinePlan {
    PipelinePlan {
        launch,
        outputs: vec![video_output()],
        branches: Vec::new(),
        live: Some(true),
        encoder: Some(enc),
    }
}

fn no_encoder(codec: VideoCodecChoice) -> CaptureError {
    let tried: Vec<&str> = crate::encoder::ENCODER_PREFERENCE
        .iter()
        .filter_map(|e| e.element(codec))
        .collect();
    CaptureError::NoEncoder {
        codec: match codec {
            VideoCodecChoice::H264 => "H.264",
            VideoCodecChoice::H265 => "H.265",
        },
        tried: tried.join(", "),
    }
}

fn missing_video_device(video: &VideoSource, device: &Path, platform: &Platform) -> CaptureError {
    let mut nodes: Vec<String> = platform
        .devices
        .iter()
        .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("video")))
        .map(|d| d.display().to_string())
        .collect();
    nodes.sort();
    CaptureError::MissingDevice {
        field: "video",
        value: video.to_string(),
        reason: format!(
            "{} does not exist; video devices here: {}",
            device.display(),
            if nodes.is_empty() {
                "none".to_owned()
            } else {
                nodes.join(", ")
            }
        ),
    }
}

/// A V4L2 camera: its own H.264/H.265 passed through when it offers the
/// size and rate, else raw frames encoded, else MJPEG decoded and encoded.
/// Raw beats MJPEG because decoding costs CPU that raw does not, and a
/// camera that offers raw at the rate has the USB bandwidth for it.
fn v4l2_plan(
    video: &VideoSource,
    device: &Path,
    camera: Option<&Camera>,
    opts: &CaptureOptions,
    settings: &EncodeSettings,
    platform: &Platform,
    encoder: Option<VideoEncoder>,
) -> Result<PipelinePlan, CaptureError> {
    let (w, h, fps) = (opts.width, opts.height, opts.fps);
    let src = format!("v4l2src device={} do-timestamp=true", quote(&device.to_string_lossy()));
    let size = format!("width={w},height={h},framerate={fps}/1");
    let passthrough_format = match settings.codec {
        VideoCodecChoice::H264 => PixelFormat::H264,
        VideoCodecChoice::H265 => PixelFormat::H265,
    };
    enum Pick {
        Passthrough,
        Raw(String),
        Mjpeg,
        Unknown,
    }
    let pick = match camera {
        None => Pick::Unknown,
        Some(cam) => {
            let offers = |format: &PixelFormat| cam.modes_of(format).any(|m| m.offers(w, h, fps));
            if offers(&passthrough_format) {
                Pick::Passthrough
            } else if let Some(raw) = cam
                .modes
                .iter()
                .find(|m| matches!(m.format, PixelFormat::Raw(_)) && m.offers(w, h, fps))
            {
                Pick::Raw(raw.format.to_string())
            } else if offers(&PixelFormat::Mjpeg) {
                Pick::Mjpeg
            } else {
                return Err(unsupported_mode(video, cam, w, h, fps));
            }
        }
    };
    let parse = parse_chain(settings.codec);
    let sink = appsink("video");
    if let Pick::Passthrough = pick {
        let caps = match settings.codec {
            VideoCodecChoice::H264 => "video/x-h264",
            VideoCodecChoice::H265 => "video/x-h265",
        };
        return Ok(PipelinePlan {
            launch: format!("{src} ! {caps},{size} ! {parse} ! {sink}"),
            outputs: vec![video_output()],
            branches: Vec::new(),
            live: Some(true),
            encoder: None,
        });
    }
    let enc = match encoder {
        Some(e) => e,
        None => encoder_candidates(platform, settings)
            .into_iter()
            .next()
            .ok_or_else(|| no_encoder(settings.codec))?,
    };
    let (decode, memory) = match pick {
        Pick::Raw(format) => (format!("video/x-raw,format={format},{size}"), RawMemory::System),
        Pick::Unknown => (format!("video/x-raw,{size}"), RawMemory::System),
        Pick::Mjpeg => {
            if enc == VideoEncoder::Nvidia && platform.has_element("nvv4l2decoder") {
                (format!("image/jpeg,{size} ! nvv4l2decoder mjpeg=1"), RawMemory::Nvmm)
            } else if enc == VideoEncoder::V4l2 && platform.has_element("v4l2jpegdec") {
                (format!("image/jpeg,{size} ! v4l2jpegdec"), RawMemory::System)
            } else {
                (format!("image/jpeg,{size} ! jpegdec"), RawMemory::System)
            }
        }
        Pick::Passthrough => unreachable!("handled above"),
    };
    let chain = encoder_chain(enc, settings, memory, platform);
    Ok(camera_plan(
        format!("{src} ! {decode} ! {chain} ! {parse} ! {sink}"),
        enc,
    ))
}

/// The camera offers no mode for the request: name the first field that
/// rules every mode out (a width no mode has, then a height, then a rate).
fn unsupported_mode(video: &VideoSource, cam: &Camera, w: u32, h: u32, fps: u32) -> CaptureError {
    let usable = |m: &&crate::platform::CameraMode| !matches!(m.format, PixelFormat::Other(_));
    let (field, value) = if !cam
        .modes
        .iter()
        .filter(usable)
        .any(|m| m.offers_size(w, m.height.min(h)))
    {
        ("width", w.to_string())
    } else if !cam.modes.iter().filter(usable).any(|m| m.offers_size(w, h)) {
        ("height", h.to_string())
    } else {
        ("fps", fps.to_string())
    };
    let offered: Vec<String> = cam.modes.iter().map(|m| m.to_string()).collect();
    CaptureError::UnsupportedCaps {
        field,
        value,
        source_name: video.to_string(),
        offered: if offered.is_empty() {
            "nothing".to_owned()
        } else {
            offered.join(", ")
        },
    }
}

fn rtp_audio_branches() -> Vec<Branch> {
    let aac = "aacparse ! audio/mpeg,mpegversion=4,stream-format=raw";
    [
        (StreamKind::RtpAac, format!("rtpmp4gdepay ! {aac}")),
        (StreamKind::RtpAacLatm, format!("rtpmp4adepay ! {aac}")),
        (StreamKind::RtpPcma, "rtppcmadepay ! audio/x-alaw".to_owned()),
        (StreamKind::RtpPcmu, "rtppcmudepay ! audio/x-mulaw".to_owned()),
        (StreamKind::RtpOpus, "rtpopusdepay ! audio/x-opus".to_owned()),
    ]
    .into_iter()
    .map(|(carries, chain)| Branch {
        carries,
        description: format!("{chain} ! {}", appsink("audio")),
        outputs: vec![audio_output(0)],
    })
    .collect()
}

/// `filesrc ! parsebin`, each stream linked to a parser and appsink as it is
/// found, without decoding. The parsers keep the file's bytes as they are
/// (no in-band parameter sets added): files are passed through exactly.
fn file_plan(path: &Path, audio: bool) -> PipelinePlan {
    let mut branches = vec![
        Branch {
            carries: StreamKind::H264,
            description: format!(
                "{DEMUX_QUEUE} ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! {}",
                appsink("video")
            ),
            outputs: vec![video_output()],
        },
        Branch {
            carries: StreamKind::H265,
            description: format!(
                "{DEMUX_QUEUE} ! h265parse ! video/x-h265,stream-format=hvc1,alignment=au ! {}",
                appsink("video")
            ),
            outputs: vec![video_output()],
        },
    ];
    if audio {
        branches.push(Branch {
            carries: StreamKind::Aac,
            description: format!(
                "{DEMUX_QUEUE} ! aacparse ! audio/mpeg,stream-format=raw ! {}",
                appsink("audio")
            ),
            outputs: vec![audio_output(0)],
        });
    }
    PipelinePlan {
        launch: format!("filesrc location={} ! parsebin", quote(&path.to_string_lossy())),
        outputs: Vec::new(),
        branches,
        live: Some(false),
        encoder: None,
    }
}

/// The sink for the `i`-th audio codec: track 2, then track 3.
fn audio_output(i: usize) -> Output {
    match i {
        0 => Output {
            track: track(2),
            sink: "audio",
        },
        _ => Output {
            track: track(3),
            sink: "audio2",
        },
    }
}

/// The raw audio source element(s) for encoded audio, up to 48 kHz raw
/// audio; `None` when the audio is passed through or absent.
fn audio_source_element(
    video: &VideoSource,
    audio: &AudioSource,
    opts: &CaptureOptions,
    platform: &Platform,
) -> Result<Option<String>, CaptureError> {
    Ok(Some(match audio {
        AudioSource::None | AudioSource::FromSource => return Ok(None),
        AudioSource::Test => {
            // Same duration as the video: 1024 samples per buffer at 48 kHz.
            let buffers = match (video, opts.num_buffers) {
                (VideoSource::Test, Some(n)) => {
                    let n = (u64::from(n) * 48_000).div_ceil(u64::from(opts.fps.max(1)) * 1024);
                    format!(" num-buffers={n}")
                }
                _ => String::new(),
            };
            let live = match video {
                VideoSource::Test => opts.live,
                _ => true,
            };
            format!(
                "audiotestsrc is-live={live} wave=sine freq=440 samplesperbuffer=1024{buffers} \
                 ! audio/x-raw,rate=48000,channels=2 ! audioconvert"
            )
        }
        AudioSource::Alsa(device) => {
            need(platform, "alsasrc", "ALSA microphones (package gstreamer1.0-alsa)")?;
            check_alsa_device(device, platform)?;
            format!(
                "alsasrc device={} ! audioconvert ! audioresample ! audio/x-raw,rate=48000",
                quote(device)
            )
        }
        AudioSource::Pulse(device) => {
            need(
                platform,
                "pulsesrc",
                "PulseAudio/PipeWire microphones (package gstreamer1.0-pulseaudio)",
            )?;
            let device = device
                .as_deref()
                .map(|d| format!(" device={}", quote(d)))
                .unwrap_or_default();
            format!("pulsesrc{device} ! audioconvert ! audioresample ! audio/x-raw,rate=48000")
        }
    }))
}

/// `hw:1`, `hw:1,0`, `plughw:CARD=Device,DEV=0`, `sysdefault:1`: the card
/// (and device) must exist and capture. Names ALSA resolves through its
/// configuration (`default`, `dsnoop`...) are left to ALSA.
fn check_alsa_device(device: &str, platform: &Platform) -> Result<(), CaptureError> {
    let Some((plugin, args)) = device.split_once(':') else {
        return Ok(());
    };
    if !matches!(plugin, "hw" | "plughw" | "sysdefault" | "dsnoop" | "front") {
        return Ok(());
    }
    let mut card = None;
    let mut dev = None;
    for (i, part) in args.split(',').enumerate() {
        match part.split_once('=') {
            Some(("CARD", v)) => card = Some(v),
            Some(("DEV", v)) => dev = v.parse::<u32>().ok(),
            Some(_) => {}
            None if i == 0 => card = Some(part),
            None => dev = part.parse::<u32>().ok(),
        }
    }
    let Some(card) = card else {
        return Ok(());
    };
    let missing = |reason: String| CaptureError::MissingDevice {
        field: "audio",
        value: format!("alsa:{device}"),
        reason,
    };
    let Some(found) = platform.sound_card(card) else {
        let cards: Vec<String> = platform
            .sound_cards
            .iter()
            .map(|c| format!("{} ({}, {})", c.index, c.id, c.name))
            .collect();
        return Err(missing(format!(
            "there is no ALSA card {card}; cards here: {}",
            if cards.is_empty() {
                "none (/proc/asound/cards lists none)".to_owned()
            } else {
                cards.join(", ")
            }
        )));
    };
    let dev = dev.unwrap_or(0);
    if !found.capture_devices.contains(&dev) {
        return Err(missing(format!(
            "card {} ({}) has no capture device {dev}; its capture devices: {}",
            found.index,
            found.name,
            if found.capture_devices.is_empty() {
                "none".to_owned()
            } else {
                found
                    .capture_devices
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    Ok(())
}

fn codec_list(codecs: &[AudioCodecChoice]) -> String {
    codecs.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// The codecs to encode audio into: AAC unless told otherwise; at most two,
/// since a stream has at most three tracks and video takes one.
fn audio_codecs(opts: &CaptureOptions) -> Result<Vec<AudioCodecChoice>, CaptureError> {
    if opts.audio_codecs.is_empty() {
        return Ok(vec![AudioCodecChoice::Aac]);
    }
    let invalid = |expected| {
        Err(CaptureError::InvalidOption {
            field: "audio_codecs",
            value: codec_list(&opts.audio_codecs),
            expected,
        })
    };
    if opts.audio_codecs.len() > 2 {
        return invalid("one or two codecs (a stream carries video and at most two audio tracks)");
    }
    if opts.audio_codecs.len() == 2 && opts.audio_codecs[0] == opts.audio_codecs[1] {
        return invalid("two different codecs");
    }
    Ok(opts.audio_codecs.clone())
}

/// Raw audio → one encoder per codec, each to its appsink; through a tee
/// when one microphone feeds two codecs.
fn encode_audio(codecs: &[AudioCodecChoice], platform: &Platform) -> Result<(String, Vec<Output>), CaptureError> {
    let mut branches = Vec::new();
    let mut outputs = Vec::new();
    for (i, codec) in codecs.iter().enumerate() {
        let output = audio_output(i);
        let encode = match codec {
            AudioCodecChoice::Aac => {
                let encoder = ["avenc_aac", "voaacenc", "fdkaacenc"]
                    .into_iter()
                    .find(|e| platform.has_element(e))
                    .ok_or(CaptureError::MissingElement {
                        element: "avenc_aac".to_owned(),
                        needed_for: "AAC audio (voaacenc or fdkaacenc would also do; package gstreamer1.0-libav)",
                    })?;
                format!("{encoder} ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw")
            }
            AudioCodecChoice::Opus => {
                need(platform, "opusenc", "Opus audio (package gstreamer1.0-plugins-base)")?;
                "opusenc".to_owned()
            }
            AudioCodecChoice::Alaw | AudioCodecChoice::Mulaw => {
                let element = if *codec == AudioCodecChoice::Alaw {
                    "alawenc"
                } else {
                    "mulawenc"
                };
                need(platform, element, "G.711 audio (package gstreamer1.0-plugins-good)")?;
                format!("audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 ! {element}")
            }
        };
        branches.push(format!("{encode} ! {}", appsink(output.sink)));
        outputs.push(output);
    }
    let text = match branches.as_slice() {
        [one] => one.clone(),
        many => {
            // A tee offers upstream only what every branch accepts, and
            // encoders disagree (avenc_aac wants float, opusenc integers):
            // each branch converts for itself.
            let mut t = "tee name=mic".to_owned();
            for b in many {
                let convert = if b.starts_with("audioconvert") {
                    ""
                } else {
                    "audioconvert ! "
                };
                t.push_str(&format!("  mic. ! queue ! {convert}{b}"));
            }
            t
        }
    };
    Ok((text, outputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_paths_alone_and_quotes_the_rest() {
        assert_eq!(quote("/dev/video0"), "/dev/video0");
        assert_eq!(quote("hw:1,0"), "\"hw:1,0\"");
        assert_eq!(quote("rtsp://h/a b"), "\"rtsp://h/a b\"");
        assert_eq!(quote("x\"y"), "\"x\\\"y\"");
    }

    #[test]
    fn element_check_skips_caps_properties_and_pad_references() {
        let mut p = Platform::new(crate::platform::Board::X86, "pc");
        for e in ["audiotestsrc", "tee", "queue", "opusenc", "appsink"] {
            p.elements.insert(e.to_owned());
        }
        let d = "audiotestsrc is-live=true ! audio/x-raw,rate=48000 ! tee name=mic  mic. ! queue ! opusenc \
                 ! appsink name=a sync=false  mic. ! queue ! avenc_aac ! appsink";
        match need_all(&p, d, "x") {
            Err(CaptureError::MissingElement { element, .. }) => assert_eq!(element, "avenc_aac"),
            other => panic!("{other:?}"),
        }
        p.elements.insert("avenc_aac".to_owned());
        need_all(&p, d, "x").unwrap();
    }
}
