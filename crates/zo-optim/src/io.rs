//! Little-endian helpers for optimizer-state files.

use std::io::{Error, ErrorKind, Read, Result, Write};

/// Writes a u64 (little endian).
pub(crate) fn write_u64(w: &mut dyn Write, x: u64) -> Result<()> {
    w.write_all(&x.to_le_bytes())
}

/// Reads a u64 (little endian).
pub(crate) fn read_u64(r: &mut dyn Read) -> Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Writes a length-prefixed UTF-8 string.
pub(crate) fn write_str(w: &mut dyn Write, s: &str) -> Result<()> {
    write_u64(w, s.len() as u64)?;
    w.write_all(s.as_bytes())
}

/// Reads a length-prefixed UTF-8 string (at most 1 MiB).
pub(crate) fn read_str(r: &mut dyn Read) -> Result<String> {
    let n = read_u64(r)? as usize;
    if n > 1 << 20 {
        return Err(Error::new(ErrorKind::InvalidData, "string too long"));
    }
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(|e| Error::new(ErrorKind::InvalidData, e))
}

/// Writes a f32 slice (length-prefixed, little endian, bit-exact).
pub(crate) fn write_f32s(w: &mut dyn Write, v: &[f32]) -> Result<()> {
    write_u64(w, v.len() as u64)?;
    let mut buf = Vec::with_capacity(v.len().min(1 << 16) * 4);
    for c in v.chunks(1 << 16) {
        buf.clear();
        for x in c {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Reads a f32 slice written by [`write_f32s`].
pub(crate) fn read_f32s(r: &mut dyn Read) -> Result<Vec<f32>> {
    let n = read_u64(r)? as usize;
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; 1 << 18];
    while out.len() < n {
        let take = (n - out.len()).min(buf.len() / 4);
        r.read_exact(&mut buf[..take * 4])?;
        out.extend(
            buf[..take * 4]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    Ok(out)
}

/// Writes a state map (per parameter name, k buffers).
pub(crate) fn write_state(w: &mut dyn Write, m: &crate::pass::StateMap) -> Result<()> {
    write_u64(w, m.len() as u64)?;
    for (name, bufs) in m {
        write_str(w, name)?;
        write_u64(w, bufs.len() as u64)?;
        for b in bufs {
            write_f32s(w, b)?;
        }
    }
    Ok(())
}

/// Reads a state map written by [`write_state`].
pub(crate) fn read_state(r: &mut dyn Read) -> Result<crate::pass::StateMap> {
    let n = read_u64(r)? as usize;
    let mut m = crate::pass::StateMap::new();
    for _ in 0..n {
        let name = read_str(r)?;
        let k = read_u64(r)? as usize;
        let mut bufs = Vec::with_capacity(k);
        for _ in 0..k {
            bufs.push(read_f32s(r)?);
        }
        m.insert(name, bufs);
    }
    Ok(m)
}
