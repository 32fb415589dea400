//! When a stage stops calling its module: a failure ratio over a window
//! of recent records, so that poison records (a few bad inputs, each
//! dead-lettered) never stop a pipeline, while a broken module (one that
//! crashes on most of what it is given) is caught within a bounded number
//! of records.
//!
//! Only crashes count: a trap, timeout, out-of-memory, stack overflow,
//! panic, exhausted fuel or invalid output. A record the transform refuses
//! with a typed error is the record's fault, by the transform's own word.
//!
//! A quarantined stage holds the records it has not processed and takes
//! nothing new, so the pipeline stops reading and the source commits no
//! offset past them; deploying a fixed version resumes with those records.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// `[stage.quarantine]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineConfig {
    /// How many of the most recent records the ratio is measured over.
    #[serde(default = "default_window")]
    pub window: u32,
    /// The policy acts only once the window holds this many records, so
    /// the first bad records of a fresh stage do not quarantine it.
    #[serde(default = "default_min_records")]
    pub min_records: u32,
    /// Quarantine when at least this fraction of the window's records made
    /// the module crash.
    #[serde(default = "default_failure_ratio")]
    pub failure_ratio: f64,
}

fn default_window() -> u32 {
    1000
}
fn default_min_records() -> u32 {
    100
}
fn default_failure_ratio() -> f64 {
    0.5
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            window: default_window(),
            min_records: default_min_records(),
            failure_ratio: default_failure_ratio(),
        }
    }
}

impl QuarantineConfig {
    /// A policy that never quarantines (one-off runs such as `sluice transform`).
    pub fn never() -> Self {
        QuarantineConfig { window: 1, min_records: 1, failure_ratio: f64::INFINITY }
    }

    /// What is wrong with the numbers, as (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.window == 0 {
            problems.push(("window", "must be at least 1".to_string()));
        }
        if self.min_records == 0 || self.min_records > self.window {
            problems.push(("min_records", format!("must be between 1 and window ({})", self.window)));
        }
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            problems.push(("failure_ratio", "must be above 0 and at most 1".to_string()));
        }
        problems
    }
}

/// The outcomes of a stage's most recent records, kept as runs so that a
/// batch of good records costs the same however large it is.
#[derive(Debug)]
pub struct FailureWindow {
    config: QuarantineConfig,
    /// (crashed, how many in a row), oldest first.
    runs: VecDeque<(bool, u32)>,
    len: u32,
    failures: u32,
}

impl FailureWindow {
    pub fn new(config: QuarantineConfig) -> Self {
        FailureWindow { config, runs: VecDeque::new(), len: 0, failures: 0 }
    }

    /// Counts `records` that went through without a crash.
    pub fn passed(&mut self, records: usize) {
        // More than a window's worth would only push itself out again.
        self.push(false, records.min(self.config.window as usize) as u32);
    }

    /// Counts one record that made the module crash; returns whether the
    /// stage must now be quarantined.
    pub fn crashed(&mut self) -> bool {
        self.push(true, 1);
        self.len >= self.config.min_records
            && f64::from(self.failures) >= self.config.failure_ratio * f64::from(self.len)
    }

    /// The failure ratio of the window now.
    pub fn ratio(&self) -> f64 {
        if self.len == 0 { 0.0 } else { f64::from(self.failures) / f64::from(self.len) }
    }

    /// Starts over (a new module version was deployed).
    pub fn reset(&mut self) {
        self.runs.clear();
        self.len = 0;
        self.failures = 0;
    }

    fn push(&mut self, crashed: bool, count: u32) {
        if count == 0 {
            return;
        }
        match self.runs.back_mut() {
            Some((kind, run)) if *kind == crashed => *run += count,
            _ => self.runs.push_back((crashed, count)),
        }
        self.len += count;
        if crashed {
            self.failures += count;
        }
        while self.len > self.config.window {
            let Some((kind, run)) = self.runs.front_mut() else { break };
            let out = (*run).min(self.len - self.config.window);
            *run -= out;
            self.len -= out;
            if *kind {
                self.failures -= out;
            }
            if *run == 0 {
                self.runs.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(window: u32, min_records: u32, failure_ratio: f64) -> FailureWindow {
        FailureWindow::new(QuarantineConfig { window, min_records, failure_ratio })
    }

    #[test]
    fn scattered_poison_records_never_quarantine() {
        let mut window = FailureWindow::new(QuarantineConfig::default());
        // One crash in every hundred records, for a hundred thousand records.
        for _ in 0..1000 {
            window.passed(99);
            assert!(!window.crashed());
        }
        assert!(window.ratio() < 0.02);
    }

    #[test]
    fn a_module_that_crashes_on_everything_is_caught_at_min_records() {
        let mut window = FailureWindow::new(QuarantineConfig::default());
        let crashes_until_quarantine = (1..).find(|_| window.crashed()).unwrap();
        assert_eq!(crashes_until_quarantine, 100);
    }

    #[test]
    fn the_ratio_is_over_the_recent_records_only() {
        let mut window = policy(10, 4, 0.5);
        for _ in 0..4 {
            window.crashed();
        }
        window.passed(10); // the crashes leave the window
        assert_eq!(window.ratio(), 0.0);
        assert!(!window.crashed());
        window.reset();
        assert_eq!(window.ratio(), 0.0);
    }

    #[test]
    fn never_never_quarantines() {
        let mut window = FailureWindow::new(QuarantineConfig::never());
        assert!((0..10_000).all(|_| !window.crashed()));
    }

    #[test]
    fn bad_numbers_are_reported_by_field() {
        let fields: Vec<&str> = QuarantineConfig { window: 0, min_records: 5, failure_ratio: 1.5 }
            .problems()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(fields, ["window", "min_records", "failure_ratio"]);
        assert!(QuarantineConfig::default().problems().is_empty());
    }
}
