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

/// How often the watcher checks whether it should quit.
const POLL: gst::ClockTime = gst::ClockTime::from_mseconds(50);

/// The watcher thread; stops when dropped.
pub(crate) struct BusWatch {
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BusWatch {
    /// Watch `bus` on a thread of its own.
    pub(crate) fn spawn(bus: gst::Bus, tx: SyncSender<Event>) -> std::io::Result<Self> {
        let quit = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("gst-bus".to_owned()).spawn({
            let quit = quit.clone();
            move || watch(&bus, &tx, &quit)
        })?;
        Ok(BusWatch {
            quit,
            thread: Some(thread),
        })
    }
}

impl Drop for BusWatch {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
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
        let element = || {
            msg.src()
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| "pipeline".to_owned())
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
