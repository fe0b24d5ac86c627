//! Prompt-family and chat-format templates (`templates/prompts`,
//! `templates/chat`): a snapshot of each on fixed rows, rendered by the
//! `render` stage as a spec would, and checks of what the snapshots cannot
//! show (the DSPy reply round trip, exact chat bytes).

use crate::harness::Project;
use serde_json::{Value, json};
use std::path::PathBuf;

fn repo_templates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// A project with copies of the prompt and chat templates under `t/`.
fn project() -> Project {
    let p = Project::new();
    for dir in ["prompts", "chat"] {
        for entry in fs_err::read_dir(repo_templates().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            p.write(
                &format!("t/{dir}/{name}"),
                &fs_err::read_to_string(&path).unwrap(),
            );
        }
    }
    p
}

fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| r.to_string() + "\n").collect()
}

/// Render `template` over `rows` with `vars`; the `text` column of each row.
fn render(p: &Project, name: &str, template: &str, rows: &[Value], vars: Value) -> Vec<String> {
    p.write(&format!("{name}.jsonl"), &jsonl(rows));
    let spec = format!(
        "experiment: {name}\nstages:\n  rows:\n    kind: load\n    params: {{ path: {name}.jsonl }}\n  rendered:\n    kind: render\n    inputs: {{ rows: rows.rows }}\n    params: {{ template: t/{template}, trim: false, vars: {vars} }}\n"
    );
    let spec_file = format!("{name}.yaml");
    p.write(&spec_file, &spec);
    p.run_ok(&spec_file);
    let ran = p.tw(&["export", &spec_file, "rendered.rows", "--format", "jsonl"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    ran.stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Messages (JSON text) shown one per block, so snapshots read like the chat.
fn show_messages(text: &str) -> String {
    let messages: Vec<Value> = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("not a JSON list of messages ({e}):\n{text}"));
    messages
        .iter()
        .map(|m| {
            format!(
                "--- {}\n{}\n",
                m["role"].as_str().unwrap(),
                m["content"].as_str().unwrap()
            )
        })
        .collect()
}

fn snapshot_all(label: &str, texts: &[String], messages: bool) -> String {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let body = if messages {
                show_messages(t)
            } else {
                format!("{t}<END>\n")
            };
            format!("==== {label} {i}\n{body}")
        })
        .collect()
}

const QUESTION_STDIN: &str =
    "You are given N integers. Print their sum.\n\nInput\n\nN\nA_1 ... A_N";
const QUESTION_FUNCTIONAL: &str = "Given an array nums, return the number of even elements.";

#[test]
fn nl2code_and_test_generation_prompts() {
    let p = project();
    let rows = [
        json!({"question": QUESTION_STDIN, "is_stdin": true}),
        json!({"question": QUESTION_FUNCTIONAL, "is_stdin": false}),
    ];
    let mut text = String::new();
    for (label, vars) in [
        ("cot", json!({})),
        ("predict", json!({"cot": false})),
        ("raw", json!({"style": "raw"})),
    ] {
        let out = render(
            &p,
            &format!("nl2code_{label}"),
            "prompts/nl2code.j2",
            &rows,
            vars,
        );
        text.push_str(&snapshot_all(&format!("nl2code {label}"), &out, true));
    }
    let out = render(&p, "tests", "prompts/test_inputs.j2", &rows, json!({}));
    text.push_str(&snapshot_all("test_inputs", &out, true));
    insta::assert_snapshot!("prompt_nl2code", text);
}

#[test]
fn self_debug_rounds_carry_reasoning_code_and_feedback() {
    let p = project();
    let rounds = json!([
        {"reasoning": "Sum the numbers.", "code": "print(sum(map(int, input().split())))", "feedback": [
            {"input": "3\n1 2 3", "expected": "6", "output": "3", "passed": false, "trace": "\n## Trace \n[L1] n = 3 [/L1]"},
            {"input": "1\n5", "expected": "5", "output": "5", "passed": true}
        ]},
        {"reasoning": "Skip the count line.", "code": "input()\nprint(sum(map(int, input().split())))", "feedback": "[Test 0 - ]FAIL: For test input: 0\n. Expected output is: 0, but got: Traceback (most recent call last): EOFError.\n"}
    ]);
    let rows = [json!({"question": QUESTION_STDIN, "rounds": rounds})];
    let all = render(&p, "debug_all", "prompts/self_debug.j2", &rows, json!({}));
    // Rounds as JSON text, as a table cell often holds them.
    let as_text = [json!({"question": QUESTION_STDIN, "rounds": rounds.to_string()})];
    let from_text = render(
        &p,
        "debug_text",
        "prompts/self_debug.j2",
        &as_text,
        json!({}),
    );
    assert_eq!(all, from_text, "a list and its JSON text render alike");
    let last = render(
        &p,
        "debug_last",
        "prompts/self_debug.j2",
        &rows[..1],
        json!({"context": "last"}),
    );
    let mut text = snapshot_all("self_debug all", &all[..1], true);
    text.push_str(&snapshot_all("self_debug last", &last, true));
    insta::assert_snapshot!("prompt_self_debug", text);
}

#[test]
fn repair_sft_and_cruxeval_prompts() {
    let p = project();
    let trace = "## Trace \n**BUGGY_PROGRAM**\n```python\ndef f(x):\n    return x - 1 #__return__=1\n```\n\n## TESTCASES \n\n**TEST1**\n\ninput1='2'\n\nexpect_output1='3'\n";
    let rows = [
        json!({"trace_text": trace, "program": "def f(x):\n    return x - 1", "fix": "def f(x):\n    return x + 1", "failing_test": "assert f(2) == 3"}),
    ];
    let mut text = snapshot_all(
        "repair",
        &render(&p, "repair", "prompts/repair.j2", &rows, json!({})),
        false,
    );
    text.push_str(&snapshot_all(
        "repair_plain",
        &render(&p, "plain", "prompts/repair_plain.j2", &rows, json!({})),
        false,
    ));
    text.push_str(&snapshot_all(
        "sft trace",
        &render(&p, "sft", "prompts/sft_repair.j2", &rows, json!({})),
        true,
    ));
    text.push_str(&snapshot_all(
        "sft naive",
        &render(
            &p,
            "sft_naive",
            "prompts/sft_repair.j2",
            &rows,
            json!({"naive": true}),
        ),
        true,
    ));
    let crux = [json!({"code": "def f(a, b):\n    return a + b", "input": "1, 2", "output": "3"})];
    for task in ["output", "input"] {
        for cot in [false, true] {
            let out = render(
                &p,
                &format!("crux_{task}_{cot}"),
                &format!("prompts/cruxeval_{task}.j2"),
                &crux,
                json!({"cot": cot}),
            );
            text.push_str(&snapshot_all(
                &format!("cruxeval {task} cot={cot}"),
                &out,
                false,
            ));
        }
    }
    insta::assert_snapshot!("prompt_repair_sft_cruxeval", text);
}

#[test]
fn semcoder_rationale_requests_name_their_tag_and_hide_the_fix() {
    let p = project();
    let trace = "\n## Trace \n\n## TESTCASES \n\n\n**TEST1**\n\ninput1=2\n\nexpect_output1=3\n\n\n## EXPLANATION\n\n\n**TEST1_RESULT**\n\n* line 2: __return__=1\n";
    let rows = [json!({"trace_text": trace, "fix": "def f(x):\n    return x + 1"})];
    let monologue = render(
        &p,
        "mono",
        "prompts/semcoder_rationale.j2",
        &rows,
        json!({}),
    );
    let rationale = render(
        &p,
        "rat",
        "prompts/semcoder_rationale.j2",
        &rows,
        json!({"variant": "rationale"}),
    );
    assert!(monologue[0].contains("[MONOLOGUE]") && !monologue[0].contains("CORRECTED PROGRAM"));
    assert!(rationale[0].contains("[RATIONALE]") && rationale[0].contains("return x + 1"));
    let mut text = snapshot_all("semcoder monologue", &monologue, true);
    text.push_str(&snapshot_all("semcoder rationale", &rationale, true));
    insta::assert_snapshot!("prompt_semcoder_rationale", text);
}

#[test]
fn judge_prompts_show_outputs_and_traces() {
    let p = project();
    let point = [
        json!({"question": QUESTION_FUNCTIONAL, "test_input": "[1, 2, 4]", "outputs": ["2", "3"]}),
    ];
    let pair = [
        json!({"question": QUESTION_FUNCTIONAL, "test_input": "[1, 2, 4]", "samples": [
            {"code": "def f(nums):\n    return sum(x % 2 == 0 for x in nums)", "output": "2"},
            {"code": "def f(nums):\n    return len(nums)", "output": "3", "trace": "[L2] [OUTPUT] 3 [/OUTPUT] [/L2]"}
        ]}),
    ];
    let mut text = snapshot_all(
        "judge pointwise",
        &render(&p, "point", "prompts/judge_pointwise.j2", &point, json!({})),
        true,
    );
    text.push_str(&snapshot_all(
        "judge pairwise",
        &render(&p, "pair", "prompts/judge_pairwise.j2", &pair, json!({})),
        true,
    ));
    insta::assert_snapshot!("prompt_judges", text);
}

#[test]
fn chat_formats_render_conversations_byte_for_byte() {
    let p = project();
    let generation = json!([{"role": "user", "content": "Fix f."}]);
    let with_system = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Fix f."},
        {"role": "assistant", "content": "```python\ndef f(): pass\n```"}
    ]);
    let rows = [
        json!({"messages": generation.to_string()}),
        json!({"messages": with_system.to_string()}),
    ];
    let expected: [(&str, [&str; 2]); 4] = [
        (
            "llama3",
            [
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nFix f.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nFix f.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n```python\ndef f(): pass\n```<|eot_id|>",
            ],
        ),
        (
            "deepseekcoder",
            [
                "<｜begin▁of▁sentence｜>You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer.\n### Instruction:\nFix f.\n### Response:",
                "<｜begin▁of▁sentence｜>Be brief.### Instruction:\nFix f.\n### Response:\n```python\ndef f(): pass\n```\n<|EOT|>\n",
            ],
        ),
        (
            "gemma",
            [
                "<bos><start_of_turn>user\nFix f.<end_of_turn>\n<start_of_turn>model\n",
                "<bos><start_of_turn>user\nBe brief.\n\nFix f.<end_of_turn>\n<start_of_turn>model\n```python\ndef f(): pass\n```<end_of_turn>\n",
            ],
        ),
        (
            "chatml",
            [
                "<|im_start|>user\nFix f.<|im_end|>\n<|im_start|>assistant\n",
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nFix f.<|im_end|>\n<|im_start|>assistant\n```python\ndef f(): pass\n```<|im_end|>\n",
            ],
        ),
    ];
    for (format, want) in expected {
        let got = render(&p, format, &format!("chat/{format}.j2"), &rows, json!({}));
        assert_eq!(got, want, "{format}");
    }
    // Qwen's default system message is a var away.
    let qwen = render(
        &p,
        "qwen",
        "chat/chatml.j2",
        &rows[..1],
        json!({"system": "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."}),
    );
    assert_eq!(
        qwen[0],
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nFix f.<|im_end|>\n<|im_start|>assistant\n"
    );
    // An unknown role is an error naming it, not a silently dropped turn.
    p.write(
        "bad.jsonl",
        &jsonl(&[json!({"messages": json!([{"role": "tool", "content": "x"}]).to_string()})]),
    );
    p.write("bad.yaml", "experiment: bad\nstages:\n  rows:\n    kind: load\n    params: { path: bad.jsonl }\n  rendered:\n    kind: render\n    inputs: { rows: rows.rows }\n    params: { template: t/chat/llama3.j2, trim: false }\n");
    let ran = p.tw(&["run", "bad.yaml"]);
    assert_ne!(ran.code, 0);
    assert!(
        ran.stderr.contains("unsupported role `tool` (message 1)"),
        "{}",
        ran.stderr
    );
}

#[test]
fn dspy_prompts_parse_back_and_replies_yield_code() {
    let p = project();
    let rows = [json!({"question": QUESTION_FUNCTIONAL, "is_stdin": false})];
    let out = render(&p, "roundtrip", "prompts/nl2code.j2", &rows, json!({}));
    let messages: Vec<Value> = serde_json::from_str(&out[0]).unwrap();
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.starts_with("Your input fields are:\n1. `prompt` (str)\n\nYour output fields are:\n1. `reasoning` (str)\n2. `code` (str): Executable Python function"), "{system}");
    assert!(system.ends_with("In adhering to this structure, your objective is: \n        Given the fields `prompt`, produce the fields `code`."), "{system}");
    let user = messages[1]["content"].as_str().unwrap();
    assert_eq!(
        user,
        format!(
            "[[ ## prompt ## ]]\n{QUESTION_FUNCTIONAL}\n\nRespond with the corresponding output fields, starting with the field `[[ ## reasoning ## ]]`, then `[[ ## code ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`."
        )
    );
}
