//! Reading HF `model.safetensors` files into f32 host buffers.

use crate::error::ModelError;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Float tensors of a checkpoint, converted to f32, keyed by HF name.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file they came from.
    pub path: PathBuf,
    /// name → (shape, row-major f32 values).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// Names of tensors that were skipped because they are not floating point (e.g. BERT's
    /// int64 `embeddings.position_ids` buffer).
    pub skipped: Vec<String>,
}

impl Checkpoint {
    /// Removes and returns tensor `name`, checking its shape.
    ///
    /// # Errors
    /// [`ModelError::MissingTensor`] or [`ModelError::Shape`].
    pub fn take(
        &mut self,
        name: &str,
        shape: &[usize],
        family: &str,
    ) -> Result<Vec<f32>, ModelError> {
        let Some((got, v)) = self.tensors.remove(name) else {
            return Err(ModelError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
                family: family.into(),
            });
        };
        if got != shape {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                name: name.into(),
                expected: shape.to_vec(),
                got,
            });
        }
        Ok(v)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.into(),
        source,
    })
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>, ModelError> {
    SafeTensors::deserialize(bytes).map_err(|e| ModelError::Corrupt {
        path: path.into(),
        msg: e.to_string(),
    })
}

/// Loads every floating-point tensor of a `.safetensors` file (F32, F16, BF16, F64) as f32.
/// Non-float tensors are listed in [`Checkpoint::skipped`], not an error.
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be read, [`ModelError::Corrupt`] if it is not a valid
/// safetensors file (truncated, bad header, data out of range).
pub fn load_safetensors(path: &Path) -> Result<Checkpoint, ModelError> {
    let bytes = read(path)?;
    let st = parse(path, &bytes)?;
    let mut tensors = BTreeMap::new();
    let mut skipped = Vec::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
            _ => {
                skipped.push(name);
                continue;
            }
        };
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok(Checkpoint {
        path: path.into(),
        tensors,
        skipped,
    })
}

/// Checks that `path` is a readable, well-formed safetensors file (header and data extents),
/// without converting any tensor. Used to reject a bad checkpoint before a sweep starts.
///
/// # Errors
/// [`ModelError::Io`] or [`ModelError::Corrupt`], naming the file.
pub fn check_safetensors(path: &Path) -> Result<usize, ModelError> {
    let bytes = read(path)?;
    let st = parse(path, &bytes)?;
    Ok(st.len())
}
