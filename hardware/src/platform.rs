//! What this machine is and has: board, GStreamer elements, device nodes,
//! cameras and sound cards.
//!
//! Pipeline construction ([`crate::plan()`]) reads only a [`Platform`], so a
//! Raspberry Pi 4 or a Jetson can be described by hand in a test and the
//! pipeline chosen for it checked without the hardware. [`Platform::probe`]
//! fills one in from `/proc/device-tree/model`, `/sys/class/dmi/id/*`,
//! `/dev/*`, `/proc/asound/*` and the GStreamer registry.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gstreamer as gst;
use gstreamer::prelude::*;

/// A board family, as far as encoder choice cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Board {
    /// Raspberry Pi 4, 400, Compute Module 4: bcm2835-codec H.264 encoder
    /// (`v4l2h264enc`, `/dev/video11`), up to 1080p30.
    RaspberryPi4,
    /// Raspberry Pi 5, 500, Compute Module 5: no video encoder at all.
    RaspberryPi5,
    /// Other Raspberry Pis (3, Zero 2): treated like a Pi 4 if the encoder
    /// node exists.
    RaspberryPi,
    /// Jetson Orin NX: NVENC (`nvv4l2h264enc`, `/dev/v4l2-nvenc`).
    JetsonOrinNx,
    /// Jetson Orin Nano: no NVENC; software encoding.
    JetsonOrinNano,
    /// Jetson AGX Orin: NVENC.
    JetsonAgxOrin,
    /// Other Jetsons (Nano, Xavier, TX2): NVENC when the node exists.
    Jetson,
    /// A PC or server (VA-API when a render node and the va plugin exist).
    X86,
    /// Anything else (other ARM boards): software encoding.
    Other,
}

impl Board {
    /// The board a device-tree model or DMI product string names, on an
    /// `arch` (`std::env::consts::ARCH`) machine.
    pub fn from_model(model: &str, arch: &str) -> Board {
        let m = model.to_ascii_lowercase();
        if m.contains("raspberry pi") {
            if m.contains("raspberry pi 5") || m.contains("raspberry pi 500") || m.contains("compute module 5") {
                Board::RaspberryPi5
            } else if m.contains("raspberry pi 4") || m.contains("raspberry pi 400") || m.contains("compute module 4") {
                Board::RaspberryPi4
            } else {
                Board::RaspberryPi
            }
        } else if m.contains("jetson") || m.contains("nvidia") && m.contains("orin") {
            if m.contains("orin nano") {
                Board::JetsonOrinNano
            } else if m.contains("orin nx") {
                Board::JetsonOrinNx
            } else if m.contains("agx orin") {
                Board::JetsonAgxOrin
            } else {
                Board::Jetson
            }
        } else if matches!(arch, "x86_64" | "x86") {
            Board::X86
        } else {
            Board::Other
        }
    }

    /// Short stable name, as in `probe --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Board::RaspberryPi4 => "raspberry-pi-4",
            Board::RaspberryPi5 => "raspberry-pi-5",
            Board::RaspberryPi => "raspberry-pi",
            Board::JetsonOrinNx => "jetson-orin-nx",
            Board::JetsonOrinNano => "jetson-orin-nano",
            Board::JetsonAgxOrin => "jetson-agx-orin",
            Board::Jetson => "jetson",
            Board::X86 => "x86",
            Board::Other => "other",
        }
    }

    /// Any Raspberry Pi.
    pub fn is_raspberry_pi(self) -> bool {
        matches!(self, Board::RaspberryPi4 | Board::RaspberryPi5 | Board::RaspberryPi)
    }

    /// Any Jetson.
    pub fn is_jetson(self) -> bool {
        matches!(
            self,
            Board::JetsonOrinNx | Board::JetsonOrinNano | Board::JetsonAgxOrin | Board::Jetson
        )
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a camera mode delivers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PixelFormat {
    /// H.264 straight from the camera (UVC cameras with an encoder).
    H264,
    /// H.265 straight from the camera.
    H265,
    /// Motion JPEG.
    Mjpeg,
    /// Uncompressed video in this GStreamer format (`YUY2`, `NV12`...).
    Raw(String),
    /// Something else (Bayer, depth), by its caps name.
    Other(String),
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PixelFormat::H264 => f.write_str("H264"),
            PixelFormat::H265 => f.write_str("H265"),
            PixelFormat::Mjpeg => f.write_str("MJPG"),
            PixelFormat::Raw(format) => f.write_str(format),
            PixelFormat::Other(name) => f.write_str(name),
        }
    }
}

/// One format and size a camera offers, with its frame rates.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraMode {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels (the largest, for cameras that scale freely).
    pub width: u32,
    /// Height in pixels (likewise).
    pub height: u32,
    /// Whether any size up to `width`×`height` is accepted (stepwise
    /// sizes, CSI cameras behind an ISP).
    pub scalable: bool,
    /// Discrete frame rates in frames per second.
    pub fps: Vec<f64>,
    /// A continuous frame-rate range, when the camera reports one.
    pub fps_range: Option<(f64, f64)>,
}

impl CameraMode {
    /// Whether this mode delivers `width`×`height` at `fps`.
    pub fn offers(&self, width: u32, height: u32, fps: u32) -> bool {
        self.offers_size(width, height) && self.offers_fps(fps)
    }

    /// Whether the size fits, ignoring the frame rate.
    pub fn offers_size(&self, width: u32, height: u32) -> bool {
        if self.scalable {
            width <= self.width && height <= self.height
        } else {
            width == self.width && height == self.height
        }
    }

    /// Whether the frame rate is offered, within 0.5 % (29.97 counts as 30).
    pub fn offers_fps(&self, fps: u32) -> bool {
        let want = f64::from(fps);
        let close = |f: f64| (f - want).abs() <= want * 0.005;
        if self.fps.is_empty() && self.fps_range.is_none() {
            // A camera that reports no rate takes what it is given.
            return true;
        }
        self.fps.iter().any(|f| close(*f))
            || self
                .fps_range
                .is_some_and(|(lo, hi)| want >= lo * 0.995 && want <= hi * 1.005)
    }
}

impl fmt::Display for CameraMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let up_to = if self.scalable { "≤" } else { "" };
        write!(f, "{} {up_to}{}x{}", self.format, self.width, self.height)?;
        let mut rates: Vec<String> = self.fps.iter().map(|r| format_fps(*r)).collect();
        if let Some((lo, hi)) = self.fps_range {
            rates.push(format!("{}-{}", format_fps(lo), format_fps(hi)));
        }
        if !rates.is_empty() {
            write!(f, "@{}", rates.join("/"))?;
        }
        Ok(())
    }
}

fn format_fps(f: f64) -> String {
    if (f - f.round()).abs() < 0.001 {
        format!("{}", f.round() as i64)
    } else {
        format!("{f:.2}")
    }
}

/// A camera found on the machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Camera {
    /// The source string that captures from it (`v4l2:/dev/video0`,
    /// `libcamera:NAME`, `argus:0`).
    pub source: String,
    /// The V4L2 device node, for V4L2 cameras.
    pub device: Option<PathBuf>,
    /// What the driver calls it.
    pub name: String,
    /// Formats and sizes, largest first within each format; empty when
    /// unknown.
    pub modes: Vec<CameraMode>,
}

impl Camera {
    /// The modes whose format is `format`.
    pub fn modes_of<'a>(&'a self, format: &'a PixelFormat) -> impl Iterator<Item = &'a CameraMode> + 'a {
        self.modes.iter().filter(move |m| &m.format == format)
    }
}

/// A sound card and its capture devices, from `/proc/asound`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoundCard {
    /// ALSA card number (`hw:N`).
    pub index: u32,
    /// ALSA card id (`hw:CARD=ID`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// PCM device numbers that can capture (`hw:N,D`).
    pub capture_devices: Vec<u32>,
}

/// A description of the machine that pipeline construction reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Platform {
    /// Board family.
    pub board: Board,
    /// The model string it was recognised from (device tree or DMI).
    pub model: String,
    /// CPU architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// GStreamer element factory names installed.
    pub elements: BTreeSet<String>,
    /// Device nodes that matter for capture and encoding: `/dev/video*`,
    /// `/dev/v4l2-nvenc`, `/dev/nvhost-msenc`, `/dev/dri/renderD*`.
    pub devices: BTreeSet<PathBuf>,
    /// Cameras with their modes (as far as they were probed).
    pub cameras: Vec<Camera>,
    /// Sound cards.
    pub sound_cards: Vec<SoundCard>,
}

impl Platform {
    /// A platform with nothing on it but what the caller adds; for tests
    /// and for describing other machines.
    pub fn new(board: Board, model: &str) -> Platform {
        Platform {
            board,
            model: model.to_owned(),
            arch: if board == Board::X86 { "x86_64" } else { "aarch64" }.to_owned(),
            elements: BTreeSet::new(),
            devices: BTreeSet::new(),
            cameras: Vec::new(),
            sound_cards: Vec::new(),
        }
    }

    /// Whether a GStreamer element is installed.
    pub fn has_element(&self, name: &str) -> bool {
        self.elements.contains(name)
    }

    /// Whether a device node exists.
    pub fn has_device(&self, path: impl AsRef<Path>) -> bool {
        self.devices.contains(path.as_ref())
    }

    /// The first DRM render node (`/dev/dri/renderD128`), for VA-API.
    pub fn render_node(&self) -> Option<&Path> {
        self.devices
            .iter()
            .find(|d| {
                d.starts_with("/dev/dri")
                    && d.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("renderD"))
            })
            .map(PathBuf::as_path)
    }

    /// The probed camera behind a V4L2 device node.
    pub fn v4l2_camera(&self, device: &Path) -> Option<&Camera> {
        self.cameras.iter().find(|c| c.device.as_deref() == Some(device))
    }

    /// The sound card with this ALSA number or id.
    pub fn sound_card(&self, card: &str) -> Option<&SoundCard> {
        self.sound_cards
            .iter()
            .find(|c| c.id == card || card.parse::<u32>().is_ok_and(|n| n == c.index))
    }

    /// This machine, fully: board, elements, devices, every camera with
    /// its modes (opening each V4L2 node briefly), sound cards. Takes a
    /// second or so; GStreamer must be initialised.
    pub fn probe() -> Platform {
        let mut platform = Platform::probe_quick();
        platform.cameras = probe_cameras(&platform);
        platform
    }

    /// This machine without opening any camera: board, elements, device
    /// nodes and sound cards. The registry is read once per process; device
    /// nodes and sound cards are read again on every call, so a camera
    /// plugged in later is seen by the next capture restart.
    pub fn probe_quick() -> Platform {
        let (board, model, arch) = board_of_this_machine();
        Platform {
            board,
            model,
            arch,
            elements: registry_elements().clone(),
            devices: scan_devices(),
            cameras: Vec::new(),
            sound_cards: read_sound_cards(),
        }
    }

    /// [`Platform::probe_quick`] plus the modes of one V4L2 camera, which
    /// is what capturing from it needs.
    pub fn probe_for_v4l2(device: &Path) -> Platform {
        let mut platform = Platform::probe_quick();
        if platform.has_device(device) && platform.has_element("v4l2src") {
            if let Some(camera) = probe_v4l2_camera(device) {
                platform.cameras.push(camera);
            }
        }
        platform
    }
}

/// (board, model, arch) from the device tree, else DMI, else the CPU arch.
fn board_of_this_machine() -> (Board, String, String) {
    let arch = std::env::consts::ARCH.to_owned();
    let model = read_trimmed("/proc/device-tree/model")
        .or_else(|| {
            let vendor = read_trimmed("/sys/class/dmi/id/sys_vendor").unwrap_or_default();
            let product = read_trimmed("/sys/class/dmi/id/product_name").unwrap_or_default();
            let both = format!("{vendor} {product}").trim().to_owned();
            (!both.is_empty()).then_some(both)
        })
        .unwrap_or_else(|| format!("unknown {arch} machine"));
    (Board::from_model(&model, &arch), model, arch)
}

/// A small text file without trailing NULs (device-tree strings) and
/// whitespace; `None` if missing or empty.
fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!text.is_empty()).then(|| text.to_owned())
}

/// Every element factory in the GStreamer registry, read once: the registry
/// does not change while we run, and reading it takes a few milliseconds.
fn registry_elements() -> &'static BTreeSet<String> {
    static ELEMENTS: OnceLock<BTreeSet<String>> = OnceLock::new();
    ELEMENTS.get_or_init(|| {
        if gst::init().is_err() {
            return BTreeSet::new();
        }
        gst::Registry::get()
            .features(gst::ElementFactory::static_type())
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    })
}

/// Device nodes that matter to capture and encoder choice.
fn scan_devices() -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let interesting = |name: &str| {
        name.starts_with("video")
            || name.starts_with("media")
            || name == "v4l2-nvenc"
            || name == "nvhost-msenc"
            || name == "v4l2-nvdec"
    };
    if let Ok(entries) = std::fs::read_dir("/dev") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if interesting(&name) {
                found.insert(entry.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/dev/dri") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("renderD") {
                found.insert(entry.path());
            }
        }
    }
    found
}

fn read_sound_cards() -> Vec<SoundCard> {
    let cards = std::fs::read_to_string("/proc/asound/cards").unwrap_or_default();
    let pcm = std::fs::read_to_string("/proc/asound/pcm").unwrap_or_default();
    parse_sound_cards(&cards, &pcm)
}

/// Sound cards from the text of `/proc/asound/cards` and `/proc/asound/pcm`.
pub fn parse_sound_cards(cards: &str, pcm: &str) -> Vec<SoundCard> {
    // " 1 [Device         ]: USB-Audio - USB PnP Sound Device"
    let mut found: Vec<SoundCard> = cards
        .lines()
        .filter_map(|line| {
            let (index, rest) = line.trim_start().split_once(' ')?;
            let index = index.parse::<u32>().ok()?;
            let id = rest
                .trim_start()
                .strip_prefix('[')?
                .split(']')
                .next()?
                .trim()
                .to_owned();
            let name = rest
                .split_once(" - ")
                .map(|(_, n)| n.trim().to_owned())
                .unwrap_or_else(|| id.clone());
            Some(SoundCard {
                index,
                id,
                name,
                capture_devices: Vec::new(),
            })
        })
        .collect();
    // "01-00: USB Audio : USB Audio : playback 1 : capture 1"
    for line in pcm.lines() {
        let Some((address, rest)) = line.split_once(':') else {
            continue;
        };
        let Some((card, device)) = address.split_once('-') else {
            continue;
        };
        let (Ok(card), Ok(device)) = (card.trim().parse::<u32>(), device.trim().parse::<u32>()) else {
            continue;
        };
        if rest.split(':').any(|field| field.trim().starts_with("capture")) {
            if let Some(c) = found.iter_mut().find(|c| c.index == card) {
                c.capture_devices.push(device);
            }
        }
    }
    found
}

/// Every camera: V4L2 capture nodes (opened briefly to read their modes),
/// libcamera cameras (through GStreamer's device monitor when libcamerasrc
/// is installed) and, on Jetsons with nvarguscamerasrc, Argus sensor 0.
fn probe_cameras(platform: &Platform) -> Vec<Camera> {
    let mut cameras = Vec::new();
    if platform.has_element("v4l2src") {
        for device in &platform.devices {
            let is_video = device
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("video"));
            if is_video {
                cameras.extend(probe_v4l2_camera(device));
            }
        }
    }
    if platform.has_element("libcamerasrc") {
        cameras.extend(probe_libcamera_cameras());
    }
    if platform.board.is_jetson() && platform.has_element("nvarguscamerasrc") {
        // Argus cannot list its sensors without opening them through the
        // daemon; sensor 0 is where a single CSI camera shows up.
        cameras.push(Camera {
            source: "argus:0".to_owned(),
            device: None,
            name: "CSI camera through nvargus-daemon (sensor 0; others as argus:N)".to_owned(),
            modes: Vec::new(),
        });
    }
    cameras
}

/// Open a V4L2 node with v4l2src in READY (no streaming) and read the caps
/// it offers. `None` for nodes that cannot capture (encoder and ISP nodes
/// on a Pi, metadata nodes of UVC cameras).
fn probe_v4l2_camera(device: &Path) -> Option<Camera> {
    gst::init().ok()?;
    let src = gst::ElementFactory::make("v4l2src")
        .property("device", device.to_str()?)
        .build()
        .ok()?;
    if src.set_state(gst::State::Ready).is_err() {
        let _ = src.set_state(gst::State::Null);
        return None;
    }
    let caps = src.static_pad("src").map(|p| p.query_caps(None));
    let name = src
        .property::<Option<String>>("device-name")
        .unwrap_or_else(|| device.display().to_string());
    let _ = src.set_state(gst::State::Null);
    let caps = caps?;
    let modes = modes_from_caps(&caps);
    if modes.is_empty() {
        return None;
    }
    Some(Camera {
        source: format!("v4l2:{}", device.display()),
        device: Some(device.to_owned()),
        name,
        modes,
    })
}

/// libcamera cameras through GStreamer's device monitor.
fn probe_libcamera_cameras() -> Vec<Camera> {
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    if monitor.start().is_err() {
        return Vec::new();
    }
    let mut cameras = Vec::new();
    for device in monitor.devices() {
        let Ok(element) = device.create_element(None) else {
            continue;
        };
        let is_libcamera = element.factory().is_some_and(|f| f.name() == "libcamerasrc");
        if !is_libcamera {
            continue;
        }
        let name = element
            .property::<Option<String>>("camera-name")
            .unwrap_or_else(|| device.display_name().to_string());
        cameras.push(Camera {
            source: format!("libcamera:{name}"),
            device: None,
            name: device.display_name().to_string(),
            modes: device.caps().map(|c| modes_from_caps(&c)).unwrap_or_default(),
        });
    }
    monitor.stop();
    cameras
}

/// Camera modes from caps as v4l2src or libcamerasrc report them.
pub fn modes_from_caps(caps: &gst::CapsRef) -> Vec<CameraMode> {
    let mut modes: Vec<CameraMode> = Vec::new();
    for s in caps.iter() {
        let format = match s.name().as_str() {
            "video/x-h264" => PixelFormat::H264,
            "video/x-h265" => PixelFormat::H265,
            "image/jpeg" => PixelFormat::Mjpeg,
            "video/x-raw" => match s.get::<&str>("format") {
                Ok(f) => PixelFormat::Raw(f.to_owned()),
                // A list of formats (an ISP that converts): one mode each.
                Err(_) => match s.get::<gst::List>("format") {
                    Ok(list) => {
                        for f in list.iter().filter_map(|v| v.get::<String>().ok()) {
                            let mut one = s.to_owned();
                            one.set("format", &f);
                            modes.extend(mode_from_structure(PixelFormat::Raw(f), &one));
                        }
                        continue;
                    }
                    Err(_) => PixelFormat::Raw("any".to_owned()),
                },
            },
            other => PixelFormat::Other(other.to_owned()),
        };
        modes.extend(mode_from_structure(format, s));
    }
    modes
}

fn mode_from_structure(format: PixelFormat, s: &gst::StructureRef) -> Option<CameraMode> {
    let dimension = |field: &str| -> Option<(u32, bool)> {
        if let Ok(v) = s.get::<i32>(field) {
            return u32::try_from(v).ok().map(|v| (v, false));
        }
        let range = s.get::<gst::IntRange<i32>>(field).ok()?;
        u32::try_from(range.max()).ok().map(|v| (v, true))
    };
    let (width, w_range) = dimension("width")?;
    let (height, h_range) = dimension("height")?;
    let as_f64 = |f: gst::Fraction| f64::from(f.numer()) / f64::from(f.denom().max(1));
    let mut fps = Vec::new();
    let mut fps_range = None;
    if let Ok(f) = s.get::<gst::Fraction>("framerate") {
        fps.push(as_f64(f));
    } else if let Ok(list) = s.get::<gst::List>("framerate") {
        fps.extend(list.iter().filter_map(|v| v.get::<gst::Fraction>().ok()).map(as_f64));
    } else if let Ok(range) = s.get::<gst::FractionRange>("framerate") {
        fps_range = Some((as_f64(range.min()), as_f64(range.max())));
    }
    fps.retain(|f| *f > 0.0);
    Some(CameraMode {
        format,
        width,
        height,
        scalable: w_range || h_range,
        fps,
        fps_range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boards_are_recognised_from_their_model_strings() {
        for (model, arch, want) in [
            ("Raspberry Pi 4 Model B Rev 1.4", "aarch64", Board::RaspberryPi4),
            ("Raspberry Pi Compute Module 4 Rev 1.0", "aarch64", Board::RaspberryPi4),
            ("Raspberry Pi 400 Rev 1.0", "aarch64", Board::RaspberryPi4),
            ("Raspberry Pi 5 Model B Rev 1.0", "aarch64", Board::RaspberryPi5),
            ("Raspberry Pi Compute Module 5 Rev 1.0", "aarch64", Board::RaspberryPi5),
            ("Raspberry Pi 3 Model B Plus Rev 1.3", "aarch64", Board::RaspberryPi),
            (
                "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
                "aarch64",
                Board::JetsonOrinNx,
            ),
            (
                "NVIDIA Jetson Orin Nano Developer Kit",
                "aarch64",
                Board::JetsonOrinNano,
            ),
            ("Jetson AGX Orin", "aarch64", Board::JetsonAgxOrin),
            ("NVIDIA Jetson Nano Developer Kit", "aarch64", Board::Jetson),
            ("Dell Inc. OptiPlex 7090", "x86_64", Board::X86),
            ("unknown x86_64 machine", "x86_64", Board::X86),
            ("Rockchip RK3588 EVB", "aarch64", Board::Other),
        ] {
            assert_eq!(Board::from_model(model, arch), want, "{model}");
        }
    }

    #[test]
    fn sound_cards_and_their_capture_devices_come_from_proc_asound() {
        // A PC with onboard audio and a USB microphone.
        let cards = " 0 [PCH            ]: HDA-Intel - HDA Intel PCH\n\
                     \x20                     HDA Intel PCH at 0xf7f10000 irq 32\n\
                     \x201 [Device         ]: USB-Audio - USB PnP Sound Device\n\
                     \x20                     C-Media Electronics Inc. USB PnP Sound Device at usb-0000:00:14.0-2\n";
        let pcm = "00-00: ALC892 Analog : ALC892 Analog : playback 1 : capture 1\n\
                   00-01: ALC892 Digital : ALC892 Digital : playback 1\n\
                   01-00: USB Audio : USB Audio : playback 1 : capture 1\n";
        let found = parse_sound_cards(cards, pcm);
        assert_eq!(
            found,
            vec![
                SoundCard {
                    index: 0,
                    id: "PCH".to_owned(),
                    name: "HDA Intel PCH".to_owned(),
                    capture_devices: vec![0],
                },
                SoundCard {
                    index: 1,
                    id: "Device".to_owned(),
                    name: "USB PnP Sound Device".to_owned(),
                    capture_devices: vec![0],
                },
            ]
        );
        assert!(parse_sound_cards("--- no soundcards ---\n", "").is_empty());
    }

    /// What v4l2src reports for a Logitech C920 (YUYV, MJPG and H.264).
    const C920_CAPS: &str = "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au, \
        width=(int)1920, height=(int)1080, pixel-aspect-ratio=(fraction)1/1, \
        framerate=(fraction){ 30/1, 24/1, 20/1, 15/1, 10/1, 15/2, 5/1 }; \
        image/jpeg, width=(int)1920, height=(int)1080, pixel-aspect-ratio=(fraction)1/1, \
        framerate=(fraction){ 30/1, 24/1, 20/1, 15/1, 10/1, 15/2, 5/1 }; \
        image/jpeg, width=(int)1280, height=(int)720, pixel-aspect-ratio=(fraction)1/1, \
        framerate=(fraction){ 30/1, 24/1, 20/1, 15/1, 10/1, 15/2, 5/1 }; \
        video/x-raw, format=(string)YUY2, width=(int)640, height=(int)480, pixel-aspect-ratio=(fraction)1/1, \
        framerate=(fraction){ 30/1, 24/1, 20/1, 15/1, 10/1, 15/2, 5/1 }; \
        video/x-raw, format=(string)YUY2, width=(int)1920, height=(int)1080, pixel-aspect-ratio=(fraction)1/1, \
        framerate=(fraction){ 5/1 }";

    #[test]
    fn camera_modes_come_from_caps() {
        gst::init().unwrap();
        let caps: gst::Caps = C920_CAPS.parse().unwrap();
        let modes = modes_from_caps(&caps);
        let text: Vec<String> = modes.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            text,
            [
                "H264 1920x1080@30/24/20/15/10/7.50/5",
                "MJPG 1920x1080@30/24/20/15/10/7.50/5",
                "MJPG 1280x720@30/24/20/15/10/7.50/5",
                "YUY2 640x480@30/24/20/15/10/7.50/5",
                "YUY2 1920x1080@5",
            ]
        );
        assert!(modes[0].offers(1920, 1080, 30));
        assert!(!modes[0].offers(1280, 720, 30));
        assert!(!modes[4].offers(1920, 1080, 30));

        // An ISP that scales: any size up to the maximum, a rate range.
        let caps: gst::Caps = "video/x-raw, format=(string){ NV12, I420 }, width=(int)[ 32, 4608 ], \
            height=(int)[ 32, 2592 ], framerate=(fraction)[ 1/1, 120/1 ]"
            .parse()
            .unwrap();
        let modes = modes_from_caps(&caps);
        assert_eq!(modes.len(), 2);
        assert_eq!(modes[0].to_string(), "NV12 ≤4608x2592@1-120");
        assert!(modes[1].offers(1920, 1080, 30));
        assert!(!modes[1].offers(1920, 1080, 240));
    }
}
