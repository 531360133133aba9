//! How structure transactions (nft text) reach nftables: libnftables,
//! loaded with dlopen for the transactions of one restore and unloaded
//! after, or the `nft` command where only nftables' command-line package
//! is installed.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::Write as _;
use std::process::{Command, Stdio};

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
        trim_heap();
    }
}

/// Gives freed heap back to the system: glibc keeps it otherwise (after
/// libnftables' cache or a large batch). musl returns it by itself.
pub(super) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How structure transactions (text) reach nftables.
pub(super) enum Runner {
    /// libnftables, loaded for the transactions of one restore.
    Lib,
    /// The `nft` command.
    Cmd,
}

// SAFETY: a context is used by one thread at a time; it only moves to
// another thread to be freed after its last use (`Nft::release_lib`).
unsafe impl Send for LibNft {}

/// Runs nft text through the `nft` command.
pub(super) fn nft_command(cmds: &str) -> Result<String, String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(cmds.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
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
