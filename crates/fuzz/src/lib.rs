//! Fuzz entry points: each takes arbitrary bytes, drives one part of voipchat that reads
//! untrusted input, and panics only when a property of that part breaks (never on the
//! input alone). They live in an ordinary crate so every build compiles them and
//! `cargo test -p voipchat-fuzz` runs them over seeded inputs; `fuzz/` (cargo-fuzz) runs the
//! same functions under libFuzzer, and `scripts/fuzz.sh` does that for a bounded time.
//! A crash it finds is saved under `crates/fuzz/regressions/<target>/` and replayed by
//! `tests/regressions.rs` from then on.

pub mod engine;
mod input;
pub mod red;
pub mod signal;
pub mod signature;
pub mod store;

pub use input::Input;

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every entry point by name, as `fuzz/` and the tests call them.
pub const TARGETS: [(&str, Target); 7] = [
    ("client_frame", signal::client_frame),
    ("server_frame", signal::server_frame),
    ("signature", signature::signature),
    ("engine_datagrams", engine::datagrams),
    ("engine_signaling", engine::signaling),
    ("store_input", store::store_input),
    ("red_payload", red::red_payload),
];
