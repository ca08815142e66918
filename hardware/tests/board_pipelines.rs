//! The pipeline chosen for each board profile, from a described platform
//! (element registry and device nodes as they are on the real boards), so
//! no hardware is needed. Expectations are the gst-launch text itself.

use std::path::PathBuf;
use std::time::Duration;

use hardware::platform::{Camera, CameraMode, PixelFormat, SoundCard};
use hardware::{
    plan, AudioCodecChoice, AudioSource, Board, CaptureError, CaptureOptions, Platform, VideoCodecChoice, VideoSource,
};

/// Elements every profile has: GStreamer base/good/bad/ugly/libav as
/// Debian and Raspberry Pi OS package them.
const COMMON: &[&str] = &[
    "videotestsrc",
    "timeoverlay",
    "videoconvert",
    "jpegdec",
    "v4l2src",
    "h264parse",
    "h265parse",
    "appsink",
    "queue",
    "tee",
    "fakesink",
    "filesrc",
    "parsebin",
    "audiotestsrc",
    "audioconvert",
    "audioresample",
    "alsasrc",
    "pulsesrc",
    "avenc_aac",
    "aacparse",
    "opusenc",
    "opusparse",
    "alawenc",
    "mulawenc",
    "rtspsrc",
    "rtph264depay",
    "rtph265depay",
    "rtpmp4gdepay",
    "rtpmp4adepay",
    "rtppcmadepay",
    "rtppcmudepay",
    "rtpopusdepay",
    "x264enc",
    "x265enc",
];

fn profile(board: Board, model: &str, extra_elements: &[&str], devices: &[&str]) -> Platform {
    let mut p = Platform::new(board, model);
    p.elements
        .extend(COMMON.iter().chain(extra_elements).map(|e| e.to_string()));
    p.devices.extend(devices.iter().map(PathBuf::from));
    p
}

fn pi4() -> Platform {
    profile(
        Board::RaspberryPi4,
        "Raspberry Pi 4 Model B Rev 1.4",
        &["libcamerasrc", "v4l2h264enc", "v4l2convert", "v4l2jpegdec"],
        &[
            "/dev/video0",
            "/dev/video10",
            "/dev/video11",
            "/dev/video12",
            "/dev/media0",
        ],
    )
}

fn pi5() -> Platform {
    // The v4l2 plugin is installed, but there is no encoder node behind it.
    profile(
        Board::RaspberryPi5,
        "Raspberry Pi 5 Model B Rev 1.0",
        &["libcamerasrc", "v4l2h264enc", "v4l2convert"],
        &["/dev/video0", "/dev/video19", "/dev/media0"],
    )
}

const JETSON_ELEMENTS: &[&str] = &[
    "nvarguscamerasrc",
    "nvvidconv",
    "nvv4l2h264enc",
    "nvv4l2h265enc",
    "nvv4l2decoder",
];

fn orin_nx() -> Platform {
    profile(
        Board::JetsonOrinNx,
        "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
        JETSON_ELEMENTS,
        &["/dev/video0", "/dev/v4l2-nvenc", "/dev/nvhost-msenc", "/dev/v4l2-nvdec"],
    )
}

fn orin_nano() -> Platform {
    // Same L4T plugins, no NVENC behind them.
    profile(
        Board::JetsonOrinNano,
        "NVIDIA Jetson Orin Nano Developer Kit",
        JETSON_ELEMENTS,
        &["/dev/video0", "/dev/v4l2-nvdec"],
    )
}

fn x86_va() -> Platform {
    profile(
        Board::X86,
        "Intel(R) Client Systems NUC11TNHi5",
        &["vah264enc", "vah265enc", "vapostproc"],
        &["/dev/video0", "/dev/dri/renderD128"],
    )
}

fn x86_vaapi() -> Platform {
    profile(
        Board::X86,
        "Dell Inc. OptiPlex 7050",
        &["vaapih264enc", "vaapih265enc", "vaapipostproc"],
        &["/dev/video0", "/dev/dri/renderD128"],
    )
}

fn x86_no_va() -> Platform {
    // The va plugin is installed, but the container has no render node.
    profile(
        Board::X86,
        "QEMU Standard PC (Q35 + ICH9, 2009)",
        &["vah264enc", "vapostproc"],
        &["/dev/video0"],
    )
}

/// A Logitech C920 on /dev/video0: H.264 and MJPEG up to 1080p30, YUYV
/// 640x480 at 30 fps (and 1080p only at 5 fps).
fn c920() -> Camera {
    let mode = |format: PixelFormat, width, height, fps: &[f64]| CameraMode {
        format,
        width,
        height,
        scalable: false,
        fps: fps.to_vec(),
        fps_range: None,
    };
    Camera {
        source: "v4l2:/dev/video0".to_owned(),
        device: Some(PathBuf::from("/dev/video0")),
        name: "HD Pro Webcam C920".to_owned(),
        modes: vec![
            mode(PixelFormat::H264, 1920, 1080, &[30.0, 24.0, 15.0]),
            mode(PixelFormat::H264, 1280, 720, &[30.0, 24.0, 15.0]),
            mode(PixelFormat::Mjpeg, 1920, 1080, &[30.0, 24.0, 15.0]),
            mode(PixelFormat::Mjpeg, 1280, 720, &[30.0, 24.0, 15.0]),
            mode(PixelFormat::Raw("YUY2".to_owned()), 640, 480, &[30.0, 15.0]),
            mode(PixelFormat::Raw("YUY2".to_owned()), 1920, 1080, &[5.0]),
        ],
    }
}

/// A cheap MJPEG-only USB camera (no H.264, YUYV at 640x480 only).
fn mjpeg_camera() -> Camera {
    Camera {
        source: "v4l2:/dev/video0".to_owned(),
        device: Some(PathBuf::from("/dev/video0")),
        name: "USB2.0 Camera".to_owned(),
        modes: vec![
            CameraMode {
                format: PixelFormat::Mjpeg,
                width: 1280,
                height: 720,
                scalable: false,
                fps: vec![30.0],
                fps_range: None,
            },
            CameraMode {
                format: PixelFormat::Raw("YUY2".to_owned()),
                width: 640,
                height: 480,
                scalable: false,
                fps: vec![30.0],
                fps_range: None,
            },
        ],
    }
}

fn with_camera(mut p: Platform, camera: Camera) -> Platform {
    p.cameras.push(camera);
    p
}

fn with_usb_mic(mut p: Platform) -> Platform {
    p.sound_cards.push(SoundCard {
        index: 1,
        id: "Device".to_owned(),
        name: "USB PnP Sound Device".to_owned(),
        capture_devices: vec![0],
    });
    p
}

/// 1280x720 at 30 fps, 2 s fragments (key frame every 60 frames), 2 Mbit/s,
/// no audio unless a row says so.
fn opts() -> CaptureOptions {
    CaptureOptions {
        audio: AudioSource::None,
        ..CaptureOptions::default()
    }
}

const SINK: &str = "sync=false enable-last-sample=false";

fn check(name: &str, source: &str, opts: &CaptureOptions, platform: &Platform, want: &str) {
    let source: VideoSource = source.parse().unwrap();
    let got = plan(&source, opts, platform)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .to_string();
    let want = want.replace("SINK", SINK);
    assert_eq!(got, want, "\n{name}:\n got: {got}\nwant: {want}\n");
}

#[test]
fn test_source_uses_each_boards_best_encoder() {
    let src = "videotestsrc is-live=true pattern=smpte ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
               ! timeoverlay font-desc=\"Sans 24\"";
    let h264_out =
        "h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au ! appsink name=video SINK";
    let h265_out =
        "h265parse config-interval=-1 ! video/x-h265,stream-format=hvc1,alignment=au ! appsink name=video SINK";
    let x264 = |preset: &str| {
        format!(
            "videoconvert ! video/x-raw,format=I420 ! x264enc name=encoder tune=zerolatency speed-preset={preset} \
             key-int-max=60 bitrate=2000 bframes=0 option-string=scenecut=0"
        )
    };
    let h265 = CaptureOptions {
        video_codec: VideoCodecChoice::H265,
        ..opts()
    };
    let table: Vec<(&str, Platform, CaptureOptions, String)> = vec![
        (
            "Pi 4: v4l2h264enc, level pinned, SPS/PPS repeated, GOP and bitrate as V4L2 controls",
            pi4(),
            opts(),
            format!(
                "{src} ! v4l2convert ! v4l2h264enc name=encoder extra-controls=\"controls,repeat_sequence_header=1,\
                 h264_i_frame_period=60,video_bitrate=2000000\" ! video/x-h264,level=(string)4.1 ! {h264_out}"
            ),
        ),
        ("Pi 5: no hardware encoder, x264 ultrafast", pi5(), opts(), format!("{src} ! {} ! {h264_out}", x264("ultrafast"))),
        (
            "Orin NX: NVENC with an IDR every key frame interval and SPS/PPS in-band",
            orin_nx(),
            opts(),
            format!(
                "{src} ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc name=encoder bitrate=2000000 \
                 iframeinterval=60 idrinterval=60 insert-sps-pps=true control-rate=1 preset-level=1 maxperf-enable=true \
                 ! {h264_out}"
            ),
        ),
        (
            "Orin Nano: nvv4l2h264enc installed but no /dev/v4l2-nvenc, x264 superfast",
            orin_nano(),
            opts(),
            format!("{src} ! {} ! {h264_out}", x264("superfast")),
        ),
        (
            "x86 with a render node: vah264enc behind vapostproc",
            x86_va(),
            opts(),
            format!(
                "{src} ! vapostproc ! video/x-raw(memory:VAMemory),format=NV12 ! vah264enc name=encoder bitrate=2000 \
                 key-int-max=60 b-frames=0 rate-control=cbr ! {h264_out}"
            ),
        ),
        (
            "x86 with gstreamer-vaapi only",
            x86_vaapi(),
            opts(),
            format!(
                "{src} ! vaapipostproc ! vaapih264enc name=encoder bitrate=2000 keyframe-period=60 max-bframes=0 \
                 rate-control=cbr ! {h264_out}"
            ),
        ),
        ("x86 without a render node: x264 veryfast", x86_no_va(), opts(), format!("{src} ! {} ! {h264_out}", x264("veryfast"))),
        (
            "Pi 4, H.265: the Pi 4 encoder is H.264 only, x265",
            pi4(),
            h265.clone(),
            format!(
                "{src} ! videoconvert ! video/x-raw,format=I420 ! x265enc name=encoder tune=zerolatency \
                 speed-preset=ultrafast key-int-max=60 bitrate=2000 option-string=scenecut=0:bframes=0 ! {h265_out}"
            ),
        ),
        (
            "Orin NX, H.265: nvv4l2h265enc",
            orin_nx(),
            h265.clone(),
            format!(
                "{src} ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h265enc name=encoder bitrate=2000000 \
                 iframeinterval=60 idrinterval=60 insert-sps-pps=true control-rate=1 preset-level=1 maxperf-enable=true \
                 ! {h265_out}"
            ),
        ),
        (
            "x86 VA-API, H.265: vah265enc",
            x86_va(),
            h265.clone(),
            format!(
                "{src} ! vapostproc ! video/x-raw(memory:VAMemory),format=NV12 ! vah265enc name=encoder bitrate=2000 \
                 key-int-max=60 b-frames=0 rate-control=cbr ! {h265_out}"
            ),
        ),
    ];
    for (name, platform, opts, want) in table {
        check(name, "test", &opts, &platform, &want);
    }
}

#[test]
fn cameras_per_board() {
    let h264_out =
        "h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au ! appsink name=video SINK";
    let hd1080 = CaptureOptions {
        width: 1920,
        height: 1080,
        video_bitrate_kbps: 4000,
        ..opts()
    };
    let table: Vec<(&str, Platform, &str, CaptureOptions, String)> = vec![
        (
            "Pi 4 CSI camera: libcamerasrc NV12 into the ISP and the hardware encoder",
            pi4(),
            "libcamera",
            opts(),
            format!(
                "libcamerasrc ! video/x-raw,width=1280,height=720,framerate=30/1,format=NV12 ! v4l2convert \
                 ! v4l2h264enc name=encoder extra-controls=\"controls,repeat_sequence_header=1,h264_i_frame_period=60,\
                 video_bitrate=2000000\" ! video/x-h264,level=(string)4.1 ! {h264_out}"
            ),
        ),
        (
            "Pi 5 CSI camera (Camera Module 3 by name): x264",
            pi5(),
            "libcamera:/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a",
            opts(),
            format!(
                "libcamerasrc camera-name=\"/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a\" \
                 ! video/x-raw,width=1280,height=720,framerate=30/1,format=NV12 ! videoconvert ! video/x-raw,format=I420 \
                 ! x264enc name=encoder tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=2000 bframes=0 \
                 option-string=scenecut=0 ! {h264_out}"
            ),
        ),
        (
            "Orin NX CSI camera: NVMM from Argus straight into NVENC",
            orin_nx(),
            "argus:0",
            hd1080.clone(),
            format!(
                "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080,format=NV12,\
                 framerate=30/1 ! nvv4l2h264enc name=encoder bitrate=4000000 iframeinterval=60 idrinterval=60 \
                 insert-sps-pps=true control-rate=1 preset-level=1 maxperf-enable=true ! {h264_out}"
            ),
        ),
        (
            "Orin Nano CSI camera: out of NVMM with nvvidconv into x264",
            orin_nano(),
            "argus:1",
            hd1080.clone(),
            format!(
                "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),width=1920,height=1080,format=NV12,\
                 framerate=30/1 ! nvvidconv ! video/x-raw,format=I420 ! x264enc name=encoder tune=zerolatency \
                 speed-preset=superfast key-int-max=60 bitrate=4000 bframes=0 option-string=scenecut=0 ! {h264_out}"
            ),
        ),
        (
            "C920 on any board: its own H.264 passed through, no encoder",
            with_camera(x86_no_va(), c920()),
            "v4l2:/dev/video0",
            hd1080.clone(),
            format!("v4l2src device=/dev/video0 do-timestamp=true ! video/x-h264,width=1920,height=1080,framerate=30/1 ! {h264_out}"),
        ),
        (
            "MJPEG camera on a Pi 4: hardware JPEG decoder and encoder",
            with_camera(pi4(), mjpeg_camera()),
            "v4l2:/dev/video0",
            opts(),
            format!(
                "v4l2src device=/dev/video0 do-timestamp=true ! image/jpeg,width=1280,height=720,framerate=30/1 \
                 ! v4l2jpegdec ! v4l2convert ! v4l2h264enc name=encoder extra-controls=\"controls,\
                 repeat_sequence_header=1,h264_i_frame_period=60,video_bitrate=2000000\" ! video/x-h264,level=(string)4.1 \
                 ! {h264_out}"
            ),
        ),
        (
            "MJPEG camera on an Orin NX: nvv4l2decoder mjpeg=1 into NVENC, all in NVMM",
            with_camera(orin_nx(), mjpeg_camera()),
            "v4l2:/dev/video0",
            opts(),
            format!(
                "v4l2src device=/dev/video0 do-timestamp=true ! image/jpeg,width=1280,height=720,framerate=30/1 \
                 ! nvv4l2decoder mjpeg=1 ! nvv4l2h264enc name=encoder bitrate=2000000 iframeinterval=60 idrinterval=60 \
                 insert-sps-pps=true control-rate=1 preset-level=1 maxperf-enable=true ! {h264_out}"
            ),
        ),
        (
            "YUYV at 640x480 beats decoding MJPEG, on x86 with VA-API",
            with_camera(x86_va(), mjpeg_camera()),
            "v4l2:/dev/video0",
            CaptureOptions {
                width: 640,
                height: 480,
                ..opts()
            },
            format!(
                "v4l2src device=/dev/video0 do-timestamp=true ! video/x-raw,format=YUY2,width=640,height=480,\
                 framerate=30/1 ! vapostproc ! video/x-raw(memory:VAMemory),format=NV12 ! vah264enc name=encoder \
                 bitrate=2000 key-int-max=60 b-frames=0 rate-control=cbr ! {h264_out}"
            ),
        ),
        (
            "A camera whose modes were not probed: raw at the size asked, negotiated at run time",
            pi5(),
            "v4l2:/dev/video0",
            opts(),
            format!(
                "v4l2src device=/dev/video0 do-timestamp=true ! video/x-raw,width=1280,height=720,framerate=30/1 \
                 ! videoconvert ! video/x-raw,format=I420 ! x264enc name=encoder tune=zerolatency speed-preset=ultrafast \
                 key-int-max=60 bitrate=2000 bframes=0 option-string=scenecut=0 ! {h264_out}"
            ),
        ),
    ];
    for (name, platform, source, opts, want) in table {
        check(name, source, &opts, &platform, &want);
    }
}

#[test]
fn pi4_hardware_encoder_is_skipped_above_its_level() {
    // 1080p60 is beyond level 4.1; the Pi 4 falls back to x264.
    let opts = CaptureOptions {
        width: 1920,
        height: 1080,
        fps: 60,
        fragment_duration: Duration::from_secs(1),
        ..opts()
    };
    let got = plan(&VideoSource::Test, &opts, &pi4()).unwrap();
    assert_eq!(got.encoder_element(VideoCodecChoice::H264), Some("x264enc"));
    assert!(got.launch.contains("key-int-max=60"), "{got}");
}

#[test]
fn rtsp_streams_are_depayloaded_and_passed_through() {
    let opts = CaptureOptions {
        audio: AudioSource::FromSource,
        ..CaptureOptions::default()
    };
    // The URL is quoted: `@` and `:` after a password are not plain
    // gst-launch property text.
    let want = [
        "rtspsrc name=src location=\"rtsp://admin:pw@192.168.1.64:554/Streaming/Channels/101\" latency=200 protocols=tcp",
        "  [rtp-h264] rtph264depay ! h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au \
         ! appsink name=video SINK",
        "  [rtp-h265] rtph265depay ! h265parse config-interval=-1 ! video/x-h265,stream-format=hvc1,alignment=au \
         ! appsink name=video SINK",
        "  [rtp-mpeg4-generic] rtpmp4gdepay ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw ! appsink name=audio SINK",
        "  [rtp-mp4a-latm] rtpmp4adepay ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw ! appsink name=audio SINK",
        "  [rtp-pcma] rtppcmadepay ! audio/x-alaw ! appsink name=audio SINK",
        "  [rtp-pcmu] rtppcmudepay ! audio/x-mulaw ! appsink name=audio SINK",
        "  [rtp-opus] rtpopusdepay ! audio/x-opus ! appsink name=audio SINK",
    ]
    .join("\n");
    // The same on every board: nothing is encoded.
    for platform in [pi4(), pi5(), orin_nx(), orin_nano(), x86_va(), x86_no_va()] {
        check(
            platform.board.as_str(),
            "rtsp://admin:pw@192.168.1.64:554/Streaming/Channels/101",
            &opts,
            &platform,
            &want,
        );
    }
    // UDP, a longer jitter buffer, no audio.
    let opts = CaptureOptions {
        audio: AudioSource::None,
        rtsp_latency_ms: 500,
        rtsp_transport: hardware::RtspTransport::Udp,
        ..CaptureOptions::default()
    };
    let got = plan(&"rtsp://cam/live".parse().unwrap(), &opts, &pi4()).unwrap();
    assert_eq!(
        got.launch,
        "rtspsrc name=src location=rtsp://cam/live latency=500 protocols=udp"
    );
    assert_eq!(got.branches.len(), 2, "{got}");
}

#[test]
fn one_microphone_feeds_aac_and_opus_through_a_tee() {
    let opts = CaptureOptions {
        audio: AudioSource::Alsa("hw:1,0".to_owned()),
        audio_codecs: vec![AudioCodecChoice::Aac, AudioCodecChoice::Opus],
        ..CaptureOptions::default()
    };
    let got = plan(
        &"v4l2:/dev/video0".parse().unwrap(),
        &opts,
        &with_usb_mic(with_camera(pi4(), c920())),
    )
    .unwrap();
    assert_eq!(
        got.launch,
        "v4l2src device=/dev/video0 do-timestamp=true ! video/x-h264,width=1280,height=720,framerate=30/1 \
         ! h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au ! appsink name=video SINK  \
         alsasrc device=\"hw:1,0\" ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! tee name=mic  \
         mic. ! queue ! audioconvert ! avenc_aac ! aacparse ! audio/mpeg,mpegversion=4,stream-format=raw \
         ! appsink name=audio SINK  mic. ! queue ! audioconvert ! opusenc ! appsink name=audio2 SINK"
            .replace("SINK", SINK)
    );
    let tracks: Vec<(u8, &str)> = got.outputs.iter().map(|o| (o.track.get(), o.sink)).collect();
    assert_eq!(tracks, [(1, "video"), (2, "audio"), (3, "audio2")]);

    // G.711 for a telephony peer: 8 kHz mono.
    let opts = CaptureOptions {
        audio: AudioSource::Pulse(None),
        audio_codecs: vec![AudioCodecChoice::Mulaw],
        ..CaptureOptions::default()
    };
    let got = plan(&VideoSource::Test, &opts, &x86_no_va()).unwrap();
    assert!(
        got.launch.ends_with(
            &"  pulsesrc ! audioconvert ! audioresample ! audio/x-raw,rate=48000 ! audioconvert ! audioresample \
              ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! appsink name=audio SINK"
                .replace("SINK", SINK)
        ),
        "{got}"
    );
}

#[test]
fn user_pipelines_get_a_branch_per_kind_of_output() {
    let opts = CaptureOptions {
        audio: AudioSource::FromSource,
        ..CaptureOptions::default()
    };
    let got = plan(
        &"pipeline:v4l2src device=/dev/video2 ! video/x-raw,width=640,height=480"
            .parse()
            .unwrap(),
        &opts,
        &pi5(),
    )
    .unwrap();
    let kinds: Vec<String> = got.branches.iter().map(|b| b.carries.to_string()).collect();
    assert_eq!(
        kinds,
        [
            "h264",
            "h265",
            "raw-video",
            "jpeg",
            "aac",
            "opus",
            "alaw",
            "mulaw",
            "raw-audio"
        ]
    );
    assert_eq!(
        got.launch,
        "v4l2src device=/dev/video2 ! video/x-raw,width=640,height=480"
    );
    assert_eq!(
        got.branch(hardware::plan::StreamKind::RawVideo).unwrap().description,
        "videoconvert ! video/x-raw,format=I420 ! x264enc name=encoder tune=zerolatency speed-preset=ultrafast \
         key-int-max=60 bitrate=2000 bframes=0 option-string=scenecut=0 ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=avc,alignment=au ! appsink name=video SINK"
            .replace("SINK", SINK)
    );
}

#[test]
fn bad_input_names_the_field_and_value() {
    // A camera that is not there.
    let err = plan(&"v4l2:/dev/video7".parse().unwrap(), &opts(), &pi4()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "video = \"v4l2:/dev/video7\": /dev/video7 does not exist; video devices here: /dev/video0, /dev/video10, \
         /dev/video11, /dev/video12"
    );
    // A sound card that is not there, or one that cannot capture.
    let mic = |device: &str| CaptureOptions {
        audio: AudioSource::Alsa(device.to_owned()),
        ..opts()
    };
    let err = plan(&VideoSource::Test, &mic("hw:3"), &with_usb_mic(pi4())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "audio = \"alsa:hw:3\": there is no ALSA card 3; cards here: 1 (Device, USB PnP Sound Device)"
    );
    let err = plan(
        &VideoSource::Test,
        &mic("plughw:CARD=Device,DEV=2"),
        &with_usb_mic(pi4()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("has no capture device 2"), "{err}");
    plan(&VideoSource::Test, &mic("hw:CARD=Device,DEV=0"), &with_usb_mic(pi4())).unwrap();
    // A mode the camera does not offer: the first field that rules it out.
    for (w, h, fps, field, value) in [
        (4096, 2160, 30, "width", "4096"),
        (1280, 1024, 30, "height", "1024"),
        (1920, 1080, 60, "fps", "60"),
    ] {
        let opts = CaptureOptions {
            width: w,
            height: h,
            fps,
            ..opts()
        };
        match plan(&"v4l2:/dev/video0".parse().unwrap(), &opts, &with_camera(pi4(), c920())) {
            Err(CaptureError::UnsupportedCaps {
                field: f,
                value: v,
                source_name,
                offered,
            }) => {
                assert_eq!((f, v.as_str()), (field, value));
                assert_eq!(source_name, "v4l2:/dev/video0");
                assert!(
                    offered.starts_with("H264 1920x1080@30/24/15, H264 1280x720@30/24/15, MJPG"),
                    "{offered}"
                );
            }
            other => panic!("{w}x{h}@{fps}: {other:?}"),
        }
    }
    // Cameras of another board.
    let err = plan(&"argus:0".parse().unwrap(), &opts(), &pi4()).unwrap_err();
    assert!(
        matches!(&err, CaptureError::MissingElement { element, .. } if element == "nvarguscamerasrc"),
        "{err}"
    );
    let err = plan(&"libcamera".parse().unwrap(), &opts(), &orin_nx()).unwrap_err();
    assert!(err.to_string().contains("libcamerasrc"), "{err}");
    // Nothing to encode with.
    let mut bare = pi5();
    bare.elements.remove("x264enc");
    let err = plan(&VideoSource::Test, &opts(), &bare).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no H.264 encoder is installed: tried v4l2h264enc, nvv4l2h264enc, vah264enc, vaapih264enc, x264enc, openh264enc"
    );
    // Three audio codecs would make four tracks.
    let opts = CaptureOptions {
        audio: AudioSource::Test,
        audio_codecs: vec![AudioCodecChoice::Aac, AudioCodecChoice::Opus, AudioCodecChoice::Alaw],
        ..opts()
    };
    let err = plan(&VideoSource::Test, &opts, &pi4()).unwrap_err();
    assert!(
        matches!(&err, CaptureError::InvalidOption { field: "audio_codecs", value, .. } if value == "aac,opus,alaw"),
        "{err}"
    );
}
