//! Looking into pipes: bytes queued and capacity.

use std::os::fd::AsRawFd;

/// Bytes waiting in a pipe (FIONREAD works on either end).
pub fn pipe_queued(pipe: &impl AsRawFd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer we pass.
    let result = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut queued) };
    assert_eq!(
        result,
        0,
        "FIONREAD failed: {}",
        std::io::Error::last_os_error()
    );
    queued as usize
}

/// The capacity of a pipe in bytes.
pub fn pipe_capacity(pipe: &impl AsRawFd) -> usize {
    // SAFETY: F_GETPIPE_SZ takes no argument and returns the size.
    let size = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    assert!(
        size > 0,
        "F_GETPIPE_SZ failed: {}",
        std::io::Error::last_os_error()
    );
    size as usize
}
