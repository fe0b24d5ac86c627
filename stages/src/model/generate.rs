//! Batched generation with a KV cache: prompts are padded on the left, each row
//! samples with its own seeded generator (so a request's tokens do not depend on
//! what else is in its batch), and rows stop at EOS, a stop string or `max_tokens`.

use super::ModelError;
use super::text::Codec;
use super::transformer::{KvCache, Transformer};
use crate::api::rng::SplitMix64;
use crate::llm::{Completion, FinishReason, Sampling};
use tch::{Device, Kind, Tensor};

/// One row being generated.
struct Row<'a> {
    sampling: &'a Sampling,
    rng: SplitMix64,
    prompt_len: usize,
    generated: Vec<i64>,
    finish: Option<FinishReason>,
    text: String,
}

/// Generate for `prompts` (token ids) in one batch.
pub fn generate_batch(
    model: &Transformer,
    codec: &Codec,
    prompts: &[Vec<i64>],
    sampling: &[&Sampling],
) -> Result<Vec<Completion>, ModelError> {
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let b = prompts.len();
    if b == 0 {
        return Ok(Vec::new());
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    if longest == 0 {
        return Err(ModelError::Invalid(
            "an empty prompt cannot be completed".into(),
        ));
    }
    let max_new = sampling.iter().map(|s| s.max_tokens).max().unwrap_or(0);
    let limit = model.config.max_position_embeddings as usize;
    if longest + max_new > limit {
        return Err(ModelError::Invalid(format!(
            "prompt of {longest} tokens plus max_tokens {max_new} exceeds the model's context of {limit}"
        )));
    }

    let mut ids = Vec::with_capacity(b * longest);
    let mut valid = Vec::with_capacity(b * longest);
    for p in prompts {
        let pad = longest - p.len();
        ids.extend(std::iter::repeat_n(codec.pad_id, pad));
        ids.extend_from_slice(p);
        valid.extend(std::iter::repeat_n(false, pad));
        valid.extend(std::iter::repeat_n(true, p.len()));
    }
    let input = Tensor::from_slice(&ids)
        .view([b as i64, longest as i64])
        .to_device(device);
    let mut key_valid = Tensor::from_slice(&valid)
        .view([b as i64, longest as i64])
        .to_device(device);
    let positions = (key_valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0);
    let mut next_pos = positions.select(1, longest as i64 - 1) + 1;

    let mut rows: Vec<Row> = sampling
        .iter()
        .zip(prompts)
        .map(|(s, p)| Row {
            sampling: s,
            rng: SplitMix64::new(s.seed),
            prompt_len: p.len(),
            generated: Vec::new(),
            finish: if s.max_tokens == 0 {
                Some(FinishReason::Length)
            } else {
                None
            },
            text: String::new(),
        })
        .collect();

    let mut cache = KvCache::new(model.config.num_layers);
    let padded = valid.iter().any(|v| !v);
    let mask = padded.then(|| attention_mask(&key_valid, longest as i64, 0, device));
    let hidden = model.forward(&input, &positions, mask.as_ref(), Some(&mut cache), false);
    let mut logits = model.logits(&hidden.select(1, longest as i64 - 1));

    while rows.iter().any(|r| r.finish.is_none()) {
        // Greedy batches need one id per row, not the whole vocabulary on the host.
        let all_greedy = rows.iter().all(|r| r.sampling.temperature <= 0.0);
        let (last, greedy) = if all_greedy {
            let ids = logits.argmax(-1, false).to_device(Device::Cpu);
            let ids = Vec::<i64>::try_from(&ids)
                .map_err(|e| ModelError::Invalid(format!("logits: {e}")))?;
            (None, ids)
        } else {
            (
                Some(logits.to_kind(Kind::Float).to_device(Device::Cpu)),
                Vec::new(),
            )
        };
        let mut step = Vec::with_capacity(b);
        for (i, row) in rows.iter_mut().enumerate() {
            if row.finish.is_some() {
                step.push(codec.pad_id);
                continue;
            }
            let token = match &last {
                None => greedy[i],
                Some(last) => {
                    let scores: Vec<f32> = Vec::<f32>::try_from(last.get(i as i64))
                        .map_err(|e| ModelError::Invalid(format!("logits: {e}")))?;
                    sample(&scores, row.sampling, &mut row.rng)
                }
            };
            step.push(token);
            if codec.eos_ids.contains(&token) {
                row.finish = Some(FinishReason::Stop);
                continue;
            }
            row.generated.push(token);
            if !row.sampling.stop.is_empty() {
                row.text = codec.decode(&row.generated)?;
                if let Some(cut) = first_stop(&row.text, &row.sampling.stop) {
                    row.text.truncate(cut);
                    row.finish = Some(FinishReason::Stop);
                    continue;
                }
            }
            if row.generated.len() >= row.sampling.max_tokens {
                row.finish = Some(FinishReason::Length);
            }
        }
        if rows.iter().all(|r| r.finish.is_some()) {
            break;
        }
        let input = Tensor::from_slice(&step)
            .view([b as i64, 1])
            .to_device(device);
        key_valid = Tensor::cat(
            &[
                &key_valid,
                &Tensor::ones([b as i64, 1], (Kind::Bool, device)),
            ],
            1,
        );
        let seen = cache.seen();
        let mask = padded.then(|| attention_mask(&key_valid, 1, seen, device));
        let pos = next_pos.unsqueeze(1);
        let hidden = model.forward(&input, &pos, mask.as_ref(), Some(&mut cache), false);
        next_pos += 1;
        logits = model.logits(&hidden.select(1, 0));
    }

    rows.into_iter()
        .map(|r| {
            let text = if r.sampling.stop.is_empty() || r.finish != Some(FinishReason::Stop) {
                codec.decode(&r.generated)?
            } else {
                r.text
            };
            // A stop string found only at the end (`Length` on the last token).
            let text = match first_stop(&text, &r.sampling.stop) {
                Some(cut) => text[..cut].to_string(),
                None => text,
            };
            Ok(Completion {
                text,
                finish_reason: r.finish.unwrap_or(FinishReason::Length),
                prompt_tokens: r.prompt_len,
                completion_tokens: r.generated.len(),
            })
        })
        .collect()
}

/// `[batch, 1, queries, keys]`: query `i` (cache index `seen + i`) may attend to
/// valid keys at or before it, and always to itself so padded rows stay finite.
fn attention_mask(key_valid: &Tensor, queries: i64, seen: i64, device: Device) -> Tensor {
    let keys = key_valid.size()[1];
    let q_idx = Tensor::arange_start(seen, seen + queries, (Kind::Int64, device)).unsqueeze(1);
    let k_idx = Tensor::arange(keys, (Kind::Int64, device)).unsqueeze(0);
    let causal = k_idx.le_tensor(&q_idx);
    let diagonal = k_idx.eq_tensor(&q_idx);
    let allowed = causal.unsqueeze(0).logical_and(&key_valid.unsqueeze(1));
    allowed.logical_or(&diagonal.unsqueeze(0)).unsqueeze(1)
}

fn first_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// Pick the next token: argmax at temperature 0, otherwise nucleus sampling.
pub fn sample(logits: &[f32], s: &Sampling, rng: &mut SplitMix64) -> i64 {
    if s.temperature <= 0.0 {
        return argmax(logits);
    }
    let t = s.temperature as f32;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, f64::from(((l - max) / t).exp())))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    // Order by probability, ties by id, so the order never depends on the
    // platform. The nucleus is a prefix of that order, so only the most likely
    // `head` tokens are sorted, `head` doubling until they hold `top_p` of the
    // mass: the same draw as sorting the whole vocabulary, at a sliver of the cost.
    // Without a nucleus every token stays: draw in id order, no sort at all.
    if s.top_p >= 1.0 {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut acc = 0.0;
        for p in &probs {
            acc += p.1;
            if u < acc {
                return p.0 as i64;
            }
        }
        return probs.iter().rposition(|p| p.1 > 0.0).unwrap_or(0) as i64;
    }
    let order = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut head = 64;
    let kept = loop {
        head = head.min(probs.len());
        if head < probs.len() {
            probs.select_nth_unstable_by(head, order);
        }
        probs[..head].sort_by(order);
        let mut cum = 0.0;
        let found = probs[..head].iter().position(|p| {
            cum += p.1 / total;
            cum >= s.top_p
        });
        match found {
            Some(n) => break n + 1,
            None if head == probs.len() => break head,
            None => head *= 4,
        }
    };
    let mass: f64 = probs[..kept].iter().map(|p| p.1).sum();
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * mass;
    let mut acc = 0.0;
    for p in &probs[..kept] {
        acc += p.1;
        if u < acc {
            return p.0 as i64;
        }
    }
    probs[kept - 1].0 as i64
}

fn argmax(logits: &[f32]) -> i64 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_and_top_p_keeps_the_nucleus() {
        let greedy = Sampling::default();
        let mut rng = SplitMix64::new(1);
        assert_eq!(sample(&[0.1, 2.0, 2.0, -1.0], &greedy, &mut rng), 1);
        // With top_p 0.5 only the dominant token survives.
        let nucleus = Sampling {
            temperature: 1.0,
            top_p: 0.5,
            ..Sampling::default()
        };
        for seed in 0..50 {
            let mut rng = SplitMix64::new(seed);
            assert_eq!(sample(&[0.0, 5.0, 1.0], &nucleus, &mut rng), 1);
        }
        // Without it, every token is drawn sometimes, in proportion.
        let free = Sampling {
            temperature: 1.0,
            ..Sampling::default()
        };
        let mut counts = [0usize; 3];
        let mut rng = SplitMix64::new(7);
        for _ in 0..3000 {
            counts[sample(&[0.0, 1.0, 0.0], &free, &mut rng) as usize] += 1;
        }
        let expected = 3000.0 * 1f64.exp() / (2.0 + 1f64.exp());
        assert!((counts[1] as f64 - expected).abs() < 120.0, "{counts:?}");
        assert!(counts[0] > 300 && counts[2] > 300, "{counts:?}");
    }

    /// The draw `sample` made when it sorted the whole vocabulary.
    fn full_sort_draw(logits: &[f32], s: &Sampling, rng: &mut SplitMix64) -> i64 {
        let t = s.temperature as f32;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i, f64::from(((l - max) / t).exp())))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut kept = probs.len();
        let mut cum = 0.0;
        for (n, p) in probs.iter().enumerate() {
            cum += p.1 / total;
            if cum >= s.top_p {
                kept = n + 1;
                break;
            }
        }
        let mass: f64 = probs[..kept].iter().map(|p| p.1).sum();
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * mass;
        let mut acc = 0.0;
        for p in &probs[..kept] {
            acc += p.1;
            if u < acc {
                return p.0 as i64;
            }
        }
        probs[kept - 1].0 as i64
    }

    #[test]
    fn a_partial_sort_draws_what_a_full_sort_drew() {
        // Flat and peaked vocabularies, with ties, so the nucleus needs a few
        // doublings of the sorted head in some draws and none in others.
        let mut draws = SplitMix64::new(3);
        for (vocab, spread) in [(5000usize, 0.5f32), (5000, 8.0), (300, 2.0), (70, 0.0)] {
            let logits: Vec<f32> = (0..vocab)
                .map(|_| ((draws.next_u64() % 1000) as f32 / 1000.0 * spread).round())
                .collect();
            for (temperature, top_p) in [(0.8, 0.95), (1.0, 0.5), (0.2, 0.99), (1.0, 0.9999)] {
                let s = Sampling {
                    temperature,
                    top_p,
                    ..Sampling::default()
                };
                for seed in 0..20 {
                    let fast = sample(&logits, &s, &mut SplitMix64::new(seed));
                    let full = full_sort_draw(&logits, &s, &mut SplitMix64::new(seed));
                    assert_eq!(
                        fast, full,
                        "vocab {vocab}, T {temperature}, top_p {top_p}, seed {seed}"
                    );
                }
            }
        }
    }

    #[test]
    fn stop_strings_cut_at_the_earliest() {
        let stops = vec!["\n\n".to_string(), "```".to_string()];
        assert_eq!(first_stop("a\n\nb```", &stops), Some(1));
        assert_eq!(first_stop("abc", &stops), None);
    }
}
