//! Why capture could not start or stopped.

use std::path::PathBuf;
use std::time::Duration;

use fragmenter::codec::CodecError;

/// A capture failure; each names the option, file, element or caps at fault.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// GStreamer itself could not be initialised (no plugins, no registry).
    #[error("GStreamer could not be initialised: {message}")]
    Init {
        /// GStreamer's message.
        message: String,
    },
    /// A capture option is out of range.
    #[error("capture option {field} = {value} is invalid: expected {expected}")]
    InvalidOption {
        /// The option's name, as in [`crate::CaptureOptions`].
        field: &'static str,
        /// The value given.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A GStreamer element the pipeline needs is not installed.
    #[error("GStreamer element {element:?} is not installed: it is needed for {needed_for}")]
    MissingElement {
        /// The element factory name, e.g. `x264enc`.
        element: String,
        /// What the element does in the pipeline, to hint at the package.
        needed_for: &'static str,
    },
    /// A pipeline could not be assembled from its description.
    #[error("pipeline {description:?} could not be built: {message}")]
    Build {
        /// The gst-launch style description.
        description: String,
        /// GStreamer's message.
        message: String,
    },
    /// A file source does not exist or cannot be opened.
    #[error("cannot read video file {path:?}: {error}")]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why the operating system refused it.
        error: std::io::Error,
    },
    /// A file holds a stream in a codec we pass through neither as video
    /// (H.264, H.265) nor as audio (AAC); files are never re-encoded.
    #[error("file {path:?} holds {caps}, which cannot be passed through: expected video/x-h264, video/x-h265 or AAC audio/mpeg")]
    UnsupportedCodec {
        /// The file.
        path: PathBuf,
        /// The GStreamer caps name of the stream, e.g. `video/x-vp8`.
        caps: String,
    },
    /// A file has no video stream at all.
    #[error("file {path:?} has no video stream: expected H.264 or H.265 video")]
    NoVideo {
        /// The file.
        path: PathBuf,
    },
    /// GStreamer could not read a file: an unknown format, a truncated or
    /// corrupt container.
    #[error("file {path:?} cannot be played: {element}: {message}")]
    Unplayable {
        /// The file.
        path: PathBuf,
        /// The element that failed, e.g. `typefind`.
        element: String,
        /// GStreamer's message.
        message: String,
    },
    /// An element of a running pipeline posted an error.
    #[error("GStreamer element {element}: {message}")]
    Pipeline {
        /// The element that posted the error.
        element: String,
        /// GStreamer's message.
        message: String,
        /// GStreamer's debug detail (source location, internal reason).
        debug: Option<String>,
    },
    /// The pipeline refused to change state and posted no error saying why.
    #[error("pipeline for {input} could not change to {state}")]
    StateChange {
        /// The video source, as written.
        input: String,
        /// The target state.
        state: &'static str,
    },
    /// The pipeline did not get to negotiated caps on every output in time.
    #[error("pipeline for {input} did not start within {timeout:?}: still waiting for {waiting_for}")]
    StartTimeout {
        /// The video source, as written.
        input: String,
        /// How long we waited.
        timeout: Duration,
        /// What had not happened yet.
        waiting_for: String,
    },
    /// Negotiated caps lack the decoder configuration a track needs.
    #[error("caps {caps} have no codec_data: expected avcC, hvcC or an AudioSpecificConfig")]
    MissingCodecData {
        /// The caps as text.
        caps: String,
    },
    /// The decoder configuration in the caps does not parse.
    #[error("codec_data in caps {caps} is invalid: {error}")]
    CodecData {
        /// The caps as text.
        caps: String,
        /// Why the record was refused.
        error: CodecError,
    },
    /// A device the source names does not exist (an unplugged camera, a
    /// wrong sound card number).
    #[error("{field} = {value:?}: {reason}")]
    MissingDevice {
        /// The option: `video` or `audio`.
        field: &'static str,
        /// The source as written.
        value: String,
        /// What is missing and what exists instead.
        reason: String,
    },
    /// The camera does not offer the size, rate or format asked for.
    #[error("{field} = {value} is not offered by {source_name}: it offers {offered}")]
    UnsupportedCaps {
        /// The option at fault: `width`, `height`, `fps` or `video_codec`.
        field: &'static str,
        /// The value asked for.
        value: String,
        /// The source, as written.
        source_name: String,
        /// The modes the source offers.
        offered: String,
    },
    /// Nothing on this machine can encode the video codec asked for.
    #[error("no {codec} encoder is installed: tried {tried}")]
    NoEncoder {
        /// `H.264` or `H.265`.
        codec: &'static str,
        /// The encoders looked for.
        tried: String,
    },
    /// A live source (camera, RTSP server, user pipeline) failed while
    /// starting; names the source and the element that said why.
    #[error("source {input} failed: {element}: {message}")]
    SourceFailed {
        /// The source, as written (passwords redacted).
        input: String,
        /// The element that failed.
        element: String,
        /// GStreamer's message, with its debug detail when it helps.
        message: String,
    },
    /// A stream has no video edge-agent can capture.
    #[error("source {input} has no video edge-agent can capture: it offers {offered}; expected H.264 or H.265{hint}")]
    NoCapturableVideo {
        /// The source, as written (passwords redacted).
        input: String,
        /// What the source offers, by caps or RTP encoding name.
        offered: String,
        /// How to fix it, when known.
        hint: &'static str,
    },
    /// The supervisor thread could not be started or went away.
    #[error("capture supervisor for {input}: {message}")]
    Supervisor {
        /// The source, as written (passwords redacted).
        input: String,
        /// What happened.
        message: String,
    },
    /// No frame arrived within the timeout given to `next_frame`.
    #[error("no frame from {input} within {timeout:?}: the source stalled")]
    Stalled {
        /// The video source, as written.
        input: String,
        /// The timeout that passed.
        timeout: Duration,
    },
}
