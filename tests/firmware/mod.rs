//! Helpers of the QEMU firmware test (`tests/firmware_qemu.rs`).
pub mod guest;
pub mod image;
pub mod ntp;
pub mod qemu;
