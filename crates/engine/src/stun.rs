//! Just enough STUN to route a binding request to its transport: the
//! USERNAME attribute (`ourUfrag:theirUfrag`). str0m does the real work.

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;

/// Whether the datagram looks like a STUN message (RFC 7983 demux plus cookie).
pub(crate) fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 2 && data[4..8] == MAGIC_COOKIE
}

/// The USERNAME of a binding request, if the datagram is one.
pub(crate) fn binding_request_username(data: &[u8]) -> Option<&str> {
    if !is_stun(data) || u16::from_be_bytes([data[0], data[1]]) != BINDING_REQUEST {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let value = body.get(i + 4..i + 4 + alen)?;
        if kind == ATTR_USERNAME {
            return std::str::from_utf8(value).ok();
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
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
        assert_eq!(binding_request_username(&request(&[0x00, 0x06, 0x00, 0x40, b'a'])), None);
    }
}
