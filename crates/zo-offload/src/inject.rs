//! Running losses written against [`LanguageModel::hidden_states`] on offloaded hidden states.

use burn::tensor::Tensor;
use zo_models::model::{Block, KvCapture};
use zo_models::{Adapters, LanguageModel, LinearInfo, ModelInfo, ModelInput, StageCtx};
use zo_optim::ParamStore;

/// A model whose forward pass returns given final hidden states `[B, T, H]` and whose LM head
/// and pooler are those of the wrapped model. A loss that calls `hidden_states` and then
/// `lm_head` on selected positions (candidate scoring, classification heads) can so be
/// evaluated on the output of [`crate::Offload::step`]'s streamed forward without change.
#[derive(Debug)]
pub struct WithHidden<'a> {
    inner: &'a dyn LanguageModel,
    hidden: Tensor<3>,
}

impl<'a> WithHidden<'a> {
    /// Wraps `inner` with the hidden states `hidden` `[B, T, H]` of the input the loss will
    /// pass (its shape is checked on every forward).
    pub fn new(inner: &'a dyn LanguageModel, hidden: Tensor<3>) -> Self {
        Self { inner, hidden }
    }
}

impl LanguageModel for WithHidden<'_> {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }
    fn adapters(&self) -> &Adapters {
        self.inner.adapters()
    }
    fn set_adapters(&mut self, _adapters: Adapters) {
        panic!("WithHidden wraps a model for one loss evaluation; its adapters are fixed");
    }
    /// # Panics
    /// If `input` is not the `[B, T]` the hidden states were computed for.
    fn forward_hidden(
        &self,
        _ps: &ParamStore,
        input: &ModelInput,
        _capture: Option<&mut KvCapture>,
    ) -> Tensor<3> {
        let [b, t, _] = self.hidden.dims();
        assert_eq!(
            input.input_ids.dims(),
            [b, t],
            "WithHidden: the loss's input is not the one the hidden states belong to"
        );
        self.hidden.clone()
    }
    fn stage_begin(&self, _ps: &ParamStore, _input: &ModelInput) -> (Tensor<3>, StageCtx) {
        unreachable!("WithHidden has no stages; forward_hidden returns the given states")
    }
    fn stage_layer(
        &self,
        _ps: &ParamStore,
        _ctx: &StageCtx,
        _layer: usize,
        _x: Tensor<3>,
        _capture: &mut Option<&mut KvCapture>,
    ) -> Tensor<3> {
        unreachable!("WithHidden has no stages")
    }
    fn stage_end(&self, _ps: &ParamStore, _ctx: &StageCtx, _x: Tensor<3>) -> Tensor<3> {
        unreachable!("WithHidden has no stages")
    }
    fn lm_head(&self, ps: &ParamStore, hidden: Tensor<3>) -> Option<Tensor<3>> {
        self.inner.lm_head(ps, hidden)
    }
    fn pooler(&self, ps: &ParamStore, hidden: Tensor<3>) -> Option<Tensor<2>> {
        self.inner.pooler(ps, hidden)
    }
    fn blocks(&self) -> Vec<Block> {
        self.inner.blocks()
    }
    fn linears(&self) -> Vec<LinearInfo> {
        self.inner.linears()
    }
}
