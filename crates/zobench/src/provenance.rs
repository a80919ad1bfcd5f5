//! Provenance and measurement helpers: peak memory, git commit, CPU model, time stamps.

use crate::registry::project_root;
use std::process::Command;

/// Peak resident set size of this process (`VmHWM` of `/proc/self/status`), in bytes;
/// `None` where `/proc` is unavailable.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak-RSS high-water mark of this process (writes `5` to
/// `/proc/self/clear_refs`, Linux ≥ 4.0); returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `git rev-parse HEAD` of the project checkout (with `-dirty` when the tree has changes),
/// or `unknown`.
pub fn git_commit() -> String {
    let root = project_root();
    let head = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["rev-parse", "HEAD"])
        .output();
    match head {
        Ok(o) if o.status.success() => {
            let mut c = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let dirty = Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["status", "--porcelain", "--untracked-files=no"])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            if dirty {
                c.push_str("-dirty");
            }
            c
        }
        _ => "unknown".into(),
    }
}

/// CPU model name from `/proc/cpuinfo`, or `unknown`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Current UTC time, RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Crate versions recorded with every result.
pub fn versions() -> std::collections::BTreeMap<String, String> {
    [("zobench", env!("CARGO_PKG_VERSION")), ("burn", "0.22.1")]
        .into_iter()
        .map(|(a, b)| (a.into(), b.into()))
        .collect()
}
