//! Text → padded id batches with the `tokenizers` crate, from a checkpoint's `tokenizer.json`.
//!
//! Padding and truncation settings stored in the file are switched off (transformers ignores
//! them when called on a batch; the MiniLM file fixes both at 128); batches are right-padded
//! to their longest row with the tokenizer's pad id and truncated at `max_length` tokens.

use crate::error::ModelError;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// A tokenizer loaded from `tokenizer.json`.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pad_id: u32,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({})", self.path.display())
    }
}

/// Right-padded ids of a batch, row-major `[rows, cols]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBatch {
    /// Token ids.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids (0 for the first text, 1 for the second of a pair).
    pub token_type_ids: Vec<i64>,
    /// Rows B.
    pub rows: usize,
    /// Columns T (longest row).
    pub cols: usize,
}

impl EncodedBatch {
    /// Builds a batch from unpadded rows of ids (type ids all 0), right-padded with `pad_id`.
    pub fn from_rows(rows: &[Vec<i64>], pad_id: i64) -> Self {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut b = EncodedBatch {
            input_ids: vec![],
            attention_mask: vec![],
            token_type_ids: vec![],
            rows: rows.len(),
            cols,
        };
        for r in rows {
            for j in 0..cols {
                b.input_ids.push(r.get(j).copied().unwrap_or(pad_id));
                b.attention_mask.push(i64::from(j < r.len()));
                b.token_type_ids.push(0);
            }
        }
        b
    }

    /// `(input_ids, attention_mask, token_type_ids)` as `[B, T]` int tensors on `device`.
    pub fn tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
        let mk = |v: &Vec<i64>| {
            Tensor::<2, Int>::from_data(TensorData::new(v.clone(), [self.rows, self.cols]), device)
        };
        (
            mk(&self.input_ids),
            mk(&self.attention_mask),
            mk(&self.token_type_ids),
        )
    }

    /// Number of real (non-pad) tokens.
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    ///
    /// # Errors
    /// [`ModelError::Io`] if missing, [`ModelError::Tokenizer`] if it does not parse.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        if !path.exists() {
            return Err(ModelError::Io {
                path: path.into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.into(),
            msg: e.to_string(),
        })?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer {
                path: path.into(),
                msg: e.to_string(),
            })?;
        Ok(Self {
            inner,
            path: path.into(),
            pad_id,
        })
    }

    /// The pad id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Ids of one text, without truncation; with the tokenizer's special tokens (e.g. BERT's
    /// `[CLS] … [SEP]`, a LLaMA BOS) when `add_special_tokens`.
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] if the tokenizer fails on the text.
    pub fn encode_ids(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>, ModelError> {
        let e = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        Ok(e.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// The text of `ids` (special tokens kept).
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] if an id is outside the vocabulary.
    pub fn decode(&self, ids: &[i64]) -> Result<String, ModelError> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner
            .decode(&ids, false)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })
    }

    /// Encodes single texts (or text pairs when `pairs` is `Some`) with special tokens,
    /// truncated to `max_length` tokens, right-padded to the longest.
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] if the tokenizer fails on an input.
    pub fn encode(
        &self,
        texts: &[&str],
        pairs: Option<&[&str]>,
        max_length: usize,
    ) -> Result<EncodedBatch, ModelError> {
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams {
            max_length,
            ..Default::default()
        }))
        .map_err(|e| ModelError::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        let encs = match pairs {
            Some(p) => {
                let inputs: Vec<tokenizers::EncodeInput> = texts
                    .iter()
                    .zip(p)
                    .map(|(a, b)| (a.to_string(), b.to_string()).into())
                    .collect();
                tok.encode_batch(inputs, true)
            }
            None => tok.encode_batch(
                texts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                true,
            ),
        }
        .map_err(|e| ModelError::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        let cols = encs.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let mut b = EncodedBatch {
            input_ids: vec![],
            attention_mask: vec![],
            token_type_ids: vec![],
            rows: encs.len(),
            cols,
        };
        for e in &encs {
            let n = e.get_ids().len();
            for j in 0..cols {
                if j < n {
                    b.input_ids.push(i64::from(e.get_ids()[j]));
                    b.attention_mask.push(1);
                    b.token_type_ids.push(i64::from(e.get_type_ids()[j]));
                } else {
                    b.input_ids.push(i64::from(self.pad_id));
                    b.attention_mask.push(0);
                    b.token_type_ids.push(0);
                }
            }
        }
        Ok(b)
    }
}
