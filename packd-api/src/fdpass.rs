//! Passing file descriptors over a Unix socket (SCM_RIGHTS): `pack run` hands its stdin,
//! stdout and stderr to the daemon, which gives them to the app.
//!
//! They travel attached to the first bytes of the `/v2/run` request ([`send_with_fds`]); the
//! daemon peeks at each new connection for them ([`peek_fds`]) before the HTTP server reads
//! it, so the app can start before the upgrade's answer has even gone out.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Sends `buf` (or its beginning: the count of bytes sent is returned) with `fds` attached.
pub fn send_with_fds(sock: BorrowedFd<'_>, buf: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    Ok(sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(buf)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?)
}

/// The descriptors attached to the first unread bytes of `sock`, without consuming anything
/// (the kernel gives a peek its own copies); none when there are none, or more than `max`.
pub fn peek_fds(sock: BorrowedFd<'_>, max: usize) -> io::Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_PEEK | MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors in our table for us.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() > max {
        fds.clear();
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn descriptors_ride_on_the_first_bytes_and_a_peek_sees_them() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (mut r, w) = UnixStream::pair().unwrap();
        assert_eq!(
            send_with_fds(
                a.as_fd(),
                b"GET / HTTP/1.1\r\n",
                &[r.as_raw_fd(), w.as_raw_fd()]
            )
            .unwrap(),
            16
        );
        let mut fds = peek_fds(b.as_fd(), 3).unwrap();
        assert_eq!(fds.len(), 2);
        // The peeked copies work.
        UnixStream::from(fds.pop().unwrap())
            .write_all(b"hi")
            .unwrap();
        let mut got = [0u8; 2];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        // Nothing was consumed: a plain reader (the HTTP server) sees every byte.
        let mut buf = [0u8; 16];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"GET / HTTP/1.1\r\n");
        // More than allowed: none.
        send_with_fds(a.as_fd(), b"x", &[r.as_raw_fd(), r.as_raw_fd()]).unwrap();
        assert!(peek_fds(b.as_fd(), 1).unwrap().is_empty());
    }
}
