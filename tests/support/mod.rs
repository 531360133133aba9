//! Helpers shared by integration tests. Each test binary uses a different
//! subset, hence the allowance.
#![allow(dead_code)]

pub mod netifd;
pub mod pcp_client;
pub mod ubusd;
pub mod wire;
