//! Statistics the reports and scores share: means, a seeded bootstrap
//! interval of a mean (over problems), and the exact McNemar test for paired
//! pass/fail outcomes.
//!
//! One owner: `tw score`'s pass@k intervals and the paired comparisons in
//! report tables both resample problems here, so the two agree on what "a
//! 95% interval, seed 0" means.

use crate::api::rng::SplitMix64;

/// The arithmetic mean; 0 for no values.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The sample standard deviation (n - 1); 0 for fewer than two values.
pub fn sample_sd(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / (values.len() - 1) as f64).sqrt()
}

/// A percentile bootstrap interval of the mean of `values`: `rounds`
/// resamples of the values with replacement (seeded, the same on every
/// platform), and the `(1 - level) / 2` and `(1 + level) / 2` quantiles of
/// their means. With paired differences (one per problem) as `values`, this
/// is the paired bootstrap over problems. No values or no rounds give the
/// mean twice.
pub fn bootstrap_interval(values: &[f64], rounds: u32, seed: u64, level: f64) -> (f64, f64) {
    if values.is_empty() || rounds == 0 {
        let m = mean(values);
        return (m, m);
    }
    let mut rng = SplitMix64::new(seed.wrapping_add(SplitMix64::GAMMA));
    let n = values.len() as u64;
    let mut means: Vec<f64> = (0..rounds)
        .map(|_| (0..n).map(|_| values[rng.below(n) as usize]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    let tail = (1.0 - level) / 2.0;
    (at(tail), at(1.0 - tail))
}

/// The exact (binomial) two-sided McNemar p-value for paired pass/fail
/// outcomes: `b` pairs where only the baseline passed, `c` where only the
/// other did. Under no difference each of the `n = b + c` discordant pairs
/// goes either way with probability 1/2, so
/// `p = min(1, 2 * P[X <= min(b, c)])` with `X ~ Binomial(n, 1/2)`; no
/// discordant pairs give 1.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    if n < 120 {
        // Exactly in integers (C(119, 59) * 119 < 2^128), one rounding at the end.
        let mut choose: u128 = 1;
        let mut tail: u128 = 1;
        for i in 1..=k {
            choose = choose * u128::from(n - i + 1) / u128::from(i);
            tail += choose;
        }
        return (2.0 * (tail as f64 / (1u128 << n) as f64)).min(1.0);
    }
    // Sum C(n, i) / 2^n in log space: n reaches the thousands on large suites.
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut tail = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose - ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_exact_matches_the_binomial_tail() {
        // b = 1, c = 9: 2 * (1 + 10) / 1024 (R: binom.test(1, 10)$p.value).
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-15);
        assert_eq!(mcnemar_exact(9, 1), mcnemar_exact(1, 9));
        // b = 0, c = 5: 2 / 32 = 0.0625, not significant at 0.05 even with
        // every discordant pair one way: five problems cannot show much.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-15);
        // b = 0, c = 6: 2 / 64 = 0.03125.
        assert!((mcnemar_exact(0, 6) - 0.03125).abs() < 1e-15);
        // b = 3, c = 5: 2 * (1 + 8 + 28 + 56) / 256 = 0.7265625.
        assert!((mcnemar_exact(3, 5) - 0.7265625).abs() < 1e-15);
        // Balanced, and nothing discordant: no evidence at all.
        assert_eq!(mcnemar_exact(4, 4), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // Exact where it can be: 2 / 2^3.
        assert_eq!(mcnemar_exact(0, 3), 0.25);
        // Large n stays finite and accurate: b = 400, c = 600
        // (Python's exact sum of math.comb: 2.7284641560660184e-10).
        let p = mcnemar_exact(400, 600);
        assert!((p / 2.728_464_156_066_018_4e-10 - 1.0).abs() < 1e-9, "{p}");
        // Both sides of the switch: n = 119 exact, n = 120 in logs (Python).
        assert!((mcnemar_exact(45, 74) / 0.009_966_324_337_995_27 - 1.0).abs() < 1e-12);
        assert!((mcnemar_exact(45, 75) / 0.007_846_593_122_439_764 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_paired_bootstrap_contains_zero_without_a_difference_and_excludes_it_with_one() {
        // Identical outcomes: every difference is 0, so is every resample.
        assert_eq!(bootstrap_interval(&[0.0; 26], 2000, 0, 0.95), (0.0, 0.0));
        // Noise around zero: the interval straddles it.
        let noise: Vec<f64> = (0..26)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let (lo, hi) = bootstrap_interval(&noise, 2000, 0, 0.95);
        assert!(lo < 0.0 && hi > 0.0, "{lo} {hi}");
        // 20 of 26 problems gained, none lost: clearly above zero.
        let gain: Vec<f64> = (0..26).map(|i| if i < 20 { 1.0 } else { 0.0 }).collect();
        let (lo, hi) = bootstrap_interval(&gain, 2000, 0, 0.95);
        assert!(lo > 0.5 && hi <= 1.0, "{lo} {hi}");
        // Seeded: the same seed gives the same interval, another seed may not.
        assert_eq!(
            bootstrap_interval(&noise, 500, 7, 0.95),
            bootstrap_interval(&noise, 500, 7, 0.95)
        );
        // A wider level gives a wider interval.
        let (lo90, hi90) = bootstrap_interval(&noise, 2000, 0, 0.90);
        let (lo99, hi99) = bootstrap_interval(&noise, 2000, 0, 0.99);
        assert!(lo99 <= lo90 && hi99 >= hi90);
    }

    #[test]
    fn mean_and_sample_sd() {
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(sample_sd(&[5.0]), 0.0);
        assert!(
            (sample_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) - 2.138_089_935).abs() < 1e-9
        );
    }
}
