//! `edge-agent export`: a time range of a stored stream as one MP4 or MKV
//! file, with a progress bar.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use fragmenter::media::TrackKind;
use fragmenter::{FragmentPolicy, Fragmenter, Timestamp};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ExportArgs;
use crate::output::FileOutput;
use crate::run::{load_config, store_config};
use crate::store::{Store, StoreError, SystemClock};

/// RFC 3339 (`2026-11-26T03:00:00Z`, fractions allowed) or Unix epoch
/// milliseconds, as everywhere on the wire: the one parser playback's
/// routes use too.
pub fn parse_time(field: &str, s: &str) -> Result<Timestamp> {
    Ok(playback::time::parse_time(field, s)?)
}

/// `edge-agent verify`: recovery, then a full consistency check.
pub fn verify(config: Option<&std::path::PathBuf>) -> Result<()> {
    let cfg = store_config(&load_config(config)?)?;
    let store = open_store(&cfg)?;
    let recovery = store.recovery_report();
    let report = store.verify()?;
    println!(
        "{}: {} segment(s), {} fragment(s) checked; recovery: {} byte(s) truncated, {} orphan file(s) removed, {} fragment(s) lost",
        cfg.path.display(),
        report.segments,
        report.fragments,
        recovery.bytes_truncated,
        recovery.orphan_files_removed.len(),
        recovery.lost_fragments.len()
    );
    if !report.problems.is_empty() {
        for p in &report.problems {
            println!("  problem: {p}");
        }
        bail!(
            "{} problem(s) in the store at {}",
            report.problems.len(),
            cfg.path.display()
        );
    }
    Ok(())
}

fn open_store(cfg: &crate::store::StoreConfig) -> Result<Store> {
    match Store::open(cfg.clone(), std::sync::Arc::new(SystemClock)) {
        Ok(s) => Ok(s),
        Err(StoreError::Locked { .. }) => bail!(
            "the store in {} is in use by a running edge-agent: stop it first, or fetch the range over HTTP",
            cfg.path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot open the store in {}", cfg.path.display())),
    }
}

/// Export the range.
pub fn run(args: &ExportArgs) -> Result<()> {
    let start = parse_time("--start", &args.start)?;
    let end = parse_time("--end", &args.end)?;
    if end <= start {
        bail!("--end {} is not after --start {}", end, start);
    }
    crate::output::Container::from_path(&args.output).context("-o/--output")?;
    let config = load_config(args.config.as_ref())?;
    let cfg = store_config(&config)?;
    let store = open_store(&cfg)?;
    let metas = store.fragments(&args.stream, start, end)?;
    if metas.is_empty() {
        let known = store.streams()?.into_iter().map(|s| s.name).collect::<Vec<_>>();
        if !known.contains(&args.stream) {
            bail!("--stream {:?}: no such stream; the store has {known:?}", args.stream);
        }
        bail!(
            "stream {:?} has nothing recorded between {start} and {end}",
            args.stream
        );
    }
    let total: u64 = metas.iter().map(|m| m.bytes).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {wide_bar} {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if args.quiet_progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }

    let mut output: Option<(FileOutput, Vec<fragmenter::Track>, Fragmenter)> = None;
    let mut events = Vec::new();
    let mut frames = 0u64;
    let mut cut_short: Option<Timestamp> = None;
    'fragments: for meta in &metas {
        let frag = store.read_fragment(meta.id)?;
        if output.is_none() {
            let tracks = frag.tracks.to_vec();
            // Re-cut with the stream's own cadence, so a trimmed first
            // fragment still starts on its key frame.
            let policy = FragmentPolicy::new(Duration::from_secs(2))?;
            let fragmenter = Fragmenter::new(&tracks, policy)?;
            let out = FileOutput::create(&args.output, &tracks, meta.start)?;
            output = Some((out, tracks, fragmenter));
        }
        let (out, tracks, fragmenter) = output.as_mut().expect("created above");
        if frag.tracks.as_ref() != tracks.as_slice() {
            // A source restarted with another codec configuration: one file
            // cannot hold both, so stop at the change and say where.
            cut_short = Some(meta.start);
            break 'fragments;
        }
        let has_video = tracks.iter().any(|t| t.kind() == TrackKind::Video);
        // Start at the last video key frame at or before `start`.
        let first = frag
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                f.pts <= start && (!has_video || (f.keyframe && tracks[f.track.index()].kind() == TrackKind::Video))
            })
            .map(|(i, _)| i)
            .next_back()
            .unwrap_or(0);
        for f in frag.frames.into_iter().skip(first) {
            if f.pts > end {
                continue;
            }
            frames += 1;
            fragmenter.push(f, &mut events)?;
            for e in events.drain(..) {
                out.write(&e)?;
            }
        }
        bar.inc(meta.bytes);
    }
    let Some((mut out, _, mut fragmenter)) = output else {
        bail!("nothing to export");
    };
    fragmenter.finish(&mut events);
    for e in events.drain(..) {
        out.write(&e)?;
    }
    let bytes = out.finish()?;
    bar.finish_and_clear();
    println!(
        "exported {} : {frames} frame(s), {bytes} byte(s) of stream {:?} from {start} to {end}",
        args.output.display(),
        args.stream
    );
    if let Some(at) = cut_short {
        println!("  stopped at {at}: the stream's tracks change there (a source restarted with another configuration)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_epoch_milliseconds() {
        assert_eq!(
            parse_time("t", "1795651200000").unwrap(),
            Timestamp::from_millis(1_795_651_200_000)
        );
        assert_eq!(
            parse_time("t", "2026-11-26T00:00:00.5Z").unwrap(),
            Timestamp::from_millis(1_795_651_200_500)
        );
        assert!(parse_time("--start", "yesterday")
            .unwrap_err()
            .to_string()
            .contains("--start=\"yesterday\""));
        // Past the year 2554 a u64 of nanoseconds overflows.
        assert!(parse_time("--end", "99999999999999999").is_err());
    }
}
