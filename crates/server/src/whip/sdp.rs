//! The SDP of WHIP: reading a client's offer into what the engine takes
//! (one producer's `RtpParameters` per m-line, the DTLS fingerprint and
//! role), and writing the answer from the transport the engine created.
//!
//! A WHIP client (OBS, GStreamer, a browser) writes its own offer, where a
//! mediasoup-client writes `RtpParameters`. Reading the offer into
//! `RtpParameters` lets the producers go through the same `produce` as every
//! other client's (codec checks, the synthesized offer str0m gets, simulcast
//! layers), so a WHIP publisher is consumed like any other. Pure functions:
//! every rule is unit-tested below.
//!
//! Everything here reads untrusted text: the offer is bounded (bytes, lines,
//! m-lines, codecs and attributes per m-line) and every value that goes on
//! to the engine is checked there again.

use serde_json::{json, Map, Value};
use simplesfu_engine::WebRtcTransportInfo;
use simplesfu_proto::types::data_structures::{DtlsFingerprint, DtlsRole, Protocol};
use simplesfu_proto::types::rtp_parameters::{
    MediaKind, RtcpFeedback, RtpCodecParameters, RtpHeaderExtensionUri, RtpParameters,
};
use std::fmt::Write;

/// Largest offer accepted, in bytes (a browser's offer of audio and three
/// simulcast layers is about 6 KB).
pub(crate) const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Most m-lines in an offer.
pub(crate) const MAX_MEDIA: usize = 16;
/// Most lines in one m-line (a browser's video m-line has about 80).
const MAX_LINES_PER_MEDIA: usize = 400;
/// Most payload types in one m-line.
const MAX_FORMATS: usize = 64;

/// Why an offer cannot be used: the text is the 400 response's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct OfferError(pub String);

fn bad<T>(message: impl Into<String>) -> Result<T, OfferError> {
    Err(OfferError(message.into()))
}

/// One codec of an m-line as offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OfferedCodec {
    pub pt: u8,
    /// As written in `a=rtpmap`, e.g. `H264`, `opus`, `rtx`.
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
    /// `a=fmtp` parameters in order.
    pub fmtp: Vec<(String, String)>,
    /// `a=rtcp-fb` values, e.g. `nack`, `nack pli`, `transport-cc`.
    pub feedback: Vec<String>,
}

impl OfferedCodec {
    pub(crate) fn is_rtx(&self) -> bool {
        self.name.eq_ignore_ascii_case("rtx")
    }

    fn apt(&self) -> Option<u8> {
        self.fmtp
            .iter()
            .find(|(k, _)| k == "apt")
            .and_then(|(_, v)| v.parse().ok())
    }
}

/// One m-line of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OfferedMedia {
    /// `audio`, `video`, `application`, ...
    pub media: String,
    /// The m-line's protocol and formats, for a rejected m-line in the answer.
    pub proto: String,
    pub formats: Vec<String>,
    pub port: u16,
    pub mid: Option<String>,
    /// `sendonly`, `sendrecv`, `recvonly` or `inactive` (sendrecv when absent).
    pub direction: String,
    pub codecs: Vec<OfferedCodec>,
    pub extmaps: Vec<(u8, String)>,
    /// `a=ssrc` ids with their cname, in order of appearance.
    pub ssrcs: Vec<(u32, Option<String>)>,
    /// `a=ssrc-group:FID media rtx` pairs.
    pub fid: Vec<(u32, u32)>,
    /// The rids of `a=simulcast:send`, in the offer's order.
    pub simulcast: Vec<String>,
    /// The stream id of `a=msid`.
    pub msid: Option<String>,
    pub rtcp_rsize: bool,
    /// `a=bundle-only`: port 0 in the offer, yet offered (RFC 8843).
    pub bundle_only: bool,
    /// Transport attributes given per m-line (BUNDLE offers repeat them).
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub fingerprint: Option<String>,
    pub setup: Option<String>,
}

/// A whole offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    pub media: Vec<OfferedMedia>,
    pub ice_ufrag: String,
    pub ice_pwd: String,
    pub fingerprint: DtlsFingerprint,
    /// The client's DTLS role as the engine takes it: `Client` unless it
    /// offered `a=setup:passive`.
    pub client_role: DtlsRole,
}

/// Session-level transport attributes and the m-lines, before the checks.
#[derive(Default)]
struct Raw {
    ice_ufrag: Option<String>,
    ice_pwd: Option<String>,
    fingerprint: Option<String>,
    setup: Option<String>,
    media: Vec<OfferedMedia>,
}

/// Read an offer. Each refusal says what is wrong.
pub(crate) fn parse_offer(text: &str) -> Result<Offer, OfferError> {
    if text.len() > MAX_OFFER_BYTES {
        return bad(format!(
            "the offer is {} bytes; at most {MAX_OFFER_BYTES} are accepted",
            text.len()
        ));
    }
    let mut raw = Raw::default();
    let mut saw_version = false;
    let mut lines_in_media = 0usize;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            return bad(format!(
                "line {} is not `<type>=<value>`: not an SDP offer",
                number + 1
            ));
        };
        if kind.len() != 1 {
            return bad(format!("line {} has no one-letter type", number + 1));
        }
        if !saw_version {
            if kind != "v" || value != "0" {
                return bad("an SDP offer starts with `v=0`");
            }
            saw_version = true;
            continue;
        }
        match kind {
            "m" => {
                if raw.media.len() == MAX_MEDIA {
                    return bad(format!("the offer has more than {MAX_MEDIA} m-lines"));
                }
                raw.media.push(parse_m_line(value)?);
                lines_in_media = 0;
            }
            "a" => {
                if let Some(media) = raw.media.last_mut() {
                    lines_in_media += 1;
                    if lines_in_media > MAX_LINES_PER_MEDIA {
                        return bad(format!(
                            "an m-line has more than {MAX_LINES_PER_MEDIA} attributes"
                        ));
                    }
                    media_attribute(media, value)?;
                } else {
                    session_attribute(&mut raw, value);
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return bad("the body is empty: send the SDP offer");
    }
    if raw.media.is_empty() {
        return bad("the offer has no m-line");
    }
    // BUNDLE offers give the transport attributes in every m-line; the first
    // m-line's (or the session's) are the transport's.
    let first = &raw.media[0];
    let pick = |session: &Option<String>, media: &Option<String>| {
        media.clone().or_else(|| session.clone())
    };
    let ice_ufrag = pick(&raw.ice_ufrag, &first.ice_ufrag)
        .ok_or_else(|| OfferError("the offer has no a=ice-ufrag".into()))?;
    let ice_pwd = pick(&raw.ice_pwd, &first.ice_pwd)
        .ok_or_else(|| OfferError("the offer has no a=ice-pwd".into()))?;
    check_ice_token("a=ice-ufrag", &ice_ufrag, 4)?;
    check_ice_token("a=ice-pwd", &ice_pwd, 22)?;
    let fingerprint = pick(&raw.fingerprint, &first.fingerprint)
        .ok_or_else(|| OfferError("the offer has no a=fingerprint (DTLS is required)".into()))?;
    let fingerprint = parse_fingerprint(&fingerprint)?;
    let setup = pick(&raw.setup, &first.setup).unwrap_or_else(|| "actpass".into());
    let client_role = match setup.as_str() {
        "actpass" | "active" => DtlsRole::Client,
        "passive" => DtlsRole::Server,
        other => return bad(format!("a=setup:{other} is not actpass, active or passive")),
    };
    Ok(Offer {
        media: raw.media,
        ice_ufrag,
        ice_pwd,
        fingerprint,
        client_role,
    })
}

fn parse_m_line(value: &str) -> Result<OfferedMedia, OfferError> {
    let mut parts = value.split_ascii_whitespace();
    let (Some(media), Some(port), Some(proto)) = (parts.next(), parts.next(), parts.next()) else {
        return bad(format!(
            "m={value} is not `m=<media> <port> <proto> <formats>`"
        ));
    };
    let port = port
        .split('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| OfferError(format!("m={value} has no port number")))?;
    let formats: Vec<String> = parts.map(str::to_owned).collect();
    if formats.len() > MAX_FORMATS {
        return bad(format!("an m-line lists more than {MAX_FORMATS} formats"));
    }
    if media.len() > 16 || proto.len() > 32 || formats.iter().any(|f| f.len() > 32) {
        return bad(format!("m={value} has a field too long"));
    }
    Ok(OfferedMedia {
        media: media.to_owned(),
        proto: proto.to_owned(),
        formats,
        port,
        mid: None,
        direction: "sendrecv".into(),
        codecs: Vec::new(),
        extmaps: Vec::new(),
        ssrcs: Vec::new(),
        fid: Vec::new(),
        simulcast: Vec::new(),
        msid: None,
        rtcp_rsize: false,
        bundle_only: false,
        ice_ufrag: None,
        ice_pwd: None,
        fingerprint: None,
        setup: None,
    })
}

fn session_attribute(raw: &mut Raw, value: &str) {
    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
    match name {
        "ice-ufrag" => raw.ice_ufrag = Some(arg.trim().to_owned()),
        "ice-pwd" => raw.ice_pwd = Some(arg.trim().to_owned()),
        "fingerprint" => raw.fingerprint = Some(arg.trim().to_owned()),
        "setup" => raw.setup = Some(arg.trim().to_owned()),
        _ => {}
    }
}

fn media_attribute(m: &mut OfferedMedia, value: &str) -> Result<(), OfferError> {
    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
    let arg = arg.trim();
    match name {
        "mid" => m.mid = Some(arg.to_owned()),
        "sendonly" | "sendrecv" | "recvonly" | "inactive" => m.direction = name.to_owned(),
        "rtcp-rsize" => m.rtcp_rsize = true,
        "bundle-only" => m.bundle_only = true,
        "ice-ufrag" => m.ice_ufrag = Some(arg.to_owned()),
        "ice-pwd" => m.ice_pwd = Some(arg.to_owned()),
        "fingerprint" => m.fingerprint = Some(arg.to_owned()),
        "setup" => m.setup = Some(arg.to_owned()),
        "msid" => m.msid = arg.split_ascii_whitespace().next().map(str::to_owned),
        "rtpmap" => {
            // `<pt> <name>/<clock>[/<channels>]`
            let Some((pt, encoding)) = arg.split_once(' ') else {
                return bad(format!("a=rtpmap:{arg} is not `<pt> <name>/<clock rate>`"));
            };
            let pt = parse_pt(pt)?;
            let mut fields = encoding.trim().split('/');
            let name = fields.next().unwrap_or_default();
            let clock_rate = fields.next().and_then(|c| c.parse::<u32>().ok());
            let channels = fields.next().and_then(|c| c.parse::<u8>().ok());
            let Some(clock_rate) = clock_rate else {
                return bad(format!("a=rtpmap:{arg} has no clock rate"));
            };
            if name.is_empty() || name.len() > 32 {
                return bad(format!("a=rtpmap:{arg} has no codec name"));
            }
            if m.codecs.len() == MAX_FORMATS {
                return bad(format!(
                    "an m-line maps more than {MAX_FORMATS} payload types"
                ));
            }
            m.codecs.push(OfferedCodec {
                pt,
                name: name.to_owned(),
                clock_rate,
                channels,
                fmtp: Vec::new(),
                feedback: Vec::new(),
            });
        }
        "fmtp" => {
            let Some((pt, params)) = arg.split_once(' ') else {
                return Ok(());
            };
            let pt = parse_pt(pt)?;
            if let Some(codec) = m.codecs.iter_mut().find(|c| c.pt == pt) {
                codec.fmtp = params
                    .split(';')
                    .filter_map(|kv| {
                        let (k, v) = kv.trim().split_once('=')?;
                        Some((k.trim().to_owned(), v.trim().to_owned()))
                    })
                    .take(32)
                    .collect();
            }
        }
        "rtcp-fb" => {
            let Some((pt, fb)) = arg.split_once(' ') else {
                return Ok(());
            };
            let fb = fb.trim().to_owned();
            let targets: Vec<&mut OfferedCodec> = if pt == "*" {
                m.codecs.iter_mut().collect()
            } else {
                let pt = parse_pt(pt)?;
                m.codecs.iter_mut().filter(|c| c.pt == pt).collect()
            };
            for codec in targets {
                if codec.feedback.len() < 16 {
                    codec.feedback.push(fb.clone());
                }
            }
        }
        "extmap" => {
            // `<id>[/<direction>] <uri> [<attributes>]`
            let mut fields = arg.split_ascii_whitespace();
            let id = fields
                .next()
                .and_then(|i| i.split('/').next()?.parse::<u8>().ok());
            let uri = fields.next();
            if let (Some(id), Some(uri)) = (id, uri) {
                if m.extmaps.len() < 32 {
                    m.extmaps.push((id, uri.to_owned()));
                }
            }
        }
        "ssrc" => {
            // `<ssrc> <attribute>[:<value>]`
            let mut fields = arg.splitn(2, ' ');
            let ssrc = fields.next().and_then(|s| s.parse::<u32>().ok());
            let Some(ssrc) = ssrc else {
                return bad(format!("a=ssrc:{arg} has no SSRC number"));
            };
            let cname = fields
                .next()
                .and_then(|a| a.strip_prefix("cname:"))
                .map(|c| c.trim().to_owned());
            if let Some(entry) = m.ssrcs.iter_mut().find(|(s, _)| *s == ssrc) {
                if entry.1.is_none() {
                    entry.1 = cname;
                }
            } else if m.ssrcs.len() < 16 {
                m.ssrcs.push((ssrc, cname));
            } else {
                return bad("an m-line declares more than 16 SSRCs");
            }
        }
        "ssrc-group" => {
            let mut fields = arg.split_ascii_whitespace();
            if fields.next() == Some("FID") {
                let ids: Vec<u32> = fields.filter_map(|s| s.parse().ok()).collect();
                if let [media, rtx] = ids[..] {
                    if m.fid.len() < 8 {
                        m.fid.push((media, rtx));
                    }
                }
            }
        }
        "simulcast" => {
            // `send <rid>;<rid>` (alternatives after `,`, `~` marks a paused one)
            let mut fields = arg.split_ascii_whitespace();
            while let Some(direction) = fields.next() {
                let list = fields.next().unwrap_or_default();
                if direction == "send" {
                    m.simulcast = list
                        .split(';')
                        .filter_map(|alternatives| alternatives.split(',').next())
                        .map(|rid| rid.trim_start_matches('~').to_owned())
                        .filter(|rid| !rid.is_empty())
                        .take(8)
                        .collect();
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn parse_pt(text: &str) -> Result<u8, OfferError> {
    match text.trim().parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => bad(format!("{text:?} is not a payload type (0 to 127)")),
    }
}

/// ICE ufrag and password characters (RFC 8839 `ice-char`).
pub(crate) fn check_ice_token(what: &str, value: &str, min: usize) -> Result<(), OfferError> {
    let ok = (min..=256).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    if ok {
        Ok(())
    } else {
        bad(format!(
            "{what} must be {min} to 256 letters, digits, '+' or '/'"
        ))
    }
}

/// `sha-256 AB:CD:...` as the engine takes it.
fn parse_fingerprint(text: &str) -> Result<DtlsFingerprint, OfferError> {
    let unusable = || {
        OfferError(format!(
            "a=fingerprint:{text} is not `<hash> <hex bytes separated by ':'>` with sha-256, sha-384, sha-512 or sha-1"
        ))
    };
    let (hash, hex) = text.split_once(' ').ok_or_else(unusable)?;
    let bytes: Vec<u8> = hex
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| unusable())?;
    fn array<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
        bytes.try_into().ok()
    }
    let fingerprint = match hash.to_ascii_lowercase().as_str() {
        "sha-256" => array(&bytes).map(|value| DtlsFingerprint::Sha256 { value }),
        "sha-384" => array(&bytes).map(|value| DtlsFingerprint::Sha384 { value }),
        "sha-512" => array(&bytes).map(|value| DtlsFingerprint::Sha512 { value }),
        "sha-1" => array(&bytes).map(|value| DtlsFingerprint::Sha1 { value }),
        _ => None,
    };
    fingerprint.ok_or_else(unusable)
}

/// What becomes of one m-line of the offer.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// A producer with these parameters.
    Produce {
        kind: MediaKind,
        rtp_parameters: Box<RtpParameters>,
        /// The codec (and its RTX) accepted, as offered, for the answer.
        codec: OfferedCodec,
        rtx: Option<OfferedCodec>,
        extmaps: Vec<(u8, String)>,
    },
    /// Refused (port 0 in the answer), with the reason, logged.
    Reject(String),
}

/// What the router can receive: `supported(codec)` says whether a codec
/// (as mediasoup `RtpCodecParameters`) is one of the router's, and
/// `extension_supported(kind, uri)` whether a header extension is.
pub(crate) struct RouterSupport<'a> {
    pub codec: &'a dyn Fn(&RtpCodecParameters) -> bool,
    pub extension: &'a dyn Fn(MediaKind, &RtpHeaderExtensionUri) -> bool,
}

/// Decide each m-line: the first codec the router takes (in the offer's
/// order of preference) with its RTX, the header extensions the router
/// knows, and the SSRCs or simulcast rids as encodings.
pub(crate) fn plan(offer: &Offer, router: &RouterSupport<'_>) -> Vec<Plan> {
    offer.media.iter().map(|m| plan_media(m, router)).collect()
}

fn plan_media(m: &OfferedMedia, router: &RouterSupport<'_>) -> Plan {
    let kind = match m.media.as_str() {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        other => return Plan::Reject(format!("{other} m-lines are not taken over WHIP")),
    };
    if m.port == 0 && !m.bundle_only {
        return Plan::Reject("rejected in the offer (port 0)".into());
    }
    if !matches!(m.direction.as_str(), "sendonly" | "sendrecv") {
        return Plan::Reject(format!(
            "a WHIP client sends: a=sendonly, not a={}",
            m.direction
        ));
    }
    let Some(mid) = m.mid.clone() else {
        return Plan::Reject("no a=mid (BUNDLE needs one per m-line)".into());
    };
    let ordered: Vec<&OfferedCodec> = m
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| m.codecs.iter().find(|c| c.pt == pt))
        .collect();
    let chosen = ordered.iter().find_map(|codec| {
        if codec.is_rtx() {
            return None;
        }
        let codec = forwarded_params(codec);
        let params = codec_json(kind, &codec).ok()?;
        (router.codec)(&params).then_some((codec, params))
    });
    let Some((codec, params)) = chosen else {
        let names: Vec<&str> = ordered.iter().map(|c| c.name.as_str()).collect();
        return Plan::Reject(format!(
            "none of the offered codecs ({}) is one this server forwards (opus; VP8, VP9, H264 with packetization-mode=1)",
            names.join(", ")
        ));
    };
    let rtx = (kind == MediaKind::Video)
        .then(|| {
            m.codecs
                .iter()
                .find(|c| c.is_rtx() && c.apt() == Some(codec.pt))
        })
        .flatten()
        .map(forwarded_params);
    let mut codecs = vec![params];
    if let Some(rtx) = &rtx {
        if let Ok(params) = codec_json(kind, rtx) {
            codecs.push(params);
        }
    }
    let extmaps: Vec<(u8, String)> = m
        .extmaps
        .iter()
        .filter(|(id, uri)| {
            (1..=14).contains(id)
                && uri
                    .parse::<RtpHeaderExtensionUri>()
                    .is_ok_and(|u| (router.extension)(kind, &u))
        })
        .cloned()
        .collect();
    let header_extensions: Vec<Value> = extmaps
        .iter()
        .map(|(id, uri)| json!({"uri": uri, "id": id, "encrypt": false, "parameters": {}}))
        .collect();
    let cname = m.ssrcs.iter().find_map(|(_, c)| c.clone());
    let encodings: Vec<Value> = if !m.simulcast.is_empty() && kind == MediaKind::Video {
        order_rids(&m.simulcast)
            .into_iter()
            .map(|rid| json!({ "rid": rid }))
            .collect()
    } else {
        // The media SSRC: the first of a FID group, else the first declared.
        let media_ssrc = m
            .fid
            .first()
            .map(|(media, _)| *media)
            .or_else(|| m.ssrcs.first().map(|(s, _)| *s));
        match media_ssrc {
            Some(ssrc) => {
                let rtx_ssrc = m.fid.iter().find(|(s, _)| *s == ssrc).map(|(_, r)| *r);
                let mut e = json!({ "ssrc": ssrc });
                if let (Some(r), Some(_)) = (rtx_ssrc, &rtx) {
                    e["rtx"] = json!({ "ssrc": r });
                }
                vec![e]
            }
            None => {
                return Plan::Reject(
                    "neither a=ssrc nor a=simulcast: the streams cannot be told apart".into(),
                )
            }
        }
    };
    let mut rtp = json!({
        "mid": mid,
        "codecs": codecs,
        "headerExtensions": header_extensions,
        "encodings": encodings,
        "rtcp": { "reducedSize": m.rtcp_rsize },
    });
    if let Some(cname) = cname {
        rtp["rtcp"]["cname"] = json!(cname);
    }
    if let Some(msid) = &m.msid {
        rtp["msid"] = json!(format!("{msid} {mid}"));
    }
    match serde_json::from_value::<RtpParameters>(rtp) {
        Ok(rtp_parameters) => Plan::Produce {
            kind,
            rtp_parameters: Box::new(rtp_parameters),
            codec,
            rtx,
            extmaps,
        },
        Err(e) => Plan::Reject(format!("its parameters cannot be used: {e}")),
    }
}

/// The codec with only the format parameters that describe the stream to
/// its receivers (and that the engine takes: each value at most 64
/// characters): out-of-band parameter sets like H264's
/// `sprop-parameter-sets` are left out, the encoder repeats them in band.
fn forwarded_params(codec: &OfferedCodec) -> OfferedCodec {
    const KEPT: [&str; 11] = [
        "apt",
        "packetization-mode",
        "profile-level-id",
        "level-asymmetry-allowed",
        "profile-id",
        "minptime",
        "useinbandfec",
        "usedtx",
        "stereo",
        "sprop-stereo",
        "maxplaybackrate",
    ];
    let mut codec = codec.clone();
    codec
        .fmtp
        .retain(|(k, v)| KEPT.contains(&k.as_str()) && v.len() <= 64);
    codec
}

/// A codec as mediasoup `RtpCodecParameters` (fmtp values that are whole
/// numbers become numbers, as mediasoup-client writes them).
fn codec_json(kind: MediaKind, c: &OfferedCodec) -> Result<RtpCodecParameters, OfferError> {
    let prefix = match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let mut parameters = Map::new();
    for (k, v) in &c.fmtp {
        let value = match v.parse::<u32>() {
            Ok(n) if !v.starts_with('0') || v == "0" => json!(n),
            _ => json!(v),
        };
        parameters.insert(k.clone(), value);
    }
    let feedback: Vec<Value> = c
        .feedback
        .iter()
        .filter_map(|f| {
            let (t, p) = f.split_once(' ').unwrap_or((f, ""));
            RtcpFeedback::from_type_parameter(t, p)
                .ok()
                .map(|_| json!({"type": t, "parameter": p}))
        })
        .collect();
    // mediasoup's spelling of the names (SDP's are case-insensitive).
    let name = match c.name.to_ascii_lowercase().as_str() {
        "opus" => "opus".to_owned(),
        "rtx" => "rtx".to_owned(),
        other => other.to_ascii_uppercase(),
    };
    let mut codec = json!({
        "mimeType": format!("{prefix}/{name}"),
        "payloadType": c.pt,
        "clockRate": c.clock_rate,
        "parameters": parameters,
        "rtcpFeedback": feedback,
    });
    if kind == MediaKind::Audio {
        codec["channels"] = json!(c.channels.unwrap_or(1));
    }
    serde_json::from_value(codec).map_err(|e| OfferError(format!("codec {}: {e}", c.name)))
}

/// Simulcast layers lowest first. SDP says nothing of which rid is which
/// resolution; the usual names say it (`q`/`h`/`f`: quarter, half, full;
/// `l`/`m`/`h`, `low`/`mid`/`high`), otherwise the offer's order is taken
/// as lowest first (what browsers send with `sendEncodings` listed that way).
pub(crate) fn order_rids(rids: &[String]) -> Vec<String> {
    const SCHEMES: [&[&str]; 3] = [&["q", "h", "f"], &["l", "m", "h"], &["low", "mid", "high"]];
    for scheme in SCHEMES {
        let rank = |rid: &String| scheme.iter().position(|s| s.eq_ignore_ascii_case(rid));
        if rids.iter().all(|r| rank(r).is_some()) {
            let mut sorted = rids.to_vec();
            sorted.sort_by_key(rank);
            return sorted;
        }
    }
    rids.to_vec()
}

/// What every answer's media sections share: the DTLS role we take
/// (opposite the client's) and our certificate's SHA-256 fingerprint.
struct AnswerDtls {
    setup: &'static str,
    fingerprint: String,
}

impl AnswerDtls {
    fn new(offer: &Offer, transport: &WebRtcTransportInfo) -> Self {
        let setup = match offer.client_role {
            DtlsRole::Server => "active",
            _ => "passive",
        };
        let fingerprint = transport
            .dtls_parameters
            .fingerprints
            .iter()
            .find_map(|f| match f {
                DtlsFingerprint::Sha256 { value } => Some(hex_colons(value)),
                _ => None,
            })
            .unwrap_or_default();
        Self { setup, fingerprint }
    }
}

/// The session section of an answer (ICE-lite) and its BUNDLE group of
/// the accepted m-lines' mids (`accepted[i]` for the offer's m-line i).
fn write_session(s: &mut String, offer: &Offer, accepted: &[bool]) {
    let session_id: u64 = rand::random::<u64>() >> 2;
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} 1 IN IP4 0.0.0.0\r\ns=simplesfu\r\nt=0 0\r\na=ice-lite\r\n"
    );
    let bundled: Vec<&str> = offer
        .media
        .iter()
        .zip(accepted)
        .filter(|(_, ok)| **ok)
        .filter_map(|(m, _)| m.mid.as_deref())
        .collect();
    if !bundled.is_empty() {
        let _ = write!(s, "a=group:BUNDLE {}\r\n", bundled.join(" "));
    }
}

/// A refused m-line (port 0, inactive), keeping its place and mid.
fn write_rejected(s: &mut String, m: &OfferedMedia) {
    let formats = if m.formats.is_empty() {
        "0".to_owned()
    } else {
        m.formats.join(" ")
    };
    let _ = write!(
        s,
        "m={} 0 {} {formats}\r\nc=IN IP4 0.0.0.0\r\n",
        m.media, m.proto
    );
    if let Some(mid) = &m.mid {
        let _ = write!(s, "a=mid:{mid}\r\n");
    }
    let _ = write!(s, "a=inactive\r\n");
}

/// The start of an accepted m-line: its payload types, the transport's
/// ICE credentials, our fingerprint and role, and its mid.
fn write_accepted_head(
    s: &mut String,
    m: &OfferedMedia,
    pt: u8,
    rtx_pt: Option<u8>,
    transport: &WebRtcTransportInfo,
    dtls: &AnswerDtls,
) {
    let mut formats = pt.to_string();
    if let Some(rtx) = rtx_pt {
        let _ = write!(formats, " {rtx}");
    }
    let _ = write!(
        s,
        "m={} 9 UDP/TLS/RTP/SAVPF {formats}\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\n\
         a=setup:{}\r\na=mid:{}\r\n",
        m.media,
        transport.ice_parameters.username_fragment,
        transport.ice_parameters.password,
        dtls.fingerprint,
        dtls.setup,
        m.mid.as_deref().unwrap_or_default(),
    );
}

/// The answer: ICE-lite with the transport's credentials and candidates,
/// our DTLS fingerprint and role, and per m-line the accepted codec or a
/// rejection, in the offer's order (RFC 3264).
pub(crate) fn write_answer(
    offer: &Offer,
    plans: &[Plan],
    transport: &WebRtcTransportInfo,
) -> String {
    let mut s = String::with_capacity(2048);
    let accepted: Vec<bool> = plans
        .iter()
        .map(|p| matches!(p, Plan::Produce { .. }))
        .collect();
    write_session(&mut s, offer, &accepted);
    let dtls = AnswerDtls::new(offer, transport);
    let mut first = true;
    for (m, p) in offer.media.iter().zip(plans) {
        let Plan::Produce {
            codec,
            rtx,
            extmaps,
            ..
        } = p
        else {
            write_rejected(&mut s, m);
            continue;
        };
        write_accepted_head(
            &mut s,
            m,
            codec.pt,
            rtx.as_ref().map(|r| r.pt),
            transport,
            &dtls,
        );
        for (id, uri) in extmaps {
            let _ = write!(s, "a=extmap:{id} {uri}\r\n");
        }
        let _ = write!(s, "a=recvonly\r\na=rtcp-mux\r\n");
        if m.rtcp_rsize {
            let _ = write!(s, "a=rtcp-rsize\r\n");
        }
        write_codec(&mut s, codec);
        if let Some(rtx) = rtx {
            write_codec(&mut s, rtx);
        }
        if !m.simulcast.is_empty() && m.media == "video" {
            for rid in &m.simulcast {
                let _ = write!(s, "a=rid:{rid} recv\r\n");
            }
            let _ = write!(s, "a=simulcast:recv {}\r\n", m.simulcast.join(";"));
        }
        if first {
            write_candidates(&mut s, transport);
            first = false;
        }
    }
    s
}

fn write_codec(s: &mut String, c: &OfferedCodec) {
    match c.channels {
        Some(ch) => {
            let _ = write!(s, "a=rtpmap:{} {}/{}/{ch}\r\n", c.pt, c.name, c.clock_rate);
        }
        None => {
            let _ = write!(s, "a=rtpmap:{} {}/{}\r\n", c.pt, c.name, c.clock_rate);
        }
    }
    if !c.fmtp.is_empty() {
        let params: Vec<String> = c.fmtp.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(s, "a=fmtp:{} {}\r\n", c.pt, params.join(";"));
    }
    for fb in &c.feedback {
        let (t, p) = fb.split_once(' ').unwrap_or((fb, ""));
        if RtcpFeedback::from_type_parameter(t, p).is_ok() {
            let _ = write!(s, "a=rtcp-fb:{} {fb}\r\n", c.pt);
        }
    }
}

/// The transport's host candidates and `a=end-of-candidates` (ICE-lite:
/// these are all there will be).
pub(crate) fn write_candidates(s: &mut String, transport: &WebRtcTransportInfo) {
    for c in &transport.ice_candidates {
        let protocol = match c.protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        };
        let _ = write!(
            s,
            "a=candidate:{} 1 {protocol} {} {} {} typ host",
            c.foundation, c.priority, c.address, c.port
        );
        if c.protocol == Protocol::Tcp {
            let _ = write!(s, " tcptype passive");
        }
        let _ = write!(s, "\r\n");
    }
    let _ = write!(s, "a=end-of-candidates\r\n");
}

fn hex_colons(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    parts.join(":")
}

/// The router's payload type for a codec it forwards, and its RTX's.
pub(crate) type RouterPayloadType<'a> =
    dyn Fn(&RtpCodecParameters) -> Option<(u8, Option<u8>)> + 'a;

/// WHEP: what the transport that plays to a client is numbered with (its
/// payload types, extension ids and mids, see
/// [`simplesfu_engine::RemoteNumbering`]), from its recvonly offer.
/// `router_pt` gives the router's payload type (and RTX's) for a codec it
/// forwards. The m-lines that can play are audio and video, recvonly (or
/// sendrecv) with a mid and a codec the router forwards; the others are
/// refused here, with the reason.
pub(crate) fn playback_numbering(
    offer: &Offer,
    router_pt: &RouterPayloadType<'_>,
    extension: &dyn Fn(MediaKind, &RtpHeaderExtensionUri) -> bool,
) -> (simplesfu_engine::RemoteNumbering, Vec<Option<String>>) {
    let mut numbering = simplesfu_engine::RemoteNumbering::default();
    let mut refused = Vec::new();
    for m in &offer.media {
        let kind = match m.media.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            other => {
                refused.push(Some(format!("{other} m-lines are not played over WHEP")));
                continue;
            }
        };
        if !matches!(m.direction.as_str(), "recvonly" | "sendrecv") {
            refused.push(Some(format!(
                "a WHEP client receives: a=recvonly, not a={}",
                m.direction
            )));
            continue;
        }
        if m.port == 0 && !m.bundle_only {
            refused.push(Some("rejected in the offer (port 0)".into()));
            continue;
        }
        let Some(mid) = m.mid.clone() else {
            refused.push(Some("no a=mid (BUNDLE needs one per m-line)".into()));
            continue;
        };
        let mut any = false;
        for codec in m.codecs.iter().filter(|c| !c.is_rtx()) {
            let codec = forwarded_params(codec);
            let Some((router, _)) = codec_json(kind, &codec).ok().and_then(|c| router_pt(&c))
            else {
                continue;
            };
            any = true;
            if numbering
                .payload_types
                .iter()
                .any(|(r, c, _)| *r == router || *c == codec.pt)
            {
                continue;
            }
            let rtx = m
                .codecs
                .iter()
                .find(|c| c.is_rtx() && c.apt() == Some(codec.pt))
                .map(|c| c.pt)
                .filter(|_| kind == MediaKind::Video);
            numbering.payload_types.push((router, codec.pt, rtx));
        }
        if !any {
            refused.push(Some(
                "none of the offered codecs is one this server forwards".into(),
            ));
            continue;
        }
        for (id, uri) in &m.extmaps {
            let Ok(parsed) = uri.parse::<RtpHeaderExtensionUri>() else {
                continue;
            };
            let known = numbering
                .extensions
                .iter()
                .any(|(u, i)| *u == parsed || i == id);
            if (1..=14).contains(id) && !known && extension(kind, &parsed) {
                numbering.extensions.push((parsed, *id));
            }
        }
        numbering.mids.push((kind, mid));
        refused.push(None);
    }
    (numbering, refused)
}

/// One m-line of a WHEP answer.
#[derive(Debug, Clone)]
pub(crate) enum Playback {
    /// A consumer's stream: the client's payload type for its codec (and
    /// RTX's), our SSRCs.
    Send {
        pt: u8,
        rtx_pt: Option<u8>,
        ssrc: u32,
        rtx_ssrc: Option<u32>,
        cname: String,
        /// `a=msid` stream and track ids.
        msid: (String, String),
    },
    Reject(String),
}

/// The WHEP answer: like [`write_answer`], `a=sendonly` with the client's
/// numbering (its codec lines as offered for the payload types used) and
/// our SSRCs.
pub(crate) fn write_playback_answer(
    offer: &Offer,
    lines: &[Playback],
    numbering: &simplesfu_engine::RemoteNumbering,
    transport: &WebRtcTransportInfo,
) -> String {
    let mut s = String::with_capacity(2048);
    let accepted: Vec<bool> = lines
        .iter()
        .map(|p| matches!(p, Playback::Send { .. }))
        .collect();
    write_session(&mut s, offer, &accepted);
    let dtls = AnswerDtls::new(offer, transport);
    let mut first = true;
    for (m, line) in offer.media.iter().zip(lines) {
        let Playback::Send {
            pt,
            rtx_pt,
            ssrc,
            rtx_ssrc,
            cname,
            msid,
        } = line
        else {
            write_rejected(&mut s, m);
            continue;
        };
        let codec = m.codecs.iter().find(|c| c.pt == *pt);
        let rtx = rtx_pt.and_then(|r| m.codecs.iter().find(|c| c.pt == r));
        write_accepted_head(&mut s, m, *pt, rtx.map(|r| r.pt), transport, &dtls);
        for (id, uri) in &m.extmaps {
            if numbering.extensions.iter().any(|(u, i)| {
                i == id && uri.parse::<RtpHeaderExtensionUri>().is_ok_and(|p| p == *u)
            }) {
                let _ = write!(s, "a=extmap:{id} {uri}\r\n");
            }
        }
        let _ = write!(
            s,
            "a=sendonly\r\na=msid:{} {}\r\na=rtcp-mux\r\n",
            msid.0, msid.1
        );
        if m.rtcp_rsize {
            let _ = write!(s, "a=rtcp-rsize\r\n");
        }
        if let Some(codec) = codec {
            write_codec(&mut s, &forwarded_params(codec));
        }
        if let Some(rtx) = rtx {
            write_codec(&mut s, &forwarded_params(rtx));
        }
        match rtx_ssrc {
            Some(r) => {
                let _ = write!(
                    s,
                    "a=ssrc-group:FID {ssrc} {r}\r\na=ssrc:{ssrc} cname:{cname}\r\na=ssrc:{r} cname:{cname}\r\n"
                );
            }
            None => {
                let _ = write!(s, "a=ssrc:{ssrc} cname:{cname}\r\n");
            }
        }
        if first {
            write_candidates(&mut s, transport);
            first = false;
        }
    }
    s
}

/// The ICE credentials of an `application/trickle-ice-sdpfrag` body (a
/// WHIP PATCH), if it carries them: new ones mean an ICE restart.
pub(crate) fn fragment_credentials(text: &str) -> (Option<String>, Option<String>) {
    let mut ufrag = None;
    let mut pwd = None;
    for line in text.lines().take(1000) {
        let line = line.trim_end_matches('\r');
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            ufrag = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            pwd = Some(v.trim().to_owned());
        }
    }
    (ufrag, pwd)
}

/// The answer fragment of an ICE restart (RFC 9725 §4.3.2): the new
/// credentials, and the candidates under the first bundled m-line of the
/// answer (`m_line`: e.g. `audio 9 UDP/TLS/RTP/SAVPF 111`, and its mid).
pub(crate) fn write_restart_fragment(
    ufrag: &str,
    pwd: &str,
    m_line: Option<(&str, &str)>,
    transport: &WebRtcTransportInfo,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "a=ice-lite\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"
    );
    if let Some((m_line, mid)) = m_line {
        let _ = write!(s, "m={m_line}\r\na=mid:{mid}\r\n");
    }
    write_candidates(&mut s, transport);
    s
}

/// The first accepted m-line of an answer as `(m-line, mid)`, for
/// [`write_restart_fragment`].
pub(crate) fn first_accepted(offer: &Offer, plans: &[Plan]) -> Option<(String, String)> {
    offer.media.iter().zip(plans).find_map(|(m, p)| match p {
        Plan::Produce { codec, rtx, .. } => {
            let mut formats = codec.pt.to_string();
            if let Some(rtx) = rtx {
                let _ = write!(formats, " {}", rtx.pt);
            }
            Some((
                format!("{} 9 UDP/TLS/RTP/SAVPF {formats}", m.media),
                m.mid.clone().unwrap_or_default(),
            ))
        }
        Plan::Reject(_) => None,
    })
}

#[cfg(test)]
mod tests;
