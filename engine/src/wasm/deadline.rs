//! Running a guest call on the calling thread with a wall-clock deadline
//! that also covers time spent blocked in host calls.
//!
//! Epoch interruption only fires while wasm code runs: a guest that sleeps,
//! or polls something that never becomes ready, is waiting inside WASI's
//! host implementation, where no epoch check happens. So calls are made
//! through wasmtime's async API: a guest blocked in a host call is a
//! pending future, and dropping that future at the deadline abandons the
//! call (the instance is then discarded, as after any failed call).
//!
//! Pure computation never returns `Pending`, so it is still the epoch
//! deadline that stops a spinning guest; the two together bound every call.

use std::future::Future;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Drives the timers (and any I/O) of WASI's host futures. One small
/// runtime for every stage of the process: calls themselves run on their
/// own stage threads; this only wakes them.
static HOST_RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-wasi")
        .enable_all()
        .build()
        // Without it no guest can be called at all; nothing sensible to fall back to.
        .expect("cannot start the runtime for WASI host calls")
});

/// The deadline passed while the guest was blocked in a host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocked {
    pub waited: Duration,
}

/// Runs `call` to completion on this thread, or gives up on it at
/// `deadline` if it is then waiting in a host call.
///
/// A call that completes without ever waiting (the common case) costs one
/// poll and no timer; the timer is armed only when the guest first blocks.
pub(crate) fn run_until<F: Future>(deadline: Instant, call: F) -> Result<F::Output, Blocked> {
    let started = Instant::now();
    // Host futures create tokio timers; they find this runtime through the
    // context entered here.
    let _context = HOST_RUNTIME.enter();
    let mut call = pin!(call);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    futures_executor::block_on(std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = call.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Blocked { waited: started.elapsed() })),
            Poll::Pending => Poll::Pending,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_call_returns_its_output() {
        let output = run_until(Instant::now() + Duration::from_secs(1), async { 7 });
        assert_eq!(output, Ok(7));
    }

    #[test]
    fn a_blocked_call_is_abandoned_at_the_deadline() {
        let started = Instant::now();
        let output = run_until(Instant::now() + Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            7
        });
        assert!(output.is_err());
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn works_on_a_thread_inside_another_runtime() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let output = runtime.block_on(async {
            tokio::task::spawn_blocking(|| {
                run_until(Instant::now() + Duration::from_millis(20), std::future::pending::<()>())
            })
            .await
            .unwrap()
        });
        assert!(output.is_err());
    }
}
