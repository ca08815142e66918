//! GStreamer pipelines built from a [`PipelinePlan`], ending in one appsink
//! per track. Fixed plans are parsed as they are; files, RTSP and user
//! pipelines link a plan branch behind each stream as it appears.

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};

use fragmenter::TrackId;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::error::CaptureError;
use crate::frames::{feed_channel, Event};
use crate::plan::{Branch, PipelinePlan, StreamKind};
use crate::source::VideoCodecChoice;
use crate::source::VideoSource;

/// A pipeline and the appsinks it feeds frames from.
pub(crate) struct Built {
    pub(crate) pipeline: gst::Pipeline,
    pub(crate) sinks: Sinks,
    /// For user pipelines: what their video output carries, which says
    /// whether the plan's encoder is in use.
    pub(crate) video_kind: Option<StreamKind>,
}

/// Which appsinks carry which track.
pub(crate) enum Sinks {
    /// Known when the pipeline is built.
    Fixed(Vec<(TrackId, gst_app::AppSink)>),
    /// Known once the source has exposed all its streams.
    Dynamic(Arc<DynamicContext>),
}

impl Sinks {
    /// The appsinks once every stream is known, `None` while still waiting.
    /// Files know once the pipeline reached PAUSED or PLAYING (parsebin holds
    /// the state change until it exposed every stream); RTSP once rtspsrc
    /// said no-more-pads.
    pub(crate) fn resolve(&self) -> Result<Option<Vec<(TrackId, gst_app::AppSink)>>, CaptureError> {
        match self {
            Sinks::Fixed(sinks) => Ok(Some(sinks.clone())),
            Sinks::Dynamic(ctx) => ctx.resolve(),
        }
    }

    /// A clearer error than a pipeline's own for a source whose streams
    /// were all refused (an RTSP camera offering only MJPEG).
    pub(crate) fn explain(&self) -> Option<CaptureError> {
        match self {
            Sinks::Fixed(_) => None,
            Sinks::Dynamic(ctx) => ctx.explain(),
        }
    }
}

fn build_error(description: &str, message: impl ToString) -> CaptureError {
    CaptureError::Build {
        description: description.to_owned(),
        message: message.to_string(),
    }
}

/// The appsink named `name` inside `bin`, fed into `tx` as `track`.
fn appsink_in(
    bin: &gst::Bin,
    name: &str,
    track: TrackId,
    description: &str,
    tx: &SyncSender<Event>,
) -> Result<gst_app::AppSink, CaptureError> {
    let sink = bin
        .by_name(name)
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| build_error(description, format!("no appsink named {name}")))?;
    // Callbacks before linking, so no buffer gets past unseen.
    feed_channel(&sink, track, tx.clone());
    Ok(sink)
}

/// Build the pipeline `plan` describes for `video`.
pub(crate) fn build(video: &VideoSource, plan: &PipelinePlan, tx: &SyncSender<Event>) -> Result<Built, CaptureError> {
    match video {
        VideoSource::File(path) => file_pipeline(path, plan, tx),
        VideoSource::Rtsp(_) => rtsp_pipeline(video, plan, tx),
        VideoSource::Pipeline(_) => user_pipeline(video, plan, tx),
        _ => {
            let (pipeline, bin) = launch_bin(&plan.launch, false)?;
            let sinks = fixed_sinks(&bin, plan, tx)?;
            Ok(Built {
                pipeline,
                sinks: Sinks::Fixed(sinks),
                video_kind: None,
            })
        }
    }
}

/// A pipeline holding the launch text as one bin.
fn launch_bin(description: &str, ghost_unlinked: bool) -> Result<(gst::Pipeline, gst::Bin), CaptureError> {
    let bin = gst::parse::bin_from_description(description, ghost_unlinked).map_err(|e| build_error(description, e))?;
    let pipeline = gst::Pipeline::new();
    pipeline.add(&bin).map_err(|e| build_error(description, e))?;
    Ok((pipeline, bin))
}

fn fixed_sinks(
    bin: &gst::Bin,
    plan: &PipelinePlan,
    tx: &SyncSender<Event>,
) -> Result<Vec<(TrackId, gst_app::AppSink)>, CaptureError> {
    plan.outputs
        .iter()
        .map(|o| Ok((o.track, appsink_in(bin, o.sink, o.track, &plan.launch, tx)?)))
        .collect()
}

/// `filesrc ! parsebin`, each stream linked to its plan branch as it is
/// found, without decoding.
fn file_pipeline(path: &Path, plan: &PipelinePlan, tx: &SyncSender<Event>) -> Result<Built, CaptureError> {
    let location = path.to_str().ok_or_else(|| CaptureError::FileUnreadable {
        path: path.to_owned(),
        error: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path is not UTF-8, which filesrc requires",
        ),
    })?;
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|e| build_error(factory, e))
    };
    let pipeline = gst::Pipeline::new();
    let src = make("filesrc")?;
    src.set_property("location", location);
    let parsebin = make("parsebin")?;
    pipeline
        .add_many([&src, &parsebin])
        .and_then(|()| src.link(&parsebin))
        .map_err(|e| build_error("filesrc ! parsebin", e))?;
    let ctx = Arc::new(DynamicContext {
        mode: Mode::File(path.to_owned()),
        branches: plan.branches.clone(),
        fixed: Vec::new(),
        container: pipeline.clone().upcast::<gst::Bin>().downgrade(),
        links: Mutex::new(Links::default()),
        tx: tx.clone(),
    });
    // Our own parser follows the demuxer directly. parsebin's parser would
    // be linked before our branch exists and renegotiate once it is, and a
    // renegotiated h264parse prepends a second SPS/PPS (before the AUD) to
    // the next IDR: streams we pass through stop at the demuxer.
    parsebin.connect("autoplug-continue", false, |args| {
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        let ours = caps.is_some_and(|caps| {
            matches!(
                StreamKind::from_caps(&caps),
                Some(StreamKind::H264 | StreamKind::H265 | StreamKind::Aac)
            )
        });
        Some((!ours).to_value())
    });
    let on_pad = ctx.clone();
    parsebin.connect_pad_added(move |_, pad| on_pad.pad_added(pad));
    Ok(Built {
        pipeline,
        sinks: Sinks::Dynamic(ctx),
        video_kind: None,
    })
}

/// rtspsrc (and any local audio chain); streams chosen in `select-stream`
/// so unwanted ones are never set up, then linked as their pads appear.
fn rtsp_pipeline(video: &VideoSource, plan: &PipelinePlan, tx: &SyncSender<Event>) -> Result<Built, CaptureError> {
    let (pipeline, bin) = launch_bin(&plan.launch, false)?;
    let fixed = fixed_sinks(&bin, plan, tx)?;
    let src = bin
        .by_name("src")
        .ok_or_else(|| build_error(&plan.launch, "no element named src"))?;
    let ctx = Arc::new(DynamicContext {
        mode: Mode::Rtsp(video.redacted()),
        branches: plan.branches.clone(),
        fixed,
        container: bin.downgrade(),
        links: Mutex::new(Links::default()),
        tx: tx.clone(),
    });
    let select = ctx.clone();
    src.connect("select-stream", false, move |args| {
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        Some(caps.is_some_and(|c| select.select(&c)).to_value())
    });
    let on_pad = ctx.clone();
    src.connect_pad_added(move |_, pad| on_pad.pad_added(pad));
    let done = ctx.clone();
    src.connect_no_more_pads(move |_| {
        lock(&done.links).complete = true;
    });
    Ok(Built {
        pipeline,
        sinks: Sinks::Dynamic(ctx),
        video_kind: None,
    })
}

/// The user's description as a bin whose unlinked outputs become ghost
/// pads; each is linked to the branch for what its caps say it carries.
fn user_pipeline(video: &VideoSource, plan: &PipelinePlan, tx: &SyncSender<Event>) -> Result<Built, CaptureError> {
    let (pipeline, bin) = launch_bin(&plan.launch, false)?;
    let mut sinks = fixed_sinks(&bin, plan, tx)?;
    let mut offered = Vec::new();
    let mut video_kind = None;
    let mut have_audio = !plan.outputs.is_empty();
    let container: gst::Bin = pipeline.clone().upcast();
    let mut skipped = Vec::new();
    for (i, pad) in unlinked_src_pads(&bin).into_iter().enumerate() {
        // gst-launch's own ghosting exposes only the first unlinked pad;
        // every chain's output needs one.
        let ghost = gst::GhostPad::builder_with_target(&pad)
            .map_err(|e| build_error(&plan.launch, e))?
            .name(format!("out_{i}"))
            .build();
        bin.add_pad(&ghost).map_err(|e| build_error(&plan.launch, e))?;
        let caps = ghost.query_caps(None);
        offered.push(first_structure(&caps));
        let kind = StreamKind::from_caps(&caps);
        let branch = kind.and_then(|k| plan.branch(k)).filter(|b| {
            if b.carries.is_video() {
                video_kind.is_none()
            } else {
                !have_audio
            }
        });
        let Some(branch) = branch else {
            skipped.push(caps.to_string());
            attach_branch(
                &container,
                ghost.upcast_ref(),
                "fakesink sync=false async=false",
                &[],
                tx,
            )?;
            continue;
        };
        if branch.carries.is_video() {
            video_kind = Some(branch.carries);
        } else {
            have_audio = true;
        }
        let description = reuse_parser(&pad, &branch.description);
        let (_, found) = attach_branch(
            &container,
            ghost.upcast_ref(),
            description.as_deref().unwrap_or(&branch.description),
            &branch_sinks(branch),
            tx,
        )?;
        sinks.extend(found);
    }
    if video_kind.is_none() {
        return Err(CaptureError::NoCapturableVideo {
            input: video.redacted(),
            offered: if offered.is_empty() {
                "no unlinked output".to_owned()
            } else {
                offered.join(", ")
            },
            hint: ", raw video or MJPEG: leave the video chain's last output unlinked, and end it with \
                   `capsfilter caps=video/x-h264` (or video/x-raw) when its output could be anything",
        });
    }
    for caps in skipped {
        tracing::warn!(input = %video.redacted(), %caps, "user pipeline output not captured");
    }
    Ok(Built {
        pipeline,
        sinks: Sinks::Fixed(sinks),
        video_kind,
    })
}

/// The branch without its leading parser when `pad` comes out of that same
/// parser (a user pipeline ending in `h264parse`, as passthrough ones do):
/// the user's parser is told to repeat SPS/PPS instead. A second parser
/// costs its NAL parser state (about 240 KB) and a frame adapter for
/// nothing.
fn reuse_parser(pad: &gst::Pad, description: &str) -> Option<String> {
    let element = pad.parent_element()?;
    let factory = element.factory()?;
    for codec in [VideoCodecChoice::H264, VideoCodecChoice::H265] {
        let chain = crate::encoder::parse_chain(codec);
        let (parser, rest) = chain.split_once(" ! ")?;
        let name = parser.split_whitespace().next()?;
        if factory.name() == name && description.starts_with(chain) {
            element.set_property("config-interval", -1i32);
            // A bare caps string cannot start a bin description.
            return Some(format!("capsfilter caps={rest}{}", &description[chain.len()..]));
        }
    }
    None
}

/// Source pads of the bin's elements that nothing is linked to, in the
/// order the description names them.
fn unlinked_src_pads(bin: &gst::Bin) -> Vec<gst::Pad> {
    let mut children = bin.children();
    // Children are listed last-added first.
    children.reverse();
    children
        .iter()
        .flat_map(|e| e.src_pads())
        .filter(|p| p.peer().is_none())
        .collect()
}

fn first_structure(caps: &gst::CapsRef) -> String {
    if caps.is_any() {
        return "ANY".to_owned();
    }
    caps.structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| caps.to_string())
}

fn branch_sinks(branch: &Branch) -> Vec<(TrackId, &'static str)> {
    branch.outputs.iter().map(|o| (o.track, o.sink)).collect()
}

/// Add `description` as a bin to `container`, feed its appsinks, and link
/// `pad` to it.
fn attach_branch(
    container: &gst::Bin,
    pad: &gst::Pad,
    description: &str,
    sinks: &[(TrackId, &'static str)],
    tx: &SyncSender<Event>,
) -> Result<(gst::Bin, Vec<(TrackId, gst_app::AppSink)>), CaptureError> {
    let bin = gst::parse::bin_from_description(description, true).map_err(|e| build_error(description, e))?;
    let found = sinks
        .iter()
        .map(|(track, name)| Ok((*track, appsink_in(&bin, name, *track, description, tx)?)))
        .collect::<Result<Vec<_>, CaptureError>>()?;
    container.add(&bin).map_err(|e| build_error(description, e))?;
    bin.sync_state_with_parent().map_err(|e| build_error(description, e))?;
    let sink_pad = bin
        .static_pad("sink")
        .ok_or_else(|| build_error(description, "the branch has no sink pad"))?;
    pad.link(&sink_pad)
        .map_err(|e| build_error(description, format!("linking {}: {e:?}", pad.name())))?;
    Ok((bin, found))
}

/// Where streams come from, for the rules that differ.
enum Mode {
    /// A file: every stream must be understood; unsupported codecs fail.
    File(PathBuf),
    /// An RTSP camera (URL with the password redacted): unwanted streams
    /// are not set up; unsupported audio is skipped with a warning.
    Rtsp(String),
}

/// What the pad callbacks need; weak container so the pipeline's own signal
/// handlers do not keep it alive.
pub(crate) struct DynamicContext {
    mode: Mode,
    branches: Vec<Branch>,
    /// Appsinks of the fixed part (a local microphone beside an RTSP camera).
    fixed: Vec<(TrackId, gst_app::AppSink)>,
    container: gst::glib::WeakRef<gst::Bin>,
    links: Mutex<Links>,
    tx: SyncSender<Event>,
}

/// The streams found so far.
#[derive(Default)]
struct Links {
    video: Option<gst_app::AppSink>,
    audio: Vec<(TrackId, gst_app::AppSink)>,
    /// RTSP: a video and an audio stream were chosen in select-stream.
    video_selected: bool,
    audio_selected: bool,
    /// What the source offered, for messages.
    offered: Vec<String>,
    /// Caps of the first video stream we could not pass through.
    unsupported_video: Option<String>,
    /// Caps of the first audio stream we could not pass through.
    unsupported_audio: Option<String>,
    /// Streams exposed, captured or not.
    streams: usize,
    /// RTSP: rtspsrc said no-more-pads.
    complete: bool,
    /// The tracks are fixed; streams appearing later are not captured.
    resolved: bool,
    /// File: when resolving first found no stream yet.
    empty_since: Option<std::time::Instant>,
}

fn lock(links: &Mutex<Links>) -> MutexGuard<'_, Links> {
    // A panic in a pad callback leaves plain data behind; keep using it.
    links.lock().unwrap_or_else(|e| e.into_inner())
}

impl DynamicContext {
    fn send(&self, event: Event) {
        // Fails only when capture is being torn down; nothing to tell.
        let _ = self.tx.send(event);
    }

    fn wants_audio(&self) -> bool {
        self.branches.iter().any(|b| !b.carries.is_video())
    }

    /// RTSP `select-stream`: the first video stream we can depayload, and
    /// the first audio stream when audio is wanted.
    fn select(&self, caps: &gst::CapsRef) -> bool {
        let mut links = lock(&self.links);
        let s = caps.structure(0);
        let media = s.and_then(|s| s.get::<&str>("media").ok()).unwrap_or("?");
        let encoding = s.and_then(|s| s.get::<&str>("encoding-name").ok()).unwrap_or("?");
        links.offered.push(format!("{media} {encoding}"));
        let kind = StreamKind::from_caps(caps);
        let branch = kind.and_then(|k| self.branches.iter().find(|b| b.carries == k));
        let chosen = match branch {
            Some(b) if b.carries.is_video() && !links.video_selected => {
                links.video_selected = true;
                true
            }
            Some(b) if !b.carries.is_video() && !links.audio_selected => {
                links.audio_selected = true;
                true
            }
            _ => false,
        };
        if !chosen && media == "audio" && self.wants_audio() && !links.audio_selected {
            tracing::warn!(source = %self.describe(), encoding, "RTSP audio not captured: expected AAC, G.711 or Opus");
        }
        tracing::debug!(source = %self.describe(), media, encoding, chosen, "RTSP stream");
        chosen
    }

    fn describe(&self) -> String {
        match &self.mode {
            Mode::File(path) => path.display().to_string(),
            Mode::Rtsp(url) => url.clone(),
        }
    }

    fn pad_added(&self, pad: &gst::Pad) {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let kind = StreamKind::from_caps(&caps);
        tracing::debug!(source = %self.describe(), %caps, ?kind, "stream found");
        let mut links = lock(&self.links);
        links.streams += 1;
        let is_file = matches!(self.mode, Mode::File(_));
        let branch = match kind.and_then(|k| self.branches.iter().find(|b| b.carries == k)) {
            None => {
                let name = first_structure(&caps);
                let video = name.starts_with("video/") || name.starts_with("image/");
                if is_file && video {
                    links.unsupported_video.get_or_insert(name);
                } else if is_file && name.starts_with("audio/") && self.wants_audio() {
                    links.unsupported_audio.get_or_insert(name);
                }
                None
            }
            Some(b) if links.resolved => {
                tracing::debug!(carries = %b.carries, "stream after the tracks were fixed; not captured");
                None
            }
            Some(b) if b.carries.is_video() && links.video.is_none() => Some(b),
            Some(b) if !b.carries.is_video() && links.audio.is_empty() => Some(b),
            // A second stream of a kind we capture: left out.
            Some(_) => None,
        };
        let result = match branch {
            Some(b) => self.attach(pad, &b.description, &branch_sinks(b)).map(|found| {
                for (track, sink) in found {
                    if b.carries.is_video() {
                        links.video = Some(sink);
                    } else {
                        links.audio.push((track, sink));
                    }
                }
            }),
            // Streams we do not capture still need a sink, or the demuxer
            // stops with not-negotiated/not-linked.
            None => {
                let queue = if is_file {
                    "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! "
                } else {
                    ""
                };
                self.attach(pad, &format!("{queue}fakesink sync=false async=false"), &[])
                    .map(|_| ())
            }
        };
        drop(links);
        if let Err(e) = result {
            self.send(Event::Error(e));
        }
    }

    fn attach(
        &self,
        pad: &gst::Pad,
        description: &str,
        sinks: &[(TrackId, &'static str)],
    ) -> Result<Vec<(TrackId, gst_app::AppSink)>, CaptureError> {
        let Some(container) = self.container.upgrade() else {
            // Capture is gone; nothing to link into.
            return Ok(Vec::new());
        };
        attach_branch(&container, pad, description, sinks, &self.tx).map(|(_, found)| found)
    }

    fn resolve(&self) -> Result<Option<Vec<(TrackId, gst_app::AppSink)>>, CaptureError> {
        let mut links = lock(&self.links);
        match &self.mode {
            Mode::Rtsp(url) => {
                if !links.complete {
                    return Ok(None);
                }
                links.resolved = true;
                let Some(video) = links.video.clone() else {
                    return Err(CaptureError::NoCapturableVideo {
                        input: url.clone(),
                        offered: offered_text(&links.offered),
                        hint: " (set the camera's video encoding to H.264 or H.265)",
                    });
                };
                let mut sinks = vec![(crate::tracks::video_track_id(), video)];
                sinks.extend(links.audio.iter().cloned());
                sinks.extend(self.fixed.iter().cloned());
                Ok(Some(sinks))
            }
            Mode::File(path) => {
                let path = path.clone();
                if links.streams == 0 {
                    // Under load parsebin can expose its pads just after the
                    // pipeline reports PLAYING; give it a moment. A file it
                    // cannot read posts a bus error, which ends the wait.
                    let since = *links.empty_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() < std::time::Duration::from_secs(2) {
                        return Ok(None);
                    }
                }
                links.resolved = true;
                if links.streams == 0 {
                    // parsebin gives up without exposing anything when the
                    // file is not a format it knows; its own error on the bus
                    // says more.
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
                if let (true, Some(caps)) = (links.audio.is_empty(), links.unsupported_audio.clone()) {
                    return Err(CaptureError::UnsupportedCodec { path, caps });
                }
                let mut sinks = vec![(crate::tracks::video_track_id(), video)];
                sinks.extend(links.audio.iter().cloned());
                Ok(Some(sinks))
            }
        }
    }

    fn explain(&self) -> Option<CaptureError> {
        let links = lock(&self.links);
        match &self.mode {
            Mode::Rtsp(url) if !links.offered.is_empty() && !links.video_selected => {
                Some(CaptureError::NoCapturableVideo {
                    input: url.clone(),
                    offered: offered_text(&links.offered),
                    hint: " (set the camera's video encoding to H.264 or H.265)",
                })
            }
            _ => None,
        }
    }
}

fn offered_text(offered: &[String]) -> String {
    if offered.is_empty() {
        "no streams".to_owned()
    } else {
        offered.join(", ")
    }
}
