//! How structure transactions (nft text) reach nftables: libnftables,
//! loaded with dlopen for the transactions of one restore and unloaded
//! after, or the `nft` command where only nftables' command-line package
//! is installed, run off the loop ([`CmdQueue`]) and killed if it hangs.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

/// libnftables, loaded with dlopen for one structure transaction and
/// unloaded right after (its libraries and its ruleset cache would
/// otherwise stay resident); the daemon still runs through the `nft`
/// binary where only nftables' command-line package is installed.
pub(super) struct LibNft {
    handle: *mut c_void,
    ctx: *mut c_void,
    run: unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int,
    output: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    error: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    free: unsafe extern "C" fn(*mut c_void),
}

impl LibNft {
    pub(super) fn open() -> Option<LibNft> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; every symbol is
        // checked for NULL and cast to the signature libnftables.h gives.
        unsafe {
            let mut handle = std::ptr::null_mut();
            for name in [c"libnftables.so.1", c"libnftables.so"] {
                handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                if !handle.is_null() {
                    break;
                }
            }
            if handle.is_null() {
                return None;
            }
            let sym = |n: &CStr| {
                let p = libc::dlsym(handle, n.as_ptr());
                (!p.is_null()).then_some(p)
            };
            let syms = (|| {
                Some((
                    sym(c"nft_ctx_new")?,
                    sym(c"nft_ctx_buffer_output")?,
                    sym(c"nft_ctx_buffer_error")?,
                    sym(c"nft_run_cmd_from_buffer")?,
                    sym(c"nft_ctx_get_output_buffer")?,
                    sym(c"nft_ctx_get_error_buffer")?,
                    sym(c"nft_ctx_free")?,
                ))
            })();
            let Some((new, buffer_output, buffer_error, run, output, error, free)) = syms else {
                libc::dlclose(handle);
                return None;
            };
            type New = unsafe extern "C" fn(u32) -> *mut c_void;
            type Buffer = unsafe extern "C" fn(*mut c_void) -> c_int;
            let new = std::mem::transmute::<*mut c_void, New>(new);
            let buffer_output = std::mem::transmute::<*mut c_void, Buffer>(buffer_output);
            let buffer_error = std::mem::transmute::<*mut c_void, Buffer>(buffer_error);
            let ctx = new(0);
            if ctx.is_null() {
                libc::dlclose(handle);
                return None;
            }
            buffer_output(ctx);
            buffer_error(ctx);
            type Run = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
            type Text = unsafe extern "C" fn(*mut c_void) -> *const c_char;
            type Free = unsafe extern "C" fn(*mut c_void);
            Some(LibNft {
                handle,
                ctx,
                run: std::mem::transmute::<*mut c_void, Run>(run),
                output: std::mem::transmute::<*mut c_void, Text>(output),
                error: std::mem::transmute::<*mut c_void, Text>(error),
                free: std::mem::transmute::<*mut c_void, Free>(free),
            })
        }
    }

    pub(super) fn run(&mut self, cmds: &str) -> Result<String, String> {
        let c = CString::new(cmds).map_err(|_| "command contains a NUL byte".to_string())?;
        // SAFETY: ctx is valid until Drop; the buffers returned by
        // libnftables stay valid until the next call on this context.
        unsafe {
            let rc = (self.run)(self.ctx, c.as_ptr());
            let out = text((self.output)(self.ctx));
            let err = text((self.error)(self.ctx));
            if rc == 0 { Ok(out) } else { Err(err) }
        }
    }
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libnftables returns NUL-terminated buffers.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Drop for LibNft {
    fn drop(&mut self) {
        // SAFETY: ctx came from nft_ctx_new and is freed once; nothing of
        // the library is referenced after dlclose.
        unsafe {
            (self.free)(self.ctx);
            libc::dlclose(self.handle);
        }
        crate::sys::mem::trim_heap();
    }
}

/// What follows a transaction the `nft` command ran off the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The structure is in: every element goes in again.
    Elements,
    /// Our own hooks are gone: fw4's lead to our chains now.
    HooksHandedOver,
}

/// A transaction the `nft` command finished (or failed, or was killed).
#[derive(Debug)]
pub struct CmdDone {
    pub then: Then,
    /// nft's first error line.
    pub result: Result<(), String>,
}

/// An `nft` command on the blocking pool: its output or its error.
type Job = tokio::task::JoinHandle<Result<String, String>>;

/// Transactions for the `nft` command, run one at a time on tokio's
/// blocking pool (`rt` has one, current-thread runtime included), so the
/// loop never waits on the child; each is bounded by [`NFT_LIMIT`].
#[derive(Default)]
pub(super) struct CmdQueue {
    /// The transaction the blocking pool runs, its text and follow-up.
    running: Option<(Job, String, Then)>,
    queue: VecDeque<(String, Then)>,
}

impl CmdQueue {
    /// Runs `text` after what is running; a waiting transaction with the
    /// same follow-up is replaced, since the newer text supersedes it.
    pub(super) fn submit(&mut self, text: String, then: Then) {
        match self.queue.iter_mut().find(|(_, t)| *t == then) {
            Some(waiting) => waiting.0 = text,
            None => self.queue.push_back((text, then)),
        }
        self.start_next();
    }

    fn start_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some((text, then)) = self.queue.pop_front() else {
            return;
        };
        let input = text.clone();
        let job = tokio::task::spawn_blocking(move || nft_command(&input, NFT_LIMIT));
        self.running = Some((job, text, then));
    }

    pub(super) fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// Forgets what has not started (the daemon stops).
    pub(super) fn drop_waiting(&mut self) {
        self.queue.clear();
    }

    /// The next transaction to finish, with the text it ran; never
    /// resolves while none runs. Cancel-safe: a finished job is taken
    /// only when this resolves.
    pub(super) async fn done(&mut self) -> (String, CmdDone) {
        let Some((job, ..)) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let r = job
            .await
            .unwrap_or_else(|e| Err(format!("the nft command's task: {e}")));
        let Some((_, text, then)) = self.running.take() else {
            return std::future::pending().await;
        };
        self.start_next();
        let result = r.map(|_| ()).map_err(|e| first_line(&e));
        (text, CmdDone { then, result })
    }
}

/// How structure transactions (text) reach nftables.
pub(super) enum Runner {
    /// libnftables, loaded for the transactions of one restore.
    Lib,
    /// The `nft` command: off the loop through [`CmdQueue`], except
    /// when stopping.
    Cmd,
}

// SAFETY: a context is used by one thread at a time; it only moves to
// another thread to be freed after its last use (`Nft::release_lib`).
unsafe impl Send for LibNft {}

/// Longest an `nft` command may take: a structure transaction takes well
/// under a second even on a slow router; one that hangs (a wedged
/// netlink, a stuck lock) is killed rather than waited for.
pub(super) const NFT_LIMIT: Duration = Duration::from_secs(20);

/// Runs nft text through the `nft` command, killing it after `limit`. It
/// blocks its caller: the daemon runs it on tokio's blocking pool, off
/// the loop (`super::Nft`), except when stopping.
pub(super) fn nft_command(cmds: &str, limit: Duration) -> Result<String, String> {
    let mut nft = Command::new("nft");
    nft.args(["-f", "-"]);
    run_bounded(nft, cmds, limit)
}

/// Runs `cmd` with `input` on its stdin; its stdout, or its stderr if it
/// fails, or an error once `limit` has passed and it was killed.
fn run_bounded(mut cmd: Command, input: &str, limit: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let text = input.to_string();
    // Fed and waited for on a thread of its own, so that this one can
    // give up after `limit`.
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("nft".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            if let Some(mut stdin) = stdin {
                // a failed write shows as nft's own error
                let _ = stdin.write_all(text.as_bytes());
            }
            let _ = tx.send(child.wait_with_output());
        });
    let outcome = match waiter {
        Ok(_) => rx.recv_timeout(limit).ok(),
        Err(e) => {
            log::warn!("waiting for nft: {e}");
            None
        }
    };
    let Some(out) = outcome else {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) on the pid of the child spawned above, whose
            // waiter has not reaped it (it would have answered).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        return Err(format!(
            "nft did not finish within {} ms and was killed",
            limit.as_millis()
        ));
    };
    let out = out.map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The first line of an nft error, for logs and SOAP failures.
pub(super) fn first_line(e: &str) -> String {
    e.lines().next().unwrap_or("nft failed").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_fed_and_answers() {
        let r = run_bounded(Command::new("cat"), "add table inet x\n", NFT_LIMIT);
        assert_eq!(r.as_deref(), Ok("add table inet x\n"));
        let mut fails = Command::new("sh");
        fails.args(["-c", "echo 'Error: no such file' >&2; exit 1"]);
        assert_eq!(
            run_bounded(fails, "", NFT_LIMIT).map_err(|e| first_line(&e)),
            Err("Error: no such file".into())
        );
    }

    /// A hung command is killed at the limit instead of holding its
    /// caller.
    #[test]
    fn a_hung_command_is_killed_at_the_limit() {
        let t = std::time::Instant::now();
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        let r = run_bounded(sleep, "", Duration::from_millis(200));
        assert!(r.as_ref().is_err_and(|e| e.contains("killed")), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
