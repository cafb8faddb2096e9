//! Just enough STUN to route a binding request to its transport (the
//! USERNAME attribute, `ourUfrag:theirUfrag`) and to check its
//! MESSAGE-INTEGRITY before the router acts on it. str0m does the real work.

use str0m::crypto::{CryptoProvider, Sha1HmacProvider};

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const HEADER_LEN: usize = 20;
/// HMAC-SHA1 output, the MESSAGE-INTEGRITY value.
const INTEGRITY_LEN: usize = 20;

/// Whether the datagram looks like a STUN message (RFC 7983 demux plus cookie).
pub(crate) fn is_stun(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && data[0] < 2 && data[4..8] == MAGIC_COOKIE
}

/// The attributes of a STUN message as (offset of the attribute's header in
/// `data`, type, value), in order, within the header's message length. Ends
/// at the first attribute that overruns the message.
fn attributes(data: &[u8]) -> impl Iterator<Item = (usize, u16, &[u8])> {
    let body = if is_stun(data) {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        data.get(HEADER_LEN..HEADER_LEN + len).unwrap_or_default()
    } else {
        &[]
    };
    let mut i = 0;
    std::iter::from_fn(move || {
        let head = body.get(i..i + 4)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = body.get(i + 4..i + 4 + len)?;
        let at = HEADER_LEN + i;
        i += 4 + len.div_ceil(4) * 4;
        Some((at, kind, value))
    })
}

/// The USERNAME of a binding request, if the datagram is one.
pub(crate) fn binding_request_username(data: &[u8]) -> Option<&str> {
    if !is_stun(data) || u16::from_be_bytes([data[0], data[1]]) != BINDING_REQUEST {
        return None;
    }
    let (_, _, value) = attributes(data).find(|(_, kind, _)| *kind == ATTR_USERNAME)?;
    std::str::from_utf8(value).ok()
}

/// Whether the message's MESSAGE-INTEGRITY holds for the short-term
/// credential `password` (our ICE password, which a client's checks are
/// keyed with). False for a message without it or too short to hold it.
pub(crate) fn integrity_holds(data: &[u8], password: &str) -> bool {
    integrity_holds_with(data, password.as_bytes(), |key, payloads| {
        sha1_hmac().sha1_hmac(key, payloads)
    })
}

/// The HMAC-SHA1 of the crypto provider str0m uses (the process default,
/// else the one its feature flags pick), so no other implementation is built.
fn sha1_hmac() -> &'static dyn Sha1HmacProvider {
    match CryptoProvider::get_default() {
        Some(provider) => provider.sha1_hmac_provider,
        None => str0m::crypto::from_feature_flags().sha1_hmac_provider,
    }
}

/// RFC 5389 §15.4: the HMAC covers the message up to and excluding the
/// MESSAGE-INTEGRITY attribute, with the header's length set as if that
/// attribute ended the message, so a FINGERPRINT after it (or anything
/// else, which the receiver ignores) is not covered.
fn integrity_holds_with(
    data: &[u8],
    key: &[u8],
    hmac: impl Fn(&[u8], &[&[u8]]) -> [u8; INTEGRITY_LEN],
) -> bool {
    let Some((at, _, value)) =
        attributes(data).find(|(_, kind, _)| *kind == ATTR_MESSAGE_INTEGRITY)
    else {
        return false;
    };
    if value.len() != INTEGRITY_LEN {
        return false;
    }
    // `at` lies within the message, whose length fits a u16: so does this.
    let Ok(covered_len) = u16::try_from(at + 4 + INTEGRITY_LEN - HEADER_LEN) else {
        return false;
    };
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&data[..HEADER_LEN]);
    header[2..4].copy_from_slice(&covered_len.to_be_bytes());
    let expected = hmac(key, &[&header, &data[HEADER_LEN..at]]);
    // Compare without an early exit: timing tells nothing about the tag.
    let difference = expected
        .iter()
        .zip(value)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[u8]) -> Vec<u8> {
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(attrs);
        m
    }

    #[test]
    fn finds_username_and_ignores_garbage() {
        let mut attrs = vec![0x00, 0x06, 0x00, 0x05];
        attrs.extend_from_slice(b"ab:cd\0\0\0");
        assert_eq!(binding_request_username(&request(&attrs)), Some("ab:cd"));
        assert_eq!(binding_request_username(&[0u8; 10]), None);
        // Length field pointing past the end.
        let mut bad = request(&attrs);
        bad[3] = 200;
        assert_eq!(binding_request_username(&bad), None);
        // Truncated attribute.
        assert_eq!(
            binding_request_username(&request(&[0x00, 0x06, 0x00, 0x40, b'a'])),
            None
        );
    }

    fn attr(m: &mut Vec<u8>, kind: u16, value: &[u8]) {
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&(value.len() as u16).to_be_bytes());
        m.extend_from_slice(value);
        m.resize(m.len().div_ceil(4) * 4, 0);
    }

    fn set_len(m: &mut [u8], len: usize) {
        m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A binding request as a browser builds it: USERNAME, PRIORITY,
    /// ICE-CONTROLLING, MESSAGE-INTEGRITY keyed with `password`, and
    /// FINGERPRINT if `fingerprint`. Built by the book, step by step, rather
    /// than with the code under test.
    fn signed_request(password: &str, fingerprint: bool) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0];
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[0x5a; 12]);
        attr(&mut m, ATTR_USERNAME, b"serverufrag:client");
        attr(&mut m, 0x0024, &0x6e00_1eff_u32.to_be_bytes());
        attr(&mut m, 0x802a, &0x0102_0304_0506_0708_u64.to_be_bytes());
        let before_integrity = m.len() - HEADER_LEN;
        set_len(&mut m, before_integrity + 24);
        let tag = sha1_hmac().sha1_hmac(password.as_bytes(), &[&m]);
        attr(&mut m, ATTR_MESSAGE_INTEGRITY, &tag);
        if fingerprint {
            set_len(&mut m, before_integrity + 24 + 8);
            let crc = crc32(&m) ^ 0x5354_554e;
            attr(&mut m, 0x8028, &crc.to_be_bytes());
        }
        m
    }

    #[test]
    fn integrity_matches_the_rfc_5769_sample_request() {
        // RFC 5769 §2.1: SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME
        // "evtj:h6vY" padded with spaces, MESSAGE-INTEGRITY, FINGERPRINT.
        let sample: [u8; 108] = [
            0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e,
            0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24,
            0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1,
            0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68,
            0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c,
            0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5,
            0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
        ];
        assert_eq!(binding_request_username(&sample), Some("evtj:h6vY"));
        assert!(integrity_holds(&sample, "VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!integrity_holds(&sample, "VOkJxbRl1RmTxUk/WvJxBu"));
        assert_eq!(
            crc32(&sample[..100]) ^ 0x5354_554e,
            0xe57a_3bcf,
            "the test's FINGERPRINT is computed the same way"
        );
    }

    #[test]
    fn integrity_holds_only_for_the_right_password_and_intact_bytes() {
        for fingerprint in [false, true] {
            let good = signed_request("the-password", fingerprint);
            assert!(
                integrity_holds(&good, "the-password"),
                "fingerprint {fingerprint}"
            );
            assert!(
                !integrity_holds(&good, "the-passwore"),
                "wrong password, fingerprint {fingerprint}"
            );
            assert!(
                !integrity_holds(&good, ""),
                "empty password, fingerprint {fingerprint}"
            );

            // Every byte before MESSAGE-INTEGRITY's value, and the value
            // itself, is covered; the FINGERPRINT after it is not.
            let integrity_end = good.len() - if fingerprint { 8 } else { 0 };
            for i in 0..good.len() {
                let mut changed = good.clone();
                changed[i] ^= 0x01;
                let holds = integrity_holds(&changed, "the-password");
                if i < integrity_end {
                    assert!(!holds, "byte {i} changed, fingerprint {fingerprint}");
                } else {
                    assert!(
                        holds,
                        "byte {i} of FINGERPRINT changed, fingerprint {fingerprint}"
                    );
                }
            }

            // Truncated anywhere: the length no longer matches, or the
            // attribute is gone.
            for len in 0..good.len() {
                assert!(
                    !integrity_holds(&good[..len], "the-password"),
                    "{len} bytes, fingerprint {fingerprint}"
                );
            }
            // The header's length cut short, as if the message ended earlier.
            let mut short = good.clone();
            set_len(&mut short, good.len() - HEADER_LEN - 28);
            assert!(
                !integrity_holds(&short, "the-password"),
                "length short of MESSAGE-INTEGRITY"
            );
        }
    }

    #[test]
    fn integrity_fails_without_the_attribute_or_with_a_malformed_one() {
        let mut m = request(&[]);
        attr(&mut m, ATTR_USERNAME, b"a:b");
        let body = m.len() - HEADER_LEN;
        set_len(&mut m, body);
        assert!(!integrity_holds(&m, "pw"), "no MESSAGE-INTEGRITY");
        assert!(
            !integrity_holds(&m, ""),
            "no MESSAGE-INTEGRITY, empty password"
        );

        // MESSAGE-INTEGRITY of the wrong size, even with a tag that would fit.
        let mut m = request(&[]);
        attr(&mut m, ATTR_USERNAME, b"a:b");
        let body = m.len() - HEADER_LEN;
        set_len(&mut m, body + 20);
        let tag = sha1_hmac().sha1_hmac(b"pw", &[&m]);
        attr(&mut m, ATTR_MESSAGE_INTEGRITY, &tag[..16]);
        let body = m.len() - HEADER_LEN;
        set_len(&mut m, body);
        assert!(!integrity_holds(&m, "pw"), "a 16-byte MESSAGE-INTEGRITY");

        // Garbage: not STUN, bare headers, a length past the end.
        assert!(!integrity_holds(&[], "pw"));
        assert!(!integrity_holds(&[0u8; 19], "pw"));
        assert!(!integrity_holds(&request(&[]), "pw"));
        let mut past = signed_request("pw", true);
        past[2] = 0xff;
        assert!(!integrity_holds(&past, "pw"));
        assert!(!integrity_holds(
            &[0x00, 0x01, 0x00, 0x18, 0x21, 0x12, 0xa4, 0x42],
            "pw"
        ));
    }
}
