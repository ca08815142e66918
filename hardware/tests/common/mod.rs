//! Helpers shared by the hardware integration tests.

use gstreamer as gst;

/// Whether GStreamer initialises and every element is installed; prints why
/// the test is skipped when not.
pub fn have(test: &str, elements: &[&str]) -> bool {
    if let Err(e) = gst::init() {
        eprintln!("skipping {test}: GStreamer does not initialise: {e}");
        return false;
    }
    let missing: Vec<_> = elements
        .iter()
        .filter(|e| gst::ElementFactory::find(e).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!("skipping {test}: GStreamer elements not installed: {missing:?}");
        return false;
    }
    true
}
