//! The log filter: what `RUST_LOG` asks for, with the libraries that would print secrets held
//! below the level where they do, whatever `RUST_LOG` says.

use tracing_subscriber::EnvFilter;

/// The log filter when `RUST_LOG` is not set.
pub const DEFAULT_LOG_FILTER: &str = "info,str0m=warn,dimpl=warn";

/// Targets that print secrets, and the most they may log. tungstenite traces every frame it
/// sends or receives (joins carry signatures, SDPs carry ICE passwords); str0m's ICE agent
/// (`is`) logs the remote ICE credentials at debug.
const CAPS: [(&str, &str); 3] = [
    ("tungstenite", "debug"),
    ("tokio_tungstenite", "debug"),
    ("is", "info"),
];

/// Levels from quietest to most verbose, as `RUST_LOG` spells them.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn rank(level: &str) -> Option<usize> {
    LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(level.trim()))
}

/// One directive of `RUST_LOG` as (target, level rank); the target is empty for a global
/// level, and a target named alone means trace.
fn directive(d: &str) -> (String, usize) {
    let (target, level) = match d.split_once('=') {
        Some((t, l)) => (t, rank(l).unwrap_or(LEVELS.len() - 1)),
        None => match rank(d) {
            Some(r) => ("", r),
            None => (d, LEVELS.len() - 1),
        },
    };
    let target = target.split('[').next().unwrap_or("").trim().to_string();
    (target, level)
}

/// Whether `target` is `root` or a module inside it.
fn within(target: &str, root: &str) -> bool {
    target == root
        || target
            .strip_prefix(root)
            .is_some_and(|r| r.starts_with("::"))
}

/// The filter for `spec` (the value of `RUST_LOG`; None, empty or invalid: the default). A
/// capped target gets the level `spec` gives it (or anything in it), lowered to its cap:
/// no spelling of `RUST_LOG` raises it past the cap, and a quieter one stays quieter.
pub fn log_filter(spec: Option<&str>) -> EnvFilter {
    let spec = spec
        .filter(|s| !s.trim().is_empty() && EnvFilter::try_new(s).is_ok())
        .unwrap_or(DEFAULT_LOG_FILTER);
    let parsed: Vec<(String, usize, &str)> = spec
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            let (t, l) = directive(d);
            (t, l, d)
        })
        .collect();
    let mut directives: Vec<String> = parsed
        .iter()
        .filter(|(t, _, _)| !CAPS.iter().any(|(root, _)| within(t, root)))
        .map(|(_, _, d)| d.to_string())
        .collect();
    for (root, cap) in CAPS {
        let inside = parsed
            .iter()
            .filter(|(t, _, _)| within(t, root))
            .map(|(_, l, _)| *l)
            .max();
        // Else the most specific directive around it, or the global level (error if none,
        // as EnvFilter has it).
        let around = || {
            parsed
                .iter()
                .filter(|(t, _, _)| t.is_empty() || within(root, t))
                .max_by_key(|(t, _, _)| t.len())
                .map_or(1, |(_, l, _)| *l)
        };
        let level = inside.unwrap_or_else(around).min(rank(cap).unwrap_or(0));
        directives.push(format!("{root}={}", LEVELS[level]));
    }
    EnvFilter::try_new(directives.join(",")).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The messages `spec` lets through of one event per (target, level) below.
    fn passed(spec: Option<&str>) -> Vec<String> {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(log_filter(spec))
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "tungstenite::protocol", "tungstenite-trace");
            tracing::debug!(target: "tungstenite::protocol", "tungstenite-debug");
            tracing::debug!(target: "is::agent", "is-debug");
            tracing::info!(target: "is::agent", "is-info");
            tracing::trace!(target: "voipchat_core::engine", "core-trace");
            tracing::info!(target: "voipchat_server", "server-info");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        [
            "tungstenite-trace",
            "tungstenite-debug",
            "is-debug",
            "is-info",
            "core-trace",
            "server-info",
        ]
        .into_iter()
        .filter(|m| text.contains(m))
        .map(str::to_string)
        .collect()
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_spelling_of_rust_log_lets_the_secret_printing_levels_through() {
        let all = ["tungstenite-debug", "is-info", "core-trace", "server-info"];
        assert_eq!(passed(Some("trace")), all);
        assert_eq!(
            passed(Some(
                "trace,tungstenite=trace,is::agent=trace,tokio_tungstenite=trace"
            )),
            all
        );
        assert_eq!(
            passed(Some("is[span]=trace,tungstenite::protocol=trace,trace")),
            all
        );
    }

    #[test]
    fn the_default_stands_for_an_unset_empty_or_invalid_rust_log() {
        for spec in [None, Some(""), Some("  "), Some("=[")] {
            assert_eq!(passed(spec), ["is-info", "server-info"], "{spec:?}");
        }
        // Lower levels asked for stay lower.
        assert_eq!(passed(Some("warn")), Vec::<String>::new());
        assert_eq!(
            passed(Some("trace,tungstenite=warn,is=off")),
            ["core-trace", "server-info"]
        );
    }
}
