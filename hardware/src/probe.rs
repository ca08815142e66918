//! `edge-agent probe`: what this machine is, which cameras and microphones
//! it has, which encoders exist and actually work (each gets a one-frame
//! test encode), and a `[[streams]]` config snippet that uses them.

use std::fmt::Write as _;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{json, Value};

use crate::encoder::{encoder_chain, EncodeSettings, RawMemory, VideoEncoder, ENCODER_PREFERENCE};
use crate::platform::{Board, Camera, PixelFormat, Platform};
use crate::source::VideoCodecChoice;

/// How long one test encode may take; a hardware encoder that hangs is as
/// good as absent.
const TEST_ENCODE_TIMEOUT: Duration = Duration::from_secs(10);

/// A microphone: an ALSA capture device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Microphone {
    /// The audio source string that captures from it (`alsa:hw:1,0`).
    pub source: String,
    /// The sound card's name.
    pub name: String,
}

/// One encoder: installed or not, and whether a test encode worked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderCheck {
    /// The element, e.g. `x264enc`.
    pub element: String,
    /// `H.264`, `H.265`, `AAC`, `Opus`, `G.711 A-law`, `G.711 µ-law`.
    pub codec: &'static str,
    /// Whether the work happens off the CPU.
    pub hardware: bool,
    /// Whether the element is installed.
    pub present: bool,
    /// Whether a one-frame test encode produced output.
    pub works: bool,
    /// Why it does not work (missing device, GStreamer's error).
    pub error: Option<String>,
    /// Whether capture would pick it for its codec.
    pub selected: bool,
}

/// Everything `probe` found.
#[derive(Clone, Debug)]
pub struct ProbeReport {
    /// The platform as probed (board, elements, devices, cameras).
    pub platform: Platform,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpu_cores: usize,
    /// Total memory in MiB.
    pub memory_mb: u64,
    /// GStreamer's version.
    pub gstreamer: String,
    /// ALSA capture devices.
    pub microphones: Vec<Microphone>,
    /// Video and audio encoders, best first within each codec.
    pub encoders: Vec<EncoderCheck>,
    /// A config snippet in the `[[streams]]` shape of `agent.toml`.
    pub suggested_config: String,
}

/// Probe this machine; takes a few seconds (each encoder is tried).
pub fn probe() -> ProbeReport {
    let _ = gst::init();
    let platform = Platform::probe();
    let encoders = check_encoders(&platform, test_encode);
    report(platform, encoders)
}

fn report(platform: Platform, encoders: Vec<EncoderCheck>) -> ProbeReport {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (cpu_model, cpu_cores) = parse_cpuinfo(&cpuinfo);
    let microphones = microphones(&platform);
    let suggested_config = suggested_config(&platform, &microphones, &encoders);
    ProbeReport {
        cpu_model: cpu_model.unwrap_or_else(|| platform.arch.clone()),
        cpu_cores: if cpu_cores > 0 {
            cpu_cores
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        },
        memory_mb: parse_meminfo(&meminfo),
        gstreamer: gst::version_string().to_string(),
        microphones,
        encoders,
        suggested_config,
        platform,
    }
}

/// (model name, logical CPUs) from `/proc/cpuinfo`: x86 says `model name`,
/// a Pi says `Model` (the board) and ARM cores `CPU part`.
pub fn parse_cpuinfo(text: &str) -> (Option<String>, usize) {
    let mut model = None;
    let mut cores = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => cores += 1,
            "model name" | "Model" | "Hardware" if model.is_none() && !value.is_empty() => {
                model = Some(value.to_owned())
            }
            _ => {}
        }
    }
    (model, cores)
}

/// MemTotal in MiB from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

fn microphones(platform: &Platform) -> Vec<Microphone> {
    platform
        .sound_cards
        .iter()
        .flat_map(|card| {
            card.capture_devices.iter().map(move |dev| Microphone {
                source: format!("alsa:hw:{},{dev}", card.index),
                name: card.name.clone(),
            })
        })
        .collect()
}

/// Every known encoder, checked with `try_encode` (a real one-frame encode
/// in [`probe`]; a stand-in in tests) when installed and its device exists.
pub fn check_encoders(
    platform: &Platform,
    try_encode: impl Fn(&str, &Platform) -> Result<(), String>,
) -> Vec<EncoderCheck> {
    let mut checks = Vec::new();
    for (codec, label) in [(VideoCodecChoice::H264, "H.264"), (VideoCodecChoice::H265, "H.265")] {
        let settings = EncodeSettings {
            codec,
            width: 320,
            height: 240,
            fps: 30,
            bitrate_kbps: 500,
            key_int: 30,
        };
        let mut selected = false;
        for family in ENCODER_PREFERENCE {
            let Some(element) = family.element(codec) else {
                continue;
            };
            let present = platform.has_element(element);
            let (works, error) = if !present {
                (false, None)
            } else if !family.has_device(platform) {
                (false, Some(missing_device_reason(family, platform)))
            } else {
                let chain = encoder_chain(family, &settings, RawMemory::System, platform);
                let description = format!(
                    "videotestsrc num-buffers=1 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! {chain}"
                );
                match try_encode(&description, platform) {
                    Ok(()) => (true, None),
                    Err(e) => (false, Some(e)),
                }
            };
            let is_selected = works && !selected;
            selected |= works;
            checks.push(EncoderCheck {
                element: element.to_owned(),
                codec: label,
                hardware: family.is_hardware(),
                present,
                works,
                error,
                selected: is_selected,
            });
        }
    }
    let audio = [
        ("AAC", "avenc_aac", ""),
        ("AAC", "voaacenc", ""),
        ("AAC", "fdkaacenc", ""),
        ("Opus", "opusenc", ""),
        ("G.711 A-law", "alawenc", "audio/x-raw,rate=8000,channels=1 ! "),
        ("G.711 µ-law", "mulawenc", "audio/x-raw,rate=8000,channels=1 ! "),
    ];
    let mut selected_codecs: Vec<&str> = Vec::new();
    for (codec, element, caps) in audio {
        let present = platform.has_element(element);
        let (works, error) = if present {
            let description = format!("audiotestsrc num-buffers=4 ! audioconvert ! audioresample ! {caps}{element}");
            match try_encode(&description, platform) {
                Ok(()) => (true, None),
                Err(e) => (false, Some(e)),
            }
        } else {
            (false, None)
        };
        let is_selected = works && !selected_codecs.contains(&codec);
        if works {
            selected_codecs.push(codec);
        }
        checks.push(EncoderCheck {
            element: element.to_owned(),
            codec,
            hardware: false,
            present,
            works,
            error,
            selected: is_selected,
        });
    }
    checks
}

fn missing_device_reason(family: VideoEncoder, platform: &Platform) -> String {
    match family {
        VideoEncoder::V4l2 if platform.board == Board::RaspberryPi5 => {
            "the Raspberry Pi 5 has no hardware video encoder".to_owned()
        }
        VideoEncoder::V4l2 => "no /dev/video11 (bcm2835-codec encoder) on this board".to_owned(),
        VideoEncoder::Nvidia => {
            "no /dev/v4l2-nvenc: this Jetson has no NVENC (Orin Nano) or the driver is not loaded".to_owned()
        }
        VideoEncoder::Va | VideoEncoder::Vaapi => "no DRM render node (/dev/dri/renderD*)".to_owned(),
        VideoEncoder::Software | VideoEncoder::OpenH264 => String::new(),
    }
}

/// Run `description ! appsink` until one encoded buffer comes out.
fn test_encode(description: &str, _platform: &Platform) -> Result<(), String> {
    let full = format!("{description} ! appsink name=out sync=false");
    let pipeline = gst::parse::launch(&full)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_owned())?;
    let sink = pipeline
        .by_name("out")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = (|| {
        pipeline.set_state(gst::State::Playing).map_err(|_| bus_error(&bus))?;
        match sink.try_pull_sample(gst::ClockTime::from_nseconds(TEST_ENCODE_TIMEOUT.as_nanos() as u64)) {
            Some(sample) if sample.buffer().is_some_and(|b| b.size() > 0) => Ok(()),
            _ => Err(bus_error(&bus)),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn bus_error(bus: &gst::Bus) -> String {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
            return format!("{element}: {}", e.error());
        }
    }
    format!("no encoded output within {TEST_ENCODE_TIMEOUT:?}")
}

/// A `[[streams]]` snippet: one stream per camera (libcamera and Argus
/// before V4L2 nodes of the same sensor), the first microphone, or the test
/// source when there is no camera.
pub fn suggested_config(platform: &Platform, microphones: &[Microphone], encoders: &[EncoderCheck]) -> String {
    let mut out = String::new();
    let h264 = encoders.iter().find(|e| e.codec == "H.264" && e.selected);
    let _ = writeln!(
        out,
        "# Suggested by `edge-agent probe` on {} ({}); H.264 encoder: {}.",
        platform.model,
        platform.board,
        match h264 {
            Some(e) if e.hardware => format!("{} (hardware)", e.element),
            Some(e) => format!("{} (software)", e.element),
            None => "none works: only cameras with their own H.264 can be captured".to_owned(),
        }
    );
    let audio = microphones.first();
    let audio_line = |out: &mut String| {
        let _ = match audio {
            Some(m) => writeln!(out, "audio = \"{}\"   # {}", m.source, m.name),
            None => writeln!(out, "audio = \"none\"   # no microphone found"),
        };
    };
    let usable: Vec<&Camera> = platform
        .cameras
        .iter()
        .filter(|c| {
            c.device.is_none()
                || c.modes
                    .iter()
                    .any(|m| matches!(m.format, PixelFormat::H264 | PixelFormat::Mjpeg | PixelFormat::Raw(_)))
        })
        .collect();
    if usable.is_empty() {
        let _ = writeln!(
            out,
            "# No camera found: the test pattern stands in until one is connected."
        );
        let _ = writeln!(out, "[[streams]]\nname = \"test\"\nvideo = \"test\"");
        let _ = match audio {
            Some(m) => writeln!(out, "audio = \"{}\"   # {}", m.source, m.name),
            None => writeln!(out, "audio = \"test\""),
        };
        let _ = writeln!(out, "fragment_seconds = 2");
        return out;
    }
    for (i, camera) in usable.iter().enumerate() {
        let _ = writeln!(out, "\n[[streams]]");
        let _ = writeln!(out, "name = \"camera-{}\"", i + 1);
        let best = camera
            .modes
            .iter()
            .find(|m| m.format == PixelFormat::H264)
            .or(camera.modes.first());
        let note = match best {
            Some(m) if m.format == PixelFormat::H264 => format!("{}: {m}, passed through", camera.name),
            Some(m) => format!("{}: {m}, encoded", camera.name),
            None => camera.name.clone(),
        };
        let _ = writeln!(out, "video = \"{}\"   # {note}", camera.source);
        if i == 0 {
            audio_line(&mut out);
        } else {
            let _ = writeln!(out, "audio = \"none\"");
        }
        let _ = writeln!(out, "fragment_seconds = 2");
    }
    out
}

impl ProbeReport {
    /// The report as JSON (what `edge-agent probe --json` prints).
    pub fn to_json(&self) -> Value {
        let p = &self.platform;
        json!({
            "board": {
                "profile": p.board.as_str(),
                "model": p.model,
                "arch": p.arch,
            },
            "cpu": { "model": self.cpu_model, "cores": self.cpu_cores },
            "memory_mb": self.memory_mb,
            "gstreamer": self.gstreamer,
            "cameras": p.cameras.iter().map(|c| json!({
                "source": c.source,
                "device": c.device.as_ref().map(|d| d.display().to_string()),
                "name": c.name,
                "formats": c.modes.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "microphones": self.microphones.iter().map(|m| json!({
                "source": m.source,
                "name": m.name,
            })).collect::<Vec<_>>(),
            "encoders": self.encoders.iter().map(|e| json!({
                "name": e.element,
                "codec": e.codec,
                "hardware": e.hardware,
                "present": e.present,
                "works": e.works,
                "error": e.error,
                "selected": e.selected,
            })).collect::<Vec<_>>(),
            "suggested_config": self.suggested_config,
        })
    }

    /// The report as aligned text for a terminal.
    pub fn to_table(&self) -> String {
        let p = &self.platform;
        let mut out = String::new();
        let _ = writeln!(out, "board        {} ({}, {})", p.board, p.model, p.arch);
        let _ = writeln!(out, "cpu          {} × {}", self.cpu_model, self.cpu_cores);
        let _ = writeln!(out, "memory       {} MB", self.memory_mb);
        let _ = writeln!(out, "gstreamer    {}", self.gstreamer);
        let _ = writeln!(out, "\ncameras");
        if p.cameras.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for c in &p.cameras {
            let _ = writeln!(out, "  {:<24} {}", c.source, c.name);
            for m in &c.modes {
                let _ = writeln!(out, "  {:<24}   {m}", "");
            }
        }
        let _ = writeln!(out, "\nmicrophones");
        if self.microphones.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for m in &self.microphones {
            let _ = writeln!(out, "  {:<24} {}", m.source, m.name);
        }
        let _ = writeln!(out, "\nencoders");
        let _ = writeln!(
            out,
            "  {:<12} {:<15} {:<9} {:<8} {:<6} note",
            "codec", "element", "kind", "present", "works"
        );
        for e in &self.encoders {
            let note = match (&e.error, e.selected) {
                (_, true) => "selected".to_owned(),
                (Some(err), _) => err.clone(),
                (None, _) => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:<12} {:<15} {:<9} {:<8} {:<6} {note}",
                e.codec,
                e.element,
                if e.hardware { "hardware" } else { "software" },
                if e.present { "yes" } else { "no" },
                if e.works { "yes" } else { "no" },
            );
        }
        let _ = writeln!(out, "\nsuggested config");
        for line in self.suggested_config.lines() {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{CameraMode, SoundCard};
    use std::path::PathBuf;

    #[test]
    fn cpuinfo_of_a_pi_and_a_pc() {
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\nprocessor\t: 1\nprocessor\t: 2\nprocessor\t: 3\n\
                  Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(parse_cpuinfo(pi), (Some("BCM2835".to_owned()), 4));
        let pc = "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i5-8500T CPU @ 2.10GHz\nprocessor\t: 1\n";
        assert_eq!(
            parse_cpuinfo(pc),
            (Some("Intel(R) Core(TM) i5-8500T CPU @ 2.10GHz".to_owned()), 2)
        );
        assert_eq!(parse_meminfo("MemTotal:        3884400 kB\nMemFree: 1 kB\n"), 3793);
    }

    fn pi4() -> Platform {
        let mut p = Platform::new(Board::RaspberryPi4, "Raspberry Pi 4 Model B Rev 1.4");
        for e in ["v4l2h264enc", "v4l2convert", "x264enc", "avenc_aac", "opusenc"] {
            p.elements.insert(e.to_owned());
        }
        p.devices.insert(PathBuf::from("/dev/video11"));
        p.devices.insert(PathBuf::from("/dev/video0"));
        p
    }

    #[test]
    fn hardware_encoder_is_selected_when_its_test_encode_works() {
        let checks = check_encoders(&pi4(), |_, _| Ok(()));
        let h264: Vec<_> = checks.iter().filter(|c| c.codec == "H.264" && c.present).collect();
        assert_eq!(h264[0].element, "v4l2h264enc");
        assert!(h264[0].selected && h264[0].hardware);
        assert!(!h264[1].selected);
        // And falls back when it does not.
        let checks = check_encoders(&pi4(), |d, _| {
            if d.contains("v4l2h264enc") {
                Err("encoder: Failed to process frame".to_owned())
            } else {
                Ok(())
            }
        });
        let selected: Vec<_> = checks
            .iter()
            .filter(|c| c.selected)
            .map(|c| c.element.as_str())
            .collect();
        assert_eq!(selected, ["x264enc", "avenc_aac", "opusenc"]);
        let v4l2 = checks.iter().find(|c| c.element == "v4l2h264enc").unwrap();
        assert_eq!(v4l2.error.as_deref(), Some("encoder: Failed to process frame"));
    }

    #[test]
    fn orin_nano_nvenc_is_present_but_has_no_device() {
        let mut p = Platform::new(Board::JetsonOrinNano, "NVIDIA Jetson Orin Nano Developer Kit");
        for e in ["nvv4l2h264enc", "x264enc"] {
            p.elements.insert(e.to_owned());
        }
        let checks = check_encoders(&p, |_, _| Ok(()));
        let nv = checks.iter().find(|c| c.element == "nvv4l2h264enc").unwrap();
        assert!(nv.present && !nv.works);
        assert!(nv.error.as_deref().unwrap().contains("/dev/v4l2-nvenc"));
        assert!(checks.iter().find(|c| c.element == "x264enc").unwrap().selected);
    }

    #[test]
    fn suggested_config_names_the_camera_and_microphone() {
        let mut p = pi4();
        p.cameras.push(Camera {
            source: "v4l2:/dev/video0".to_owned(),
            device: Some(PathBuf::from("/dev/video0")),
            name: "HD Pro Webcam C920".to_owned(),
            modes: vec![CameraMode {
                format: PixelFormat::H264,
                width: 1920,
                height: 1080,
                scalable: false,
                fps: vec![30.0],
                fps_range: None,
            }],
        });
        p.sound_cards.push(SoundCard {
            index: 1,
            id: "C920".to_owned(),
            name: "HD Pro Webcam C920".to_owned(),
            capture_devices: vec![0],
        });
        let mics = microphones(&p);
        let checks = check_encoders(&p, |_, _| Ok(()));
        let text = suggested_config(&p, &mics, &checks);
        assert_eq!(
            text,
            "# Suggested by `edge-agent probe` on Raspberry Pi 4 Model B Rev 1.4 (raspberry-pi-4); H.264 encoder: \
             v4l2h264enc (hardware).\n\
             \n[[streams]]\n\
             name = \"camera-1\"\n\
             video = \"v4l2:/dev/video0\"   # HD Pro Webcam C920: H264 1920x1080@30, passed through\n\
             audio = \"alsa:hw:1,0\"   # HD Pro Webcam C920\n\
             fragment_seconds = 2\n"
        );
    }

    #[test]
    fn suggested_config_without_a_camera_uses_the_test_source() {
        let p = Platform::new(Board::X86, "QEMU Standard PC");
        let text = suggested_config(&p, &[], &[]);
        assert!(text.contains("video = \"test\""), "{text}");
        assert!(text.contains("audio = \"test\""), "{text}");
        assert!(text.contains("none works"), "{text}");
    }
}
