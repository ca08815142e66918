//! A small RTSP server for the end-to-end tests: serves one gst-launch
//! description (by default live H.264 + AAC, like an IP camera) at
//! `rtsp://127.0.0.1:PORT/test` until killed.
//!
//! ```text
//! rtsp-test-server --port 8554 [--launch "( videotestsrc ... ! rtph264pay name=pay0 pt=96 )"]
//! ```
//!
//! Prints `READY rtsp://127.0.0.1:PORT/test` on stdout once it listens.

use std::io::Write;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// What a typical IP camera sends: 640x360 H.264 at 30 fps with a key
/// frame every 2 s (no scene-cut extras, as cameras keep a fixed GOP),
/// and AAC audio.
const DEFAULT_LAUNCH: &str = "( videotestsrc is-live=true \
    ! video/x-raw,format=I420,width=640,height=360,framerate=30/1 \
    ! x264enc tune=zerolatency key-int-max=60 option-string=scenecut=0 ! rtph264pay name=pay0 pt=96 \
    audiotestsrc is-live=true ! audioconvert ! avenc_aac ! rtpmp4gpay name=pay1 pt=97 )";

fn main() {
    let mut port = 0u16;
    let mut launch = DEFAULT_LAUNCH.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port NUMBER"),
            "--launch" => launch = args.next().expect("--launch DESCRIPTION"),
            other => panic!("unknown argument {other:?}: expected --port N [--launch DESC]"),
        }
    }
    gst::init().expect("GStreamer initialises");
    let server = rtsp::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port.to_string());
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(&launch);
    // One pipeline for every client, as a camera has.
    factory.set_shared(true);
    server
        .mount_points()
        .expect("the server has mount points")
        .add_factory("/test", factory);
    let main_loop = glib::MainLoop::new(None, false);
    let _source = server.attach(None).expect("the server listens");
    println!("READY rtsp://127.0.0.1:{}/test", server.bound_port());
    std::io::stdout().flush().expect("stdout");
    main_loop.run();
}
