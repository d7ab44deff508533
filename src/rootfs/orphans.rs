//! Processes a script leaves behind. The builder makes itself their
//! subreaper ([`adopt`]; as PID 1 of the Nix sandbox's PID namespace it
//! is one anyway), so a daemon a script starts, such as a `sleep &` or a
//! double-forked server, becomes its child when the script ends; [`end`]
//! then kills and reaps every child. None can hold the build's log pipe
//! open, linger as a zombie, or outlive the build.
//!
//! Children are found by their parent pid in `/proc/PID/stat`, which
//! needs no kernel option (`/proc/PID/task/TID/children` does). Only this
//! process's own children are signalled, never a group or `-1`.

use std::fs;

/// Makes this process the reaper of its descendants' orphans.
pub fn adopt() {
    // SAFETY: an integer argument; failure leaves the default reaper.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Kills every child of this process with SIGKILL and reaps it, until
/// none is left (a child may fork before its signal arrives; its orphan
/// is found on the next round). Call it when no child is meant to run.
pub fn end() {
    // SAFETY: no pointers.
    let me = unsafe { libc::getpid() };
    loop {
        let children = children_of(me);
        if children.is_empty() {
            break;
        }
        for pid in &children {
            // SAFETY: a signal to a child of this process, which stays
            // ours (a zombie at worst) until it is reaped below.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        for pid in children {
            // SAFETY: waits for a child of this process.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
    // Zombies of children that were reaped by nobody else.
    // SAFETY: waits without blocking for any child of this process.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// The pids whose parent is `parent`.
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
        (parent_in_stat(&stat)? == parent).then_some(pid)
    })
    .collect()
}

/// The parent pid of a `/proc/PID/stat` line: the second field after the
/// command name, which is in parentheses and may hold any byte, so the
/// fields are counted from its last `)`.
fn parent_in_stat(stat: &str) -> Option<libc::pid_t> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_is_read_after_the_command_name() {
        assert_eq!(
            parent_in_stat("42 (a (b) c) 0) S 17 42 42 0 -1 4194560"),
            Some(17)
        );
        assert_eq!(parent_in_stat("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parent_in_stat("garbage"), None);
    }
}
