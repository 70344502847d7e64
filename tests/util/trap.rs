//! A seccomp trap that stops a child at an exact system call.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::{PATIENCE, Running};

/// The descriptor number at which a trapped child keeps its seccomp
/// listener, for the test to fetch with `pidfd_getfd`.
const TRAP_FD: i32 = 900;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// The system calls that can stage, publish or remove a chunk: link,
/// rename (`renameat` where it exists, and `renameat2`), unlink.
#[cfg(target_arch = "x86_64")]
pub const PUBLISH_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_linkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlinkat,
];
#[cfg(not(target_arch = "x86_64"))]
pub const PUBLISH_SYSCALLS: &[libc::c_long] =
    &[libc::SYS_linkat, libc::SYS_renameat2, libc::SYS_unlinkat];
/// The system call that deletes a name.
pub const UNLINK_SYSCALLS: &[libc::c_long] = &[libc::SYS_unlinkat];

/// A seccomp user-notification filter on some system calls of a child: each
/// time the child makes one of them it stops inside the kernel, before the
/// call does anything, until the test lets it go on ([`SyscallTrap::resume`])
/// or kills it. That turns "kill -9 at the worst moment" into a test that
/// hits the moment every time.
pub struct SyscallTrap {
    listener: std::os::fd::OwnedFd,
}

impl SyscallTrap {
    /// Arranges for the child of `command` to be trapped at `syscalls`.
    pub fn install(command: &mut Command, syscalls: &[libc::c_long]) {
        let filter = trap_filter(syscalls);
        // SAFETY: the closure runs between fork and exec and makes only
        // async-signal-safe system calls on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let program = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr() as *mut libc::sock_filter,
                };
                let listener = libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    &program as *const libc::sock_fprog,
                );
                if listener < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // dup2 clears close-on-exec: the listener survives the exec.
                if libc::dup2(listener as i32, TRAP_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Takes the listener of a child started from a command prepared with
    /// [`SyscallTrap::install`] (spawn returns after the exec, so it is there).
    pub fn attach(child: &Running) -> SyscallTrap {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls; the returned descriptors are new and ours.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, child.pid(), 0);
            assert!(
                pidfd >= 0,
                "pidfd_open: {}",
                std::io::Error::last_os_error()
            );
            let pidfd = std::os::fd::OwnedFd::from_raw_fd(pidfd as i32);
            let listener = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), TRAP_FD, 0);
            assert!(
                listener >= 0,
                "pidfd_getfd: {}",
                std::io::Error::last_os_error()
            );
            SyscallTrap {
                listener: std::os::fd::OwnedFd::from_raw_fd(listener as i32),
            }
        }
    }

    /// Waits until the child is stopped in a trapped call; returns its id.
    pub fn wait(&self) -> u64 {
        let mut poll = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one pollfd we pass.
        let ready = unsafe { libc::poll(&mut poll, 1, PATIENCE.as_millis() as i32) };
        assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
        assert!(
            ready > 0,
            "the child made no trapped system call within {PATIENCE:?}"
        );
        assert!(
            poll.revents & libc::POLLIN != 0,
            "the child ended before its trapped system call"
        );
        // SAFETY: the kernel fills the zeroed seccomp_notif we pass.
        unsafe {
            let mut notification: libc::seccomp_notif = std::mem::zeroed();
            let result = libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut notification,
            );
            assert_eq!(
                result,
                0,
                "SECCOMP_IOCTL_NOTIF_RECV: {}",
                std::io::Error::last_os_error()
            );
            notification.id
        }
    }

    /// Lets the trapped call `id` go on as if nothing had happened.
    pub fn resume(&self, id: u64) {
        let response = libc::seccomp_notif_resp {
            id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        // SAFETY: the kernel reads the seccomp_notif_resp we pass.
        let result = unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &response,
            )
        };
        assert_eq!(
            result,
            0,
            "SECCOMP_IOCTL_NOTIF_SEND: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A BPF program: user notification for `syscalls`, everything else allowed.
fn trap_filter(syscalls: &[libc::c_long]) -> Vec<libc::sock_filter> {
    let statement = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: usize, jf: usize| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: jt as u8,
        jf: jf as u8,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let count = syscalls.len();
    // seccomp_data: nr at offset 0, arch at offset 4.
    let mut program = vec![
        statement(load, 4),
        jump(AUDIT_ARCH, 0, count + 1),
        statement(load, 0),
    ];
    for (index, syscall) in syscalls.iter().enumerate() {
        program.push(jump(*syscall as u32, count - index, 0));
    }
    program.push(statement(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ALLOW,
    ));
    program.push(statement(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_USER_NOTIF,
    ));
    program
}
