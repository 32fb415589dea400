//! A transform that misbehaves on command, to prove the host survives it.
//!
//! Each record's value picks the misbehaviour; any other value passes
//! through, so tests can check that the records after a bad one are fine.
//! `init` rejects a config with `reject = true`. A few values (`clock`,
//! `file`, `env`, `network`) instead report what the sandbox lets through.

use std::hint::black_box;

use sluice_guest::{Config, Error, Output, Record, Transform};

struct Hostile;

impl Transform for Hostile {
    fn init(config: &Config) -> Result<Self, String> {
        if config.get_bool("reject")? == Some(true) {
            return Err("reject = true: this config is refused on purpose".into());
        }
        Ok(Hostile)
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
        match record.value() {
            b"loop" => spin_forever(),
            b"oom" => grow_forever(),
            b"recurse" => {
                black_box(recurse(black_box(1)));
            }
            // `trap`, or `trap` and more (`trap 17`: a numbered one).
            v if v.starts_with(b"trap") => core::arch::wasm32::unreachable(),
            b"smash" => smash_memory(),
            b"panic" => panic!("hostile guest panicked on purpose"),
            // Blocked in a host call, where no epoch check can fire.
            b"sleep" => std::thread::sleep(std::time::Duration::from_secs(30)),
            b"poll" => poll_forever(),
            b"amplify" => {
                out.push(vec![b'x'; 100 * record.value().len()]);
            }
            // 100 copies that keep the input's value: the sink gets 100x the
            // input while the guest's output buffer stays empty.
            b"echo" => (0..100).for_each(|_| out.forward(record)),
            b"reject" => return Err(Error::new("refused", "the value was `reject`")),
            // Probes of the sandbox: they report what the guest can reach.
            b"clock" => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                out.push(now.map_or(0, |d| d.as_secs()).to_string());
            }
            b"file" => {
                let result = std::fs::read("/etc/hostname").map(|_| "read".to_string());
                out.push(result.unwrap_or_else(|e| format!("denied: {e}")));
            }
            b"hash" => {
                let digest = sluice_guest::hash::sha256(b"abc");
                let by = if sluice_guest::hash::host_granted() { "host" } else { "guest" };
                out.push(format!("{by} {:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2], digest[3]));
            }
            b"env" => {
                out.push(format!("{} variables", std::env::vars().count()));
            }
            b"network" => {
                let result = std::net::TcpStream::connect("127.0.0.1:9").map(|_| "connected".to_string());
                out.push(result.unwrap_or_else(|e| format!("denied: {e}")));
            }
            _ => out.forward(record),
        }
        Ok(())
    }
}

fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn grow_forever() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        black_box(&hoard);
    }
}

/// Waits on a pollable that can never become ready: an instant beyond
/// what the host's clock can represent.
fn poll_forever() {
    let never = wasi::clocks::monotonic_clock::subscribe_instant(u64::MAX);
    wasi::io::poll::poll(&[&never]);
}

/// Recursion whose frames live on the wasm stack (no locals in linear
/// memory), so it overflows the engine's `max_wasm_stack`.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(black_box(depth))
}

/// Writes far outside linear memory: an out-of-bounds trap.
fn smash_memory() {
    let address = black_box(u32::MAX as usize - 8) as *mut u64;
    // SAFETY: none; the point is to make the host trap.
    unsafe { address.write_volatile(1) };
}

sluice_guest::export_transform!(Hostile);
