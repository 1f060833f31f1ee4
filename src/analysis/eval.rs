//! Task accuracy and contrast loss on minimal pairs, and language-model loss on held-out text.

use candle_core::{Device, Tensor};

use crate::data::tasks;
use crate::data::tasks::{self as loss, Split, Task, TaskPair};
use crate::model::{Gpt, Hooks, ModelError};
use crate::tokenize::Tokenizer;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Tokenize(#[from] crate::tokenize::TokenizeError),
    #[error("task {task}: target {target:?} is {n} tokens with this tokenizer; task targets must be single tokens")]
    TargetNotSingle { task: String, target: String, n: usize },
}

/// One task's result on its test pairs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskScore {
    /// Fraction of pairs where both sides prefer their own token.
    pub accuracy: f64,
    /// Mean two-sided contrast loss (spec D.2; 2× a per-sequence loss).
    pub loss: f64,
    pub pairs: usize,
}

/// A prompt's ids, left-truncated to the context as the reference does.
fn prompt_ids(tok: &Tokenizer, text: &str, block: usize) -> Result<Vec<u32>, EvalError> {
    let mut ids = tok.encode(text)?;
    if ids.len() > block {
        ids.drain(..ids.len() - block);
    }
    Ok(ids)
}

fn single_token(tok: &Tokenizer, task: &str, s: &str) -> Result<u32, EvalError> {
    let ids = tok.encode(s)?;
    match ids[..] {
        [id] => Ok(id),
        _ => Err(EvalError::TargetNotSingle {
            task: task.to_string(),
            target: s.to_string(),
            n: ids.len(),
        }),
    }
}

/// Last-position logits of each sequence, run as right-padded batches (causal: padding never affects them).
pub fn last_logits(model: &Gpt, seqs: &[Vec<u32>], batch: usize) -> Result<Vec<Vec<f32>>, EvalError> {
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(batch.max(1)) {
        let t = chunk.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut flat = Vec::with_capacity(chunk.len() * t);
        for s in chunk {
            flat.extend_from_slice(s);
            flat.extend(std::iter::repeat_n(0u32, t - s.len()));
        }
        let tokens = Tensor::from_vec(flat, (chunk.len(), t), &Device::Cpu)?;
        let logits = model.forward(&tokens, &mut Hooks::none())?; // (B, T, V)
        for (i, s) in chunk.iter().enumerate() {
            out.push(logits.get(i)?.get(s.len().max(1) - 1)?.to_vec1()?);
        }
    }
    Ok(out)
}

/// Accuracy and mean loss of `model` on `pairs` of one task.
pub fn score_pairs(model: &Gpt, tok: &Tokenizer, name: &str, pairs: &[TaskPair]) -> Result<TaskScore, EvalError> {
    let block = model.config.block_size;
    let mut seqs = Vec::with_capacity(2 * pairs.len());
    let mut targets = Vec::with_capacity(pairs.len());
    for p in pairs {
        seqs.push(prompt_ids(tok, &p.prompt, block)?);
        seqs.push(prompt_ids(tok, &p.prompt_alt, block)?);
        let t = single_token(tok, name, &p.target)?;
        let a = match &p.alt {
            Some(a) => Some(single_token(tok, name, a)?),
            None => None,
        };
        targets.push((t, a));
    }
    let logits = last_logits(model, &seqs, 32)?;
    let (mut correct, mut total_loss) = (0usize, 0f64);
    for (i, (p, &(t, a))) in pairs.iter().zip(&targets).enumerate() {
        let (pos, neg) = (&logits[2 * i], &logits[2 * i + 1]);
        if p.is_one_sided() {
            correct += loss::one_sided_correct(pos, t, a) as usize;
            total_loss += loss::one_sided_loss(pos, t, a) as f64;
        } else {
            correct += loss::pair_correct(pos, neg, t, a) as usize;
            total_loss += loss::contrast_loss(pos, neg, t, a) as f64;
        }
    }
    let n = pairs.len().max(1) as f64;
    Ok(TaskScore {
        accuracy: correct as f64 / n,
        loss: total_loss / n,
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
