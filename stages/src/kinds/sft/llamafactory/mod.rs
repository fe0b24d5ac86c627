//! The `llamafactory` backend of `sft`: LLaMA-Factory's dataset, `dataset_info.json`
//! and training YAML in the original study's format, the DeepSpeed ZeRO-3
//! config, the launch of `llamafactory-cli train`, and the collection of its
//! checkpoint and loss log.
//!
//! Everything is written into the stage's artifact directory and named by
//! paths relative to it (the run's working directory), so the directory can
//! be moved, and rerun by hand: `llamafactory-cli train llama_factory/train.yaml`.

mod collect;
mod config;
mod launch;

pub(super) use config::{file_deps, problems};
pub(super) use launch::env_facts;

use super::params::{SftParams, loss_template, read_conversations};
use crate::api::artifact;
use crate::api::{RunCtx, StageError};
use collect::{Outcome, collect};
use config::{CONFIG, DeepSpeed, OUTPUT_DIR, check_turns, deepspeed, hub_id, write_files};
use launch::{find_launcher, launch};
use serde_json::json;
use std::path::Path;

pub(in crate::kinds::sft) fn run(p: &SftParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
    let conversations = read_conversations(ctx, &p.column)?;
    if conversations.is_empty() {
        return Err(StageError::BadInput {
            slot: "rows".into(),
            message: "no rows: nothing to train on".into(),
        });
    }
    for (i, c) in conversations.iter().enumerate() {
        check_turns(c).map_err(|m| StageError::BadInput {
            slot: "rows".into(),
            message: format!("row {i}: `{}`: {m}", p.column),
        })?;
    }
    let dir = ctx
        .output_path("model")
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| StageError::failed("internal error: no artifact directory"))?;
    let model = match hub_id(&p.model) {
        Some(id) => id.to_string(),
        None => ctx.resolve(&p.model).to_string_lossy().into_owned(),
    };
    let ds = deepspeed(p);
    let src = match &ds {
        DeepSpeed::File(path) => Some(ctx.resolve(path)),
        _ => None,
    };
    write_files(p, &dir, &model, src.as_deref(), &conversations)?;
    let rows = conversations.len() as u64;
    let examples = if p.max_samples == 0 {
        rows
    } else {
        rows.min(p.max_samples)
    };
    ctx.note("config", CONFIG);
    ctx.note("launched", p.launch);

    let (outcome, loss) = if p.launch {
        let launcher = find_launcher(&p.launcher, ctx)?;
        launch(&launcher, p, &dir, ds != DeepSpeed::None, ctx)?;
        collect(&dir)?
    } else {
        (Outcome::default(), Vec::new())
    };
    ctx.note("steps", outcome.steps);
    let row = json!({
        "checkpoint": p.launch.then_some(OUTPUT_DIR),
        "method": p.method.name(),
        "base_model": p.model,
        "steps": outcome.steps,
        "final_loss": outcome.final_loss,
        "examples": examples,
        "skipped": rows - examples,
        "trained_tokens": outcome.trained_tokens,
        "fingerprint": outcome.fingerprint,
        "backend": "llamafactory",
        "launched": p.launch,
        "config": CONFIG,
    });
    let template = json!({
        "checkpoint": "", "method": "", "base_model": "", "steps": 0, "final_loss": 0.5,
        "examples": 0, "skipped": 0, "trained_tokens": 0, "fingerprint": "",
        "backend": "", "launched": true, "config": "",
    });
    let model_table = artifact::json_rows_to_typed_table(
        vec![row.as_object().cloned().unwrap_or_default()],
        template.as_object().cloned().unwrap_or_default(),
    )?;
    ctx.write_output("model", &model_table)?;
    let loss = artifact::json_rows_to_typed_table(loss, loss_template())?;
    ctx.write_output("loss", &loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stage;
    use crate::api::NoProgress;
    use crate::api::artifact;
    use crate::api::{FileDep, PlanEnv};
    use crate::kinds::sft::Sft;
    use crate::text::sharegpt::sharegpt_dataset_info;
    use collect::fingerprint;
    use config::{DATA_DIR, DIR, LOG, Z3_FILE, deepspeed_ref, train_yaml, yaml_float, yaml_str};
    use serde_json::{Map, Value};
    use std::collections::BTreeMap;
    use std::collections::BTreeSet;
    #[cfg(feature = "torch")]
    use std::path::PathBuf;
    use yaml_rust2::{Yaml, YamlLoader};

    /// The keys of every configuration of the study's RQ1 cells
    /// (`examples/train_ijcai25/rq1_overview*/*.yaml`, see
    /// seed-framework.md section 4), without the LoRA and DeepSpeed keys.
    const STUDY_KEYS: [&str; 25] = [
        "model_name_or_path",
        "stage",
        "do_train",
        "finetuning_type",
        "save_total_limit",
        "dataset",
        "template",
        "cutoff_len",
        "max_samples",
        "overwrite_cache",
        "preprocessing_num_workers",
        "output_dir",
        "logging_steps",
        "save_strategy",
        "plot_loss",
        "overwrite_output_dir",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "num_train_epochs",
        "lr_scheduler_type",
        "warmup_steps",
        "bf16",
        "ddp_timeout",
        "report_to",
    ];
    /// What tw adds: where its data lives, and the seed the study left at its default (42).
    const TW_KEYS: [&str; 2] = ["dataset_dir", "seed"];

    const ROWS: [&str; 3] = [
        r#"[{"role": "user", "content": "fix: def f(x): return x"}, {"role": "assistant", "content": "def f(x): return x + 1"}]"#,
        r#"[{"from": "system", "value": "You repair code."}, {"from": "human", "value": "print 1"}, {"from": "gpt", "value": "print(1)"}]"#,
        r#"[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]"#,
    ];

    fn params(v: Value) -> SftParams {
        let p: SftParams = serde_json::from_value(v).expect("params");
        let problems = Sft::validate(&p);
        assert!(problems.is_empty(), "{problems:?}");
        p
    }

    /// The study's cell on DeepSeek-Coder-6.7B: `method` with its settings.
    fn study(method: Value) -> Value {
        let mut v = json!({
            "backend": "llamafactory",
            "model": "hf:deepseek-ai/deepseek-coder-6.7b-base",
            "template": "deepseekcoder",
            "dataset": "rq1_tracefmt_exe_sim0.75",
            "batch_size": 8,
            "grad_accum": 8,
            "learning_rate": 2.0e-5,
            "epochs": 2.0,
            "warmup_steps": 5,
            "cutoff_len": 2048,
            "launch": false,
        });
        if let (Some(o), Some(m)) = (v.as_object_mut(), method.as_object()) {
            o.extend(m.clone());
        }
        v
    }

    struct Ran {
        /// The artifact (staging) directory.
        dir: tempfile::TempDir,
        model: Vec<Map<String, Value>>,
        loss: Vec<Map<String, Value>>,
    }

    fn run_rows(p: &SftParams, rows: &[&str]) -> Result<Ran, StageError> {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = tempfile::tempdir().expect("tempdir");
        let table: Vec<Map<String, Value>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut m = Map::new();
                m.insert("id".into(), json!(i));
                m.insert("messages".into(), json!(r));
                m
            })
            .collect();
        let (t, _) = artifact::json_rows_to_table(&table).expect("table");
        let input = base.path().join("rows.parquet");
        artifact::write_table(&input, &t).expect("write");
        let inputs = BTreeMap::from([("rows".to_string(), vec![input])]);
        let mut ctx = RunCtx::new("tune", base.path(), inputs, dir.path(), &NoProgress);
        Sft::run(p, &mut ctx)?;
        let (written, _) = ctx.into_parts();
        let read = |slot: &str| {
            artifact::table_to_json_rows(&artifact::read_table(&written[slot].path).expect("read"))
                .expect("rows")
        };
        Ok(Ran {
            model: read("model"),
            loss: read("loss"),
            dir,
        })
    }

    fn run(p: &SftParams) -> Result<Ran, StageError> {
        run_rows(p, &ROWS)
    }

    fn yaml(dir: &Path) -> (String, Yaml) {
        let text = fs_err::read_to_string(dir.join(CONFIG)).expect("train.yaml");
        let docs = YamlLoader::load_from_str(&text).expect("YAML");
        assert_eq!(docs.len(), 1);
        (text, docs[0].clone())
    }

    fn keys(doc: &Yaml) -> BTreeSet<String> {
        doc.as_hash()
            .expect("a mapping")
            .keys()
            .map(|k| k.as_str().expect("string key").to_string())
            .collect()
    }

    fn expected_keys(extra: &[&str]) -> BTreeSet<String> {
        STUDY_KEYS
            .iter()
            .chain(&TW_KEYS)
            .chain(extra)
            .map(|k| k.to_string())
            .collect()
    }

    /// The values every study config shares, read back as LLaMA-Factory reads them.
    fn assert_study_values(text: &str, doc: &Yaml, batch: i64) {
        let s = |k: &str| doc[k].as_str().map(str::to_string);
        let i = |k: &str| doc[k].as_i64();
        let b = |k: &str| doc[k].as_bool();
        assert_eq!(
            s("model_name_or_path").as_deref(),
            Some("deepseek-ai/deepseek-coder-6.7b-base")
        );
        assert_eq!(s("stage").as_deref(), Some("sft"));
        assert_eq!(b("do_train"), Some(true));
        assert_eq!(s("dataset").as_deref(), Some("rq1_tracefmt_exe_sim0.75"));
        assert_eq!(s("dataset_dir").as_deref(), Some(DATA_DIR));
        assert_eq!(s("template").as_deref(), Some("deepseekcoder"));
        assert_eq!(i("cutoff_len"), Some(2048));
        assert_eq!(i("max_samples"), Some(100000));
        assert_eq!(b("overwrite_cache"), Some(true));
        assert_eq!(i("preprocessing_num_workers"), Some(16));
        assert_eq!(s("output_dir").as_deref(), Some(OUTPUT_DIR));
        assert_eq!(i("logging_steps"), Some(10));
        assert_eq!(s("save_strategy").as_deref(), Some("epoch"));
        assert_eq!(i("save_total_limit"), Some(1));
        assert_eq!(b("plot_loss"), Some(true));
        assert_eq!(b("overwrite_output_dir"), Some(false));
        assert_eq!(i("per_device_train_batch_size"), Some(batch));
        assert_eq!(i("gradient_accumulation_steps"), Some(8));
        assert_eq!(doc["learning_rate"].as_f64(), Some(2.0e-5));
        assert_eq!(doc["num_train_epochs"].as_f64(), Some(2.0));
        assert_eq!(s("lr_scheduler_type").as_deref(), Some("cosine"));
        assert_eq!(i("warmup_steps"), Some(5));
        assert_eq!(b("bf16"), Some(true));
        assert_eq!(i("ddp_timeout"), Some(180000000));
        assert_eq!(s("report_to").as_deref(), Some("tensorboard"));
        assert_eq!(i("seed"), Some(42));
        // Spelled as the study spells them: PyYAML reads `2e-5` as a string.
        for line in [
            "learning_rate: 2.0e-5",
            "num_train_epochs: 2.0",
            "bf16: true",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        // The study's block comments, in its order.
        let blocks: Vec<&str> = text.lines().filter(|l| l.starts_with("### ")).collect();
        assert_eq!(
            blocks,
            [
                "### model",
                "### method",
                "### dataset",
                "### output",
                "### train"
            ]
        );
    }

    #[test]
    fn full_fine_tuning_writes_the_study_yaml_with_zero3() {
        let ran = run(&params(study(json!({ "method": "full" })))).expect("run");
        let (text, doc) = yaml(ran.dir.path());
        assert_eq!(keys(&doc), expected_keys(&["deepspeed"]), "{text}");
        assert_study_values(&text, &doc, 8);
        assert_eq!(doc["finetuning_type"].as_str(), Some("full"));
        // The ZeRO-3 config exists where the YAML says, and is LLaMA-Factory's.
        let ds = doc["deepspeed"].as_str().expect("deepspeed");
        assert_eq!(ds, "llama_factory/ds_z3_config.json");
        let config: Value =
            serde_json::from_str(&fs_err::read_to_string(ran.dir.path().join(ds)).expect("ds"))
                .expect("JSON");
        assert_eq!(config["zero_optimization"]["stage"], 3);
        assert_eq!(
            config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"],
            true
        );
        for auto in [
            "train_batch_size",
            "train_micro_batch_size_per_gpu",
            "gradient_accumulation_steps",
        ] {
            assert_eq!(config[auto], "auto");
        }
        assert_eq!(config["bf16"]["enabled"], "auto");
    }

    #[test]
    fn lora_cells_write_rank_and_target_all_without_deepspeed() {
        for rank in [8, 64] {
            let p = params(study(
                json!({ "method": "lora", "lora_rank": rank, "batch_size": 4 }),
            ));
            let ran = run(&p).expect("run");
            let (text, doc) = yaml(ran.dir.path());
            assert_eq!(
                keys(&doc),
                expected_keys(&["lora_target", "lora_rank"]),
                "{text}"
            );
            assert_study_values(&text, &doc, 4);
            assert_eq!(doc["finetuning_type"].as_str(), Some("lora"));
            assert_eq!(doc["lora_target"].as_str(), Some("all"));
            assert_eq!(doc["lora_rank"].as_i64(), Some(rank));
            // lora_alpha is left to LLaMA-Factory (2 x rank), as in the study.
            assert!(doc["lora_alpha"].is_badvalue());
            assert!(!ran.dir.path().join(DIR).join(Z3_FILE).exists());
        }
    }

    #[test]
    fn dataset_info_and_data_follow_the_sharegpt_schema() {
        let ran = run(&params(study(json!({ "method": "lora" })))).expect("run");
        let data = ran.dir.path().join(DATA_DIR);
        let info: Value = serde_json::from_str(
            &fs_err::read_to_string(data.join("dataset_info.json")).expect("info"),
        )
        .expect("JSON");
        let info = info.as_object().expect("object");
        assert_eq!(
            info.keys().collect::<Vec<_>>(),
            ["rq1_tracefmt_exe_sim0.75"]
        );
        let entry = &info["rq1_tracefmt_exe_sim0.75"];
        let entry_keys: Vec<&String> = entry.as_object().expect("entry").keys().collect();
        assert_eq!(entry_keys, ["file_name", "formatting", "columns", "tags"]);
        assert_eq!(entry["formatting"], "sharegpt");
        assert_eq!(entry["columns"], json!({ "messages": "messages" }));
        assert_eq!(
            entry["tags"],
            json!({
                "role_tag": "role", "content_tag": "content", "user_tag": "user",
                "assistant_tag": "assistant", "system_tag": "system"
            })
        );
        // The study's own entries (and export_sft's) are the same, less the system tag.
        let study_entry = sharegpt_dataset_info("x.jsonl", false);
        assert_eq!(study_entry["tags"].as_object().map(|t| t.len()), Some(4));

        let file = entry["file_name"].as_str().expect("file_name");
        assert_eq!(file, "rq1_tracefmt_exe_sim0.75.json");
        let records: Value =
            serde_json::from_str(&fs_err::read_to_string(data.join(file)).expect("data"))
                .expect("the data file is JSON");
        let records = records.as_array().expect("a list");
        assert_eq!(records.len(), ROWS.len());
        let roles = ["system", "user", "assistant"];
        for r in records {
            assert_eq!(r.as_object().map(|o| o.len()), Some(1), "{r}");
            for m in r["messages"].as_array().expect("messages") {
                assert!(roles.contains(&m["role"].as_str().expect("role")), "{m}");
                assert!(m["content"].is_string(), "{m}");
            }
        }
        // ShareGPT `from`/`value` rows come out as `role`/`content`.
        assert_eq!(
            records[1]["messages"],
            json!([
                { "role": "system", "content": "You repair code." },
                { "role": "user", "content": "print 1" },
                { "role": "assistant", "content": "print(1)" }
            ])
        );
    }

    #[test]
    fn without_launching_the_model_row_says_so() {
        let ran = run(&params(study(
            json!({ "method": "lora", "max_samples": 2 }),
        )))
        .expect("run");
        let row = &ran.model[0];
        assert_eq!(row["checkpoint"], Value::Null);
        assert_eq!(row["launched"], false);
        assert_eq!(row["steps"], 0);
        assert_eq!(row["examples"], 2);
        assert_eq!(row["skipped"], 1);
        assert_eq!(row["method"], "lora");
        assert_eq!(row["base_model"], "hf:deepseek-ai/deepseek-coder-6.7b-base");
        assert_eq!(row["config"], CONFIG);
        assert_eq!(row["fingerprint"], Value::Null);
        assert!(ran.loss.is_empty());
        assert!(!ran.dir.path().join(LOG).exists());
    }

    #[test]
    fn floats_and_strings_are_written_as_pyyaml_reads_them() {
        assert_eq!(yaml_float(2.0e-5), "2.0e-5");
        assert_eq!(yaml_float(1.5e-5), "1.5e-5");
        assert_eq!(yaml_float(2.0e-4), "2.0e-4");
        assert_eq!(yaml_float(0.1), "0.1");
        assert_eq!(yaml_float(2.0), "2.0");
        assert_eq!(yaml_float(0.0), "0.0");
        assert_eq!(yaml_float(3e10), "3.0e+10");
        assert_eq!(yaml_str("deepseekcoder"), "deepseekcoder");
        assert_eq!(yaml_str("/models/a b"), "\"/models/a b\"");
        assert_eq!(yaml_str("no"), "\"no\"");
        assert_eq!(yaml_str("1e-4"), "\"1e-4\"");
        assert_eq!(yaml_str("a: b"), "\"a: b\"");
    }

    #[test]
    fn extra_keys_replace_or_follow_and_reserved_ones_are_refused() {
        let mut v = study(json!({ "method": "lora" }));
        v["extra"] = json!({ "report_to": "none", "flash_attn": "fa2", "save_steps": 500 });
        v["deepspeed"] = json!("z3");
        v["gpus"] = json!(4);
        let p = params(v);
        let text = train_yaml(&p, "m", deepspeed_ref(&deepspeed(&p)).as_deref());
        assert!(text.contains("report_to: none\n"), "{text}");
        assert!(!text.contains("tensorboard"), "{text}");
        assert!(
            text.ends_with("### extra\nflash_attn: fa2\nsave_steps: 500\n"),
            "{text}"
        );
        assert!(
            text.contains("deepspeed: llama_factory/ds_z3_config.json\n"),
            "{text}"
        );

        let bad: SftParams = serde_json::from_value(json!({
            "model": "m", "backend": "llamafactory", "deepspeed": "zero3",
            "lr_scheduler_type": "cosine_annealing", "gpus": 0, "dataset": "a b",
            "extra": { "output_dir": "/x", "report_to": null }
        }))
        .expect("parse");
        let paths: Vec<String> = Sft::validate(&bad)
            .into_iter()
            .map(|p| p.path.join("."))
            .collect();
        assert_eq!(
            paths,
            [
                "template",
                "dataset",
                "gpus",
                "deepspeed",
                "lr_scheduler_type",
                "extra.output_dir",
                "extra.report_to"
            ]
        );
    }

    #[test]
    fn rows_llamafactory_would_drop_are_an_error_naming_the_row() {
        let p = params(study(json!({ "method": "lora" })));
        let rows = [
            ROWS[0],
            r#"[{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]"#,
        ];
        let e = run_rows(&p, &rows).err().expect("an error").to_string();
        assert!(e.contains("row 1"), "{e}");
        assert!(e.contains("expects `user`"), "{e}");
        let odd = [r#"[{"role": "user", "content": "y"}]"#];
        let e = run_rows(&p, &odd).err().expect("an error").to_string();
        assert!(e.contains("ends with a user turn"), "{e}");
    }

    #[test]
    fn a_missing_launcher_says_how_to_install_it() {
        let mut v = study(json!({ "method": "lora" }));
        v["launch"] = json!(true);
        v["launcher"] = json!("tw-surely-missing-llamafactory-cli");
        let e = run(&params(v.clone())).err().expect("an error").to_string();
        assert!(
            e.contains("`tw-surely-missing-llamafactory-cli` is not on PATH"),
            "{e}"
        );
        assert!(e.contains("pip install llamafactory"), "{e}");
        assert!(e.contains("launch: false"), "{e}");
        v["launcher"] = json!("venv/bin/llamafactory-cli");
        let e = run(&params(v)).err().expect("an error").to_string();
        assert!(
            e.contains("`venv/bin/llamafactory-cli` does not exist"),
            "{e}"
        );
    }

    /// A stand-in launcher: a shell script in its own directory.
    fn script(body: &str) -> (tempfile::TempDir, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("llamafactory-cli");
        fs_err::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let shown = path.to_string_lossy().into_owned();
        (dir, shown)
    }

    #[test]
    fn a_failed_launch_names_its_log_and_shows_its_last_lines() {
        let (_bin, launcher) = script(
            "echo \"args: $*\"\necho 'loading' >&2\necho 'RuntimeError: CUDA out of memory' >&2\nexit 3",
        );
        let mut v = study(json!({ "method": "full", "gpus": 2 }));
        v["launch"] = json!(true);
        v["launcher"] = json!(launcher);
        let e = run(&params(v)).err().expect("an error").to_string();
        assert!(e.contains("train llama_factory/train.yaml` failed"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("its log is llama_factory/train.log"), "{e}");
        assert!(e.contains("  RuntimeError: CUDA out of memory"), "{e}");
        assert!(e.contains("args: train llama_factory/train.yaml"), "{e}");
        // The log outlives the discarded staging directory.
        let kept = e
            .split("kept at ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .expect("a kept log");
        let log = fs_err::read_to_string(kept).expect("kept log");
        assert!(log.contains("CUDA out of memory"), "{log}");
        if let Some(d) = Path::new(kept).parent() {
            let _ = fs_err::remove_dir_all(d);
        }
    }

    /// What LLaMA-Factory leaves in output_dir (`trainer_log.jsonl` as its
    /// LogCallback writes it, `trainer_state.json` as the HF trainer does).
    const FINISHED: &str = r#"set -e
test "$1" = train && test -f "$2"
grep -q '^dataset_dir: llama_factory/data$' "$2"
echo "NPROC_PER_NODE=$NPROC_PER_NODE FORCE_TORCHRUN=${FORCE_TORCHRUN:-unset}"
mkdir -p checkpoint/checkpoint-4
echo '{"r": 8}' > checkpoint/adapter_config.json
printf 'weights' > checkpoint/adapter_model.safetensors
echo '{"train_runtime": 1.5}' > checkpoint/all_results.json
cat > checkpoint/trainer_log.jsonl <<'END'
{"current_steps": 2, "total_steps": 4, "loss": 2.5, "lr": 2e-05, "epoch": 1.0, "percentage": 50.0, "elapsed_time": "0:00:10", "remaining_time": "0:00:10"}
{"current_steps": 4, "total_steps": 4, "loss": 1.25, "lr": 0.0, "epoch": 2.0, "percentage": 100.0, "elapsed_time": "0:00:25", "remaining_time": "0:00:00"}
{"current_steps": 4, "total_steps": 4, "epoch": 2.0, "percentage": 100.0, "elapsed_time": "0:00:26", "remaining_time": "0:00:00"}
END
cat > checkpoint/trainer_state.json <<'END'
{"global_step": 4, "log_history": [{"epoch": 1.0, "grad_norm": 3.5, "learning_rate": 2e-05, "loss": 2.5, "step": 2}, {"epoch": 2.0, "grad_norm": 1.5, "learning_rate": 0.0, "loss": 1.25, "step": 4}, {"epoch": 2.0, "step": 4, "train_loss": 1.9}]}
END"#;

    #[test]
    fn a_finished_launch_gives_the_checkpoint_and_the_loss_curve() {
        let (_bin, launcher) = script(FINISHED);
        let mut v = study(json!({ "method": "lora", "lora_rank": 64 }));
        v["launch"] = json!(true);
        v["launcher"] = json!(launcher);
        let ran = run(&params(v)).expect("run");
        let log = fs_err::read_to_string(ran.dir.path().join(LOG)).expect("log");
        assert!(
            log.contains("NPROC_PER_NODE=1 FORCE_TORCHRUN=unset"),
            "{log}"
        );
        let row = &ran.model[0];
        assert_eq!(row["checkpoint"], OUTPUT_DIR);
        assert_eq!(row["launched"], true);
        assert_eq!(row["steps"], 4);
        assert_eq!(row["final_loss"], 1.25);
        assert_eq!(row["examples"], 3);
        assert_eq!(row["skipped"], 0);
        assert_eq!(row["trained_tokens"], Value::Null);
        // The fingerprint covers the model files, not the run's records.
        let ck = ran.dir.path().join(OUTPUT_DIR);
        let fp = row["fingerprint"]
            .as_str()
            .expect("fingerprint")
            .to_string();
        fs_err::write(ck.join("all_results.json"), "{}").expect("write");
        assert_eq!(fingerprint(&ck).expect("fingerprint"), fp);
        fs_err::write(ck.join("adapter_model.safetensors"), "other").expect("write");
        assert_ne!(fingerprint(&ck).expect("fingerprint"), fp);

        assert_eq!(ran.loss.len(), 2);
        assert_eq!(
            Value::Object(ran.loss[1].clone()),
            json!({
                "step": 4, "epoch": 2.0, "loss": 1.25, "learning_rate": 0.0, "grad_norm": 1.5,
                "tokens": null, "trained_tokens": null, "seconds": 15.0
            })
        );
        assert_eq!(ran.loss[0]["seconds"], 10.0);
        assert_eq!(ran.loss[0]["grad_norm"], 3.5);
    }

    #[test]
    fn deepspeed_and_gpus_start_torchrun() {
        let (_bin, launcher) = script(
            "echo \"NPROC_PER_NODE=$NPROC_PER_NODE FORCE_TORCHRUN=${FORCE_TORCHRUN:-unset}\"\nmkdir -p checkpoint",
        );
        for (method, gpus, expect) in [
            ("full", 1, "NPROC_PER_NODE=1 FORCE_TORCHRUN=1"),
            ("lora", 4, "NPROC_PER_NODE=4 FORCE_TORCHRUN=1"),
        ] {
            let mut v = study(json!({ "method": method, "gpus": gpus }));
            v["launch"] = json!(true);
            v["launcher"] = json!(launcher);
            let ran = run(&params(v)).expect("run");
            let log = fs_err::read_to_string(ran.dir.path().join(LOG)).expect("log");
            assert!(log.contains(expect), "{method}: {log}");
            assert_eq!(ran.model[0]["steps"], 0);
            assert!(ran.loss.is_empty());
        }
    }

    #[test]
    fn a_user_deepspeed_config_is_a_file_dependency_and_is_copied() {
        let base = tempfile::tempdir().expect("tempdir");
        fs_err::write(
            base.path().join("ds_z2.json"),
            "{\"zero_optimization\": {\"stage\": 2}}",
        )
        .expect("write");
        let mut v = study(json!({ "method": "full" }));
        v["deepspeed"] = json!("ds_z2.json");
        let p = params(v);
        let env = PlanEnv {
            base_dir: base.path().to_path_buf(),
        };
        // A Hub model has no files; the config has.
        assert_eq!(
            Sft::file_deps(&p, &env),
            [FileDep {
                param: "deepspeed".into(),
                path: "ds_z2.json".into()
            }]
        );
        let out = tempfile::tempdir().expect("tempdir");
        write_files(
            &p,
            out.path(),
            "m",
            Some(&base.path().join("ds_z2.json")),
            &[],
        )
        .expect("write");
        assert!(out.path().join(DIR).join("ds_z2.json").is_file());
        let (_, doc) = yaml(out.path());
        assert_eq!(doc["deepspeed"].as_str(), Some("llama_factory/ds_z2.json"));
        // A dry run depends on no installed LLaMA-Factory; a launch records its versions.
        assert!(Sft::env_facts(&p).is_empty());
        let mut launched = study(json!({ "method": "full" }));
        launched["launch"] = json!(true);
        assert_eq!(Sft::env_facts(&params(launched)).len(), 1);
    }

    /// LoRA on SmolLM2-135M for two steps on CPU through the real
    /// `llamafactory-cli` (scripts/setup-llamafactory.sh, scripts/setup-models.sh).
    #[test]
    #[ignore = "needs LLaMA-Factory: scripts/setup-llamafactory.sh (TW_REQUIRE_LLAMAFACTORY)"]
    fn real_llamafactory_trains_smollm2_lora_on_cpu() {
        use crate::testing::{Need, env_path};
        let (Some(launcher), Some(model)) = (
            env_path(Need::LlamaFactory, "TW_LLAMAFACTORY_CLI"),
            env_path(Need::Models, "TW_SMOLLM2_HF"),
        ) else {
            return;
        };
        let (launcher, model) = (launcher.display().to_string(), model.display().to_string());
        let p = params(json!({
            "backend": "llamafactory", "model": model, "template": "smollm2",
            "method": "lora", "lora_rank": 8, "max_steps": 2, "batch_size": 2,
            "grad_accum": 1, "learning_rate": 2.0e-4, "warmup_steps": 0, "cutoff_len": 256,
            "bf16": false, "logging_steps": 1, "launcher": launcher,
            "extra": { "preprocessing_num_workers": 1 }
        }));
        let ran = match run(&p) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let row = &ran.model[0];
        assert_eq!(row["steps"], 2, "{row:?}");
        assert_eq!(ran.loss.len(), 2, "{:?}", ran.loss);
        for r in &ran.loss {
            let loss = r["loss"].as_f64().expect("loss");
            assert!(loss.is_finite() && loss > 0.0, "{r:?}");
            assert!(r["grad_norm"].as_f64().is_some(), "{r:?}");
        }
        assert_eq!(row["final_loss"], ran.loss[1]["loss"]);
        let ck = ran.dir.path().join(OUTPUT_DIR);
        let adapter: Value = serde_json::from_str(
            &fs_err::read_to_string(ck.join("adapter_config.json")).expect("adapter_config"),
        )
        .expect("JSON");
        assert_eq!(adapter["r"], 8);
        assert_eq!(adapter["lora_alpha"], 16);
        assert_eq!(adapter["target_modules"].as_array().map(Vec::len), Some(7));
        assert!(ck.join("adapter_model.safetensors").is_file());
        assert!(row["fingerprint"].as_str().is_some_and(|f| f.len() == 64));
        // The study's default `report_to: tensorboard` wrote its event files.
        assert!(ck.join("runs").is_dir());
        // Downstream stages on the in-process runtime load LLaMA-Factory's adapter.
        #[cfg(feature = "torch")]
        {
            let (_, base) = crate::model::open_model(&ck, None, tch::Device::Cpu, tch::Kind::Float)
                .expect("the tch runtime loads the adapter");
            assert_eq!(base, PathBuf::from(&model));
        }
    }
}
