//! The statistics behind the weakest links and their culprits: how sure a share
//! is (Wilson bounds), whether one group fails more than another (Fisher's exact
//! test), and the normal distribution they need. Pure functions, no dependencies.

/// Lower bound of the Wilson score interval of `failed` out of `of`, `z` standard
/// deviations wide (1.96: the lower end of a 95 % interval).
pub fn wilson_lower_bound(failed: i64, of: i64, z: f64) -> f64 {
    if of <= 0 {
        return 0.0;
    }
    let n = of as f64;
    let p = failed as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// The one-sided p-value of Fisher's exact test: the chance that `of` cases drawn
/// at random from `all_of` cases, `all_failed` of them failed, hold `failed` or more
/// failures; that is, how often a group no different from the rest would fail as
/// much as this one.
pub fn fisher_upper_tail(failed: i64, of: i64, all_failed: i64, all_of: i64) -> f64 {
    let (n, k, total) = (of, all_failed, all_of);
    let top = n.min(k);
    if failed > top {
        return 0.0;
    }
    // At or below the expected count the tail holds about half or more.
    if failed as f64 <= n as f64 * k as f64 / total as f64 {
        return 1.0;
    }
    let ln_choose = |a: i64, b: i64| ln_factorial(a) - ln_factorial(b) - ln_factorial(a - b);
    let mut term = (ln_choose(k, failed) + ln_choose(total - k, n - failed) - ln_choose(total, n)).exp();
    let mut sum = 0.0;
    // Above the mode each term is smaller than the last: stop when they no longer count.
    for x in failed..=top {
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
        term *= ((k - x) * (n - x)) as f64 / ((x + 1) * (total - k - n + x + 1)) as f64;
    }
    sum.min(1.0)
}

/// ln(n!), exactly summed for small n, by Stirling's series beyond (error below 1e-10).
fn ln_factorial(n: i64) -> f64 {
    if n < 20 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    let x2 = x * x;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x * x2)
        + 1.0 / (1260.0 * x * x2 * x2)
}

/// The standard normal quantile of `p` (0 < p < 1), by bisection on the CDF.
pub fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The standard normal CDF, through the complementary error function (Numerical
/// Recipes' Chebyshev fit, relative error below 1.2e-7).
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fishers_exact_test_matches_the_tables() {
        // 3 of 3 drawn from 3 failures among 10: 1/C(10,3).
        assert!((fisher_upper_tail(3, 3, 3, 10) - 1.0 / 120.0).abs() < 1e-12);
        // The lady tasting tea: 4 of 4 cups among 8, 4 with milk first: 1/70.
        assert!((fisher_upper_tail(4, 4, 4, 8) - 1.0 / 70.0).abs() < 1e-12);
        // 3 of 4 there: (16 + 1)/70.
        assert!((fisher_upper_tail(3, 4, 4, 8) - 17.0 / 70.0).abs() < 1e-12);
        // Large counts stay finite, near the Poisson tail they approach (13 expected,
        // 20 or more: 0.043).
        let strong = fisher_upper_tail(300, 1_000, 1_300, 100_000);
        let weak = fisher_upper_tail(20, 1_000, 1_300, 100_000);
        assert!(strong < 1e-100 && (0.035..0.05).contains(&weak), "{strong} {weak}");
        assert_eq!(fisher_upper_tail(5, 1_000, 1_300, 100_000), 1.0);
    }

    #[test]
    fn the_normal_quantile_matches_the_tables() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-4);
        assert!((normal_quantile(0.99) - 2.326_348).abs() < 1e-4);
        assert!((normal_quantile(0.5)).abs() < 1e-6);
    }

    #[test]
    fn wilson_bound_is_below_the_share_and_tightens_with_more_data() {
        assert_eq!(wilson_lower_bound(0, 10, 1.96), 0.0);
        let few = wilson_lower_bound(3, 10, 1.96);
        let many = wilson_lower_bound(300, 1000, 1.96);
        assert!(few < many && many < 0.3);
        // Wider bounds sit lower.
        assert!(wilson_lower_bound(300, 1000, 3.5) < many);
    }
}
