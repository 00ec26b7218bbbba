//! Logs into Loki: the shipper reads the box's log files (each child's
//! captured output, obsbox's own log, the spools of lines received from the
//! LAN) and pushes them to Loki, remembering on disk how far Loki has
//! acknowledged, so restarts of obsbox or Loki lose and repeat nothing.
//! `logql` is the little LogQL obsbox needs itself; `query` is the client of
//! Loki's query API behind the Logs page.

mod capture;
mod level;
pub mod logql;
mod own;
mod push;
pub mod query;
mod ship;
mod spool_reader;

pub use own::OwnLog;

/// The name obsbox's own log is kept and shipped under (`logs/obsbox/`,
/// `service="obsbox"`); no child may take it.
pub const OWN_NAME: &str = "obsbox";
pub use ship::{ShipStats, Shipper, ShipperContext};
