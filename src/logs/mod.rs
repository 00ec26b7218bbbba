//! Logs: the ways logs come in from the LAN (a syslog receiver and a
//! Loki-compatible push endpoint), each writing to its own spool on disk
//! for the shipper to push to Loki.

pub mod ingest;
pub mod intake;
pub mod proto;
pub mod senders;
pub mod spool;
pub mod syslog;

pub use ingest::{Ingest, IngestContext};
