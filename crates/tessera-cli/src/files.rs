//! File I/O at the CLI edge: tensors in and out as `.npy`, every write
//! atomic (temp file + rename) so a failure never leaves half a file.

use std::path::Path;

use anyhow::{Context, Result};
use tessera_graph::{npy, Tensor};

/// Reads an f32 `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    npy::decode(&bytes).with_context(|| format!("{}", path.display()))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

/// Writes a tensor as `.npy`, atomically.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    write_atomic(path, &npy::encode(t))
}
