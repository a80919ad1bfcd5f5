//! One sweep cell, run inside its own child process (`zobench run-cell`): load the model and
//! the task, measure zero-shot accuracy, train, select on dev, evaluate on test, measure.

use crate::config::CellSpec;
use crate::provenance;
use crate::record::{CellStatus, CurvePoint, RunRecord};
use crate::registry;
use anyhow::Context;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use zo_models::classifier::HEAD_PARAMS;
use zo_models::{EncodedBatch, Pooling, SequenceClassifier, TextTokenizer};
use zo_optim::{FoSgd, ParamStore, ZoSgd};
use zo_tasks::{Example, SplitSpec};

/// Tokenized examples of one split: unpadded ids and gold labels.
struct Split {
    rows: Vec<Vec<i64>>,
    labels: Vec<usize>,
}

fn tokenize(tok: &TextTokenizer, ex: &[Example], max_length: usize) -> anyhow::Result<Split> {
    let mut rows = Vec::with_capacity(ex.len());
    for chunk in ex.chunks(256) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        let b = tok.encode(&texts, None, max_length)?;
        for r in 0..b.rows {
            let ids = &b.input_ids[r * b.cols..(r + 1) * b.cols];
            let m = &b.attention_mask[r * b.cols..(r + 1) * b.cols];
            let n = m.iter().filter(|&&x| x == 1).count();
            rows.push(ids[..n].to_vec());
        }
    }
    Ok(Split {
        rows,
        labels: ex.iter().map(|e| e.label).collect(),
    })
}

/// Accuracy of `model` with parameters `ps` on a split; batches sorted by length.
fn evaluate(
    model: &SequenceClassifier,
    ps: &ParamStore,
    split: &Split,
    bs: usize,
    pad: i64,
) -> f64 {
    let mut order: Vec<usize> = (0..split.rows.len()).collect();
    order.sort_by_key(|&i| split.rows[i].len());
    let mut correct = 0usize;
    for chunk in order.chunks(bs) {
        let rows: Vec<Vec<i64>> = chunk.iter().map(|&i| split.rows[i].clone()).collect();
        let pred = model.predict(ps, &EncodedBatch::from_rows(&rows, pad));
        correct += chunk
            .iter()
            .zip(pred)
            .filter(|(i, p)| split.labels[**i] == *p)
            .count();
    }
    if order.is_empty() {
        0.0
    } else {
        correct as f64 / order.len() as f64
    }
}

/// Test accuracy of predicting the most frequent training label (ties: the smaller label).
fn majority_acc(train: &[usize], test: &[usize]) -> f64 {
    let n = train.iter().copied().max().map_or(0, |m| m + 1);
    let mut counts = vec![0usize; n];
    train.iter().for_each(|&l| counts[l] += 1);
    let maj = (0..n)
        .max_by_key(|&l| (counts[l], std::cmp::Reverse(l)))
        .unwrap_or(0);
    zo_tasks::accuracy(&vec![maj; test.len()], test)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[idx])
}

/// A record for a cell that produced no result of its own (crash, timeout, OOM, bad input).
pub fn failed_record(
    spec: &CellSpec,
    run_id: &str,
    status: CellStatus,
    error: String,
    wall_s: f64,
    started_at: String,
) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        sweep: spec.sweep.clone(),
        model: spec.model.clone(),
        family: None,
        task: spec.task.clone(),
        scheme: spec.scheme.clone(),
        optimizer: spec.optimizer.clone(),
        estimator: estimator_name(&spec.optimizer).into(),
        hparams: spec.hparams.clone(),
        seed: spec.seed,
        data_seed: spec.data_seed,
        steps: spec.steps,
        batch_size: spec.batch_size,
        status,
        error: Some(error),
        majority_acc: None,
        zero_shot_acc: None,
        best_dev_acc: None,
        best_step: None,
        test_acc: None,
        final_train_loss: None,
        trainable_params: None,
        total_params: None,
        peak_mem_bytes: None,
        mem_method: "VmHWM".into(),
        mem_breakdown: BTreeMap::new(),
        time_per_step_s: None,
        time_per_step_p10_s: None,
        time_per_step_p90_s: None,
        forward_passes_per_step: None,
        total_forward_passes: None,
        num_train: None,
        num_dev: None,
        num_eval: None,
        wall_s,
        backend: spec.backend.clone(),
        precision: "f32".into(),
        threads: spec.threads,
        cpu: provenance::cpu_model(),
        git_commit: provenance::git_commit(),
        versions: provenance::versions(),
        started_at,
    }
}

/// Gradient estimator of an optimizer name.
pub fn estimator_name(optimizer: &str) -> &'static str {
    if optimizer.starts_with("zo-") {
        "rge-two-sided"
    } else {
        "backprop"
    }
}

/// Runs one cell and returns its record; the loss curve is written to `curve_path`
/// (one [`CurvePoint`] a line, flushed as it goes).
///
/// # Errors
/// Bad input (model files, task data) or an internal failure. A NaN loss is not an error: it
/// gives status `diverged`.
pub fn run_cell(spec: &CellSpec, run_id: &str, curve_path: &Path) -> anyhow::Result<RunRecord> {
    let t_start = Instant::now();
    let started_at = provenance::now_rfc3339();
    let device = match spec.backend.as_str() {
        "flex" => Device::flex(),
        other => anyhow::bail!("backend `{other}` is not built into this binary"),
    };
    let src = registry::resolve_name(&spec.model).map_err(crate::error::UserError::new)?;
    let (dir, tok_path) = registry::model_files(&src);
    let tok = TextTokenizer::from_file(&tok_path)?;
    let pad = i64::from(tok.pad_id());
    let split_spec = SplitSpec {
        num_train: spec.num_train,
        num_dev: spec.num_dev,
        num_eval: spec.num_eval,
        data_seed: spec.data_seed,
    };
    let data = zo_tasks::load_task(&spec.task, &spec.data_dir, &split_spec)?;
    let pooling = Pooling::parse(&spec.pooling).context("pooling")?;
    let (model, mut store) =
        SequenceClassifier::load(&dir, data.num_labels(), pooling, spec.seed, &device)?;
    let load_peak = provenance::peak_rss_bytes();
    // Loading holds the file bytes and their f32 copies at once (about 2 x the weights); reset
    // the high-water mark so `peak_mem_bytes` measures evaluation and training.
    let hwm_reset = provenance::reset_peak_rss();
    let uses_pooler = pooling == Pooling::Pooler;
    match spec.scheme.as_str() {
        // Full fine-tuning: every parameter the loss depends on (the pooler only when the
        // classifier reads it).
        "ft" => store.set_trainable(|n| uses_pooler || !n.starts_with("pooler.")),
        "head" => store.set_trainable(|n| HEAD_PARAMS.contains(&n)),
        other => anyhow::bail!("scheme `{other}` is not implemented"),
    }
    // Truncate to what the position table can hold.
    let max_len = spec
        .max_length
        .min(model.encoder.config.max_position_embeddings);
    let train = tokenize(&tok, &data.train, max_len)?;
    let dev = tokenize(&tok, &data.dev, max_len)?;
    let test = tokenize(&tok, &data.test, max_len)?;
    let vocab = model.encoder.config.vocab_size as i64;
    for (name, split) in [("train", &train), ("dev", &dev), ("test", &test)] {
        if let Some(bad) = split
            .rows
            .iter()
            .flatten()
            .find(|&&id| id < 0 || id >= vocab)
        {
            return Err(crate::error::UserError::new(format!(
                "tokenizer `{}` produced id {bad} on the {name} split, outside the model's vocab_size {vocab} ({}): the tokenizer does not belong to this model",
                tok_path.display(),
                dir.join("config.json").display()
            ))
            .into());
        }
    }
    anyhow::ensure!(
        !train.rows.is_empty(),
        "task `{}` has no training examples",
        spec.task
    );
    tracing::info!(
        run_id,
        train = train.rows.len(),
        dev = dev.rows.len(),
        test = test.rows.len(),
        trainable = store.num_trainable(),
        "cell loaded"
    );

    let ebs = spec.eval_batch_size;
    let zero_shot_acc = evaluate(&model, &store, &test, ebs, pad);
    let mut best_dev = evaluate(&model, &store, &dev, ebs, pad);
    let mut best_step = 0usize;
    // Best-on-dev parameters are kept on disk, not in memory, so that keeping them does not
    // inflate the measured peak memory (a ZO cell would otherwise hold its weights twice).
    let snapshot_path = curve_path.with_extension("best.bin");
    let save_snapshot = |s: &mut ParamStore| -> anyhow::Result<()> {
        let tmp = snapshot_path.with_extension("bin.tmp");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        s.write_trainable(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &snapshot_path)?;
        Ok(())
    };
    save_snapshot(&mut store)?;
    tracing::info!(zero_shot_acc, dev_acc = best_dev, "step 0");

    let mut curve_file = std::io::BufWriter::new(
        std::fs::File::create(curve_path)
            .with_context(|| format!("creating {}", curve_path.display()))?,
    );
    let zo = spec.optimizer.starts_with("zo-");
    let (zo_opt, fo_opt) = match spec.optimizer.as_str() {
        "zo-sgd" => (
            Some(ZoSgd {
                lr: spec.hparams.lr,
                mu: spec.hparams.mu.context("zo-sgd needs mu")?,
                q: spec.hparams.q.unwrap_or(1),
                weight_decay: spec.hparams.weight_decay,
            }),
            None,
        ),
        "fo-sgd" => (
            None,
            Some(FoSgd {
                lr: spec.hparams.lr,
                weight_decay: spec.hparams.weight_decay,
            }),
        ),
        other => anyhow::bail!("optimizer `{other}` is not implemented"),
    };
    if !zo {
        store.enable_grad();
    }
    let fpps: u64 = if zo {
        2 * spec.hparams.q.unwrap_or(1) as u64
    } else {
        1
    };

    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.seed ^ 0xBA7C_4E5);
    let mut perm: Vec<usize> = (0..train.rows.len()).collect();
    perm.shuffle(&mut rng);
    let mut cursor = 0usize;
    let mut step_times = Vec::with_capacity(spec.steps);
    let mut status = CellStatus::Ok;
    let mut error = None;
    let mut last_loss = None;
    let mut forward_passes = 0u64;
    for step in 1..=spec.steps {
        let mut idx = Vec::with_capacity(spec.batch_size);
        while idx.len() < spec.batch_size {
            if cursor == perm.len() {
                perm.shuffle(&mut rng);
                cursor = 0;
            }
            idx.push(perm[cursor]);
            cursor += 1;
        }
        let rows: Vec<Vec<i64>> = idx.iter().map(|&i| train.rows[i].clone()).collect();
        let labels: Vec<usize> = idx.iter().map(|&i| train.labels[i]).collect();
        let batch = EncodedBatch::from_rows(&rows, pad);
        let t0 = Instant::now();
        let loss = if let Some(opt) = &zo_opt {
            let rep = opt.step(
                &mut store,
                spec.seed,
                step as u64,
                &mut |ps: &ParamStore| model.loss(ps, &batch, &labels).into_scalar::<f32>(),
            );
            rep.loss()
        } else {
            let opt = fo_opt.as_ref().expect("fo optimizer");
            opt.step(&mut store, &mut |ps: &ParamStore| {
                model.loss(ps, &batch, &labels)
            })
        };
        step_times.push(t0.elapsed().as_secs_f64());
        forward_passes += fpps;
        last_loss = Some(loss as f64);
        let mut point = CurvePoint {
            step,
            train_loss: loss as f64,
            forward_passes,
            dev_acc: None,
        };
        if !loss.is_finite() {
            status = CellStatus::Diverged;
            error = Some(format!("training loss became {loss} at step {step}"));
            writeln!(curve_file, "{}", serde_json::to_string(&point)?)?;
            break;
        }
        if step % spec.eval_every == 0 || step == spec.steps {
            let acc = evaluate(&model, &store.detached(), &dev, ebs, pad);
            point.dev_acc = Some(acc);
            tracing::info!(step, loss, dev_acc = acc, "eval");
            if acc > best_dev {
                best_dev = acc;
                best_step = step;
                save_snapshot(&mut store)?;
            }
        }
        writeln!(curve_file, "{}", serde_json::to_string(&point)?)?;
        if step % 10 == 0 {
            curve_file.flush()?;
        }
    }
    curve_file.flush()?;
    // Test accuracy of the parameters that were best on dev.
    let trainable = store.num_trainable() as u64;
    {
        let mut r = std::io::BufReader::new(std::fs::File::open(&snapshot_path)?);
        store.read_trainable(&mut r)?;
    }
    std::fs::remove_file(&snapshot_path).ok();
    let test_acc = evaluate(&model, &store.detached(), &test, ebs, pad);
    tracing::info!(test_acc, best_dev, best_step, "done");

    let mut sorted = step_times.clone();
    sorted.sort_by(f64::total_cmp);
    let mut mem_breakdown = BTreeMap::new();
    mem_breakdown.insert("weights".to_string(), store.bytes());
    mem_breakdown.insert("optimizer_state".to_string(), 0);
    if let Some(b) = load_peak {
        mem_breakdown.insert("load_peak_rss".to_string(), b);
    }
    if !zo {
        mem_breakdown.insert("gradients".to_string(), trainable * 4);
    }
    let (n_train, n_dev, n_test) = data.counts();
    let mut rec = failed_record(spec, run_id, status, String::new(), 0.0, started_at);
    rec.error = error;
    rec.family = Some(model.encoder.config.model_type.clone());
    rec.zero_shot_acc = Some(zero_shot_acc);
    rec.majority_acc = Some(majority_acc(&train.labels, &test.labels));
    rec.best_dev_acc = Some(best_dev);
    rec.best_step = Some(best_step);
    rec.test_acc = Some(test_acc);
    rec.final_train_loss = last_loss;
    rec.trainable_params = Some(trainable);
    rec.total_params = Some(store.num_params() as u64);
    rec.peak_mem_bytes = provenance::peak_rss_bytes();
    rec.mem_method = if hwm_reset {
        "VmHWM after load".into()
    } else {
        "VmHWM (includes load)".into()
    };
    rec.mem_breakdown = mem_breakdown;
    rec.time_per_step_s = percentile(&sorted, 0.5);
    rec.time_per_step_p10_s = percentile(&sorted, 0.1);
    rec.time_per_step_p90_s = percentile(&sorted, 0.9);
    rec.forward_passes_per_step = Some(fpps as f64);
    rec.total_forward_passes = Some(forward_passes);
    rec.num_train = Some(n_train);
    rec.num_dev = Some(n_dev);
    rec.num_eval = Some(n_test);
    rec.wall_s = t_start.elapsed().as_secs_f64();
    Ok(rec)
}
