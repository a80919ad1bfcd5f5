//! Named float parameters: the only view of a model that the optimizers need.

use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;

/// Errors of [`ParamStore`] construction and lookup.
#[derive(Debug, thiserror::Error)]
pub enum ParamStoreError {
    /// Two parameters were inserted under the same name.
    #[error("parameter `{0}` inserted twice")]
    Duplicate(String),
    /// The data length does not match the product of the shape.
    #[error("parameter `{name}`: {len} values do not fill shape {shape:?}")]
    BadLength {
        /// Parameter path.
        name: String,
        /// Number of values given.
        len: usize,
        /// Requested shape.
        shape: Vec<usize>,
    },
    /// A parameter name that is not in the store.
    #[error("no parameter named `{0}`")]
    Missing(String),
}

/// One named parameter: a flat f32 tensor of `shape.iter().product()` elements.
#[derive(Debug, Clone)]
pub struct Param {
    /// HF parameter path, e.g. `encoder.layer.0.attention.self.query.weight`.
    pub name: String,
    /// Logical shape in HF layout (e.g. `[out_features, in_features]` for a linear weight).
    pub shape: Vec<usize>,
    /// Values, row-major, as a rank-1 tensor of `numel()` elements.
    pub tensor: Tensor<1>,
    /// Whether optimizers may perturb and update it (set by the fine-tuning scheme).
    pub trainable: bool,
    /// Whether weight decay applies (false for biases and norm weights, as in MeZO).
    pub decay: bool,
}

impl Param {
    /// Number of scalars.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An ordered set of named parameters on one device.
///
/// Models keep only indices into a store, and their forward passes read tensors from it, so
/// an optimizer can change parameters in place while the model holds no borrow.
#[derive(Debug, Clone)]
pub struct ParamStore {
    params: Vec<Param>,
    index: HashMap<String, usize>,
    device: Device,
}

impl ParamStore {
    /// An empty store on `device`.
    pub fn new(device: Device) -> Self {
        Self {
            params: Vec::new(),
            index: HashMap::new(),
            device,
        }
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Inserts a trainable parameter from row-major f32 `values` of `shape`; returns its id.
    /// Weight decay is on unless the name ends in `bias` or contains `LayerNorm`/`norm`.
    ///
    /// # Errors
    /// [`ParamStoreError::Duplicate`] or [`ParamStoreError::BadLength`].
    pub fn insert(
        &mut self,
        name: &str,
        shape: &[usize],
        values: Vec<f32>,
    ) -> Result<usize, ParamStoreError> {
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(ParamStoreError::BadLength {
                name: name.into(),
                len: values.len(),
                shape: shape.to_vec(),
            });
        }
        if self.index.contains_key(name) {
            return Err(ParamStoreError::Duplicate(name.into()));
        }
        let tensor = Tensor::<1>::from_data(TensorData::new(values, [n]), &self.device);
        let lname = name.to_ascii_lowercase();
        let decay = !(lname.ends_with("bias") || lname.contains("norm"));
        let id = self.params.len();
        self.params.push(Param {
            name: name.into(),
            shape: shape.to_vec(),
            tensor,
            trainable: true,
            decay,
        });
        self.index.insert(name.into(), id);
        Ok(id)
    }

    /// A store with the same names, shapes, order (so the same ids) and flags, whose every
    /// tensor is an empty placeholder (`[0]`) on `device`. Runtimes that hold only some
    /// parameters on a device (zo-offload) fill it tensor by tensor; reading a placeholder
    /// through [`t2`](Self::t2) panics, so a forward that touches a parameter not uploaded
    /// fails loudly instead of computing with wrong values.
    pub fn skeleton(&self, device: Device) -> ParamStore {
        let empty = Tensor::<1>::from_data(TensorData::new(Vec::<f32>::new(), [0]), &device);
        ParamStore {
            params: self
                .params
                .iter()
                .map(|p| Param {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    tensor: empty.clone(),
                    trainable: p.trainable,
                    decay: p.decay,
                })
                .collect(),
            index: self.index.clone(),
            device,
        }
    }

    /// Id of the parameter `name`.
    ///
    /// # Errors
    /// [`ParamStoreError::Missing`].
    pub fn id(&self, name: &str) -> Result<usize, ParamStoreError> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| ParamStoreError::Missing(name.into()))
    }

    /// Whether a parameter called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// All parameters in insertion order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// All parameters, mutable (optimizers replace `tensor` in place).
    pub fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    /// Parameter `id`.
    pub fn param(&self, id: usize) -> &Param {
        &self.params[id]
    }

    /// Parameter `id` as a rank-1 tensor (a cheap handle clone).
    pub fn t1(&self, id: usize) -> Tensor<1> {
        self.params[id].tensor.clone()
    }

    /// Parameter `id` reshaped to its rank-2 shape `[rows, cols]`.
    ///
    /// # Panics
    /// If the parameter is not rank 2.
    pub fn t2(&self, id: usize) -> Tensor<2> {
        let p = &self.params[id];
        assert_eq!(
            p.shape.len(),
            2,
            "parameter `{}` has shape {:?}, not rank 2",
            p.name,
            p.shape
        );
        p.tensor.clone().reshape([p.shape[0], p.shape[1]])
    }

    /// Marks exactly the parameters for which `pred(name)` holds as trainable.
    pub fn set_trainable(&mut self, pred: impl Fn(&str) -> bool) {
        for p in &mut self.params {
            p.trainable = pred(&p.name);
        }
    }

    /// Number of scalars over all parameters.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(Param::numel).sum()
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.trainable)
            .map(Param::numel)
            .sum()
    }

    /// Bytes held by all parameters (f32: 4 bytes a scalar).
    pub fn bytes(&self) -> u64 {
        self.num_params() as u64 * 4
    }

    /// Switches the trainable parameters to autodiff leaves that require gradients (first-order
    /// training); frozen parameters stay plain constants, so no graph is recorded through them.
    pub fn enable_grad(&mut self) {
        for p in &mut self.params {
            let t = p.tensor.clone().inner();
            p.tensor = if p.trainable {
                t.autodiff().require_grad()
            } else {
                t
            };
        }
    }

    /// A copy of the store (cheap: tensor handles are shared) without autodiff, for evaluation.
    pub fn detached(&self) -> ParamStore {
        let mut s = self.clone();
        for p in &mut s.params {
            p.tensor = p.tensor.clone().inner();
        }
        s
    }

    /// Writes the trainable parameters, in store order, as raw little-endian f32 to `w`.
    /// On a host backend each tensor is taken out of the store and put back without a copy,
    /// so saving costs no memory (used to keep best-on-dev parameters on disk).
    ///
    /// # Errors
    /// I/O errors of `w`.
    pub fn write_trainable(&mut self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let device = self.device.clone();
        for p in self.params.iter_mut().filter(|p| p.trainable) {
            let grad = p.tensor.is_require_grad();
            let data = p.tensor.extract().inner().into_data().convert::<f32>();
            if cfg!(target_endian = "little") {
                w.write_all(data.as_bytes())?;
            } else {
                for x in data.as_slice::<f32>().expect("f32") {
                    w.write_all(&x.to_le_bytes())?;
                }
            }
            let t = Tensor::<1>::from_data(data, &device);
            p.tensor = if grad { t.autodiff().require_grad() } else { t };
        }
        Ok(())
    }

    /// Replaces the trainable parameters with values read from `r`, in the layout of
    /// [`ParamStore::write_trainable`]. The replaced tensors are plain (no autodiff). On an
    /// error the trainable tensors are left unspecified (reload before use).
    ///
    /// # Errors
    /// I/O errors of `r`, including an early end of file.
    pub fn read_trainable(&mut self, r: &mut impl std::io::Read) -> std::io::Result<()> {
        let device = self.device.clone();
        let mut buf = vec![0u8; 1 << 16];
        for p in self.params.iter_mut().filter(|p| p.trainable) {
            // Free the old values first, and convert in 64 KiB pieces, so that reading holds
            // one copy of the tensor at a time.
            drop(p.tensor.extract());
            let n = p.shape.iter().product::<usize>();
            let mut values = Vec::with_capacity(n);
            while values.len() < n {
                let take = (n - values.len()).min(buf.len() / 4);
                r.read_exact(&mut buf[..take * 4])?;
                values.extend(
                    buf[..take * 4]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            p.tensor = Tensor::<1>::from_data(TensorData::new(values, [n]), &device);
        }
        Ok(())
    }

    /// Values of parameter `id` copied to the host.
    pub fn values(&self, id: usize) -> Vec<f32> {
        self.params[id]
            .tensor
            .to_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 parameter data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_trainable_round_trips_and_skips_frozen() {
        let dev = Device::flex();
        let mut s = ParamStore::new(dev.clone());
        s.insert("a.weight", &[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5])
            .unwrap();
        s.insert("b.bias", &[2], vec![-1.0, 0.25]).unwrap();
        s.set_trainable(|n| n == "a.weight");
        let mut buf = Vec::new();
        s.write_trainable(&mut buf).unwrap();
        assert_eq!(buf.len(), 6 * 4, "only the trainable tensor is written");
        // The store is unchanged by saving.
        assert_eq!(s.values(0), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        let mut other = s.clone();
        other.params_mut()[0].tensor = Tensor::<1>::zeros([6], &dev);
        other.read_trainable(&mut buf.as_slice()).unwrap();
        assert_eq!(other.values(0), s.values(0));
        assert_eq!(other.values(1), vec![-1.0, 0.25]);
        let err = other.read_trainable(&mut &buf[..10]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_shared_snapshot_survives_in_place_perturbation() {
        let dev = Device::flex();
        let mut s = ParamStore::new(dev);
        s.insert("w", &[4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let snapshot = s.clone();
        crate::zo::perturb(&mut s, crate::NoiseKey(3), 0.5);
        assert_eq!(snapshot.values(0), vec![1.0, 2.0, 3.0, 4.0]);
        assert_ne!(s.values(0), snapshot.values(0));
    }
}
