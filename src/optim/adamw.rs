//! AdamW with state that can be saved and restored, so that `--resume` continues a run exactly.

use std::collections::BTreeMap;

use candle_core::{Result, Tensor, Var};

/// AdamW's hyperparameters (the learning rate is passed per step, for schedules).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AdamWParams {
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the second moment's root, against division by zero.
    pub eps: f64,
    /// Decoupled weight decay, multiplied by the learning rate.
    pub weight_decay: f64,
}

/// Why saved optimiser state cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptimStateError {
    /// A moment of a variable is missing from the saved state.
    #[error("optimizer state lacks `{key}`")]
    Missing {
        /// The missing entry, e.g. `m.transformer.wte.weight`.
        key: String,
    },
    /// A saved moment does not have its variable's shape.
    #[error("optimizer state `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The entry with the wrong shape.
        key: String,
        /// Its shape in the saved state.
        found: Vec<usize>,
        /// The variable's shape.
        expected: Vec<usize>,
    },
}

/// Decoupled-weight-decay Adam over named variables.
pub struct AdamW {
    /// The hyperparameters.
    pub params: AdamWParams,
    vars: Vec<(String, Var)>,
    /// First and second moments by variable name.
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    /// Updates taken so far (for the bias correction).
    pub step: usize,
}

impl AdamW {
    /// An optimiser over `vars` with zero moments.
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, var) in &vars {
            m.insert(name.clone(), var.zeros_like()?);
            v.insert(name.clone(), var.zeros_like()?);
        }
        Ok(AdamW {
            params,
            vars,
            m,
            v,
            step: 0,
        })
    }

    /// One update with learning rate `lr` from the gradients in `grads` multiplied by `grad_scale` (clipping).
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let AdamWParams {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.params;
        let bc1 = 1.0 - beta1.powi(self.step as i32);
        let bc2 = 1.0 - beta2.powi(self.step as i32);
        for (name, var) in &self.vars {
            let Some(g) = grads.get(var) else { continue };
            let g = g.affine(grad_scale, 0.0)?;
            let m = (self.m[name].affine(beta1, 0.0)? + g.affine(1.0 - beta1, 0.0)?)?;
            let v = (self.v[name].affine(beta2, 0.0)? + g.sqr()?.affine(1.0 - beta2, 0.0)?)?;
            let update = (m.affine(1.0 / bc1, 0.0)? / (v.affine(1.0 / bc2, 0.0)?.sqrt()? + eps)?)?;
            let decayed = var.affine(1.0 - lr * weight_decay, 0.0)?;
            var.set(&(decayed - update.affine(lr, 0.0)?)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// Moments as named tensors (`m.<name>`, `v.<name>`), for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, t) in &self.m {
            out.push((format!("m.{name}"), t.clone()));
        }
        for (name, t) in &self.v {
            out.push((format!("v.{name}"), t.clone()));
        }
        out
    }

    /// Restores moments saved by `state`; every variable must be present with its shape.
    pub fn load_state(
        &mut self,
        state: &BTreeMap<String, Tensor>,
        step: usize,
    ) -> std::result::Result<(), OptimStateError> {
        for (name, var) in &self.vars {
            for (prefix, map) in [("m", &mut self.m), ("v", &mut self.v)] {
                let key = format!("{prefix}.{name}");
                let Some(t) = state.get(&key) else {
                    return Err(OptimStateError::Missing { key });
                };
                if t.dims() != var.dims() {
                    return Err(OptimStateError::Shape {
                        key,
                        found: t.dims().to_vec(),
                        expected: var.dims().to_vec(),
                    });
                }
                map.insert(name.clone(), t.clone());
            }
        }
        self.step = step;
        Ok(())
    }
}
