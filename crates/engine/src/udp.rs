//! Batched UDP I/O: one `sendmmsg` for every datagram a loop iteration
//! produced and one `recvmmsg` for up to `RECV_BATCH` arriving datagrams, so
//! the per-packet cost is one kernel copy rather than one system call.
//!
//! On Linux, consecutive datagrams to the same address of the same size (a
//! video frame's packets to one consumer: str0m emits a transport's packets
//! together) go out as one UDP GSO message (`UDP_SEGMENT`): the kernel walks
//! its UDP/IP send path once for the group and splits it into the same
//! datagrams at the end, so receivers see no difference. If the kernel or
//! the route refuses GSO, it is switched off for the process and datagrams
//! go out one by one. Other systems than Linux send one call per datagram.

use std::io;
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read per `recvmmsg`.
pub(crate) const RECV_BATCH: usize = 32;
/// Datagrams written per `sendmmsg`.
const SEND_BATCH: usize = 64;
/// Largest datagram read; WebRTC keeps well below the 1500-byte MTU.
pub(crate) const RECV_BUF: usize = 2048;

/// Receive buffers for one `recv` call.
pub(crate) struct RecvBatch {
    bufs: Vec<[u8; RECV_BUF]>,
    lens: Vec<usize>,
    sources: Vec<SocketAddr>,
    count: usize,
}

impl RecvBatch {
    pub fn new() -> Self {
        RecvBatch {
            bufs: vec![[0u8; RECV_BUF]; RECV_BATCH],
            lens: vec![0; RECV_BATCH],
            sources: vec![SocketAddr::from(([0, 0, 0, 0], 0)); RECV_BATCH],
            count: 0,
        }
    }

    /// The datagrams of the last receive.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        (0..self.count).map(|i| (self.sources[i], &self.bufs[i][..self.lens[i]]))
    }
}

/// Wait for the socket and read one batch of datagrams.
pub(crate) async fn recv(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<()> {
    loop {
        socket.readable().await?;
        match socket.try_io(Interest::READABLE, || sys::recv_batch(socket, batch)) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Send every queued datagram, then clear the queue. A datagram the kernel
/// refuses (e.g. an ICMP error reported on this send) is dropped; a full
/// socket buffer is waited for.
pub(crate) async fn send(socket: &UdpSocket, queue: &mut Vec<(SocketAddr, Vec<u8>)>) {
    let mut start = 0;
    while start < queue.len() {
        let end = (start + SEND_BATCH).min(queue.len());
        match socket.try_io(Interest::WRITABLE, || {
            sys::send_batch(socket, &queue[start..end])
        }) {
            Ok(sent) => start += sent.max(1),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    break;
                }
            }
            Err(error) => {
                tracing::trace!(%error, "udp send failed; dropping one datagram");
                start += 1;
            }
        }
    }
    queue.clear();
}

/// Group datagrams with UDP GSO (Linux) or not; on by default, off after
/// the kernel's first refusal. Tests compare both ways.
#[cfg(test)]
pub(crate) fn set_gso(on: bool) {
    sys::GSO_OFF.store(!on, std::sync::atomic::Ordering::Relaxed);
}

/// How many datagrams starting at `packets[0]` one GSO message can carry:
/// same destination, same size as the first (a shorter one may end the
/// group), at most `max_segments` and `max_bytes` in all.
pub(crate) fn gso_group_len(
    packets: &[(SocketAddr, Vec<u8>)],
    max_segments: usize,
    max_bytes: usize,
) -> usize {
    let Some((addr, first)) = packets.first() else {
        return 0;
    };
    let seg = first.len();
    let mut count = 1;
    let mut bytes = seg;
    for (a, data) in &packets[1..] {
        if count == max_segments
            || a != addr
            || data.len() > seg
            || data.is_empty()
            || bytes + data.len() > max_bytes
        {
            break;
        }
        count += 1;
        bytes += data.len();
        if data.len() < seg {
            break;
        }
    }
    count
}

#[cfg(target_os = "linux")]
mod sys {
    use super::{gso_group_len, RecvBatch, RECV_BATCH, SEND_BATCH};
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::net::UdpSocket;

    pub(super) static GSO_OFF: AtomicBool = AtomicBool::new(false);
    /// Linux uapi: `SOL_UDP` and the `UDP_SEGMENT` socket option / cmsg.
    const SOL_UDP: libc::c_int = 17;
    const UDP_SEGMENT: libc::c_int = 103;
    /// The kernel takes at most 64 segments and 64 KiB per GSO message.
    const GSO_MAX_SEGMENTS: usize = 64;
    const GSO_MAX_BYTES: usize = 65_000;

    /// Room for one cmsg carrying a u16, aligned for `cmsghdr`.
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct CmsgBuf([u8; 32]);

    fn to_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: as above.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    }

    fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match storage.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
                let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
                let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// Send up to `SEND_BATCH` datagrams from the front of `packets`; the
    /// number sent (a GSO message counts all its datagrams).
    pub(super) fn send_batch(
        socket: &UdpSocket,
        packets: &[(SocketAddr, Vec<u8>)],
    ) -> io::Result<usize> {
        let gso = !GSO_OFF.load(Ordering::Relaxed);
        match send_messages(socket, packets, gso) {
            // Only a refused GSO message says anything about GSO: sendmmsg
            // reports an error when its first message fails.
            Err(e)
                if gso
                    && gso_refused(&e)
                    && gso_group_len(packets, GSO_MAX_SEGMENTS, GSO_MAX_BYTES) > 1 =>
            {
                GSO_OFF.store(true, Ordering::Relaxed);
                tracing::info!(error = %e, "UDP GSO refused by the kernel or route; sending datagrams one by one");
                send_messages(socket, packets, false)
            }
            other => other,
        }
    }

    /// Errors with which a GSO message is refused (no checksum offload on
    /// the route, a kernel without `UDP_SEGMENT`).
    fn gso_refused(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::ENOPROTOOPT) | Some(libc::EOPNOTSUPP)
        )
    }

    fn send_messages(
        socket: &UdpSocket,
        packets: &[(SocketAddr, Vec<u8>)],
        gso: bool,
    ) -> io::Result<usize> {
        let n = packets.len().min(SEND_BATCH);
        // SAFETY (the zeroed arrays): plain data, all-zero is valid.
        let mut names: [(libc::sockaddr_storage, libc::socklen_t); SEND_BATCH] =
            unsafe { zeroed() };
        let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { zeroed() };
        let mut cmsgs = [CmsgBuf([0; 32]); SEND_BATCH];
        let mut counts = [0usize; SEND_BATCH];
        for (iov, (_, data)) in iovs.iter_mut().zip(&packets[..n]) {
            *iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
        }
        let mut m = 0;
        let mut i = 0;
        while i < n {
            let k = if gso {
                gso_group_len(&packets[i..n], GSO_MAX_SEGMENTS, GSO_MAX_BYTES)
            } else {
                1
            };
            names[m] = to_storage(&packets[i].0);
            let hdr = &mut msgs[m].msg_hdr;
            hdr.msg_name = &mut names[m].0 as *mut _ as *mut libc::c_void;
            hdr.msg_namelen = names[m].1;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = k;
            if k > 1 {
                let segment = packets[i].1.len() as u16;
                hdr.msg_control = cmsgs[m].0.as_mut_ptr() as *mut libc::c_void;
                // SAFETY: CMSG_SPACE only computes a size.
                hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
                // SAFETY: msg_control points at a 32-byte aligned buffer, larger than
                // CMSG_SPACE(2); CMSG_FIRSTHDR/CMSG_DATA stay inside it.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(hdr);
                    (*cmsg).cmsg_level = SOL_UDP;
                    (*cmsg).cmsg_type = UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, segment);
                }
            }
            counts[m] = k;
            m += 1;
            i += k;
        }
        // SAFETY: every mmsghdr points at live buffers, names and control data
        // of this frame; the kernel only reads them.
        let sent =
            unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), m as libc::c_uint, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(counts[..sent as usize].iter().sum())
    }

    pub(super) fn recv_batch(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<()> {
        let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { zeroed() };
        for (i, buf) in batch.bufs.iter_mut().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
        }
        for i in 0..RECV_BATCH {
            msgs[i].msg_hdr.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: buffers and names live for the call; the kernel writes within their lengths.
        let got = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            batch.count = 0;
            return Err(io::Error::last_os_error());
        }
        let mut count = 0;
        for i in 0..got as usize {
            // Truncated datagrams (larger than the buffer) are not WebRTC: drop them.
            if msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue;
            }
            if let Some(source) = from_storage(&names[i]) {
                batch.lens[count] = msgs[i].msg_len as usize;
                batch.sources[count] = source;
                if count != i {
                    batch.bufs.swap(count, i);
                }
                count += 1;
            }
        }
        batch.count = count;
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use super::RecvBatch;
    use std::io;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicBool;
    use tokio::net::UdpSocket;

    /// No GSO outside Linux.
    pub(super) static GSO_OFF: AtomicBool = AtomicBool::new(true);

    pub(super) fn send_batch(
        socket: &UdpSocket,
        packets: &[(SocketAddr, Vec<u8>)],
    ) -> io::Result<usize> {
        let (addr, data) = &packets[0];
        socket.try_send_to(data, *addr).map(|_| 1)
    }

    pub(super) fn recv_batch(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<()> {
        let (n, source) = socket.try_recv_from(&mut batch.bufs[0])?;
        batch.lens[0] = n;
        batch.sources[0] = source;
        batch.count = 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn groups_take_equal_sizes_to_one_address_and_may_end_shorter() {
        let q = |spec: &[(u16, usize)]| {
            spec.iter()
                .map(|&(p, n)| (addr(p), vec![0u8; n]))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            gso_group_len(&q(&[(1, 1200), (1, 1200), (1, 1200)]), 64, 65_000),
            3
        );
        // A shorter datagram ends the group, a longer one starts the next.
        assert_eq!(
            gso_group_len(&q(&[(1, 1200), (1, 900), (1, 1200)]), 64, 65_000),
            2
        );
        assert_eq!(gso_group_len(&q(&[(1, 900), (1, 1200)]), 64, 65_000), 1);
        // Another address ends it.
        assert_eq!(gso_group_len(&q(&[(1, 1200), (2, 1200)]), 64, 65_000), 1);
        // Limits: segments and bytes.
        assert_eq!(gso_group_len(&q(&[(1, 100); 10]), 4, 65_000), 4);
        assert_eq!(gso_group_len(&q(&[(1, 1000); 10]), 64, 3_500), 3);
        assert_eq!(gso_group_len(&[], 64, 65_000), 0);
    }

    /// Every datagram arrives whole, in order, at its own address, with GSO
    /// on and off (a plain receiver: the kernel splits GSO messages).
    #[test]
    fn receivers_see_the_same_datagrams_with_and_without_gso() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for gso in [true, false] {
                set_gso(gso);
                let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
                let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
                for s in [&a, &b] {
                    s.set_read_timeout(Some(Duration::from_secs(2)))
                        .expect("timeout");
                }
                let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind sender");
                let (pa, pb) = (a.local_addr().expect("a"), b.local_addr().expect("b"));
                // Frames of equal-size packets with a shorter last one, interleaved
                // destinations, and more than one sendmmsg batch in all.
                let mut queue = Vec::new();
                let mut expected_a = Vec::new();
                let mut expected_b = Vec::new();
                for frame in 0u8..10 {
                    for i in 0u8..8 {
                        let len = if i == 7 { 700 } else { 1100 };
                        let data: Vec<u8> = (0..len).map(|j| frame ^ i ^ (j as u8)).collect();
                        let dest = if frame % 3 == 0 { pb } else { pa };
                        if dest == pa {
                            expected_a.push(data.clone())
                        } else {
                            expected_b.push(data.clone())
                        }
                        queue.push((dest, data));
                    }
                }
                send(&sender, &mut queue).await;
                assert!(queue.is_empty());
                if gso && cfg!(target_os = "linux") {
                    assert!(
                        !sys::GSO_OFF.load(std::sync::atomic::Ordering::Relaxed),
                        "loopback took the GSO messages"
                    );
                }
                for (socket, expected) in [(&a, expected_a), (&b, expected_b)] {
                    let mut buf = [0u8; 2048];
                    for (k, want) in expected.iter().enumerate() {
                        let (n, _) = socket
                            .recv_from(&mut buf)
                            .unwrap_or_else(|e| panic!("gso={gso}: datagram {k} missing: {e}"));
                        assert_eq!(
                            &buf[..n],
                            &want[..],
                            "gso={gso}: datagram {k} differs (length {n})"
                        );
                    }
                }
            }
            set_gso(true);
        });
    }
}
