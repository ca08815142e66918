//! A WHEP offer checked before any peer connection is built, so a bad one
//! gets a 400 that says what was wrong rather than a failure deep in
//! negotiation.

use std::io::Cursor;

use rtc::sdp::SessionDescription;

/// Offers larger than this are refused unread (a browser's is 3–8 KB).
pub const MAX_OFFER: usize = 64 * 1024;

/// What an acceptable offer asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The SDP text as received.
    pub sdp: String,
    /// The H.264 profile-level-ids offered with packetization-mode 1.
    pub h264_profiles: Vec<String>,
    /// The offer sends audio we could play (talkback): an Opus audio
    /// section that is `sendrecv` or `sendonly`.
    pub talkback: bool,
    /// The offer has an audio section at all.
    pub audio: bool,
    /// The offer has a data channel section.
    pub data_channel: bool,
}

/// Why an offer was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not SDP at all.
    #[error("the body is not an SDP offer: {0}")]
    NotSdp(String),
    /// Larger than [`MAX_OFFER`].
    #[error("the offer is {0} bytes; at most {MAX_OFFER} are accepted")]
    TooLarge(usize),
    /// No video section.
    #[error("the offer has no video section: add a recvonly video transceiver")]
    NoVideo,
    /// A video section without H.264 packetization-mode 1.
    #[error("the offer's video has no H.264 with packetization-mode=1 (offered: {0}); the agent passes the camera's H.264 through and does not re-encode")]
    NoH264(String),
    /// The video section would send, not receive.
    #[error("the offer's video section is {0}: WHEP viewers receive video (recvonly or sendrecv)")]
    VideoDirection(String),
}

/// Check `body` as a WHEP offer.
pub fn check(body: &[u8]) -> Result<Offer, OfferError> {
    if body.len() > MAX_OFFER {
        return Err(OfferError::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|e| OfferError::NotSdp(format!("not UTF-8 ({e})")))?;
    if !text.trim_start().starts_with("v=") {
        return Err(OfferError::NotSdp("it does not start with \"v=\"".into()));
    }
    let parsed = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .map_err(|e| OfferError::NotSdp(e.to_string()))?;
    let mut offer = Offer {
        sdp: text.to_owned(),
        h264_profiles: Vec::new(),
        talkback: false,
        audio: false,
        data_channel: false,
    };
    let mut video = None;
    for m in &parsed.media_descriptions {
        let direction = ["sendrecv", "sendonly", "recvonly", "inactive"]
            .into_iter()
            .find(|d| m.has_attribute(d))
            .unwrap_or("sendrecv");
        match m.media_name.media.as_str() {
            "video" if video.is_none() => {
                let codecs = m.codecs();
                let mut names: Vec<String> = codecs.values().map(|c| c.name.clone()).collect();
                names.sort();
                names.dedup();
                let mut h264: Vec<(u8, String)> = codecs
                    .values()
                    .filter(|c| c.name.eq_ignore_ascii_case("H264") && fmtp(&c.fmtp, "packetization-mode") == Some("1"))
                    .map(|c| {
                        (
                            c.payload_type,
                            fmtp(&c.fmtp, "profile-level-id")
                                .unwrap_or("42e01f")
                                .to_ascii_lowercase(),
                        )
                    })
                    .collect();
                h264.sort();
                offer.h264_profiles = h264.into_iter().map(|(_, p)| p).collect();
                video = Some((direction, names.join(", ")));
            }
            "audio" if !offer.audio => {
                offer.audio = true;
                let opus = m.codecs().values().any(|c| c.name.eq_ignore_ascii_case("opus"));
                offer.talkback = opus && matches!(direction, "sendrecv" | "sendonly");
            }
            "application" => offer.data_channel = true,
            _ => {}
        }
    }
    let Some((direction, names)) = video else {
        return Err(OfferError::NoVideo);
    };
    if matches!(direction, "sendonly" | "inactive") {
        return Err(OfferError::VideoDirection(direction.to_owned()));
    }
    if offer.h264_profiles.is_empty() {
        return Err(OfferError::NoH264(if names.is_empty() {
            "nothing".into()
        } else {
            names
        }));
    }
    Ok(offer)
}

/// The value of `key` in an fmtp line (`a=b;c=d`).
fn fmtp<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A trimmed Chromium offer: VP8, H.264 42e01f and 4d001f, Opus
    /// sendrecv, a data channel.
    pub(crate) const CHROMIUM: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
a=msid-semantic: WMS\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 102 127\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:127 H264/90000\r\n\
a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=sendrecv\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:2\r\n\
a=sctp-port:5000\r\n";

    #[test]
    fn a_browser_offer_is_read_for_h264_talkback_and_data() {
        let o = check(CHROMIUM.as_bytes()).unwrap();
        assert_eq!(o.h264_profiles, ["42e01f", "4d001f"]);
        assert!(o.talkback && o.audio && o.data_channel);
        let recv_only = CHROMIUM.replace("a=sendrecv", "a=recvonly");
        assert!(!check(recv_only.as_bytes()).unwrap().talkback);
    }

    #[test]
    fn each_bad_offer_is_refused_with_its_reason() {
        assert!(matches!(check(b"this is not sdp"), Err(OfferError::NotSdp(_))));
        assert!(matches!(check(&[0xff, 0xfe]), Err(OfferError::NotSdp(_))));
        assert_eq!(
            check(&vec![b'v'; MAX_OFFER + 1]),
            Err(OfferError::TooLarge(MAX_OFFER + 1))
        );
        let no_video = CHROMIUM.replace("m=video", "m=text");
        assert_eq!(check(no_video.as_bytes()), Err(OfferError::NoVideo));
        let vp8_only: String = CHROMIUM
            .lines()
            .filter(|l| !l.contains("H264") && !l.contains("fmtp:1") && !l.contains("rtcp-fb:102"))
            .map(|l| format!("{}\r\n", l.replace(" 96 102 127", " 96")))
            .collect();
        let e = check(vp8_only.as_bytes()).unwrap_err();
        assert_eq!(e, OfferError::NoH264("VP8".into()));
        assert!(e.to_string().contains("H.264"), "{e}");
        let mode0 = CHROMIUM.replace("packetization-mode=1", "packetization-mode=0");
        assert!(matches!(check(mode0.as_bytes()), Err(OfferError::NoH264(_))));
        let sending = CHROMIUM.replacen("a=recvonly", "a=sendonly", 1);
        assert_eq!(
            check(sending.as_bytes()),
            Err(OfferError::VideoDirection("sendonly".into()))
        );
    }

    proptest! {
        // The offer faces the network: whatever arrives, an answer or an
        // error, never a panic.
        #[test]
        fn any_body_is_checked_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = check(&body);
        }

        #[test]
        fn a_mangled_browser_offer_is_checked_without_panicking(
            cut in 0usize..CHROMIUM.len(),
            at in 0usize..CHROMIUM.len(),
            junk in "[ -~\r\n]{0,40}",
        ) {
            let mut s = CHROMIUM.as_bytes().to_vec();
            s.truncate(cut.max(at));
            let at = at.min(s.len());
            s.splice(at..at, junk.bytes());
            let _ = check(&s);
        }
    }
}
