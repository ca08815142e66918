//! Forwards pipeline errors and end of stream from the GStreamer bus into
//! the frame channel, so `next_frame` sees them in order with the frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::error::CaptureError;
use crate::frames::Event;

/// How often the watcher checks whether it should quit when no message
/// wakes it: dropping the watch posts one, so this is only the fallback for
/// a bus that already flushes. Waking more often costs CPU on every board
/// for nothing.
const POLL: gst::ClockTime = gst::ClockTime::from_seconds(1);

/// The name of the message that wakes the watcher to quit.
const QUIT: &str = "edge-agent-bus-quit";

/// The watcher thread; stops when dropped.
pub(crate) struct BusWatch {
    quit: Arc<AtomicBool>,
    bus: gst::Bus,
    thread: Option<JoinHandle<()>>,
}

impl BusWatch {
    /// Watch `bus` on a thread of its own.
    pub(crate) fn spawn(bus: gst::Bus, tx: SyncSender<Event>) -> std::io::Result<Self> {
        let quit = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("gst-bus".to_owned()).spawn({
            let quit = quit.clone();
            let bus = bus.clone();
            move || watch(&bus, &tx, &quit)
        })?;
        Ok(BusWatch {
            quit,
            bus,
            thread: Some(thread),
        })
    }
}

impl Drop for BusWatch {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        // Fails only if the bus flushes (pipeline in NULL); the poll
        // timeout then ends the wait.
        let _ = self
            .bus
            .post(gst::message::Application::new(gst::Structure::new_empty(QUIT)));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(bus: &gst::Bus, tx: &SyncSender<Event>, quit: &AtomicBool) {
    while !quit.load(Ordering::Relaxed) {
        let Some(msg) = bus.timed_pop(POLL) else {
            continue;
        };
        // The element's own name, and its kind when the name does not say
        // it (`src (rtspsrc)`, `encoder (vah264enc)`).
        let element = || {
            let Some(src) = msg.src() else {
                return "pipeline".to_owned();
            };
            let name = src.name().to_string();
            let factory = src
                .downcast_ref::<gst::Element>()
                .and_then(|e| e.factory())
                .map(|f| f.name().to_string());
            match factory {
                Some(f) if !name.starts_with(f.as_str()) => format!("{name} ({f})"),
                _ => name,
            }
        };
        let event = match msg.view() {
            gst::MessageView::Error(e) => Event::Error(CaptureError::Pipeline {
                element: element(),
                message: e.error().message().to_owned(),
                debug: e.debug().map(|d| d.to_string()),
            }),
            gst::MessageView::Eos(_) => Event::Eos,
            gst::MessageView::Warning(w) => {
                tracing::warn!(
                    element = %element(),
                    debug = ?w.debug(),
                    "GStreamer: {}",
                    w.error().message()
                );
                continue;
            }
            _ => continue,
        };
        // A send fails only after capture dropped the receiver to shut down.
        if tx.send(event).is_err() {
            break;
        }
    }
}
