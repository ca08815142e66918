//! GStreamer pipelines for each source kind, ending in one appsink per track.

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};

use fragmenter::TrackId;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::capture::CaptureOptions;
use crate::error::CaptureError;
use crate::frames::{feed_channel, Event};
use crate::source::AudioSource;
use crate::tracks::{audio_track_id, video_track_id};

/// Properties of every appsink: no clock sync because frames are stamped
/// from buffer running time, not arrival; no last-sample so a zero-copy
/// frame's buffer is not kept alive by the sink.
const APPSINK: &str = "appsink name=sink sync=false enable-last-sample=false";

/// Decouples each stream of a demuxer from the others: without it, the
/// first sink to preroll blocks the demuxer's only thread and the other
/// sinks never get the data they need to preroll. Sized in time only, so
/// high bitrates do not hit a byte limit before a sparse audio stream
/// delivers its first packet.
const DEMUX_QUEUE: &str = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000";

/// A pipeline and the appsinks it feeds frames from.
pub(crate) struct Built {
    pub(crate) pipeline: gst::Pipeline,
    pub(crate) sinks: Sinks,
}

/// Which appsinks carry which track.
pub(crate) enum Sinks {
    /// Known when the pipeline is built.
    Fixed(Vec<(TrackId, gst_app::AppSink)>),
    /// Known once the file's streams have all been found.
    File(Arc<FileContext>),
}

impl Sinks {
    /// The appsinks, once the pipeline has reached PAUSED or PLAYING: by then
    /// parsebin has exposed every stream of a file, because it holds the
    /// state change until it has (it emits no no-more-pads).
    pub(crate) fn resolve(&self) -> Result<Vec<(TrackId, gst_app::AppSink)>, CaptureError> {
        match self {
            Sinks::Fixed(sinks) => Ok(sinks.clone()),
            Sinks::File(ctx) => ctx.resolve(),
        }
    }
}

/// The streams of a file found so far.
#[derive(Default)]
struct FileLinks {
    video: Option<gst_app::AppSink>,
    audio: Option<gst_app::AppSink>,
    /// Caps of the first video stream we could not pass through.
    unsupported_video: Option<String>,
    /// Caps of the first audio stream we could not pass through.
    unsupported_audio: Option<String>,
    /// Streams parsebin exposed, captured or not.
    streams: usize,
    /// The tracks are fixed; streams of later groups (chained files) are
    /// not captured.
    resolved: bool,
}

fn lock(links: &Mutex<FileLinks>) -> MutexGuard<'_, FileLinks> {
    // A panic in a pad callback leaves plain data behind; keep using it.
    links.lock().unwrap_or_else(|e| e.into_inner())
}

fn require(element: &str, needed_for: &'static str) -> Result<(), CaptureError> {
    match gst::ElementFactory::find(element) {
        Some(_) => Ok(()),
        None => Err(CaptureError::MissingElement {
            element: element.to_owned(),
            needed_for,
        }),
    }
}

/// The test pattern (and tone), encoded live.
pub(crate) fn test_pipeline(opts: &CaptureOptions, tx: &SyncSender<Event>) -> Result<Built, CaptureError> {
    require("videotestsrc", "the test video pattern")?;
    require("x264enc", "H.264 encoding of the test pattern")?;
    require("h264parse", "H.264 parsing")?;
    require("appsink", "handing frames to the agent")?;
    // The overlay only makes frames differ; without pango, capture works.
    let overlay = gst::ElementFactory::find("timeoverlay").is_some();
    if !overlay {
        tracing::warn!("timeoverlay (pango) is not installed; test frames will all look alike");
    }
    let audio = match opts.audio {
        AudioSource::None => None,
        AudioSource::Test | AudioSource::FromSource => {
            require("audiotestsrc", "the test tone")?;
            require("audioconvert", "the test tone")?;
            require("aacparse", "AAC parsing")?;
            let encoder = ["avenc_aac", "voaacenc"]
                .into_iter()
                .find(|e| gst::ElementFactory::find(e).is_some())
                .ok_or(CaptureError::MissingElement {
                    element: "avenc_aac".to_owned(),
                    needed_for: "AAC encoding of the test tone (voaacenc would also do)",
                })?;
            Some(encoder)
        }
    };
    let description = test_description(opts, overlay, audio);
    tracing::debug!(%description, "test pipeline");
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| CaptureError::Build {
            description: description.clone(),
            message: e.to_string(),
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| CaptureError::Build {
            description: description.clone(),
            message: "the description did not make a pipeline".to_owned(),
        })?;
    let mut sinks = Vec::new();
    for (name, track) in [("video", video_track_id()), ("audio", audio_track_id())] {
        let Some(sink) = pipeline.by_name(name) else {
            continue;
        };
        let sink = sink.downcast::<gst_app::AppSink>().map_err(|_| CaptureError::Build {
            description: description.clone(),
            message: format!("element {name} is not an appsink"),
        })?;
        feed_channel(&sink, track, tx.clone());
        sinks.push((track, sink));
    }
    Ok(Built {
        pipeline,
        sinks: Sinks::Fixed(sinks),
    })
}

/// The gst-launch description of the test source; `aac_encoder` is `None`
/// for no audio.
fn test_description(opts: &CaptureOptions, overlay: bool, aac_encoder: Option<&str>) -> String {
    let live = opts.live;
    let fps = opts.fps;
    // One IDR per fragment, so fragments start on keyframes and none is
    // longer than asked.
    let key_int = (opts.fragment_duration.as_secs_f64() * f64::from(fps)).round().max(1.0) as u64;
    let video_buffers = opts
        .num_buffers
        .map(|n| format!(" num-buffers={n}"))
        .unwrap_or_default();
    let overlay = if overlay {
        // Running time, not the wall clock: a non-live source makes many
        // frames per wall-clock second, and they should still differ.
        " ! timeoverlay font-desc=\"Sans 24\""
    } else {
        ""
    };
    // Scene-cut detection fires on the test pattern's changing overlay and
    // puts IDRs early, which would make fragments irregular; a test camera
    // should be predictable, so key frames come from key-int-max alone.
    // x264enc negotiates 4:4:4 (High 4:4:4, which few decoders play) unless
    // I420 is forced right in front of it.
    let mut d = format!(
        "videotestsrc is-live={live} pattern=smpte{video_buffers} \
         ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1{overlay} \
         ! video/x-raw,format=I420 \
         ! x264enc tune=zerolatency speed-preset=veryfast key-int-max={key_int} bitrate={kbps} \
           option-string=scenecut=0 \
         ! h264parse ! video/x-h264,stream-format=avc,alignment=au \
         ! {APPSINK_VIDEO}",
        w = opts.width,
        h = opts.height,
        kbps = opts.video_bitrate_kbps,
        APPSINK_VIDEO = APPSINK.replace("name=sink", "name=video"),
    );
    if let Some(encoder) = aac_encoder {
        // Same duration as the video: 1024 samples per buffer at 48 kHz.
        let audio_buffers = opts
            .num_buffers
            .map(|n| {
                let n = (u64::from(n) * 48_000).div_ceil(u64::from(fps.max(1)) * 1024);
                format!(" num-buffers={n}")
            })
            .unwrap_or_default();
        d.push_str(&format!(
            "  audiotestsrc is-live={live} wave=sine freq=440 samplesperbuffer=1024{audio_buffers} \
             ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! {encoder} \
             ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw \
             ! {APPSINK_AUDIO}",
            APPSINK_AUDIO = APPSINK.replace("name=sink", "name=audio"),
        ));
    }
    d
}

/// `filesrc ! parsebin`, each stream linked to a parser and appsink as it
/// is found, without decoding.
pub(crate) fn file_pipeline(path: &Path, audio: AudioSource, tx: &SyncSender<Event>) -> Result<Built, CaptureError> {
    require("filesrc", "reading files")?;
    require("parsebin", "demuxing files")?;
    require("queue", "demuxing files")?;
    require("appsink", "handing frames to the agent")?;
    let location = path.to_str().ok_or_else(|| CaptureError::FileUnreadable {
        path: path.to_owned(),
        error: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path is not UTF-8, which filesrc requires",
        ),
    })?;
    let build = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|e| CaptureError::Build {
                description: factory.to_owned(),
                message: e.to_string(),
            })
    };
    let pipeline = gst::Pipeline::new();
    let src = build("filesrc")?;
    src.set_property("location", location);
    let parsebin = build("parsebin")?;
    pipeline
        .add_many([&src, &parsebin])
        .and_then(|()| src.link(&parsebin))
        .map_err(|e| CaptureError::Build {
            description: "filesrc ! parsebin".to_owned(),
            message: e.to_string(),
        })?;

    let ctx = Arc::new(FileContext {
        path: path.to_owned(),
        audio_wanted: audio == AudioSource::FromSource,
        pipeline: pipeline.downgrade(),
        links: Mutex::new(FileLinks::default()),
        tx: tx.clone(),
    });
    // Our own parser follows the demuxer directly. parsebin's parser would
    // be linked before our branch exists and renegotiate once it is, and a
    // renegotiated h264parse prepends a second SPS/PPS (before the AUD) to
    // the next IDR: streams we pass through stop at the demuxer.
    parsebin.connect("autoplug-continue", false, |args| {
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        let ours = caps.is_some_and(|caps| matches!(classify(&caps), Stream::H264 | Stream::H265 | Stream::Aac));
        Some((!ours).to_value())
    });
    let on_pad = ctx.clone();
    parsebin.connect_pad_added(move |_, pad| on_pad.pad_added(pad));
    Ok(Built {
        pipeline,
        sinks: Sinks::File(ctx),
    })
}

/// What the parsebin callbacks need; weak pipeline so the pipeline's own
/// signal handlers do not keep it alive.
pub(crate) struct FileContext {
    path: PathBuf,
    audio_wanted: bool,
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    links: Mutex<FileLinks>,
    tx: SyncSender<Event>,
}

/// What a stream found in a file is, by its caps.
#[derive(Debug, PartialEq, Eq)]
enum Stream {
    H264,
    H265,
    Aac,
    OtherVideo(String),
    OtherAudio(String),
    Other(String),
}

fn classify(caps: &gst::CapsRef) -> Stream {
    let Some(s) = caps.structure(0) else {
        return Stream::Other(caps.to_string());
    };
    let name = s.name().as_str();
    match name {
        "video/x-h264" => Stream::H264,
        "video/x-h265" => Stream::H265,
        // MPEG-2 AAC (ADTS in transport streams) is the same bitstream.
        "audio/mpeg" => match s.get::<i32>("mpegversion") {
            Ok(2 | 4) => Stream::Aac,
            Ok(v) => Stream::OtherAudio(format!("audio/mpeg,mpegversion={v}")),
            Err(_) => Stream::OtherAudio(name.to_owned()),
        },
        n if n.starts_with("video/") || n.starts_with("image/") => Stream::OtherVideo(n.to_owned()),
        n if n.starts_with("audio/") => Stream::OtherAudio(n.to_owned()),
        n => Stream::Other(n.to_owned()),
    }
}

impl FileContext {
    fn send(&self, event: Event) {
        // Fails only when capture is being torn down; nothing to tell.
        let _ = self.tx.send(event);
    }

    fn pad_added(&self, pad: &gst::Pad) {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let stream = classify(&caps);
        tracing::debug!(path = %self.path.display(), %caps, ?stream, "file stream found");
        let mut links = lock(&self.links);
        links.streams += 1;
        let branch = match stream {
            Stream::H264 | Stream::H265 if links.video.is_none() && !links.resolved => {
                let (parser, filter) = if stream == Stream::H264 {
                    ("h264parse", "video/x-h264,stream-format=avc,alignment=au")
                } else {
                    ("h265parse", "video/x-h265,stream-format=hvc1,alignment=au")
                };
                Some((video_track_id(), parser, filter))
            }
            Stream::Aac if self.audio_wanted && links.audio.is_none() && !links.resolved => {
                Some((audio_track_id(), "aacparse", "audio/mpeg,stream-format=raw"))
            }
            Stream::OtherVideo(caps) => {
                links.unsupported_video.get_or_insert(caps);
                None
            }
            Stream::OtherAudio(caps) if self.audio_wanted => {
                links.unsupported_audio.get_or_insert(caps);
                None
            }
            other => {
                tracing::debug!(path = %self.path.display(), stream = ?other, "stream not captured");
                None
            }
        };
        let result = match branch {
            Some((track, parser, filter)) => self.link_appsink(pad, track, parser, filter).map(|sink| {
                if track == video_track_id() {
                    links.video = Some(sink);
                } else {
                    links.audio = Some(sink);
                }
            }),
            // Streams we do not capture still need a sink, or the demuxer
            // stops with not-negotiated/not-linked.
            None => self.link_branch(pad, &format!("{DEMUX_QUEUE} ! fakesink sync=false")),
        };
        drop(links);
        if let Err(e) = result {
            self.send(Event::Error(e));
        }
    }

    fn link_appsink(
        &self,
        pad: &gst::Pad,
        track: TrackId,
        parser: &'static str,
        filter: &str,
    ) -> Result<gst_app::AppSink, CaptureError> {
        require(parser, "parsing a file's streams")?;
        let description = format!("{DEMUX_QUEUE} ! {parser} ! {filter} ! {APPSINK}");
        let bin = self.branch(&description)?;
        let sink = bin
            .by_name("sink")
            .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| CaptureError::Build {
                description: description.clone(),
                message: "no appsink named sink".to_owned(),
            })?;
        // Callbacks before linking, so no buffer gets past unseen.
        feed_channel(&sink, track, self.tx.clone());
        self.attach(pad, &bin, &description)?;
        Ok(sink)
    }

    fn link_branch(&self, pad: &gst::Pad, description: &str) -> Result<(), CaptureError> {
        let bin = self.branch(description)?;
        self.attach(pad, &bin, description)
    }

    fn branch(&self, description: &str) -> Result<gst::Bin, CaptureError> {
        gst::parse::bin_from_description(description, true).map_err(|e| CaptureError::Build {
            description: description.to_owned(),
            message: e.to_string(),
        })
    }

    fn attach(&self, pad: &gst::Pad, bin: &gst::Bin, description: &str) -> Result<(), CaptureError> {
        let build_error = |message: String| CaptureError::Build {
            description: description.to_owned(),
            message,
        };
        let Some(pipeline) = self.pipeline.upgrade() else {
            // Capture is gone; nothing to link into.
            return Ok(());
        };
        pipeline.add(bin).map_err(|e| build_error(e.to_string()))?;
        bin.sync_state_with_parent().map_err(|e| build_error(e.to_string()))?;
        let sink_pad = bin
            .static_pad("sink")
            .ok_or_else(|| build_error("the branch has no sink pad".to_owned()))?;
        pad.link(&sink_pad)
            .map_err(|e| build_error(format!("linking {}: {e:?}", pad.name())))?;
        Ok(())
    }

    /// Every stream is known: the appsinks, or why the file cannot be
    /// captured.
    fn resolve(&self) -> Result<Vec<(TrackId, gst_app::AppSink)>, CaptureError> {
        let mut links = lock(&self.links);
        links.resolved = true;
        let path = self.path.clone();
        if links.streams == 0 {
            // parsebin gives up without exposing anything when the file is
            // not a format it knows; its own error on the bus says more.
            return Err(CaptureError::Unplayable {
                path,
                element: "parsebin".to_owned(),
                message: "no streams found".to_owned(),
            });
        }
        let Some(video) = links.video.clone() else {
            return Err(match links.unsupported_video.clone() {
                Some(caps) => CaptureError::UnsupportedCodec { path, caps },
                None => CaptureError::NoVideo { path },
            });
        };
        if let (true, None, Some(caps)) = (self.audio_wanted, &links.audio, links.unsupported_audio.clone()) {
            return Err(CaptureError::UnsupportedCodec { path, caps });
        }
        let mut sinks = vec![(video_track_id(), video)];
        sinks.extend(links.audio.clone().map(|a| (audio_track_id(), a)));
        Ok(sinks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn test_description_forces_i420_before_x264enc_and_a_keyframe_per_fragment() {
        let opts = CaptureOptions {
            fragment_duration: Duration::from_secs(2),
            fps: 30,
            ..CaptureOptions::default()
        };
        let d = test_description(&opts, true, Some("avenc_aac"));
        let enc = d.find("x264enc").unwrap();
        let last_filter = d[..enc].rfind('!').unwrap();
        let before = d[..last_filter].rsplit('!').next().unwrap().trim();
        assert_eq!(before, "video/x-raw,format=I420", "{d}");
        assert!(d.contains("key-int-max=60"), "{d}");
        assert!(d.contains("bitrate=2000"), "{d}");
        assert!(d.contains("avenc_aac"), "{d}");
        assert!(d.contains("is-live=true"), "{d}");
    }

    #[test]
    fn num_buffers_caps_audio_to_the_same_duration() {
        let opts = CaptureOptions {
            fps: 30,
            num_buffers: Some(90),
            live: false,
            ..CaptureOptions::default()
        };
        let d = test_description(&opts, false, Some("voaacenc"));
        assert!(d.contains("pattern=smpte num-buffers=90"), "{d}");
        // 3 s at 48 kHz in 1024-sample buffers: 140.6 → 141.
        assert!(d.contains("num-buffers=141"), "{d}");
        assert!(!d.contains("timeoverlay"), "{d}");
        let d = test_description(&opts, false, None);
        assert!(!d.contains("audiotestsrc"), "{d}");
    }
}
