//! `edge-agent capture`: a source, the fragmenter and a file, nothing else.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fragmenter::{FragmentEvent, Fragmenter, Timestamp};
use hardware::{AudioSource, CaptureOptions};
use tracing::{info, warn};

use crate::cli::CaptureArgs;
use crate::output::{Container, FileOutput};
use crate::source::{default_audio, Poll, Source, SourceSpec};

/// How long a source may stay silent before capture gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What was captured, printed at the end.
#[derive(Debug, Default)]
struct Totals {
    fragments: u64,
    frames_per_track: [u64; 3],
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

pub fn run(args: &CaptureArgs) -> Result<()> {
    // Check everything that can be checked before a pipeline starts.
    if args.duration.is_zero() {
        bail!("--duration must be greater than zero (got {:?})", args.duration);
    }
    let container = Container::from_path(&args.output).context("-o/--output")?;
    let spec = SourceSpec::parse(&args.source).context("--source")?;
    let policy = spec.fragment_policy(args.fragment).context("--fragment")?;
    if matches!(spec, SourceSpec::Sensor(_)) && container == Container::Mp4 {
        bail!(
            "-o/--output: {} is MP4, which has no sensor tracks: write sensor data to .mkv",
            args.output.display()
        );
    }
    let audio: AudioSource = match &args.audio {
        Some(a) => a.parse().context("--audio")?,
        None => default_audio(&spec),
    };
    let video_codec = args
        .codec
        .parse()
        .map_err(|e: hardware::SourceError| anyhow::anyhow!("--codec {:?}: {e}", args.codec))?;
    let audio_codecs = args
        .audio_codec
        .iter()
        .map(|c| {
            c.trim()
                .parse()
                .map_err(|e: hardware::SourceError| anyhow::anyhow!("--audio-codec {c:?}: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    if audio_codecs.len() > 2 {
        bail!(
            "--audio-codec {:?}: at most two codecs (three tracks with video)",
            args.audio_codec.join(",")
        );
    }
    let rtsp_transport = args
        .rtsp_transport
        .parse()
        .map_err(|e: hardware::CaptureError| anyhow::anyhow!("--rtsp-transport {:?}: {e}", args.rtsp_transport))?;
    let defaults = CaptureOptions::default();
    let opts = CaptureOptions {
        video_codec,
        audio_codecs: if audio_codecs.is_empty() {
            defaults.audio_codecs.clone()
        } else {
            audio_codecs
        },
        rtsp_latency_ms: args.rtsp_latency,
        rtsp_transport,
        fragment_duration: args.fragment,
        width: args.width,
        height: args.height,
        fps: args.fps,
        video_bitrate_kbps: args.bitrate,
        audio,
        ..defaults
    };

    let mut capture = Source::start(&spec, &opts, args.stall_timeout)
        .with_context(|| format!("cannot start source {:?}", hardware::redact_url(&args.source)))?;
    let tracks = capture.tracks().to_vec();
    for t in &tracks {
        info!(track = t.id.get(), codec = t.mkv_codec_id(), name = %t.name, "track");
    }
    let mut fragmenter = Fragmenter::new(&tracks, policy)?;
    let started = Instant::now();
    let mut output: Option<FileOutput> = None;
    let mut totals = Totals::default();
    let mut events = Vec::new();
    let mut first_pts: Option<Timestamp> = None;
    let mut reached_duration = false;
    let mut quiet_since: Option<Instant> = None;
    let mut frame_log = match &args.frame_log {
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("cannot create frame log {}", p.display()))?;
            let mut w = std::io::BufWriter::new(f);
            writeln!(w, "fragment,track,pts_ns,dts_ns,keyframe,bytes")?;
            Some(w)
        }
        None => None,
    };

    let mut write =
        |events: &mut Vec<FragmentEvent>, output: &mut Option<FileOutput>, totals: &mut Totals| -> Result<()> {
            for e in events.drain(..) {
                if output.is_none() {
                    let start = match &e {
                        FragmentEvent::Start { start, .. } => *start,
                        _ => unreachable!("the first event is a Start"),
                    };
                    *output = Some(FileOutput::create(&args.output, &tracks, start)?);
                }
                match &e {
                    FragmentEvent::Start { start, .. } => {
                        totals.first.get_or_insert(*start);
                    }
                    FragmentEvent::Frame(f) => {
                        if let Some(log) = frame_log.as_mut() {
                            writeln!(
                                log,
                                "{},{},{},{},{},{}",
                                totals.fragments,
                                f.track.get(),
                                f.pts.as_nanos(),
                                f.dts.as_nanos(),
                                u8::from(f.keyframe),
                                f.data.len()
                            )?;
                        }
                        totals.frames_per_track[f.track.index()] += 1;
                        totals.last = Some(totals.last.map_or(f.pts, |l| l.max(f.pts)));
                    }
                    FragmentEvent::End(s) => {
                        totals.fragments += 1;
                        info!(
                            seq = s.seq,
                            start = %s.start,
                            duration_ms = s.duration().as_millis() as u64,
                            frames = s.frames,
                            bytes = s.bytes,
                            closed_by = ?s.closed_by,
                            "fragment"
                        );
                    }
                }
                output.as_mut().expect("created above").write(&e)?;
            }
            Ok(())
        };

    // Live sources also stop on the wall clock, so a sensor that goes quiet
    // cannot keep the command running.
    let wall_deadline = spec.is_live().then(|| started + args.duration);
    let mut last_key_request = Instant::now();
    loop {
        let frame = match capture
            .next_frame(Duration::from_millis(200))
            .context("capture failed")?
        {
            Poll::Frame(f) => {
                quiet_since = None;
                f
            }
            Poll::TrackEnded(track) => {
                fragmenter.end_track(track, &mut events);
                write(&mut events, &mut output, &mut totals)?;
                continue;
            }
            Poll::End => {
                info!("source ended");
                break;
            }
            Poll::Quiet => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if wall_deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if since.elapsed() >= STALL_TIMEOUT {
                    bail!("capture failed: the source sent nothing for {STALL_TIMEOUT:?}");
                }
                continue;
            }
        };
        let first = *first_pts.get_or_insert(frame.pts);
        if frame.pts.saturating_since(first) >= args.duration {
            reached_duration = true;
            break;
        }
        if let Err(e) = fragmenter.push(frame, &mut events) {
            warn!(error = %e, "frame refused");
        }
        if fragmenter.wants_key_frame() && last_key_request.elapsed() >= Duration::from_secs(1) {
            capture.request_key_frame();
            last_key_request = Instant::now();
        }
        write(&mut events, &mut output, &mut totals)?;
        if wall_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    // Frames still in flight (a sensor's open rotation) belong to the capture.
    // Stopped on media time, only those before the limit: the frame that hit
    // it was left out, and a P-frame after a left-out key frame would be
    // undecodable. Stopped on the wall clock, the last second in flight too.
    let drain_limit = if reached_duration {
        args.duration
    } else {
        args.duration + Duration::from_secs(1)
    };
    capture.stop();
    let drain_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_until {
        match capture.next_frame(Duration::from_millis(200))? {
            Poll::Frame(f) => {
                let first = *first_pts.get_or_insert(f.pts);
                if f.pts.saturating_since(first) < drain_limit {
                    if let Err(e) = fragmenter.push(f, &mut events) {
                        warn!(error = %e, "frame refused");
                    }
                }
            }
            Poll::TrackEnded(track) => fragmenter.end_track(track, &mut events),
            Poll::Quiet => {}
            Poll::End => break,
        }
    }
    fragmenter.finish(&mut events);
    write(&mut events, &mut output, &mut totals)?;

    let Some(output) = output else {
        bail!("the source produced no frame a fragment could start on (no video key frame)");
    };
    let bytes = output.finish()?;
    if let Some(mut log) = frame_log {
        log.flush().context("cannot write the frame log")?;
    }
    let stats = fragmenter.stats();
    let (first, last) = (totals.first.unwrap_or_default(), totals.last.unwrap_or_default());
    println!(
        "wrote {} : {} fragment(s), {} byte(s), {} .. {} ({:.3} s of media in {:.1} s)",
        args.output.display(),
        totals.fragments,
        bytes,
        first,
        last,
        (last - first).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for t in &tracks {
        println!(
            "  track {} {} {}: {} frame(s)",
            t.id.get(),
            t.mkv_codec_id(),
            t.name,
            totals.frames_per_track[t.id.index()]
        );
    }
    if let Some(line) = capture.summary() {
        println!("  {line}");
    }
    if stats.dropped_awaiting_key_frame + stats.dropped_late > 0 {
        println!(
            "  left out: {} frame(s) before a key frame could start a fragment, {} late frame(s)",
            stats.dropped_awaiting_key_frame, stats.dropped_late
        );
    }
    Ok(())
}
