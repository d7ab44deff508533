//! The listener's way from the filtered process to the supervisor: one
//! byte over a Unix socket, with the descriptor attached (`SCM_RIGHTS`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// Sends one byte over a Unix socket, with `fd` attached
/// (`SCM_RIGHTS`) when there is one.
pub(super) fn send_fd(socket: &UnixStream, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let byte = [u8::from(fd.is_some())];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if let Some(fd) = &fd {
        let pushed = control.push(SendAncillaryMessage::ScmRights(std::slice::from_ref(fd)));
        assert!(pushed, "the control buffer holds one descriptor");
    }
    let sent = sendmsg(
        socket,
        &[IoSlice::new(&byte)],
        &mut control,
        SendFlags::empty(),
    )?;
    if sent != 1 {
        return Err(io::Error::other("the byte was not sent"));
    }
    Ok(())
}

/// Receives what [`send_fd`] sent: the descriptor, or `None` when the
/// other side had none (or went away without a word).
pub(super) fn receive_fd(socket: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        match recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(received) => break received.bytes,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 || byte[0] == 0 {
        return Ok(None);
    }
    let fd = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    fd.map(Some)
        .ok_or_else(|| io::Error::other("no descriptor came with the message"))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::super::request::fstat;
    use super::*;

    #[test]
    fn a_descriptor_crosses_the_socket() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_fd(&a, Some(file.as_fd())).unwrap();
        let got = receive_fd(&b).unwrap().expect("a descriptor");
        let (x, y) = (fstat(&got).unwrap(), fstat(&OwnedFd::from(file)).unwrap());
        assert_eq!((x.st_dev, x.st_ino), (y.st_dev, y.st_ino));
        send_fd(&a, None).unwrap();
        assert!(receive_fd(&b).unwrap().is_none());
        drop(a);
        assert!(receive_fd(&b).unwrap().is_none());
    }
}
