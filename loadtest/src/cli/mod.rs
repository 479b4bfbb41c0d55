//! The `loadtest` command: flags ([`args`]), running a scenario ([`scenario`]), the live
//! progress bar ([`progress`]) and the final report ([`report`]).

pub mod args;
pub mod progress;
pub mod report;
pub mod scenario;
