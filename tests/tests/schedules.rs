//! Recording and upload schedules (the KVS Edge Agent's ScheduleConfig):
//! real `edge-agent run` processes on loopback with short cron windows.
//! The margins are generous (a loaded 2-core machine starts a camera
//! pipeline late and commits a fragment late); the closed stretches the
//! tests check are still several seconds long.

use std::time::{Duration, Instant};

use edge_agent_tests::*;

fn ms(v: &serde_json::Value) -> f64 {
    v["ms"].as_f64().unwrap_or_else(|| panic!("no ms in {v}")) / 1000.0
}

/// Where `t` (seconds since the epoch) falls in a schedule firing every
/// `period` seconds from :00: seconds since the last firing.
fn into_period(t: f64, period: f64) -> f64 {
    t.rem_euclid(period)
}

/// Whether `from` and `to` (an HTTP request's start and end, seconds since
/// the epoch) both fall in `stretch` of one period: the answer, made
/// somewhere between them, can then be judged against that stretch.
fn both_in(from: f64, to: f64, period: f64, stretch: std::ops::Range<f64>) -> bool {
    (from / period).floor() == (to / period).floor()
        && stretch.contains(&into_period(from, period))
        && stretch.contains(&into_period(to, period))
}

/// When the window a recorded range belongs to opened: the firing before
/// its start (a little slack for timestamps a hair early).
fn window_opened(range: &serde_json::Value, period: f64) -> f64 {
    let start = ms(&range["start"]) + 0.5;
    (start - into_period(start, period)).round()
}

#[test]
fn a_stream_records_only_inside_its_recording_windows() {
    // Every 10 s, for 5 s: open at :00-:05, :10-:15, …
    const PERIOD: f64 = 10.0;
    const OPEN: f64 = 5.0;
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let config = write_config(
        &dir.path().join("agent.toml"),
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[streams]]\nname = \"cam\"\nwidth = 320\nheight = 240\nbitrate_kbps = 400\nfragment_seconds = 1\n\
             [streams.record_schedule]\ncron = \"0/10 * * * * ?\"\nduration_seconds = 5\n",
            dir.path().join("store")
        ),
    );
    // The agent may start inside a window (or while it is still starting
    // up): that window is recorded only from then on, so it is not held to
    // the "recorded ≥ 1 s" rule.
    let agent = start_agent(&config, port);
    let started = now_secs();
    let began = Instant::now();
    let whole = |ranges: &[serde_json::Value]| ranges.iter().filter(|r| window_opened(r, PERIOD) >= started).count();
    // While it runs, /api/streams says whether a window is open, when that
    // changes, and the capture runs only in windows.
    let (mut seen_open, mut seen_closed) = (false, false);
    let mut ranges = Vec::new();
    while began.elapsed() < Duration::from_secs(70) {
        std::thread::sleep(Duration::from_millis(300));
        let asked = now_secs();
        let Some(s) = api_stream(port, "cam") else { continue };
        let now = now_secs();
        let sched = &s["capture"]["schedule"];
        assert_eq!(sched["cron"], "0/10 * * * * ?", "{sched}");
        assert_eq!(sched["duration_seconds"], 5, "{sched}");
        let open = sched["open"].as_bool().unwrap();
        let next = ms(&sched["next_change"]);
        let phase = into_period(now, PERIOD);
        // Away from the edges, the document agrees with the clock.
        if both_in(asked, now, PERIOD, 0.5..OPEN - 0.5) {
            assert!(open, "at +{phase:.1} s: {sched}");
            assert!((next - (now - phase + OPEN)).abs() < 0.01, "at +{phase:.1} s: {sched}");
            seen_open = true;
        } else if both_in(asked, now, PERIOD, OPEN + 2.0..PERIOD - 0.5) {
            assert!(!open, "at +{phase:.1} s: {sched}");
            assert!(
                (next - (now - phase + PERIOD)).abs() < 0.01,
                "at +{phase:.1} s: {sched}"
            );
            assert_eq!(
                s["capture"]["running"], false,
                "the source runs outside its window: {s}"
            );
            seen_closed = true;
        }
        ranges = s["ranges"].as_array().cloned().unwrap_or_default();
        // Three windows recorded whole, the third one over.
        if whole(&ranges) >= 3 && !open && phase > OPEN + 2.0 {
            break;
        }
    }
    assert!(seen_open && seen_closed, "open {seen_open}, closed {seen_closed}");
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("edge_agent_capture_window_open{stream=\"cam\"}"),
        "/metrics lacks the window gauge"
    );
    stop_agent(agent);
    assert!(
        whole(&ranges) >= 3,
        "{} windows recorded whole (agent up at {started:.2}): {ranges:?}",
        whole(&ranges)
    );
    for r in &ranges {
        let (start, end) = (ms(&r["start"]), ms(&r["end"]));
        let opened = window_opened(r, PERIOD);
        let joined = opened < started;
        println!(
            "recorded {:.2} s to {:.2} s after the window opened at {opened}{}",
            start - opened,
            end - opened,
            if joined { " (the agent started inside it)" } else { "" }
        );
        assert!(start >= opened - 0.5, "starts before its window: {r}");
        // A window's end stops the source within a poll (0.2 s) and closes
        // the fragment with the frames in flight.
        assert!(end <= opened + OPEN + 1.5, "runs past its window: {r}");
        if !joined {
            // The source starts as the window opens (0.02-0.09 s here).
            assert!(start - opened <= 2.0, "starts late in its window: {r}");
            assert!(end - start >= 1.0, "hardly anything recorded in a window: {r}");
        }
    }
    // The pipeline started at each window's opening: fragments begin on key
    // frames, so the store holds playable video of each window.
    let frames = export_mkv_blocks(&config, "cam", &dir.path().join("cam.mkv"));
    assert!(frames.iter().any(|b| b.track == 1 && b.keyframe));
}

#[test]
fn uploads_go_out_only_inside_their_windows_and_the_backlog_drains_in_the_next() {
    // Recording always; uploading every 15 s for 6 s: open at :00-:06,
    // :15-:21, :30-:36, :45-:51.
    const PERIOD: f64 = 15.0;
    const OPEN: f64 = 6.0;
    let dir = tempfile::tempdir().unwrap();
    let (gport, sport) = (free_tcp_port(), free_tcp_port());
    let gconfig = gateway_config(dir.path(), gport, GatewayAuth::None);
    let sconfig = write_config(
        &dir.path().join("sender.toml"),
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{sport}\"\n\
             [[streams]]\nname = \"cam\"\nwidth = 320\nheight = 240\nbitrate_kbps = 400\nfragment_seconds = 1\n\
             [streams.upload]\nkvs_stream = \"cam-up\"\nendpoint = \"http://127.0.0.1:{gport}\"\nauth = \"none\"\n\
             [streams.upload.create_stream]\n\
             [streams.upload.schedule]\ncron = \"0/15 * * * * ?\"\nduration_seconds = 6\n",
            dir.path().join("sstore")
        ),
    );
    let gateway = start_agent(&gconfig, gport);
    let sender = start_agent(&sconfig, sport);
    let began = Instant::now();
    let gateway_fragments = || {
        api_stream(gport, "cam-up")
            .and_then(|s| s["fragments"].as_u64())
            .unwrap_or(0)
    };
    // (time, fragments at the gateway), and the moments new ones arrived.
    let mut last = (now_secs(), gateway_fragments());
    let mut arrivals = Vec::new();
    let (mut waited, mut windows_with_arrivals) = (false, std::collections::BTreeSet::new());
    let mut drained = None;
    while began.elapsed() < Duration::from_secs(80) {
        std::thread::sleep(Duration::from_millis(200));
        let n = gateway_fragments();
        let now = now_secs();
        if n > last.1 {
            // Arrived between the two samples.
            arrivals.push((last.0, now, n - last.1));
            windows_with_arrivals.insert((now / PERIOD).floor() as i64);
        }
        last = (now, n);
        let Some(s) = api_stream(sport, "cam") else { continue };
        let answered = now_secs();
        let up = &s["uploader"];
        let phase = into_period(now, PERIOD);
        if both_in(now, answered, PERIOD, OPEN + 3.0..PERIOD - 0.5) {
            // Waiting, not connected, and saying when the window opens.
            assert_eq!(up["waiting_for_window"], true, "at +{phase:.1} s: {up}");
            assert_eq!(up["connected"], false, "at +{phase:.1} s: {up}");
            let opens = ms(&up["schedule"]["next_change"]);
            assert!((opens - (now - phase + PERIOD)).abs() < 0.01, "at +{phase:.1} s: {up}");
            if !waited {
                let (_, metrics) = http_get(sport, "/metrics").unwrap();
                assert!(
                    metrics.contains("edge_agent_upload_waiting_for_window{stream=\"cam\"} 1"),
                    "/metrics does not say the upload waits"
                );
            }
            waited = true;
        }
        // A window in which the backlog of the closed stretch before it
        // was sent: everything stored, bar the fragment being recorded and
        // the one being acknowledged, is at the gateway.
        if windows_with_arrivals.len() >= 3
            && (3.0..OPEN - 0.5).contains(&phase)
            && up["lag_fragments"].as_u64().is_some_and(|l| l <= 2)
        {
            drained = Some((s["fragments"].as_u64().unwrap(), n));
            break;
        }
    }
    assert!(waited, "never saw the uploader waiting for its window");
    let (sent, received) = drained.expect("the backlog never drained inside a window");
    stop_agent(sender);
    stop_agent(gateway);
    println!(
        "upload windows: {} arrivals of fragments at the gateway",
        arrivals.len()
    );
    for (after, before, n) in &arrivals {
        let (a, b) = (into_period(*after, PERIOD), into_period(*before, PERIOD));
        println!("  {n} fragment(s) arrived between +{a:.1} s and +{b:.1} s into a period");
        // Between two samples 0.2 s apart (more on a loaded machine): the
        // arrival is outside a window only if both samples are well past
        // its end. A window's end lets the fragment being sent finish (1 s
        // here) and its ACKs come back.
        let late = |p: f64| (OPEN + 3.0..PERIOD - 0.3).contains(&p);
        assert!(
            !(late(a) && late(b) && before - after < 2.0),
            "{n} fragment(s) arrived outside a window (+{a:.1} to +{b:.1} s into the period)"
        );
    }
    assert!(
        received + 3 >= sent,
        "{received} fragments at the gateway of {sent} stored"
    );
    println!("upload windows: {received} of {sent} fragments at the gateway within a window after a closed stretch");
    // What arrived is the sender's media, frame for frame.
    let sent_frames = export_mkv_blocks(&sconfig, "cam", &dir.path().join("sender.mkv"));
    let stored = export_mkv_blocks(&gconfig, "cam-up", &dir.path().join("gateway.mkv"));
    for track in 1..=3u64 {
        assert_track_prefix(&sent_frames, &stored, track);
    }
}
