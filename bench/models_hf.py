"""HF Transformers + PEFT side of `bench/models.sh`: the same measurement
as `cargo run --example model_bench` (random weights of a preset architecture,
AdamW, clip 1.0, LoRA r on all linear layers or full fine-tuning; then greedy
generation with a KV cache), printed as JSON lines with "impl": "hf".

    python bench_models.py --preset qwen2.5-0.5b --method lora --batch 8 --seq 512 --steps 10
"""

import argparse
import json
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

PRESETS = {
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, rms_norm_eps=1e-5, rope_theta=100000.0,
                         vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192),
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                         vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768),
    "qwen2.5-1.5b": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1e6,
                         vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=32768),
    "llama3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                        num_attention_heads=32, num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=500000.0,
                        vocab_size=128256, tie_word_embeddings=True, max_position_embeddings=131072),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="smollm2-135m", choices=sorted(PRESETS))
    ap.add_argument("--method", default="lora", choices=["lora", "full"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gen-batch", type=int, default=8)
    ap.add_argument("--gen-prompt", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--skip", default="")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device("cuda" if (a.device in ("auto", "cuda") and torch.cuda.is_available()) else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = a.peak_tflops if a.peak_tflops is not None else (989.0 if device.type == "cuda" else 0.0)
    torch.manual_seed(0)
    preset = dict(PRESETS[a.preset])
    config = AutoConfig.for_model(preset.pop("model_type"), **preset)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa").to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if a.skip != "train":
        if a.method == "lora":
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0,
                                                     target_modules=TARGETS, task_type="CAUSAL_LM"))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
        ids = torch.randint(config.vocab_size, (a.batch, a.seq), device=device)
        model.train()
        times = []
        for i in range(a.warmup + a.steps):
            sync(device)
            t = time.perf_counter()
            logits = model(input_ids=ids).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                     ids[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync(device)
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        step = sum(times) / len(times)
        tokens = a.batch * a.seq / step
        attn = 6.0 * config.num_hidden_layers * a.seq * config.hidden_size
        full = 6.0 * n_params + attn
        per_token = full * 2 / 3 if a.method == "lora" else full
        tflops = per_token * tokens / 1e12
        print(json.dumps({"impl": "hf", "phase": "train", "preset": a.preset, "method": a.method,
                          "device": str(device), "dtype": str(dtype), "batch": a.batch, "seq": a.seq,
                          "params": n_params, "step_s": step, "tokens_per_s": tokens, "tflops": tflops,
                          "mfu": tflops / peak if peak else None}), flush=True)
        if a.method == "lora":
            model = model.merge_and_unload()
    if a.skip != "generate":
        model.eval()
        prompts = torch.tensor([[((r * 7919 + i * 104729) % 30000) + 100 for i in range(a.gen_prompt)]
                                for r in range(a.gen_batch)], device=device)
        kwargs = dict(max_new_tokens=a.gen_tokens, min_new_tokens=a.gen_tokens, do_sample=False,
                      pad_token_id=0, eos_token_id=None)
        with torch.no_grad():
            model.generate(prompts[:1], attention_mask=torch.ones_like(prompts[:1]), **kwargs)
            sync(device)
            t = time.perf_counter()
            out = model.generate(prompts, attention_mask=torch.ones_like(prompts), **kwargs)
            sync(device)
        secs = time.perf_counter() - t
        produced = (out.shape[1] - a.gen_prompt) * a.gen_batch
        print(json.dumps({"impl": "hf", "phase": "generate", "preset": a.preset, "device": str(device),
                          "dtype": str(dtype), "batch": a.gen_batch, "prompt": a.gen_prompt,
                          "new_tokens": a.gen_tokens, "seconds": secs, "tokens_per_s": produced / secs}), flush=True)


if __name__ == "__main__":
    main()
