"""Convert a llama.cpp GGUF checkpoint (Llama or Qwen2 architecture) to a Hugging Face
model directory: model.safetensors (float32), config.json, generation_config.json,
tokenizer.json and tokenizer_config.json (with the GGUF's chat template).

    python gguf_to_hf.py MODEL.gguf OUT_DIR

Quantized tensors are dequantized with the `gguf` package. llama.cpp's converter permutes the
rows of Q and K for the Llama architecture (interleaved RoPE); that permutation is undone so
the weights follow HF's rotate-half convention. Qwen2 is stored unpermuted.
"""

import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

TENSOR_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    if len(f.types) == 1 and f.types[0].name == "STRING":
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if f.types[0].name == "ARRAY":
        if f.types[-1].name == "STRING":
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    return f.parts[f.data[0]].tolist()[0]


def hf_name(gguf_name):
    base, _, suffix = gguf_name.rpartition(".")
    parts = base.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{TENSOR_NAMES[parts[2]]}.{suffix}"
    return f"{TENSOR_NAMES[base]}.{suffix}"


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main(src, out):
    reader = GGUFReader(src)
    arch = field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        sys.exit(f"{src}: architecture `{arch}` is not supported (llama, qwen2)")
    p = lambda key, default=None: field(reader, f"{arch}.{key}", default)
    n_head = p("attention.head_count")
    n_kv = p("attention.head_count_kv", n_head)
    hidden = p("embedding_length")
    tokens = field(reader, "tokenizer.ggml.tokens")

    tensors = {}
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape)]
        if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            w = np.asarray(t.data, dtype=np.float32).reshape(shape)
        else:
            w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        name = hf_name(t.name)
        if arch == "llama" and name.endswith("q_proj.weight"):
            w = unpermute(w, n_head)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            w = unpermute(w, n_kv)
        tensors[name] = np.ascontiguousarray(w)
    tied = "lm_head.weight" not in tensors

    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})

    bos = field(reader, "tokenizer.ggml.bos_token_id")
    eos = field(reader, "tokenizer.ggml.eos_token_id")
    pad = field(reader, "tokenizer.ggml.padding_token_id", eos)
    config = {
        "architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"],
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": p("feed_forward_length"),
        "num_hidden_layers": p("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": hidden // n_head,
        "hidden_act": "silu",
        "max_position_embeddings": p("context_length"),
        "rms_norm_eps": p("attention.layer_norm_rms_epsilon"),
        "rope_theta": p("rope.freq_base", 10000.0),
        "vocab_size": len(tokens),
        "tie_word_embeddings": tied,
        "attention_bias": arch == "qwen2",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "float32",
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}, f, indent=2)

    merges = field(reader, "tokenizer.ggml.merges")
    token_types = field(reader, "tokenizer.ggml.token_type")
    pre = field(reader, "tokenizer.ggml.pre")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    bpe = models.BPE(vocab, [tuple(m.split(" ", 1)) for m in merges], fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    if pre == "qwen2":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    elif pre in ("smollm", "gpt2", "default"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]) if pre == "smollm" else pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        sys.exit(f"{src}: pre-tokenizer `{pre}` is not supported (smollm, gpt2, qwen2)")
    tok.decoder = decoders.ByteLevel()
    # Control (3) and user-defined (4) tokens are matched before BPE, as in the original.
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, token_types) if ty in (3, 4)]
    tok.add_special_tokens(special)
    tok.save(os.path.join(out, "tokenizer.json"))

    tokenizer_config = {
        "bos_token": tokens[bos] if bos is not None else None,
        "eos_token": tokens[eos] if eos is not None else None,
        "pad_token": tokens[pad] if pad is not None else None,
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": p("context_length"),
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": field(reader, "tokenizer.chat_template"),
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config, f, indent=2)
    print(f"{out}: {arch}, {len(tensors)} tensors, vocab {len(tokens)}, tied={tied}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
