//! The `troth` binary's commands. Each module is one command; `cli` parses the
//! command line and dispatches.

pub mod bench;
pub mod bench_customer;
pub mod bench_tracking;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod eta_accuracy;
pub mod import;
pub mod serve;
pub mod simulate;
pub mod thread_cpu;
