//! Hook points (spec B): record any subset of activations by the reference's names, and intervene on any of them.
//!
//! An intervention replaces the value that flows downstream, and the recorded value is the post-intervention one,
//! as in the reference's `hook_recorder`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use candle_core::{DType, Tensor};

use super::error::{HookProblem, ModelError, Result};

/// A function from a hook's activation (B, T, W) to its replacement, for interventions that the fixed actions do
/// not cover (e.g. trainable pruning masks).
pub type HookFn = Arc<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

/// What an intervention puts in place of the selected entries.
#[derive(Clone)]
pub enum Action {
    /// Set the selected entries to a constant.
    Set(f32),
    /// Replace the selected channels by their means; `means` has the hook's full width.
    MeanAblate(Vec<f32>),
    /// Multiply the selected entries.
    Scale(f32),
    /// Add a vector of the hook's full width.
    Add(Vec<f32>),
    /// Copy the selected entries from another run's recorded activation of this hook: (B, T, W), (1, T, W) or
    /// (T, W) with the same T and W.
    Patch(Tensor),
    /// Any function of the activation.
    Custom(HookFn),
}

/// An action restricted to some channels and some positions (all where None). Negative positions count from the
/// end (-1 = last token).
#[derive(Clone)]
pub struct Intervention {
    /// What to do to the selected entries.
    pub action: Action,
    /// Channels (indices into the hook's width) to act on; `None` means all.
    pub channels: Option<Vec<usize>>,
    /// Token positions to act on (negative counts from the end); `None` means all.
    pub positions: Option<Vec<i64>>,
}

impl Intervention {
    /// `action` on every channel at every position.
    pub fn new(action: Action) -> Self {
        Intervention {
            action,
            channels: None,
            positions: None,
        }
    }

    /// Restricts the action to these channels.
    pub fn channels(mut self, channels: Vec<usize>) -> Self {
        self.channels = Some(channels);
        self
    }

    /// Restricts the action to these positions (negative counts from the end).
    pub fn positions(mut self, positions: Vec<i64>) -> Self {
        self.positions = Some(positions);
        self
    }

    /// x: (B, T, W) → (B, T, W) with the selection replaced.
    fn apply(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        let err = |problem: HookProblem| ModelError::Hook {
            name: name.to_string(),
            problem,
        };
        let (_b, t, w) = x.dims3()?;
        let dev = x.device();
        let full_vec = |v: &[f32], what: &'static str| -> Result<Tensor> {
            check_width(name, v, w, what)?;
            Ok(Tensor::from_slice(v, (1, 1, w), dev)?)
        };
        let new = match &self.action {
            Action::Set(v) => x.ones_like()?.affine(0.0, *v as f64)?,
            Action::MeanAblate(means) => full_vec(means, "the means vector")?.broadcast_as(x.shape())?,
            Action::Scale(s) => x.affine(*s as f64, 0.0)?,
            Action::Add(v) => x.broadcast_add(&full_vec(v, "the added vector")?)?,
            Action::Patch(src) => {
                let src = match src.rank() {
                    2 => src.unsqueeze(0)?,
                    3 => src.clone(),
                    rank => return Err(err(HookProblem::PatchRank { rank })),
                };
                let sd = src.dims();
                if sd[1] != t || sd[2] != w || (sd[0] != 1 && sd[0] != x.dims()[0]) {
                    return Err(err(HookProblem::PatchShape {
                        got: sd.to_vec(),
                        activation: x.dims().to_vec(),
                    }));
                }
                src.to_dtype(DType::F32)?.broadcast_as(x.shape())?
            }
            Action::Custom(f) => f(x)?,
        };
        let Some((pos, chan)) = self.selection(name, t, w)? else {
            return Ok(new);
        };
        let mask: Vec<f32> = pos.iter().flat_map(|p| chan.iter().map(move |c| p * c)).collect();
        let mask = Tensor::from_vec(mask, (1, t, w), dev)?;
        let keep = mask.affine(-1.0, 1.0)?;
        Ok((x.broadcast_mul(&keep)? + new.broadcast_mul(&mask)?)?)
    }

    /// The positions and channels the intervention touches, as 0/1 weights ((T,), (W,)); None when it touches
    /// everything.
    fn selection(&self, name: &str, t: usize, w: usize) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let err = |problem: HookProblem| ModelError::Hook {
            name: name.to_string(),
            problem,
        };
        if self.channels.is_none() && self.positions.is_none() {
            return Ok(None);
        }
        let mut chan = vec![1f32; w];
        if let Some(cs) = &self.channels {
            chan = vec![0f32; w];
            for &c in cs {
                if c >= w {
                    return Err(err(HookProblem::ChannelOutOfRange { channel: c, width: w }));
                }
                chan[c] = 1.0;
            }
        }
        let mut pos = vec![1f32; t];
        if let Some(ps) = &self.positions {
            pos = vec![0f32; t];
            for &p in ps {
                let idx = if p < 0 { t as i64 + p } else { p };
                if idx < 0 || idx >= t as i64 {
                    return Err(err(HookProblem::PositionOutOfRange { position: p, tokens: t }));
                }
                pos[idx as usize] = 1.0;
            }
        }
        Ok(Some((pos, chan)))
    }

    /// Whether [`Intervention::apply_plain`] handles this action (all but patches and custom functions).
    fn is_plain(&self) -> bool {
        matches!(
            self.action,
            Action::Set(_) | Action::MeanAblate(_) | Action::Scale(_) | Action::Add(_)
        )
    }

    /// [`Intervention::apply`] in place on a (B, T, W) row-major buffer, with the same arithmetic element by
    /// element (so the same bits), for the actions of [`Intervention::is_plain`]: the inference forward uses it
    /// to skip building tensors and masks at every intervened hook.
    fn apply_plain(&self, name: &str, x: &mut [f32], t: usize, w: usize) -> Result<()> {
        match &self.action {
            Action::MeanAblate(v) => check_width(name, v, w, "the means vector")?,
            Action::Add(v) => check_width(name, v, w, "the added vector")?,
            _ => {}
        }
        // candle's affine computes v·mul + add in f32, and `Set` is ones·0 + v.
        let new = |x: f32, c: usize| -> f32 {
            match &self.action {
                Action::Set(v) => 1.0 * 0.0 + *v,
                Action::MeanAblate(means) => means[c],
                Action::Scale(s) => x * *s + 0.0,
                Action::Add(v) => x + v[c],
                Action::Patch(_) | Action::Custom(_) => unreachable!("not a plain action"),
            }
        };
        let selection = self.selection(name, t, w)?;
        for (r, row) in x.chunks_exact_mut(w).enumerate() {
            match &selection {
                None => row.iter_mut().enumerate().for_each(|(c, v)| *v = new(*v, c)),
                Some((pos, chan)) => {
                    let p = pos[r % t];
                    for (c, v) in row.iter_mut().enumerate() {
                        let m = p * chan[c];
                        *v = *v * (1.0 - m) + new(*v, c) * m;
                    }
                }
            }
        }
        Ok(())
    }
}

/// An intervention's per-channel vector must be as wide as its hook.
fn check_width(name: &str, v: &[f32], w: usize, what: &'static str) -> Result<()> {
    if v.len() != w {
        return Err(ModelError::Hook {
            name: name.to_string(),
            problem: HookProblem::WidthMismatch {
                what,
                got: v.len(),
                width: w,
            },
        });
    }
    Ok(())
}

/// What one forward pass records and changes: a recording pattern, interventions by hook name, and the recorded
/// activations it fills in.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Keep candle's autograd graph through the whole forward (slower): set it when gradients will be taken,
    /// e.g. through pruning masks. Otherwise attention and AbsTopK run through fused inference kernels.
    pub differentiable: bool,
    record: Option<regex::Regex>,
    /// Which attention patterns (`L.attn.pattern`) to record; apart from `record` so that recording every
    /// activation hook (`.*`) does not also pay for every head's (T, T) weights.
    record_patterns: Option<regex::Regex>,
    interventions: HashMap<String, Vec<Intervention>>,
    /// Hooks recorded at some channels only (a scan of chosen nodes): their recording is (B, T, channels.len()),
    /// so that a wide hook with a few chosen channels does not hold a full-width copy.
    record_channels: HashMap<String, Arc<[usize]>>,
    /// Recorded activations by hook name, each (B, T, W), or (B, T, k) for a hook of [`Hooks::record_channels`].
    pub recorded: BTreeMap<String, Tensor>,
}

impl Hooks {
    /// No recording, no interventions.
    pub fn none() -> Self {
        Self::default()
    }

    /// Records every hook whose name matches `pattern` at its start (Python's `re.match`, as the reference does).
    pub fn recording(pattern: &str) -> Result<Self> {
        let mut h = Self::default();
        h.set_record(pattern)?;
        Ok(h)
    }

    /// Records every hook whose name matches `pattern` at its start; an invalid regex is a [`ModelError::HookRegex`].
    pub fn set_record(&mut self, pattern: &str) -> Result<()> {
        let re = regex::Regex::new(&format!("^(?:{pattern})")).map_err(|source| ModelError::HookRegex {
            pattern: pattern.to_string(),
            source,
        })?;
        self.record = Some(re);
        Ok(())
    }

    /// Records the attention patterns (`L.attn.pattern`, (B, n_head, T, T)) whose names match `pattern` at
    /// their start, e.g. `0\.` for every head of layer 0 or `.*` for all layers. Patterns are read-only: they
    /// cannot be intervened on.
    pub fn set_record_patterns(&mut self, pattern: &str) -> Result<()> {
        let re = regex::Regex::new(&format!("^(?:{pattern})")).map_err(|source| ModelError::HookRegex {
            pattern: pattern.to_string(),
            source,
        })?;
        self.record_patterns = Some(re);
        Ok(())
    }

    /// Records only `channels` (each below the hook's width) of hook `name` when it is recorded.
    pub fn record_channels(&mut self, name: &str, channels: &[usize]) {
        self.record_channels.insert(name.to_string(), channels.into());
    }

    /// Whether the attention pattern `name` (e.g. `2.attn.pattern`) is to be recorded.
    pub fn wants_pattern(&self, name: &str) -> bool {
        self.record_patterns.as_ref().is_some_and(|re| re.is_match(name))
    }

    /// Stores a computed attention pattern (B, n_head, T, T) under `name`.
    pub(crate) fn record_pattern(&mut self, name: String, pattern: Tensor) {
        self.recorded.insert(name, pattern);
    }

    /// Adds an intervention at `hook`; several at one hook apply in the order added.
    pub fn intervene(&mut self, hook: &str, iv: Intervention) -> &mut Self {
        self.interventions.entry(hook.to_string()).or_default().push(iv);
        self
    }

    /// Names of the hooks that carry at least one intervention.
    pub fn intervened_hooks(&self) -> impl Iterator<Item = &str> {
        self.interventions.keys().map(String::as_str)
    }

    /// Whether a forward pass must keep candle's autograd graph: asked for, or an intervention that may carry
    /// gradients (a custom function, a patch source from a graph).
    pub fn needs_graph(&self) -> bool {
        self.differentiable
            || self.interventions.values().flatten().any(|iv| match &iv.action {
                Action::Custom(_) => true,
                Action::Patch(t) => t.track_op(),
                _ => false,
            })
    }

    /// Whether the hook point `name` is recorded or intervened on.
    pub fn wants(&self, name: &str) -> bool {
        self.interventions.contains_key(name) || self.record.as_ref().is_some_and(|re| re.is_match(name))
    }

    /// Drops the recorded activations (keeping pattern and interventions), so the next forward starts clean.
    pub fn clear_recorded(&mut self) {
        self.recorded.clear();
    }

    /// [`Hooks::apply`] on a plain (B, T, W) buffer, for the inference forward: interventions that need no
    /// tensors run in place; only a recorded hook builds one.
    pub(crate) fn apply_plain(
        &mut self,
        name: &str,
        mut x: Vec<f32>,
        b: usize,
        t: usize,
        w: usize,
    ) -> Result<Vec<f32>> {
        let ivs = self.interventions.get(name);
        if !ivs.is_none_or(|ivs| ivs.iter().all(Intervention::is_plain)) {
            let out = self.apply(name, Tensor::from_vec(x, (b, t, w), &candle_core::Device::Cpu)?)?;
            return Ok(out.flatten_all()?.to_vec1()?);
        }
        for iv in ivs.into_iter().flatten() {
            iv.apply_plain(name, &mut x, t, w)?;
        }
        if self.record.as_ref().is_some_and(|re| re.is_match(name)) {
            let tensor = match self.record_channels.get(name) {
                Some(ch) => {
                    check_channels(name, ch, w)?;
                    let kept: Vec<f32> = x.chunks_exact(w).flat_map(|row| ch.iter().map(|&c| row[c])).collect();
                    Tensor::from_vec(kept, (b, t, ch.len()), &candle_core::Device::Cpu)?
                }
                None => Tensor::from_slice(&x, (b, t, w), &candle_core::Device::Cpu)?,
            };
            self.recorded.insert(name.to_string(), tensor);
        }
        Ok(x)
    }

    /// Called by the forward at every hook point: intervenes, records, and returns what flows on.
    pub(crate) fn apply(&mut self, name: &str, mut x: Tensor) -> Result<Tensor> {
        if let Some(ivs) = self.interventions.get(name) {
            for iv in ivs {
                x = iv.apply(name, &x)?;
            }
        }
        if self.record.as_ref().is_some_and(|re| re.is_match(name)) {
            let kept = match self.record_channels.get(name) {
                Some(ch) => {
                    let w = x.dims().last().copied().unwrap_or(0);
                    check_channels(name, ch, w)?;
                    let idx: Vec<u32> = ch.iter().map(|&c| c as u32).collect();
                    let idx = Tensor::from_vec(idx, ch.len(), x.device())?;
                    x.index_select(&idx, x.rank() - 1)?
                }
                None => x.clone(),
            };
            self.recorded.insert(name.to_string(), kept);
        }
        Ok(x)
    }
}

/// Refuses a channel selection past the hook's width `w`.
fn check_channels(name: &str, channels: &[usize], w: usize) -> Result<()> {
    match channels.iter().find(|&&c| c >= w) {
        Some(&channel) => Err(ModelError::Hook {
            name: name.to_string(),
            problem: HookProblem::ChannelOutOfRange { channel, width: w },
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn recording_chosen_channels_keeps_only_them_on_both_paths() {
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect(); // (B 1, T 2, W 4)
        let mut plain = Hooks::recording(".*").unwrap();
        plain.record_channels("0.mlp.post_act", &[1, 3]);
        let out = plain.apply_plain("0.mlp.post_act", x.clone(), 1, 2, 4).unwrap();
        assert_eq!(out, x, "what flows on is untouched");
        let got = &plain.recorded["0.mlp.post_act"];
        assert_eq!(got.dims(), &[1, 2, 2]);
        assert_eq!(
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [1.0, 3.0, 5.0, 7.0]
        );

        let mut graph = Hooks::recording(".*").unwrap();
        graph.record_channels("0.mlp.post_act", &[0, 2]);
        let t = Tensor::from_vec(x.clone(), (1, 2, 4), &Device::Cpu).unwrap();
        assert_eq!(graph.apply("0.mlp.post_act", t).unwrap().dims(), &[1, 2, 4]);
        let got = graph.recorded["0.mlp.post_act"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got, [0.0, 2.0, 4.0, 6.0]);

        let mut past = Hooks::recording(".*").unwrap();
        past.record_channels("0.mlp.post_act", &[4]);
        let e = past.apply_plain("0.mlp.post_act", x, 1, 2, 4).unwrap_err().to_string();
        assert!(e.contains("0.mlp.post_act") && e.contains("channel 4"), "{e}");
    }

    /// The in-place path gives the tensor path's bits for every plain action, with and without channel and
    /// position selections, and the same errors.
    #[test]
    fn plain_interventions_match_tensor_ones() {
        let (b, t, w) = (2, 5, 7);
        let x: Vec<f32> = (0..b * t * w).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.37).collect();
        let means: Vec<f32> = (0..w).map(|c| c as f32 * 0.3 - 1.0).collect();
        let actions = [
            Action::Set(2.5),
            Action::Set(f32::INFINITY),
            Action::MeanAblate(means.clone()),
            Action::Scale(-0.7),
            Action::Add(means.clone()),
        ];
        let selections = [
            (None::<Vec<usize>>, None::<Vec<i64>>),
            (Some(vec![1, 4]), None),
            (None, Some(vec![0, -1])),
            (Some(vec![6]), Some(vec![2])),
        ];
        for action in &actions {
            for (channels, positions) in &selections {
                let iv = Intervention {
                    action: action.clone(),
                    channels: channels.clone(),
                    positions: positions.clone(),
                };
                let tensor = Tensor::from_vec(x.clone(), (b, t, w), &Device::Cpu).unwrap();
                let want: Vec<f32> = iv
                    .apply("h", &tensor)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let mut got = x.clone();
                iv.apply_plain("h", &mut got, t, w).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{channels:?} {positions:?}");
            }
        }
        let bad = [
            Intervention::new(Action::MeanAblate(vec![0.0; w + 1])),
            Intervention::new(Action::Set(0.0)).channels(vec![w]),
            Intervention::new(Action::Set(0.0)).positions(vec![t as i64]),
        ];
        for iv in bad {
            let tensor = Tensor::from_vec(x.clone(), (b, t, w), &Device::Cpu).unwrap();
            let want = iv.apply("h", &tensor).err().unwrap().to_string();
            let got = iv.apply_plain("h", &mut x.clone(), t, w).err().unwrap().to_string();
            assert_eq!(got, want);
        }
    }

    /// Each wrong intervention names its cause as a [`HookProblem`] with the numbers in it.
    #[test]
    fn bad_interventions_give_typed_causes() {
        let (t, w) = (3, 4);
        let x = Tensor::zeros((1, t, w), DType::F32, &Device::Cpu).unwrap();
        let cause = |iv: Intervention| match iv.apply("0.mlp.post_act", &x) {
            Err(ModelError::Hook { name, problem }) => {
                assert_eq!(name, "0.mlp.post_act");
                problem
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            cause(Intervention::new(Action::Add(vec![1.0; w + 1]))),
            HookProblem::WidthMismatch {
                what: "the added vector",
                got: w + 1,
                width: w
            }
        );
        assert_eq!(
            cause(Intervention::new(Action::Set(0.0)).channels(vec![w])),
            HookProblem::ChannelOutOfRange { channel: w, width: w }
        );
        assert_eq!(
            cause(Intervention::new(Action::Set(0.0)).positions(vec![-4])),
            HookProblem::PositionOutOfRange {
                position: -4,
                tokens: t
            }
        );
        let flat = Tensor::zeros(w, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            cause(Intervention::new(Action::Patch(flat))),
            HookProblem::PatchRank { rank: 1 }
        );
        let wide = Tensor::zeros((t, w + 1), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            cause(Intervention::new(Action::Patch(wide))),
            HookProblem::PatchShape {
                got: vec![1, t, w + 1],
                activation: vec![1, t, w]
            }
        );
        let e = Intervention::new(Action::MeanAblate(vec![0.0; 2]))
            .apply("0.mlp.post_act", &x)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "hook `0.mlp.post_act`: the means vector has 2 entries but the hook is 4 wide"
        );
        match Hooks::recording("(") {
            Err(ModelError::HookRegex { pattern, source }) => {
                assert_eq!(pattern, "(");
                assert!(matches!(source, regex::Error::Syntax(_)));
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
