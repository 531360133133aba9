//! Tasks on the daemon's thread, all of one future type.
//!
//! tokio instantiates its task machinery (poll, complete, cancel,
//! dealloc…) once per future type spawned: ≈ 1 KiB of code each. Boxed
//! behind one `dyn Future`, every task the daemon spawns on its thread
//! shares one instantiation (issue 15 item 3: the daemon's size).

use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinHandle;

/// A task's future, boxed: the one type the daemon hands to tokio.
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// `f` as a [`Task`], for [`tokio::task::JoinSet::spawn_local`].
pub fn boxed(f: impl Future<Output = ()> + 'static) -> Task {
    Box::pin(f)
}

/// [`tokio::task::spawn_local`] of `f` as a [`Task`].
#[allow(clippy::disallowed_methods)] // the one place it is called
pub fn spawn_local(f: impl Future<Output = ()> + 'static) -> JoinHandle<()> {
    tokio::task::spawn_local(boxed(f))
}
