//! Logs in Loki. `logql` is the little LogQL obsbox needs itself; `query`
//! is the client of Loki's query API behind the Logs page.

pub mod logql;
pub mod query;
