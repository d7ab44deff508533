//! The listener's way from the filtered process to the supervisor: one
//! byte over a Unix socket, with the descriptor attached (`SCM_RIGHTS`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Sends one byte over a Unix socket, with `fd` attached
/// (`SCM_RIGHTS`) when there is one.
pub(super) fn send_fd(
    socket: &std::os::unix::net::UnixStream,
    fd: Option<RawFd>,
) -> io::Result<()> {
    let mut byte = [u8::from(fd.is_some())];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // u64 words: aligned for a cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to buffers
    // owned here, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE is arithmetic; the control buffer holds one
        // header and one int, which the macros place within it.
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            assert!(space <= std::mem::size_of_val(&control));
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: a socket and a message owned here.
    if unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, 0) } != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives what [`send_fd`] sent: the descriptor, or `None` when the
/// other side had none (or went away without a word).
pub(super) fn receive_fd(socket: &std::os::unix::net::UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to buffers
    // owned here, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let n = loop {
        // SAFETY: a socket and a message owned here.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 || byte[0] == 0 {
        return Ok(None);
    }
    // SAFETY: the kernel filled the control buffer; the macros walk it
    // within `msg_controllen`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::other("no descriptor came with the message"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::fstat;
    use super::*;

    #[test]
    fn a_descriptor_crosses_the_socket() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_fd(&a, Some(file.as_raw_fd())).unwrap();
        let got = receive_fd(&b).unwrap().expect("a descriptor");
        let (x, y) = (fstat(&got).unwrap(), fstat(&OwnedFd::from(file)).unwrap());
        assert_eq!((x.st_dev, x.st_ino), (y.st_dev, y.st_ino));
        send_fd(&a, None).unwrap();
        assert!(receive_fd(&b).unwrap().is_none());
        drop(a);
        assert!(receive_fd(&b).unwrap().is_none());
    }
}
