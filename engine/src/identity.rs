//! This engine's identity: an id kept in its data directory, so that an
//! engine restarted on the same directory is recognised as the same one.
//!
//! Other engines and the brokers see it: it names the hidden lake files
//! this engine writes (so that after a crash it deletes its own leftovers
//! at once, and leaves other engines' alone), and its static membership in
//! consumer groups (so that it takes its partitions back at once).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;

static ID: OnceLock<String> = OnceLock::new();

/// The engine's id: the one [`load_or_create`] read, or, in a process that
/// has no data directory (tests, `sluice test`), a random one.
pub fn engine_id() -> &'static str {
    ID.get_or_init(random_id)
}

/// Reads the id kept in `data_dir` (creating it the first time) and makes
/// it this process's [`engine_id`].
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<&'static str> {
    let path = data_dir.join("engine-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(text) if valid(text.trim()) => text.trim().to_string(),
        Ok(_) => anyhow::bail!("{} does not hold an engine id; delete it to make a new one", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
            let id = random_id();
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            id
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let set = ID.get_or_init(|| id.clone());
    anyhow::ensure!(*set == id, "the engine id was already chosen ({set})");
    Ok(set)
}

/// Locks `data_dir` for this process: two engines on one data directory
/// would run two brokers on one store and claim one identity. The lock is
/// released when the process exits, however it exits.
pub fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let path = data_dir.join("engine.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        anyhow::bail!(
            "another sluice engine (pid {}) uses the data directory {}; give this one another --data-dir",
            holder.trim().parse::<u32>().map_or("unknown".to_string(), |p| p.to_string()),
            data_dir.display()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

fn valid(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn random_id() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the process id and the time are unique enough here.
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&((now as u64) ^ u64::from(std::process::id()) << 40).to_le_bytes()[..6]);
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_checked_when_read() {
        assert!(super::valid("3fa9c2e01b7d"));
        assert!(!super::valid(""));
        assert!(!super::valid("../x"));
    }
}
