//! SAE features as nodes (issue 16): `<hook>.sae[i]` ids, their scan (`scan --sae`), the workbench's view of
//! them (`open --sae`) and `run --ablate` on them.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use circuitscope::analysis::sae::{Architecture, Sae, SaeConfig, SAE_FORMAT_VERSION};
use circuitscope::analysis::scan::{
    scan_chosen, scan_with_saes, ExemplarLayout, ScanError, ScanIndex, ScanOptions, UnknownScanNode,
};
use circuitscope::circuit::NodeId;
use circuitscope::model::{Gpt, HookName, HookSite, Hooks, LoadOptions};
use tempfile::TempDir;

use crate::common::{cli, cli_err};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-gpt/rms_sink_topk_bigram")
}

fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The "mirror" SAE of a hook of width d: 2d ReLU latents, latent c = relu(x_c) and latent d + c = relu(−x_c)
/// (W_enc = [I | −I], W_dec = [I; −I], no biases), so it reconstructs x exactly and each latent's statistics
/// follow from its channel's.
pub fn mirror_sae(hook: HookName, d: usize) -> Sae {
    let mut enc = vec![0f32; d * 2 * d];
    let mut dec = vec![0f32; 2 * d * d];
    for c in 0..d {
        enc[c * 2 * d + c] = 1.0;
        enc[c * 2 * d + d + c] = -1.0;
        dec[c * d + c] = 1.0;
        dec[(d + c) * d + c] = -1.0;
    }
    let config = SaeConfig {
        format_version: SAE_FORMAT_VERSION,
        hook,
        d_in: d,
        n_latents: 2 * d,
        architecture: Architecture::Relu,
        k: None,
        apply_b_pre_to_input: true,
        model_fingerprint: None,
        imported_from: None,
        training: None,
    };
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
    Sae::new(
        config,
        t(enc, &[d, 2 * d]),
        t(vec![0.0; 2 * d], &[2 * d]),
        t(dec, &[2 * d, d]),
        t(vec![0.0; d], &[d]),
    )
    .unwrap()
}

fn stream(vocab: u32, n: usize) -> Vec<u32> {
    let mut x = 777u64;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % vocab as u64) as u32
        })
        .collect()
}

fn opts() -> ScanOptions {
    ScanOptions {
        seq_len: None,
        batch_tokens: 4096,
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

/// The features of the mirror SAE on `final_resid` are scanned into the index: latent c's statistics and top
/// exemplars are those of relu(final_resid[c]), computed here from a recorded forward.
#[test]
fn scan_holds_sae_features_like_channels() {
    let m = Gpt::load(&fixture(), LoadOptions::default()).unwrap().0;
    let d = m.config.d_model;
    let tokens = stream(m.config.vocab_size as u32, 2 * m.config.block_size);
    let sae = mirror_sae(HookName::FinalResid, d);
    let data = scan_with_saes(&m, &tokens, &opts(), &[(&sae, "mirror")], &mut |_| {}).unwrap();
    let last = data.hooks.last().unwrap();
    assert_eq!((last.name.as_str(), last.width), ("final_resid.sae", 2 * d));
    assert_eq!(data.nodes(), m.config.num_nodes() + 2 * d);
    assert_eq!(data.saes.len(), 1);
    assert_eq!(data.saes[0].fingerprint, sae.fingerprint().unwrap());

    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("scan");
    data.write(&dir, &data.meta("fp", None, "stream")).unwrap();
    let index = ScanIndex::open(&dir).unwrap();
    assert_eq!(index.meta().saes, data.saes);

    // Brute force: final_resid over the same two sequences.
    let input = Tensor::from_slice(&tokens, (2, m.config.block_size), &Device::Cpu).unwrap();
    let mut rec = Hooks::recording("final_resid$").unwrap();
    m.forward(&input, &mut rec).unwrap();
    let x: Vec<f32> = rec.recorded["final_resid"].flatten_all().unwrap().to_vec1().unwrap();
    let n = tokens.len();
    for c in [0, 3, d - 1] {
        for (latent, sign) in [(c, 1f32), (d + c, -1f32)] {
            let id = NodeId::feature(HookName::FinalResid, latent).unwrap();
            let node = index.node(&id).unwrap();
            let v: Vec<f32> = x.chunks(d).map(|row| (sign * row[c]).max(0.0)).collect();
            let mean = v.iter().map(|&a| a as f64).sum::<f64>() / n as f64;
            let max = v.iter().copied().fold(0f32, f32::max);
            let nnz = v.iter().filter(|&&a| a != 0.0).count();
            assert!(
                (node.mean as f64 - mean).abs() < 1e-5 * (1.0 + mean.abs()),
                "{id}: mean"
            );
            assert!(
                (node.max - max).abs() < 1e-5 * (1.0 + max.abs()),
                "{id}: max {} vs {max}",
                node.max
            );
            assert!(node.min >= 0.0, "{id}: min {}", node.min);
            assert_eq!(node.density, (nnz as f64 / n as f64) as f32, "{id}: density");
            // The top exemplar's pivot is the token of the largest activation.
            if max > 0.0 {
                let top = &node.top[0];
                assert!(
                    (top.acts[top.pivot] - max).abs() < 1e-5 * (1.0 + max),
                    "{id}: top exemplar"
                );
            }
        }
    }
    // The channel itself is still there, and is not the feature of the same index.
    let ch = index.node(&NodeId::final_resid(3)).unwrap();
    let f = index.node(&NodeId::feature(HookName::FinalResid, 3).unwrap()).unwrap();
    assert!(ch.min < 0.0 && f.min >= 0.0);

    // A feature of an SAE the scan did not run is refused by name.
    let other = NodeId::feature(HookName::block(0, HookSite::ResidMid), 1).unwrap();
    match index.node(&other) {
        Err(ScanError::UnknownNode {
            problem: UnknownScanNode::NoSae { hook },
            ..
        }) => assert_eq!(hook, "0.resid_mid"),
        e => panic!("{e:?}"),
    }
    let past = NodeId::feature(HookName::FinalResid, 2 * d).unwrap();
    assert!(index.node(&past).unwrap_err().to_string().contains("final_resid.sae"));
    // An index.json whose SAE entry does not match its hook entries is refused, naming the entry.
    let meta_path = dir.join("index.json");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["saes"][0]["n_latents"] = serde_json::json!(2 * d + 1);
    std::fs::write(&meta_path, serde_json::to_string(&v).unwrap()).unwrap();
    let e = ScanIndex::open(&dir).unwrap_err().to_string();
    assert!(
        e.contains("final_resid.sae") && e.contains("index.json") && !e.contains('\n'),
        "{e}"
    );
    // One SAE per hook.
    let e = scan_with_saes(&m, &tokens, &opts(), &[(&sae, "a"), (&sae, "b")], &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("two SAEs"), "{e}");
}

/// `scan --sae DIR` and `scan show` on a feature, through the CLI on the bundled dense model.
#[test]
fn scan_cli_takes_an_sae_and_shows_its_features() {
    let tmp = TempDir::new().unwrap();
    let model = bundled("tinypython-dense");
    let sae_dir = tmp.path().join("sae");
    mirror_sae(HookName::block(1, HookSite::ResidMid), 128)
        .save(&sae_dir)
        .unwrap();
    let out = tmp.path().join("scan");
    let r = cli(&[
        "scan",
        "--model",
        s(&model),
        "--tokens",
        "512",
        "--top",
        "3",
        "--sae",
        s(&sae_dir),
        "--out",
        s(&out),
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["saes"][0]["hook"], "1.resid_mid.sae");
    assert_eq!(v["saes"][0]["n_latents"], 256);
    let show = |node: &str| cli(&["scan", "show", "--model", s(&model), "--scan", s(&out), node, "--json"]);
    let r = show("1.resid_mid.sae[5]");
    assert!(r.ok, "{}", r.stderr);
    let node: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(node["id"], "1.resid_mid.sae[5]");
    assert!(node["min"].as_f64().unwrap() >= 0.0);
    assert!(!node["top"].as_array().unwrap().is_empty());
    // TransformerLens's spelling of the same feature.
    let tl = show("blocks.1.hook_resid_mid.sae[5]");
    assert_eq!(tl.stdout, r.stdout);
    let text = cli(&[
        "scan",
        "show",
        "--model",
        s(&model),
        "--scan",
        s(&out),
        "1.resid_mid.sae[5]",
    ]);
    assert!(
        text.ok && text.stdout.starts_with("1.resid_mid.sae[5]"),
        "{}",
        text.stdout
    );

    // `explain` reads features through the SAE and stores their explanations beside the scan.
    let r = cli(&[
        "explain",
        "--model",
        s(&model),
        "--scan",
        s(&out),
        "--sae",
        s(&sae_dir),
        "--node",
        "1.resid_mid.sae[5]",
        "--held-out-tokens",
        "512",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let e: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(e["nodes"][0]["id"], "1.resid_mid.sae[5]");
    assert_eq!(e["summary"]["nodes"], 1);
    let stored = std::fs::read_to_string(out.join("explanations.json")).unwrap();
    assert!(stored.contains("1.resid_mid.sae[5]"));
    cli_err(
        &[
            "explain",
            "--model",
            s(&model),
            "--scan",
            s(&out),
            "--node",
            "1.resid_mid.sae[5]",
        ],
        &["1.resid_mid.sae[5]", "--sae"],
    );
    cli_err(
        &[
            "explain",
            "--model",
            s(&model),
            "--sae",
            s(&sae_dir),
            "--node",
            "1.resid_mid.sae[5]",
        ],
        &["did not run this SAE", "scan --sae"],
    );

    let bad = |args: &[&str], needles: &[&str]| cli_err(args, needles);
    let show_args = |node: &'static str| -> Vec<String> {
        ["scan", "show", "--model", s(&model), "--scan", s(&out), node]
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    let v = show_args("0.resid_mid.sae[1]");
    bad(
        &v.iter().map(String::as_str).collect::<Vec<_>>(),
        &["0.resid_mid", "--sae"],
    );
    let v = show_args("1.resid_mid.sae[256]");
    bad(
        &v.iter().map(String::as_str).collect::<Vec<_>>(),
        &["1.resid_mid.sae", "256"],
    );
    let v = show_args("1.resid_nope.sae[1]");
    bad(&v.iter().map(String::as_str).collect::<Vec<_>>(), &["1.resid_nope"]);
    // An SAE folder that is none, or one for another hook width, fails before any scanning.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    bad(
        &[
            "scan",
            "--model",
            s(&model),
            "--tokens",
            "256",
            "--sae",
            s(&empty),
            "--out",
            s(&tmp.path().join("x")),
        ],
        &["not an SAE folder"],
    );
    let narrow = tmp.path().join("narrow");
    mirror_sae(HookName::block(1, HookSite::ResidMid), 16)
        .save(&narrow)
        .unwrap();
    bad(
        &[
            "scan",
            "--model",
            s(&model),
            "--tokens",
            "256",
            "--sae",
            s(&narrow),
            "--out",
            s(&tmp.path().join("x")),
        ],
        &["narrow"],
    );
}

/// The bundled sparse model copied to `dir` (so that a scan with an SAE can be written beside it).
fn sparse_copy(dir: &Path) -> PathBuf {
    let src = bundled("tinypython-sparse");
    let dst = dir.join("tinypython-sparse");
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

fn open_options(model: &Path, session: Option<PathBuf>, sae: Option<PathBuf>) -> circuitscope::workbench::OpenOptions {
    circuitscope::workbench::OpenOptions {
        model: model.to_path_buf(),
        circuit: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tui/bracket_counting.json")),
        task: "bracket_counting".into(),
        session,
        sae,
    }
}

fn ran(reply: circuitscope::workbench::Reply) -> circuitscope::workbench::RunSummary {
    match reply {
        circuitscope::workbench::Reply::Ran(r) => *r,
        other => panic!("{other:?}"),
    }
}

/// The workbench opened with `--sae`: a feature's detail (scan statistics and exemplars, task view, decoder
/// direction through the vocabulary), feature ablation as the subtraction of z_i·W_dec[i] (checked against
/// the channel it mirrors), and one-line refusals.
#[test]
fn the_workbench_inspects_and_ablates_features() {
    use circuitscope::workbench::{self, Ablation, AblationKind, Reply, Request};
    let tmp = TempDir::new().unwrap();
    let model = sparse_copy(tmp.path());
    let sae_dir = tmp.path().join("sae");
    mirror_sae(HookName::FinalResid, 128).save(&sae_dir).unwrap();
    let r = cli(&[
        "scan",
        "--model",
        s(&model),
        "--tokens",
        "512",
        "--top",
        "3",
        "--sae",
        s(&sae_dir),
    ]);
    assert!(r.ok, "{}", r.stderr);

    let r = cli(&[
        "explain",
        "--model",
        s(&model),
        "--sae",
        s(&sae_dir),
        "--node",
        "final_resid.sae[7]",
        "--held-out-tokens",
        "1024",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let explained: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let text = explained["nodes"][0]["explanation"].as_str().unwrap().to_string();
    assert!(!text.is_empty(), "{explained}");

    let opened = workbench::open(&open_options(&model, None, Some(sae_dir.clone()))).unwrap();
    assert!(
        opened.warnings.iter().all(|w| !w.contains("sae")),
        "{:?}",
        opened.warnings
    );
    // The feature's explanation is the workbench's automatic label for it.
    let f7: NodeId = "final_resid.sae[7]".parse().unwrap();
    assert_eq!(opened.explanations[&f7].text, text);
    let mut engine = opened.engine;
    assert_eq!(engine.sae_shape(), Some((HookName::FinalResid, 256)));
    let f: NodeId = "final_resid.sae[7]".parse().unwrap();
    let d = match engine.handle(Request::NodeDetail { node: f }) {
        Reply::Detail(d) => d,
        other => panic!("{other:?}"),
    };
    let stats = d.stats.as_ref().expect("the scan ran this SAE");
    assert!(stats.min >= 0.0 && stats.max > 0.0, "{stats:?}");
    assert!(!d.quantiles.is_empty() && !d.quantiles[0].top.is_empty());
    // The task view reads the feature on the task's prompts: relu(final_resid[7]) at every token.
    assert!(!d.task.class_a.is_empty());
    assert!(d.task.class_a.iter().flat_map(|s| &s.acts).all(|&v| v >= 0.0));
    assert!(d.task.class_a.iter().flat_map(|s| &s.acts).any(|&v| v > 0.0));
    // Latent 7's decoder direction is e_7: through the unembedding it promotes what channel 7 promotes.
    let ch = match engine.handle(Request::NodeDetail {
        node: NodeId::final_resid(7),
    }) {
        Reply::Detail(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(d.unembed_tokens.len(), 10);
    assert_eq!(d.unembed_tokens[0].0, ch.unembed_tokens[0].0);
    assert!((d.unembed_tokens[0].1 - ch.unembed_tokens[0].1).abs() < 1e-5);
    assert!(d.suppressed_tokens.iter().all(|(_, w)| *w <= d.unembed_tokens[0].1));
    assert!(d.suppressed_tokens[0].1 < 0.0, "{:?}", d.suppressed_tokens);

    // Zero-ablating latents 7 and 128 + 7 (relu(x_7) and relu(−x_7)) takes x_7 out: the channel's ablation.
    let prompt = opened.prompt.clone();
    let run = |engine: &mut workbench::Engine, ablations: Vec<Ablation>| {
        ran(engine.handle(Request::Run {
            id: 1,
            text: prompt.clone(),
            ablations,
        }))
    };
    let zero = |node: NodeId| Ablation {
        node,
        kind: AblationKind::Zero,
    };
    let plain = run(&mut engine, vec![]);
    let by_channel = run(&mut engine, vec![zero(NodeId::final_resid(7))]);
    let by_features = run(
        &mut engine,
        vec![zero(f), zero(NodeId::feature(HookName::FinalResid, 128 + 7).unwrap())],
    );
    let (a, b) = (by_channel.target_logits.unwrap(), by_features.target_logits.unwrap());
    assert!((a.0 - b.0).abs() < 1e-4 && (a.1 - b.1).abs() < 1e-4, "{a:?} vs {b:?}");
    assert_ne!(plain.target_logits, by_features.target_logits);
    // Mean-ablating uses the scan's mean of the feature: a run that differs from the zero ablation.
    let mean = run(
        &mut engine,
        vec![Ablation {
            node: f,
            kind: AblationKind::Mean,
        }],
    );
    let zero_f = run(&mut engine, vec![zero(f)]);
    assert_ne!(mean.target_logits, zero_f.target_logits);

    // Watched features are reported by every run; an ablated feature is reported too.
    assert!(matches!(engine.handle(Request::WatchFeatures(vec![f])), Reply::Info(_)));
    let watched = run(
        &mut engine,
        vec![zero(NodeId::feature(HookName::FinalResid, 9).unwrap())],
    );
    assert!(
        watched.acts.contains_key(&f)
            && watched
                .acts
                .contains_key(&NodeId::feature(HookName::FinalResid, 9).unwrap())
    );
    match engine.handle(Request::WatchFeatures(vec![
        NodeId::feature(HookName::FinalResid, 300).unwrap()
    ])) {
        Reply::Error(e) => assert!(e.contains("final_resid.sae[300]"), "{e}"),
        other => panic!("{other:?}"),
    }

    // A feature past the SAE's latents, or of another hook, is one line naming it.
    for (bad, needle) in [
        ("final_resid.sae[256]", "256 channels"),
        ("0.resid_mid.sae[1]", "reads `final_resid`"),
    ] {
        let node: NodeId = bad.parse().unwrap();
        match engine.handle(Request::NodeDetail { node }) {
            Reply::Error(e) => assert!(e.contains(bad) && e.contains(needle) && !e.contains('\n'), "{e}"),
            other => panic!("{other:?}"),
        }
        match engine.handle(Request::Run {
            id: 2,
            text: prompt.clone(),
            ablations: vec![zero(node)],
        }) {
            Reply::RunFailed(_, e) => assert!(e.contains(bad), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    // Another SAE on the same hook: the scan's statistics are not this SAE's, and are not shown.
    let other = tmp.path().join("other");
    let mut twin = mirror_sae(HookName::FinalResid, 128);
    twin.b_enc = Tensor::from_vec(vec![0.5f32; 256], 256, &Device::Cpu).unwrap();
    twin.save(&other).unwrap();
    let opened = workbench::open(&open_options(&model, None, Some(other))).unwrap();
    assert!(
        opened.warnings.iter().any(|w| w.contains("another SAE")),
        "{:?}",
        opened.warnings
    );
    let mut engine = opened.engine;
    match engine.handle(Request::NodeDetail { node: f }) {
        Reply::Detail(d) => assert!(d.stats.is_none()),
        other => panic!("{other:?}"),
    }
    // Its mean ablation then takes the feature's mean over the task prompts, not the scan's of the other SAE.
    let fallback = run(
        &mut engine,
        vec![Ablation {
            node: f,
            kind: AblationKind::Mean,
        }],
    );
    assert_ne!(fallback.target_logits, mean.target_logits);
    // An SAE for another model width is refused at open.
    let narrow = tmp.path().join("narrow");
    mirror_sae(HookName::FinalResid, 16).save(&narrow).unwrap();
    let e = workbench::open(&open_options(&model, None, Some(narrow)))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--sae") && e.contains("narrow") && !e.contains('\n'), "{e}");

    // `open --sae` refuses a bad folder in one line, before it needs a terminal.
    let session = tmp.path().join("s.json");
    cli_err(
        &[
            "open",
            "--model",
            s(&model),
            "--circuit",
            s(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tui/bracket_counting.json")),
            "--session",
            s(&session),
            "--sae",
            s(&tmp.path().join("absent")),
        ],
        &["--sae", "absent"],
    );
}

/// In the TUI: `:goto` a feature opens it in the inspector (its vocabulary reading drawn), `:label` keys the
/// annotation by the feature's id, the session keeps it, and the export has an SAE features section.
#[test]
fn features_are_labeled_saved_and_exported() {
    use circuitscope::tui::{self, ColorMode, Msg, Theme};
    use ratatui::crossterm::event::KeyCode;
    let tmp = TempDir::new().unwrap();
    let model = sparse_copy(tmp.path());
    let sae_dir = tmp.path().join("sae");
    mirror_sae(HookName::FinalResid, 128).save(&sae_dir).unwrap();
    let r = cli(&[
        "scan",
        "--model",
        s(&model),
        "--tokens",
        "256",
        "--top",
        "2",
        "--sae",
        s(&sae_dir),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let session = tmp.path().join("s.json");
    let opts = open_options(&model, Some(session.clone()), Some(sae_dir.clone()));
    let tui::Loaded {
        mut app, mut engine, ..
    } = tui::load(&opts, Theme::new(ColorMode::None)).unwrap();
    let command = |app: &mut tui::App, engine: &mut tui::Engine, line: &str| {
        crate::common::send(app, engine, [Msg::ch(':')]);
        crate::common::send(app, engine, Msg::typed(line));
        crate::common::send(app, engine, [Msg::key(KeyCode::Enter)]);
    };
    let f: NodeId = "final_resid.sae[7]".parse().unwrap();
    command(&mut app, &mut engine, "goto final_resid.sae[7]");
    assert_eq!(app.selected, Some(f));
    // The lab reports the feature jumped to beside the circuit's nodes: relu(final_resid[7]) per token.
    let run = app.lab.run.as_ref().expect("the lab ran");
    let acts = &run.acts[&f];
    assert_eq!(acts.len(), run.tokens.len());
    assert!(acts.iter().all(|&v| v >= 0.0));
    assert!(app.magnitudes().iter().any(|r| r.node == f));
    assert!(
        app.lab.node_std[&f] > 0.0,
        "the scan of this SAE gives the feature's std"
    );
    let screen = crate::common::screen_text(&crate::common::draw(&app, 160, 50));
    for needle in [
        "final_resid.sae[7]",
        "SAE latent 7",
        "promotes",
        "suppresses",
        "no weight edges",
    ] {
        assert!(screen.contains(needle), "{needle}:\n{screen}");
    }
    // Every screen draws with a feature selected (it is on none of the circuit's maps and tables).
    for key in ['1', '3', '4', '5', '6', '7', '8', '2'] {
        crate::common::send(&mut app, &mut engine, [Msg::ch(key)]);
        for (w, h) in [(80, 24), (160, 50)] {
            crate::common::draw(&app, w, h);
        }
    }
    assert_eq!(app.selected, Some(f));
    command(&mut app, &mut engine, "label a feature's label");
    // The notes view lists the feature; Enter on it goes back to the inspector.
    command(&mut app, &mut engine, "goto 0.attn.resid_delta[73]");
    assert_ne!(app.selected, Some(f));
    crate::common::send(&mut app, &mut engine, [Msg::ch('4')]);
    let notes = crate::common::screen_text(&crate::common::draw(&app, 160, 50));
    assert!(
        notes.contains("final_resid.sae[7]") && notes.contains("(SAE feature)"),
        "{notes}"
    );
    crate::common::send(&mut app, &mut engine, [Msg::key(KeyCode::Enter)]);
    assert_eq!(app.selected, Some(f), "{}", app.status);
    // Prompt evidence measures the feature on the lab's prompt.
    command(&mut app, &mut engine, "evidence");
    match app.annotations[&f].evidence.as_slice() {
        [circuitscope::session::Evidence::Prompt { magnitudes, .. }] => assert!(magnitudes.contains_key(&f)),
        other => panic!("{other:?}"),
    }
    command(&mut app, &mut engine, "ablate final_resid.sae[9]");
    assert!(app
        .lab
        .ablations
        .iter()
        .any(|a| a.node.to_string() == "final_resid.sae[9]"));
    command(&mut app, &mut engine, "goto final_resid.sae[999]");
    assert!(app.status.contains("final_resid.sae[999]"), "{}", app.status);
    assert_eq!(app.selected, Some(f));
    command(&mut app, &mut engine, "goto 0.resid_mid.sae[1]");
    assert!(app.status.contains("reads `final_resid`"), "{}", app.status);
    let md = tmp.path().join("report.md");
    command(&mut app, &mut engine, &format!("export {}", md.display()));
    command(&mut app, &mut engine, "w");
    let saved = std::fs::read_to_string(&session).unwrap();
    assert!(saved.contains("\"final_resid.sae[7]\""), "{saved}");
    let report = std::fs::read_to_string(&md).unwrap();
    assert!(report.contains("## SAE features"), "{report}");
    assert!(
        report.contains("### `final_resid.sae[7]`: a feature's label"),
        "{report}"
    );
    let section = &report[report.find("## SAE features").unwrap()..];
    assert!(
        section.contains("| `final_resid.sae[7]` | a feature's label | hypothesis |")
            && section.contains("Evidence")
            && section.contains("Top exemplars"),
        "{section}"
    );
    drop((app, engine));

    // Reopened with the SAE: the label is there, the cursor too, and no "not in this circuit" warning.
    let l = tui::load(&opts, Theme::new(ColorMode::None)).unwrap();
    assert!(
        l.warnings.iter().all(|w| !w.contains("not in this circuit")),
        "{:?}",
        l.warnings
    );
    assert_eq!(l.app.annotations[&f].label, "a feature's label");
    assert_eq!(l.app.selected, Some(f));
    let tui::Loaded {
        mut app, mut engine, ..
    } = l;
    tui::pump(&mut app, &mut engine);
    assert!(
        app.lab.run.as_ref().unwrap().acts.contains_key(&f),
        "an annotated feature is watched"
    );
    drop((app, engine));
    // Without it the annotation is kept but said to be outside the circuit.
    let l = tui::load(&open_options(&model, Some(session), None), Theme::new(ColorMode::None)).unwrap();
    assert!(
        l.warnings.iter().any(|w| w.contains("final_resid.sae[7]")),
        "{:?}",
        l.warnings
    );
    assert_eq!(l.app.annotations[&f].label, "a feature's label");
}

/// `run --intervene` on features of `--sae`: zeroing the mirror SAE's two latents of channel 7 is zeroing the
/// channel; scaling by 1 changes nothing; `=mean` takes the scan's mean of this SAE; refusals are one line.
#[test]
fn run_intervenes_on_features() {
    let tmp = TempDir::new().unwrap();
    let model = bundled("tinypython-dense");
    let sae_dir = tmp.path().join("sae");
    mirror_sae(HookName::FinalResid, 128).save(&sae_dir).unwrap();
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "run",
            "--model",
            s(&model),
            "--prompt",
            "for i in range(",
            "--top",
            "5",
            "--json",
        ];
        args.extend(extra);
        let r = cli(&args);
        assert!(r.ok, "{args:?}: {}", r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    };
    let probs = |v: &serde_json::Value| -> Vec<(u64, f64)> {
        v["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_u64().unwrap(), t["prob"].as_f64().unwrap()))
            .collect()
    };
    let same = |a: &[(u64, f64)], b: &[(u64, f64)]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && (x.1 - y.1).abs() < 1e-5)
    };
    let plain = probs(&run(&[]));
    let channel = probs(&run(&["--intervene", "final_resid[7]=0"]));
    let features = probs(&run(&[
        "--sae",
        s(&sae_dir),
        "--intervene",
        "final_resid.sae[7]=0",
        "final_resid.sae[135]=0",
    ]));
    assert!(same(&channel, &features), "{channel:?} vs {features:?}");
    assert!(!same(&plain, &features), "the ablation changed nothing");
    let unit = probs(&run(&[
        "--sae",
        s(&sae_dir),
        "--intervene",
        "blocks.1.hook_resid_post.sae[7]*=1",
    ]));
    assert!(same(&plain, &unit), "{plain:?} vs {unit:?}");

    // `--channels` prints features of --sae beside channels: the mirror's latents are relu(±x_7).
    let v = run(&[
        "--sae",
        s(&sae_dir),
        "--per-token",
        "--channels",
        "final_resid[7],final_resid.sae[7],final_resid.sae[135]",
    ]);
    let rows = v["channels"].as_array().unwrap();
    assert_eq!(rows[1]["id"], "final_resid.sae[7]");
    let vals = |i: usize| -> Vec<f64> {
        rows[i]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (x, pos, neg) = (vals(0), vals(1), vals(2));
    assert!(x.len() > 1);
    for ((x, p), n) in x.iter().zip(&pos).zip(&neg) {
        assert!(
            (p - x.max(0.0)).abs() < 1e-5 && (n - (-x).max(0.0)).abs() < 1e-5,
            "{x} {p} {n}"
        );
    }

    // `=mean` reads the scan of this SAE.
    let scan = tmp.path().join("scan");
    let r = cli(&[
        "scan",
        "--model",
        s(&model),
        "--tokens",
        "256",
        "--sae",
        s(&sae_dir),
        "--out",
        s(&scan),
    ]);
    assert!(r.ok, "{}", r.stderr);
    run(&[
        "--sae",
        s(&sae_dir),
        "--scan",
        s(&scan),
        "--intervene",
        "final_resid.sae[7]@-1=mean",
    ]);

    let base = ["run", "--model", s(&model), "--prompt", "for i in range("];
    let bad = |extra: &[&str], needles: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        cli_err(&args, needles);
    };
    bad(&["--intervene", "final_resid.sae[7]=0"], &["--sae"]);
    bad(&["--channels", "final_resid.sae[7]"], &["--channels", "--sae"]);
    bad(
        &["--sae", s(&sae_dir), "--channels", "final_resid.sae[300]"],
        &["final_resid.sae[300]", "256 channels"],
    );
    bad(
        &["--sae", s(&sae_dir), "--intervene", "final_resid.sae[256]=0"],
        &["final_resid.sae[256]", "256 channels"],
    );
    bad(
        &["--sae", s(&sae_dir), "--intervene", "1.resid_mid.sae[2]=0"],
        &["1.resid_mid.sae[2]", "reads `final_resid`"],
    );
    bad(
        &["--sae", s(&sae_dir), "--intervene", "final_resid.sae[x]=0"],
        &["final_resid.sae[x]"],
    );
    // The bundled scan has no SAE: `=mean` on a feature says where means come from.
    bad(
        &["--sae", s(&sae_dir), "--intervene", "final_resid.sae[7]=mean"],
        &["final_resid.sae", "scan --sae"],
    );
}

/// `bench tui --sae`: the lab's latency with an SAE active runs and says so.
#[test]
fn the_tui_benchmark_takes_an_sae() {
    let tmp = TempDir::new().unwrap();
    let sae_dir = tmp.path().join("sae");
    mirror_sae(HookName::FinalResid, 128).save(&sae_dir).unwrap();
    let model = bundled("tinypython-sparse");
    let r = cli(&[
        "bench",
        "tui",
        "--model",
        s(&model),
        "--sae",
        s(&sae_dir),
        "--tokens",
        "16",
        "--iters",
        "2",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["sae"], s(&sae_dir));
    assert!(v["keystroke_to_redraw_ms"]["median"].as_f64().unwrap() > 0.0);
    cli_err(
        &[
            "bench",
            "tui",
            "--model",
            s(&model),
            "--sae",
            s(&tmp.path().join("absent")),
            "--iters",
            "1",
        ],
        &["--sae", "absent"],
    );
}

/// Chosen channels of the very hook an SAE reads: the SAE still sees the whole hook, and both the chosen channels
/// and the features equal those of the scan of every node.
#[test]
fn a_scan_of_chosen_nodes_beside_an_sae_on_their_hook() {
    let m = Gpt::load(&fixture(), LoadOptions::default()).unwrap().0;
    let d = m.config.d_model;
    let tokens = stream(m.config.vocab_size as u32, 2 * m.config.block_size);
    let sae = mirror_sae(HookName::FinalResid, d);
    let full = scan_with_saes(&m, &tokens, &opts(), &[(&sae, "mirror")], &mut |_| {}).unwrap();
    let ids: Vec<NodeId> = ["final_resid[1]", "0.mlp.post_act[2]"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let chosen = scan_chosen(&m, &tokens, &opts(), &[(&sae, "mirror")], Some(&ids), &mut |_| {}).unwrap();
    assert_eq!(chosen.nodes(), 2 + 2 * d);
    let tmp = TempDir::new().unwrap();
    let open = |data: &circuitscope::analysis::scan::ScanData, name: &str| {
        let dir = tmp.path().join(name);
        data.write(&dir, &data.meta("fp", None, "stream")).unwrap();
        ScanIndex::open(&dir).unwrap()
    };
    let (a, b) = (open(&full, "full"), open(&chosen, "chosen"));
    let feature: NodeId = "final_resid.sae[1]".parse().unwrap();
    for id in ids.iter().chain([&feature]) {
        assert_eq!(b.node(id).unwrap(), a.node(id).unwrap(), "{id}");
    }
}
