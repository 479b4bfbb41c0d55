//! Benchmarks of the SFU.
//!
//! - criterion micro-benchmarks of the per-packet work in `benches/packet_path.rs`:
//!   `cargo bench -p sfu-benches --bench packet_path`;
//! - the fan-out macro benchmark, binary `fanout` (see [`fanout`]): the real `sfu` process
//!   forwarding one publisher to N subscribers, CPU per forwarded packet:
//!   `cargo run --release -p sfu-benches --bin fanout`.

pub mod conference;
pub mod fanout;
pub mod janus_process;
pub mod prom;
pub mod sfu_process;
