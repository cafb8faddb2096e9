//! Batched UDP I/O: one `sendmmsg` for every datagram a loop iteration
//! produced and one `recvmmsg` for up to `RECV_BATCH` arriving datagrams, so
//! the per-packet cost is one kernel copy rather than one system call.
//! Other systems than Linux fall back to one call per datagram.

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
        match socket.try_io(Interest::WRITABLE, || sys::send_batch(socket, &queue[start..end])) {
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

#[cfg(target_os = "linux")]
mod sys {
    use super::{RecvBatch, RECV_BATCH, SEND_BATCH};
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;
    use tokio::net::UdpSocket;

    fn to_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
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
                    sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
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
                Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
                let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), sin6.sin6_flowinfo, sin6.sin6_scope_id)))
            }
            _ => None,
        }
    }

    pub(super) fn send_batch(socket: &UdpSocket, packets: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
        let n = packets.len().min(SEND_BATCH);
        let mut names: [(libc::sockaddr_storage, libc::socklen_t); SEND_BATCH] =
            // SAFETY: plain data, zero is valid.
            unsafe { zeroed() };
        let mut iovs: [libc::iovec; SEND_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { zeroed() };
        for i in 0..n {
            let (addr, data) = &packets[i];
            names[i] = to_storage(addr);
            iovs[i] = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
        }
        for i in 0..n {
            msgs[i].msg_hdr.msg_name = &mut names[i].0 as *mut _ as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = names[i].1;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every mmsghdr points at live buffers and names of this frame; the kernel only reads them.
        let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    pub(super) fn recv_batch(socket: &UdpSocket, batch: &mut RecvBatch) -> io::Result<()> {
        let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { zeroed() };
        for (i, buf) in batch.bufs.iter_mut().enumerate() {
            iovs[i] = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
        }
        for i in 0..RECV_BATCH {
            msgs[i].msg_hdr.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: buffers and names live for the call; the kernel writes within their lengths.
        let got = unsafe {
            libc::recvmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), RECV_BATCH as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
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
    use tokio::net::UdpSocket;

    pub(super) fn send_batch(socket: &UdpSocket, packets: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
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
