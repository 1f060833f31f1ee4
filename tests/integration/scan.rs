//! Activation scans: statistics and exemplars against a brute-force computation on a small fixture, the index's
//! round trip through write/open, its refusals of bad input, and the bundled models' committed scans.

use std::path::{Path, PathBuf};

use circuitscope::analysis::scan::{
    scan, scan_chosen, ExemplarLayout, ScanData, ScanError, ScanIndex, ScanMeta, ScanOptions, UnknownScanNode,
    QUANTILES,
};
use circuitscope::circuit::file::model_fingerprint;
use circuitscope::circuit::NodeId;
use circuitscope::model::{Checkpoint, Gpt, Hooks, LoadOptions, ModelFiles};
use tempfile::TempDir;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-gpt/rms_sink_topk_bigram")
}

fn model() -> Gpt {
    Gpt::load(&fixture(), LoadOptions::default()).unwrap().0
}

fn fingerprint(dir: &Path, model: &Gpt) -> String {
    let ckpt = Checkpoint::open(&ModelFiles::locate(dir).unwrap().weights).unwrap();
    model_fingerprint(&ckpt, &model.config).unwrap()
}

/// 400 pseudo-random ids: 12 full 32-token sequences and a 16-token remainder.
fn stream(vocab: u32) -> Vec<u32> {
    let mut x = 12345u64;
    (0..400)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % vocab as u64) as u32
        })
        .collect()
}

fn opts(batch_tokens: usize) -> ScanOptions {
    ScanOptions {
        seq_len: None,
        batch_tokens,
        hist_bins: 16,
        layout: ExemplarLayout {
            top_k: 4,
            bottom_k: 3,
            quantile_samples: 2,
            before: 5,
            after: 2,
        },
    }
}

/// Every node's activation at every token of the stream, (nodes, tokens), from the same forward calls the scan
/// makes with `batch_tokens` = the whole stream: all full sequences at once, then the remainder.
fn brute_force(model: &Gpt, tokens: &[u32], hooks: &[circuitscope::analysis::scan::HookEntry]) -> Vec<Vec<f32>> {
    let t = model.config.block_size;
    let nodes = hooks.last().map(|h| h.offset + h.width).unwrap();
    let mut vals = vec![Vec::with_capacity(tokens.len()); nodes];
    let full = tokens.len() / t * t;
    for (chunk, seqs, len) in [
        (&tokens[..full], full / t, t),
        (&tokens[full..], 1, tokens.len() - full),
    ] {
        let input = candle_core::Tensor::from_slice(chunk, (seqs, len), &candle_core::Device::Cpu).unwrap();
        let mut rec = Hooks::recording(".*").unwrap();
        model.forward(&input, &mut rec).unwrap();
        for h in hooks {
            let a: Vec<f32> = rec.recorded[&h.name].flatten_all().unwrap().to_vec1().unwrap();
            for row in a.chunks(h.width) {
                for (c, &v) in row.iter().enumerate() {
                    vals[h.offset + c].push(v);
                }
            }
        }
    }
    vals
}

fn close(a: f32, b: f64, tol: f64) -> bool {
    (a as f64 - b).abs() <= tol * (1.0 + b.abs())
}

fn write_index(data: &ScanData, dir: &Path, fp: &str) -> ScanMeta {
    let meta = data.meta(fp, Some("fixture".into()), "test-stream");
    data.write(dir, &meta).unwrap();
    meta
}

#[test]
fn stats_and_exemplars_match_brute_force() {
    let m = model();
    let tokens = stream(m.config.vocab_size as u32);
    let o = opts(4096);
    let data = scan(&m, &tokens, &o, &mut |_| {}).unwrap();
    let vals = brute_force(&m, &tokens, &data.hooks);
    assert_eq!(data.nodes(), m.config.num_nodes());
    let n = tokens.len();
    let t = m.config.block_size;

    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("scan");
    write_index(&data, &dir, "fp");
    let index = ScanIndex::open(&dir).unwrap();
    let mut nonzero_quantiles = 0;
    for h in &data.hooks {
        for c in 0..h.width {
            let id = NodeId::from_hook(&h.name, c).unwrap();
            let node = index.node(&id).unwrap();
            let v = &vals[h.offset + c];
            let mut sorted = v.clone();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());

            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            assert!(close(node.mean, mean, 1e-5), "{id}: mean {} vs {mean}", node.mean);
            assert!(
                close(node.std, var.sqrt(), 1e-4),
                "{id}: std {} vs {}",
                node.std,
                var.sqrt()
            );
            let nnz = v.iter().filter(|&&x| x != 0.0).count();
            assert_eq!(node.density, (nnz as f64 / n as f64) as f32, "{id}: density");
            assert_eq!((node.min, node.max), (sorted[0], sorted[n - 1]), "{id}: min/max");

            let mut counts = vec![0u64; 16];
            for &x in v {
                counts[node.histogram.bin_of(x)] += 1;
            }
            assert_eq!(node.histogram.counts, counts, "{id}: histogram");
            assert_eq!((node.histogram.lo, node.histogram.hi), (node.min, node.max));

            // Top and bottom: the k largest / smallest values in order, each at its pivot.
            let top: Vec<f32> = node.top.iter().map(|e| e.acts[e.pivot]).collect();
            let want_top: Vec<f32> = sorted.iter().rev().take(4).copied().collect();
            assert_eq!(top, want_top, "{id}: top values");
            let bottom: Vec<f32> = node.bottom.iter().map(|e| e.acts[e.pivot]).collect();
            assert_eq!(bottom, sorted[..3].to_vec(), "{id}: bottom values");

            // Quantile samples: near the quantile, by rank or by value (the estimate has ~1.6% relative resolution).
            let tol = 3 + n / 25;
            for (qe, qv) in node.quantiles.iter().zip(&node.quantile_values) {
                assert_eq!(qe.quantile, qv.quantile);
                assert_eq!((qe.bottom.len(), qe.top.len()), (2, 2), "{id}");
                for (side, list, est, target) in [
                    ("bottom", &qe.bottom, qv.bottom, qv.quantile * (n - 1) as f64),
                    ("top", &qe.top, qv.top, (1.0 - qv.quantile) * (n - 1) as f64),
                ] {
                    for e in list.iter() {
                        let x = e.acts[e.pivot];
                        let below = sorted.partition_point(|&s| s < x);
                        let upto = sorted.partition_point(|&s| s <= x);
                        // Within a few ranks, or (where many values crowd one log bin) within its resolution.
                        let exact = sorted[target.round() as usize];
                        let near_value = (x - exact).abs() <= 3.0 / 64.0 * exact.abs() + 1e-6;
                        assert!(
                            near_value || (below as f64 <= target + tol as f64 && upto as f64 + tol as f64 >= target),
                            "{id} q{} {side}: value {x} has ranks {below}..{upto}, quantile rank {target}, estimate {est}, \
                             around: {:?}",
                            qv.quantile,
                            &sorted[(target as usize).saturating_sub(5)..(target as usize + 5).min(n)]
                        );
                        nonzero_quantiles += (x != 0.0) as usize;
                    }
                }
            }

            // Every exemplar: tokens from the stream, a window clipped to its sequence, activations as computed.
            let all = node
                .top
                .iter()
                .chain(&node.bottom)
                .chain(node.quantiles.iter().flat_map(|q| q.bottom.iter().chain(&q.top)));
            for e in all {
                let start = tokens
                    .windows(e.tokens.len())
                    .position(|w| w == e.tokens.as_slice())
                    .expect("window tokens come from the stream");
                let start = find_window(&tokens, v, e, start);
                let pos = start + e.pivot;
                let (seq_start, seq_len) = ((pos / t) * t, if pos >= n / t * t { n - n / t * t } else { t });
                let p = pos - seq_start;
                assert_eq!(e.pivot, p.min(5), "{id}: pivot");
                assert_eq!(
                    e.tokens.len(),
                    p.min(5) + 1 + (seq_len - 1 - p).min(2),
                    "{id}: window length"
                );
                assert_eq!(e.acts[e.pivot], v[pos], "{id}: pivot value");
                for (j, &a) in e.acts.iter().enumerate() {
                    assert!(close(a, v[start + j] as f64, 1e-3), "{id}: act {a} vs {}", v[start + j]);
                }
            }
        }
    }
    assert!(
        nonzero_quantiles > 100,
        "the fixture should exercise nonzero quantile samples"
    );
}

/// Where an exemplar's window starts in the stream: the first match of its tokens whose activations agree.
fn find_window(tokens: &[u32], v: &[f32], e: &circuitscope::circuit::file::Exemplar, first: usize) -> usize {
    (first..=tokens.len() - e.tokens.len())
        .find(|&s| tokens[s..s + e.tokens.len()] == e.tokens[..] && v[s + e.pivot] == e.acts[e.pivot])
        .expect("an exemplar's window is in the stream with its pivot value")
}

#[test]
fn batching_does_not_change_the_scan() {
    let m = model();
    let tokens = stream(m.config.vocab_size as u32);
    let one = scan(&m, &tokens, &opts(4096), &mut |_| {}).unwrap();
    let mut seen = Vec::new();
    let many = scan(&m, &tokens, &opts(64), &mut |p| seen.push((p.pass, p.tokens_done))).unwrap();
    // 12 full sequences two at a time plus the remainder, twice.
    assert_eq!(seen.len(), 14);
    assert_eq!(seen.last(), Some(&(2, 400)));
    for i in 0..one.nodes() {
        assert!(close(many.mean[i], one.mean[i] as f64, 1e-5));
        assert!(close(many.max[i], one.max[i] as f64, 1e-5));
        assert_eq!(many.density[i], one.density[i]);
    }
    let starts = |d: &ScanData| d.exemplars.iter().map(|e| (e.start, e.pivot)).collect::<Vec<_>>();
    let same = starts(&one)
        .iter()
        .zip(starts(&many))
        .filter(|(a, b)| **a == *b)
        .count();
    assert!(
        same * 10 >= one.exemplars.len() * 9,
        "{same} of {} exemplars agree",
        one.exemplars.len()
    );
}

#[test]
fn index_round_trips_and_replaces_atomically() {
    let m = model();
    let fp = fingerprint(&fixture(), &m);
    let tokens = stream(m.config.vocab_size as u32);
    let data = scan(&m, &tokens, &opts(4096), &mut |_| {}).unwrap();
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("scan");
    let meta = write_index(&data, &dir, &fp);

    let index = ScanIndex::open_for(&dir, &fp).unwrap();
    assert_eq!(index.meta(), &meta);
    assert_eq!(meta.tokens, 400);
    assert_eq!(meta.quantiles, QUANTILES.to_vec());
    let h = meta.hook("1.mlp.post_act").unwrap();
    assert_eq!(
        index.hook_means("1.mlp.post_act").unwrap(),
        data.mean[h.offset..h.offset + h.width].to_vec()
    );
    assert_eq!(index.hook_means("final_resid").unwrap().len(), m.config.d_model);
    assert!(index.hook_means("1.attn.y").is_none());
    assert_eq!(index.stream_tokens(10..20), tokens[10..20].to_vec());

    let id: NodeId = "0.attn.v[3]".parse().unwrap();
    let i = index.node_index(&id).unwrap();
    // Nodes outside the scan say why, with the numbers.
    match index.node_index(&"0.attn.v[100000]".parse().unwrap()) {
        Err(ScanError::UnknownNode {
            problem: UnknownScanNode::IndexOutOfRange { hook, width },
            ..
        }) => assert_eq!(
            (hook.as_str(), width),
            ("0.attn.v", meta.hook("0.attn.v").unwrap().width)
        ),
        other => panic!("{:?}", other.err()),
    }
    match index.node_index(&"9.attn.v[0]".parse().unwrap()) {
        Err(ScanError::UnknownNode {
            problem: UnknownScanNode::NoHook { hook, layers },
            ..
        }) => assert_eq!((hook.as_str(), layers), ("9.attn.v", m.config.n_layer)),
        other => panic!("{:?}", other.err()),
    }
    let node = index.node(&id).unwrap();
    assert_eq!(node.mean, data.mean[i]);
    assert_eq!(node.histogram.counts.iter().sum::<u64>(), 400);
    let rec = &data.exemplars[i * meta.exemplars.per_node()];
    let top = &node.top[0];
    assert_eq!(
        top.tokens,
        tokens[rec.start as usize..rec.start as usize + rec.acts.len()].to_vec()
    );
    assert_eq!(top.acts[top.pivot], rec.value);

    // A rescan replaces the index in place and leaves nothing else beside it.
    let mut o = opts(4096);
    o.layout.top_k = 2;
    let data2 = scan(&m, &tokens[..100], &o, &mut |_| {}).unwrap();
    write_index(&data2, &dir, &fp);
    let index2 = ScanIndex::open(&dir).unwrap();
    assert_eq!(index2.meta().tokens, 100);
    assert_eq!(index2.node(&id).unwrap().top.len(), 2);
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["scan".to_string()]);
    // The old maps stay readable after the replacement.
    assert_eq!(index.node(&id).unwrap(), node);
}

fn err_text(r: Result<ScanIndex, ScanError>) -> String {
    let e = r.expect_err("should fail");
    let s = e.to_string();
    assert!(!s.contains('\n'), "one line: {s}");
    s
}

#[test]
fn bad_indexes_are_refused_clearly() {
    let m = model();
    let tokens = stream(m.config.vocab_size as u32);
    let data = scan(&m, &tokens[..64], &opts(4096), &mut |_| {}).unwrap();
    let tmp = TempDir::new().unwrap();
    let fresh = |name: &str| {
        let dir = tmp.path().join(name);
        write_index(&data, &dir, "abcd");
        dir
    };

    let missing = err_text(ScanIndex::open(&tmp.path().join("nothing")));
    assert!(missing.contains("no scan index here"), "{missing}");

    let dir = fresh("truncated");
    let stats = dir.join("stats.bin");
    let len = std::fs::metadata(&stats).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&stats)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let msg = err_text(ScanIndex::open(&dir));
    assert!(msg.contains("stats.bin") && msg.contains("truncated"), "{msg}");

    let dir = fresh("newer");
    let path = dir.join("index.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 7");
    std::fs::write(&path, text).unwrap();
    let msg = err_text(ScanIndex::open(&dir));
    assert!(
        msg.contains("index.json") && msg.contains("format_version 7 is newer"),
        "{msg}"
    );

    let dir = fresh("magic");
    let ex = dir.join("exemplars.bin");
    let mut bytes = std::fs::read(&ex).unwrap();
    bytes[0] = b'X';
    std::fs::write(&ex, bytes).unwrap();
    let msg = err_text(ScanIndex::open(&dir));
    assert!(msg.contains("exemplars.bin") && msg.contains("bad magic"), "{msg}");

    let dir = fresh("garbled");
    std::fs::write(dir.join("index.json"), "{\"format_version\": 1, \"nodes\": ").unwrap();
    let msg = err_text(ScanIndex::open(&dir));
    assert!(msg.contains("index.json") && msg.contains("corrupt"), "{msg}");

    // A corrupt histogram (counts no longer summing to the tokens) is caught when the node is read.
    let dir = fresh("histogram");
    let stats = dir.join("stats.bin");
    let mut bytes = std::fs::read(&stats).unwrap();
    let last = bytes.len() - 4;
    bytes[last] ^= 0x40;
    std::fs::write(&stats, bytes).unwrap();
    let idx = ScanIndex::open(&dir).unwrap();
    let msg = idx.node(&"final_resid[15]".parse().unwrap()).unwrap_err().to_string();
    assert!(msg.contains("stats.bin") && msg.contains("final_resid[15]"), "{msg}");

    let dir = fresh("good");
    let idx = ScanIndex::open(&dir).unwrap();
    let msg = idx.check_model("0123456789abcdef").unwrap_err().to_string();
    assert!(
        msg.contains("index.json") && msg.contains("made for model fixture (abcd), not 0123456789abcdef"),
        "{msg}"
    );
    let msg = err_text(ScanIndex::open_for(&dir, "ffff"));
    assert!(msg.contains("not ffff"), "{msg}");
    for (node, want) in [
        ("5.attn.q[0]", "no hook `5.attn.q` (the scanned model has 2 layers)"),
        ("0.attn.q[16]", "index out of range (`0.attn.q` has 16 channels)"),
    ] {
        let msg = idx.node(&node.parse().unwrap()).unwrap_err().to_string();
        assert!(msg.contains(node) && msg.contains(want), "{msg}");
    }

    // Writing over a directory that is not a scan is refused; tokens outside the vocabulary are refused.
    let other = tmp.path().join("precious");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let meta = data.meta("abcd", None, "x");
    let msg = data.write(&other, &meta).unwrap_err().to_string();
    assert!(msg.contains("not a scan index"), "{msg}");
    assert!(other.join("notes.txt").exists());
    let msg = scan(&m, &[1, 2, 999], &opts(4096), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(msg.contains("token 999 at position 2"), "{msg}");
}

/// The committed scans of the bundled models open, belong to their models' weights, and cover every node.
#[test]
fn bundled_scans_match_their_models() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models");
    for name in ["tinypython-sparse", "tinypython-dense"] {
        let dir = root.join(name);
        let (m, _) = Gpt::load(&dir, LoadOptions::default()).unwrap();
        let fp = fingerprint(&dir, &m);
        let index = ScanIndex::open_for(&ScanIndex::default_dir(&dir), &fp).unwrap();
        assert_eq!(index.meta().nodes, m.config.num_nodes(), "{name}");
        let node = index.node(&"1.mlp.post_act[7]".parse().unwrap()).unwrap();
        assert_eq!(node.top.len(), index.meta().exemplars.top_k, "{name}");
        assert!(node.max >= node.top[0].acts[node.top[0].pivot]);
    }
}

/// The CLI end to end on the bundled model: scan a few windows into a temp dir, then show a node.
#[test]
fn cli_scan_and_show() {
    use circuitscope::cli::scan::{run, ScanArgs, ScanCommand, ScanRunArgs, ShowArgs};
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/tinypython-sparse");
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("scan");
    run(ScanArgs {
        command: None,
        run: ScanRunArgs {
            model: Some(model.clone()),
            corpus: "synthetic".into(),
            tokens: 512,
            out: Some(out.clone()),
            tokenizer: None,
            top: 3,
            quantile_samples: 1,
            before: 4,
            after: 1,
            saes: Vec::new(),
            nodes: None,
            json: true,
        },
    })
    .unwrap();
    let index = ScanIndex::open(&out).unwrap();
    assert_eq!(index.meta().tokens, 512);
    assert!(index.meta().corpus.starts_with("synthetic"));
    run(ScanArgs {
        command: Some(ScanCommand::Show(ShowArgs {
            model,
            node: "0.attn.k[5]".parse().unwrap(),
            scan: Some(out),
            tokenizer: None,
            json: false,
        })),
        run: ScanRunArgs {
            model: None,
            corpus: "synthetic".into(),
            tokens: 0,
            out: None,
            tokenizer: None,
            top: 0,
            quantile_samples: 0,
            before: 0,
            after: 0,
            saes: Vec::new(),
            nodes: None,
            json: false,
        },
    })
    .unwrap();
}

#[test]
fn a_scan_of_chosen_nodes_equals_those_nodes_of_the_full_scan() {
    let m = model();
    let fp = fingerprint(&fixture(), &m);
    let tokens = stream(m.config.vocab_size as u32);
    let o = opts(4096);
    let full = scan(&m, &tokens, &o, &mut |_| {}).unwrap();
    let ids: Vec<NodeId> = [
        "1.attn.v[3]",
        "0.mlp.post_act[7]",
        "0.mlp.post_act[2]",
        "final_resid[1]",
        "0.mlp.post_act[7]",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let chosen = scan_chosen(&m, &tokens, &o, &[], Some(&ids), &mut |_| {}).unwrap();
    // Duplicates count once; hooks in node order, each listing its channels.
    assert_eq!(chosen.nodes(), 4);
    let names: Vec<&str> = chosen.hooks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["0.mlp.post_act", "1.attn.v", "final_resid"]);
    assert_eq!(chosen.hooks[0].channels, Some(vec![2, 7]));

    let tmp = TempDir::new().unwrap();
    write_index(&full, &tmp.path().join("full"), &fp);
    let meta = write_index(&chosen, &tmp.path().join("chosen"), &fp);
    assert_eq!(meta.format_version, 2);
    let (a, b) = (
        ScanIndex::open(&tmp.path().join("full")).unwrap(),
        ScanIndex::open(&tmp.path().join("chosen")).unwrap(),
    );
    assert_eq!(
        a.meta().format_version,
        1,
        "a scan of every node stays readable by older builds"
    );
    for id in &ids {
        assert_eq!(b.node(id).unwrap(), a.node(id).unwrap(), "{id}");
    }
    // A node the scan did not choose, and a hook it scanned only in part, say so.
    let other: NodeId = "0.mlp.post_act[3]".parse().unwrap();
    let e = b.node(&other).unwrap_err().to_string();
    assert!(
        e.contains("0.mlp.post_act[3]") && e.contains("scan --nodes") && !e.contains('\n'),
        "{e}"
    );
    assert!(b.node(&"0.attn.q[0]".parse().unwrap()).is_err());
    assert!(
        b.hook_means("0.mlp.post_act").is_none(),
        "chosen channels cannot mean-ablate a hook"
    );
    assert!(a.hook_means("0.mlp.post_act").is_some());

    // Refusals: a feature, an unknown hook, a channel out of range, nothing.
    for (bad, want) in [
        ("0.resid_mid.sae[3]", "--sae"),
        ("7.attn.v[0]", "no hook"),
        ("0.mlp.post_act[100000]", "out of range"),
    ] {
        let id: NodeId = bad.parse().unwrap();
        let e = scan_chosen(&m, &tokens, &o, &[], Some(&[id]), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains(bad) && e.contains(want), "{bad}: {e}");
    }
    let e = scan_chosen(&m, &tokens, &o, &[], Some(&[]), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("no nodes"), "{e}");
}

#[test]
fn a_hand_edited_channel_list_is_refused() {
    let m = model();
    let fp = fingerprint(&fixture(), &m);
    let tokens = stream(m.config.vocab_size as u32);
    let ids: Vec<NodeId> = ["0.mlp.post_act[2]", "0.mlp.post_act[7]"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let chosen = scan_chosen(&m, &tokens, &opts(4096), &[], Some(&ids), &mut |_| {}).unwrap();
    let tmp = TempDir::new().unwrap();
    write_index(&chosen, tmp.path(), &fp);
    let path = tmp.path().join("index.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["hooks"][0]["channels"] = serde_json::json!([7, 2]);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let e = err_text(ScanIndex::open(tmp.path()));
    assert!(e.contains("0.mlp.post_act") && e.contains("out of order"), "{e}");
}

#[test]
fn cli_scan_of_a_circuits_nodes() {
    use circuitscope::cli::scan::{run, ScanArgs, ScanRunArgs};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("assets/models/tinypython-sparse");
    let circuit = root.join("assets/circuits/tinypython-sparse/for_while.json");
    let tmp = TempDir::new().unwrap();
    let args = |nodes: &str, out: Option<PathBuf>| ScanArgs {
        command: None,
        run: ScanRunArgs {
            model: Some(model.clone()),
            corpus: "synthetic".into(),
            tokens: 512,
            out,
            tokenizer: None,
            top: 3,
            quantile_samples: 1,
            before: 4,
            after: 1,
            saes: Vec::new(),
            nodes: Some(nodes.into()),
            json: true,
        },
    };
    let out = tmp.path().join("scan");
    run(args(circuit.to_str().unwrap(), Some(out.clone()))).unwrap();
    let index = ScanIndex::open(&out).unwrap();
    let file = circuitscope::circuit::CircuitFile::load(&circuit).unwrap();
    assert_eq!(index.meta().nodes, file.nodes.len());
    for n in &file.nodes {
        assert!(index.node(&n.id).is_ok(), "{}", n.id);
    }
    // A list; no --out; a bad id.
    run(args("0.attn.k[5], 1.mlp.post_act[3]", Some(tmp.path().join("list")))).unwrap();
    assert_eq!(ScanIndex::open(&tmp.path().join("list")).unwrap().meta().nodes, 2);
    let e = run(args("0.attn.k[5]", None)).unwrap_err().to_string();
    assert!(e.contains("--out"), "{e}");
    let e = format!(
        "{:#}",
        run(args("0.attn.zz[5]", Some(tmp.path().join("bad")))).unwrap_err()
    );
    assert!(e.contains("0.attn.zz[5]"), "{e}");
    assert!(!tmp.path().join("bad").exists());
}

#[test]
fn the_workbench_reads_scans_of_chosen_nodes_beside_the_model() {
    use circuitscope::cli::scan::{run, ScanArgs, ScanRunArgs};
    use circuitscope::workbench::ScanSource;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bundled = root.join("assets/models/tinypython-sparse");
    let tmp = TempDir::new().unwrap();
    // The bundled model without its own scan.
    let model_dir = tmp.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(bundled.join(f), model_dir.join(f)).unwrap();
    }
    let m = Gpt::load(&model_dir, LoadOptions::default()).unwrap().0;
    let fp = fingerprint(&model_dir, &m);
    run(ScanArgs {
        command: None,
        run: ScanRunArgs {
            model: Some(model_dir.clone()),
            corpus: "synthetic".into(),
            tokens: 512,
            out: Some(model_dir.join("scan-few")),
            tokenizer: None,
            top: 3,
            quantile_samples: 1,
            before: 4,
            after: 1,
            saes: Vec::new(),
            nodes: Some("0.attn.k[5],1.mlp.post_act[3]".into()),
            json: true,
        },
    })
    .unwrap();
    let chosen: NodeId = "1.mlp.post_act[3]".parse().unwrap();
    let src = ScanSource::open(&model_dir, &fp)
        .unwrap()
        .expect("the scan of chosen nodes is found");
    assert!(src.node(&chosen).is_some());
    assert!(src.std(&chosen).is_some());
    assert!(src.node(&"1.mlp.post_act[4]".parse().unwrap()).is_none());
    assert!(src.hook_means("1.mlp.post_act").is_none());
    assert!(src.skipped().is_empty());

    // Beside the main scan: the main scan answers first, the chosen one for what it lacks; a broken folder is
    // left out with a reason, and the others still serve.
    std::fs::create_dir(model_dir.join("scan-broken")).unwrap();
    std::fs::write(model_dir.join("scan-broken/index.json"), "{").unwrap();
    let src = ScanSource::open(&model_dir, &fp).unwrap().unwrap();
    assert_eq!(src.skipped().len(), 1, "{:?}", src.skipped());
    assert!(src.skipped()[0].contains("scan-broken"), "{:?}", src.skipped());
    assert!(src.node(&chosen).is_some());
}
