//! The epoch ticker: what makes a call's `timeout_ms` run out.
//!
//! Wasmtime checks a call's epoch deadline in the guest's code; something
//! has to advance the epoch. The ticker does so every [`EPOCH_TICK`], but
//! only while a call (or an instantiation) is running: an idle engine would
//! otherwise wake a thousand times a second for nothing (1.4 % of a core,
//! measured on an idle `sluice serve`). Deadlines are set relative to the
//! epoch when a call starts, so the ticks skipped while idle change nothing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances while calls run; the granularity of `timeout_ms`.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Advances one engine's epoch while any call on it runs.
pub(crate) struct EpochTicker {
    engine: Engine,
    /// Calls and instantiations running now.
    running: AtomicUsize,
    stop: Arc<AtomicBool>,
    thread: OnceLock<Thread>,
}

impl EpochTicker {
    /// Starts the ticker's thread; it ends once `stop` is set.
    pub(crate) fn start(engine: Engine, stop: Arc<AtomicBool>) -> Arc<EpochTicker> {
        let ticker =
            Arc::new(EpochTicker { engine, running: AtomicUsize::new(0), stop, thread: OnceLock::new() });
        let ticking = ticker.clone();
        let spawned = std::thread::Builder::new().name("sluice-epoch".into()).spawn(move || ticking.run());
        match spawned {
            // Set before any call can start: calls reach the ticker only
            // through the runtime this returns to.
            Ok(handle) => ticker.thread.get_or_init(|| handle.thread().clone()),
            // Without the ticker no call can time out: fail loudly at start-up.
            Err(e) => panic!("cannot start the epoch ticker thread: {e}"),
        };
        ticker
    }

    fn run(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            if self.running.load(Ordering::SeqCst) == 0 {
                // The next call unparks; an unpark that comes before the
                // park makes it return at once. The timeout only bounds how
                // late `stop` is noticed.
                std::thread::park_timeout(Duration::from_secs(1));
                continue;
            }
            std::thread::sleep(EPOCH_TICK);
            self.engine.increment_epoch();
        }
    }

    /// Keeps the epoch advancing until the returned guard is dropped.
    pub(crate) fn running(&self) -> Ticking<'_> {
        if self.running.fetch_add(1, Ordering::SeqCst) == 0 {
            self.wake();
        }
        Ticking { ticker: self }
    }

    /// Wakes the thread: a call started, or the host is going away.
    pub(crate) fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// A call in progress, for the ticker.
pub(crate) struct Ticking<'a> {
    ticker: &'a EpochTicker,
}

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.ticker.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `engine`'s epoch advances within `over`.
    fn epoch_moves(engine: &Engine, over: Duration) -> bool {
        // The epoch itself is not readable; a store's deadline is, relative
        // to it: a deadline of 1 tick set now has passed once the epoch moved.
        let mut store = wasmtime::Store::new(engine, ());
        store.set_epoch_deadline(1);
        // (module (func (export "f"))): a function entry checks the deadline.
        const MODULE: &[u8] = &[
            0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
            0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // types: () -> ()
            0x03, 0x02, 0x01, 0x00, // functions: one of type 0
            0x07, 0x05, 0x01, 0x01, b'f', 0x00, 0x00, // exports: "f"
            0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: an empty body
        ];
        let module = wasmtime::Module::new(engine, MODULE).unwrap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance.get_typed_func::<(), ()>(&mut store, "f").unwrap();
        std::thread::sleep(over);
        f.call(&mut store, ()).is_err()
    }

    #[test]
    fn the_epoch_moves_only_while_a_call_runs() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = EpochTicker::start(engine.clone(), stop.clone());
        assert!(!epoch_moves(&engine, Duration::from_millis(50)), "idle: no ticks");
        {
            let _call = ticker.running();
            assert!(epoch_moves(&engine, Duration::from_millis(50)), "a call runs: ticks");
        }
        // The ticker may finish the tick it was in.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!epoch_moves(&engine, Duration::from_millis(50)), "idle again: no ticks");
        stop.store(true, Ordering::Relaxed);
        ticker.wake();
    }
}
