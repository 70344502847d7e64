//! Extended attributes (the stamps), read and set directly.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Sets the extended attribute `name` of `path` to `value`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    let name = std::ffi::CString::new(name).expect("a name without NUL");
    // SAFETY: both strings are NUL-terminated and outlive the call; the value
    // is a valid slice of its length.
    let status = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(status, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// The extended attribute `name` of `path`, as text.
pub fn get_xattr(path: &Path, name: &str) -> Option<String> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    let name = std::ffi::CString::new(name).expect("a name without NUL");
    let mut value = [0u8; 64];
    // SAFETY: both strings are NUL-terminated; the buffer is writable for its
    // whole length.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    usize::try_from(len)
        .ok()
        .map(|len| String::from_utf8_lossy(&value[..len]).into_owned())
}
