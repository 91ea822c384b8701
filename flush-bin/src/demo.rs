//! `flushd --demo`: a queue directory and main.cf to try flushd on at once.

use anyhow::{Context as _, Result};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The demo's default directory.
pub const DEMO_DIR: &str = "/tmp/flushd-demo";

/// Queue IDs of the demo's deferred messages (for example.com).
pub const DEMO_QUEUE_IDS: [&str; 3] = ["D0E1A1", "D0E1A2", "D0E1A3"];

/// Creates (or reuses) the demo directory: `queue/` with deferred/,
/// incoming/, flush/ and public/, three deferred queue files, and a `conf/main.cf`
/// that makes example.com eligible. Returns the config directory.
///
/// # Errors
/// The directories or files cannot be created.
pub fn prepare(dir: Option<PathBuf>) -> Result<PathBuf> {
    let root = dir.unwrap_or_else(|| PathBuf::from(DEMO_DIR));
    let queue = root.join("queue");
    let conf = root.join("conf");
    for sub in ["deferred/D", "incoming", "flush", "public", "pid"] {
        fs::create_dir_all(queue.join(sub))
            .with_context(|| format!("create {}", queue.join(sub).display()))?;
    }
    fs::create_dir_all(&conf)?;
    for id in DEMO_QUEUE_IDS {
        let file = queue.join("deferred/D").join(id);
        if !file.exists() && !queue.join("incoming").join(id).exists() {
            fs::write(&file, b"demo queue file\n")?;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o700))?;
        }
    }
    let main_cf = format!(
        "# flushd demo configuration\nqueue_directory = {}\nrelay_domains = example.com\n",
        queue.display()
    );
    fs::write(conf.join("main.cf"), main_cf)?;
    log::info!(
        "demo: queue directory {}, eligible domain example.com, deferred IDs {}",
        queue.display(),
        DEMO_QUEUE_IDS.join(" ")
    );
    Ok(conf)
}
