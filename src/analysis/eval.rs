//! Task accuracy and contrast loss on minimal pairs, and language-model loss on held-out text.

use super::ablate::{self, AblateError, TaskData};
use crate::data::tasks::{self, Split, Task, TaskPair};
use crate::model::{Gpt, Hooks, ModelError};
use crate::tokenize::Tokenizer;

/// Why evaluating a model on its tasks failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Building or scoring the task data failed.
    #[error(transparent)]
    Ablate(#[from] AblateError),
    #[error(transparent)]
    /// The corpus (for the held-out loss or the wild split) could not be read.
    Corpus(#[from] crate::data::corpus::CorpusError),
}

/// One task's result on its test pairs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskScore {
    /// Fraction of pairs where both sides prefer their own token.
    pub accuracy: f64,
    /// Mean two-sided contrast loss (spec D.2; 2× a per-sequence loss).
    pub loss: f64,
    /// Number of test pairs scored.
    pub pairs: usize,
}

/// Accuracy and mean loss of `model` on `pairs` of one task (prompts left-truncated to the context, as the
/// reference does).
pub fn score_pairs(model: &Gpt, tok: &Tokenizer, name: &str, pairs: &[TaskPair]) -> Result<TaskScore, EvalError> {
    if pairs.is_empty() {
        return Ok(TaskScore {
            accuracy: 0.0,
            loss: 0.0,
            pairs: 0,
        });
    }
    let data = TaskData::new(tok, name, pairs, model.config.block_size)?;
    let (pos, neg) = ablate::last_logits(model, &data, &Hooks::none())?;
    let e = ablate::score_logits(&data, &pos, &neg);
    Ok(TaskScore {
        accuracy: e.accuracy,
        loss: e.loss,
        pairs: pairs.len(),
    })
}

/// Scores each task on `n` test pairs; a finite (jsonl) task on its first `n` pairs, whatever their split, since
/// a user's file is usually meant as a test set as a whole.
pub fn score_tasks(
    model: &Gpt,
    tok: &Tokenizer,
    tasks: &[Box<dyn Task>],
    n: usize,
) -> Result<Vec<(String, TaskScore)>, EvalError> {
    tasks
        .iter()
        .map(|t| {
            let pairs = match t.finite_len() {
                Some(len) => (0..len.min(n) as u64).map(|i| t.pair(0, i)).collect(),
                None => tasks::split(t.as_ref(), Split::Test, n),
            };
            Ok((t.name().to_string(), score_pairs(model, tok, t.name(), &pairs)?))
        })
        .collect()
}

/// Scores each built-in task on up to `n` wild pairs mined from the held-out real code of `corpus`
/// ([`tasks::wild_split`]); `None` for a task without wild pairs (no miner, or none found).
pub fn score_wild(
    model: &Gpt,
    tok: &Tokenizer,
    tasks: &[Box<dyn Task>],
    n: usize,
    corpus: &crate::data::corpus::CorpusSource,
) -> Result<Vec<(String, Option<TaskScore>)>, EvalError> {
    tasks
        .iter()
        .map(|t| {
            let pairs = tasks::wild_split(t.name(), corpus, n)?;
            let score = if pairs.is_empty() {
                None
            } else {
                Some(score_pairs(model, tok, t.name(), &pairs)?)
            };
            Ok((t.name().to_string(), score))
        })
        .collect()
}

/// Mean next-token cross-entropy (nats) over windows of `tokens`.
pub fn corpus_loss(model: &Gpt, tokens: &[u32], window: usize, max_windows: usize) -> Result<f64, EvalError> {
    let window = window.min(model.config.block_size);
    let (mut total, mut count) = (0f64, 0usize);
    for chunk in tokens.chunks(window + 1).take(max_windows) {
        if chunk.len() < 2 {
            continue;
        }
        let (inp, tgt) = (&chunk[..chunk.len() - 1], &chunk[1..]);
        let logits = model.forward_ids(inp, &mut Hooks::none())?; // (T, V)
        let logp = candle_nn::ops::log_softmax(&logits, 1)?;
        let rows: Vec<Vec<f32>> = logp.to_vec2()?;
        for (row, &t) in rows.iter().zip(tgt) {
            total -= row[t as usize] as f64;
            count += 1;
        }
    }
    Ok(total / count.max(1) as f64)
}
