//! Logs into Loki. The ways in from the LAN (`syslog`, a receiver of RFC
//! 5424/3164 messages, and `intake`, a Loki-compatible push endpoint) each
//! write to their own spool on disk (`spool`); the shipper reads the box's
//! log files (each child's captured output, obsbox's own log, the spools)
//! and pushes them to Loki, remembering on disk how far Loki has
//! acknowledged, so restarts of obsbox or Loki lose and repeat nothing.
//! `logql` is the little LogQL obsbox needs itself; `query` is the client of
//! Loki's query API behind the Logs page.

mod capture;
pub mod forward;
pub mod ingest;
pub mod intake;
mod level;
pub mod logql;
mod own;
pub mod proto;
mod push;
pub mod query;
pub mod senders;
mod ship;
pub mod spool;
mod spool_reader;
pub mod syslog;

pub use ingest::{Ingest, IngestContext};
pub use own::OwnLog;

/// The name obsbox's own log is kept and shipped under (`logs/obsbox/`,
/// `service="obsbox"`); no child may take it.
pub const OWN_NAME: &str = "obsbox";
pub use forward::{ForwardContext, Forwarders};
pub use ship::{Destination, ShipStats, Shipper, ShipperContext, SpoolHolds};
