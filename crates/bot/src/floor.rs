//! The floor: what forwarding one packet costs at the very least on this
//! machine, measured in the same run as the servers. One 1200-byte UDP send on
//! loopback (sendmmsg batches of 32, a thread drains the receiving socket)
//! plus one AES-256-GCM seal of 1200 bytes (SRTP's AEAD as browsers
//! negotiate it). Costs are CPU time of the measuring thread.
//!
//! Two floors are given: `floor_us` with batched sends (the least any server
//! can do, and what the ratios in the reports use) and `floor_single_us` with
//! one `sendto` system call per datagram, which is how most SFUs send and how
//! the project's target was first stated ("one loopback UDP send plus one
//! AES-GCM seal").

use anyhow::{anyhow, Context};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use serde::Serialize;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const PACKET: usize = 1200;
const BATCH: usize = 32;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    /// CPU µs per 1200-byte loopback UDP send (sendmmsg, batches of 32).
    pub udp_send_us: f64,
    /// CPU µs per 1200-byte loopback UDP send, one `sendto` per datagram.
    pub udp_sendto_us: f64,
    /// CPU µs per AES-256-GCM seal of 1200 bytes.
    pub aes_gcm_seal_us: f64,
    /// The sum: the least a forwarded packet costs.
    pub floor_us: f64,
    /// 1e6 / floor_us.
    pub packets_per_cpu_s: f64,
    /// `udp_sendto_us` + `aes_gcm_seal_us`: the floor without batching.
    pub floor_single_us: f64,
}

fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into our timespec; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// A loopback socket drained by its own thread until the returned flag is set.
fn drained_receiver() -> anyhow::Result<(
    std::net::SocketAddr,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
)> {
    let rx = UdpSocket::bind("127.0.0.1:0").context("bind the floor receiver")?;
    let dest = rx.local_addr()?;
    rx.set_read_timeout(Some(std::time::Duration::from_millis(50)))?;
    let done = Arc::new(AtomicBool::new(false));
    let drain_done = done.clone();
    let drainer = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !drain_done.load(Ordering::Relaxed) {
            let _ = rx.recv_from(&mut buf);
        }
    });
    Ok((dest, done, drainer))
}

/// CPU µs per packet sent with sendmmsg to a drained loopback socket.
pub fn udp_send_us(packets: usize) -> anyhow::Result<f64> {
    let (dest, done, drainer) = drained_receiver()?;
    let tx = UdpSocket::bind("127.0.0.1:0").context("bind the floor sender")?;
    tx.connect(dest)?;
    let payload = [0x5au8; PACKET];
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: PACKET,
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov as *mut libc::iovec;
        m.msg_hdr.msg_iovlen = 1;
    }
    let fd = tx.as_raw_fd();
    let start = thread_cpu_s();
    let mut sent = 0usize;
    while sent < packets {
        // SAFETY: msgs point at iovecs and a payload that outlive the call; the socket is connected.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOBUFS) || err.raw_os_error() == Some(libc::EAGAIN)
            {
                continue;
            }
            done.store(true, Ordering::Relaxed);
            return Err(anyhow!("sendmmsg failed: {err}"));
        }
        sent += n as usize;
    }
    let cpu = thread_cpu_s() - start;
    done.store(true, Ordering::Relaxed);
    let _ = drainer.join();
    Ok(cpu * 1e6 / sent as f64)
}

/// CPU µs per packet sent with one `sendto` each (unconnected socket, the
/// destination given per datagram as an SFU's shared socket does).
pub fn udp_sendto_us(packets: usize) -> anyhow::Result<f64> {
    let (dest, done, drainer) = drained_receiver()?;
    let tx = UdpSocket::bind("127.0.0.1:0").context("bind the floor sender")?;
    let payload = [0x5au8; PACKET];
    let start = thread_cpu_s();
    let mut sent = 0usize;
    while sent < packets {
        match tx.send_to(&payload, dest) {
            Ok(_) => sent += 1,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::EAGAIN)) => {
                continue
            }
            Err(e) => {
                done.store(true, Ordering::Relaxed);
                return Err(anyhow!("sendto failed: {e}"));
            }
        }
    }
    let cpu = thread_cpu_s() - start;
    done.store(true, Ordering::Relaxed);
    let _ = drainer.join();
    Ok(cpu * 1e6 / sent as f64)
}

/// CPU µs per AES-256-GCM seal of a 1200-byte packet.
pub fn aes_gcm_seal_us(packets: usize) -> anyhow::Result<f64> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &[7u8; 32]).map_err(|_| anyhow!("AES key"))?,
    );
    let mut buf = vec![0u8; PACKET];
    let start = thread_cpu_s();
    for i in 0..packets {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&[0u8; 12]),
                &mut buf,
            )
            .map_err(|_| anyhow!("AES-GCM seal failed"))?;
        let _ = std::hint::black_box(tag);
    }
    Ok((thread_cpu_s() - start) * 1e6 / packets as f64)
}

/// Measure both (best of three rounds each, so a busy moment does not inflate the floor).
pub fn measure(packets: usize) -> anyhow::Result<Floor> {
    let mut udp = f64::MAX;
    let mut single = f64::MAX;
    let mut seal = f64::MAX;
    for _ in 0..3 {
        udp = udp.min(udp_send_us(packets)?);
        single = single.min(udp_sendto_us(packets)?);
        seal = seal.min(aes_gcm_seal_us(packets)?);
    }
    let floor = udp + seal;
    Ok(Floor {
        udp_send_us: udp,
        udp_sendto_us: single,
        aes_gcm_seal_us: seal,
        floor_us: floor,
        packets_per_cpu_s: 1e6 / floor,
        floor_single_us: single + seal,
    })
}
