//! Passing file descriptors over a Unix socket (SCM_RIGHTS): `pack run` hands its stdin,
//! stdout and stderr to the daemon, which gives them to the app.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Sends `fds` with a one-byte message.
pub fn send_fds(sock: BorrowedFd<'_>, fds: &[RawFd]) -> io::Result<()> {
    let payload = [0u8];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// Receives exactly `count` descriptors sent by [`send_fds`], close-on-exec. Extra descriptors
/// are closed and refused.
pub fn recv_fds(sock: BorrowedFd<'_>, count: usize) -> io::Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the client hung up before sending its terminal",
        ));
    }
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
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) || fds.len() != count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {count} file descriptors, got {}", fds.len()),
        ));
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
    fn descriptors_cross_the_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut r, mut w) = UnixStream::pair().unwrap();
        send_fds(a.as_fd(), &[w.as_raw_fd(), r.as_raw_fd(), w.as_raw_fd()]).unwrap();
        let fds = recv_fds(b.as_fd(), 3).unwrap();
        let mut passed = UnixStream::from(fds.into_iter().next().unwrap());
        passed.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        w.flush().unwrap();
    }

    #[test]
    fn wrong_count_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, _w) = UnixStream::pair().unwrap();
        send_fds(a.as_fd(), &[r.as_raw_fd()]).unwrap();
        let err = recv_fds(b.as_fd(), 3).unwrap_err();
        assert_eq!(err.to_string(), "expected 3 file descriptors, got 1");
        drop(a);
        assert_eq!(
            recv_fds(b.as_fd(), 3).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
