//! The one event loop.
