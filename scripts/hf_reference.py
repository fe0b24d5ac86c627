"""Reference outputs from Hugging Face transformers (and PEFT) for tw's parity tests.

    python hf_reference.py MODEL_DIR REQUESTS.json OUT.safetensors

MODEL_DIR is a HF model directory, or a PEFT adapter directory (its
`base_model_name_or_path` names the base). REQUESTS.json is a list of
{"chat": [messages]}, {"text": "..."} or {"ids": [...]} with an optional "greedy_tokens" count.
For request i the output holds `ids.i` (prompt token ids, chat prompts via the
tokenizer's own chat template), `logits.i` (float32 [seq, vocab], eager
attention) and, when asked, `greedy.i` (the new token ids of greedy decoding).
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main(model_dir, requests_path, out_path):
    torch.manual_seed(0)
    adapter = os.path.isfile(os.path.join(model_dir, "adapter_config.json"))
    if adapter:
        from peft import PeftModel

        with open(os.path.join(model_dir, "adapter_config.json")) as f:
            base = json.load(f)["base_model_name_or_path"]
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
        model = PeftModel.from_pretrained(model, model_dir)
        tok_dir = model_dir if os.path.isfile(os.path.join(model_dir, "tokenizer.json")) else base
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
        tok_dir = model_dir
    model.eval()
    tok = None
    with open(requests_path) as f:
        requests = json.load(f)
    out = {}
    for i, r in enumerate(requests):
        if "ids" in r:
            ids = r["ids"]
        elif "chat" in r:
            tok = tok or AutoTokenizer.from_pretrained(tok_dir)
            ids = tok.apply_chat_template(r["chat"], add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
        else:
            tok = tok or AutoTokenizer.from_pretrained(tok_dir)
            ids = tok(r["text"], add_special_tokens=False)["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            logits = model(x).logits[0].float()
        out[f"ids.{i}"] = x[0].clone()
        out[f"logits.{i}"] = logits.contiguous()
        n = r.get("greedy_tokens", 0)
        if n:
            eos = model.config.eos_token_id
            with torch.no_grad():
                g = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                                   eos_token_id=eos, pad_token_id=eos)
            out[f"greedy.{i}"] = g[0, len(ids):].clone()
    save_file(out, out_path)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
