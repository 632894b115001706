//! Paired rounds: every round times every variant once, in rotating order, so that drifts of
//! a shared machine's load hit all variants alike; ratios are taken within a round.

use std::time::Duration;

/// A measured variant: its label and a closure that runs one batch and returns its time.
pub type Variant<'a> = (&'static str, Box<dyn FnMut() -> Duration + 'a>);

/// The batch times of each variant, one per round.
#[derive(Debug)]
pub struct Rounds {
    /// The variants' labels, in the order given.
    pub labels: Vec<&'static str>,
    /// `times[v][r]`: the batch time of variant `v` in round `r`.
    pub times: Vec<Vec<Duration>>,
}

/// Runs `rounds` rounds of `variants`; round `r` starts with variant `r % variants.len()`.
pub fn run(rounds: usize, variants: &mut [Variant<'_>]) -> Rounds {
    let mut times = vec![Vec::with_capacity(rounds); variants.len()];
    for r in 0..rounds {
        for i in 0..variants.len() {
            let v = (i + r) % variants.len();
            times[v].push((variants[v].1)());
        }
    }
    Rounds {
        labels: variants.iter().map(|(label, _)| *label).collect(),
        times,
    }
}

/// The `q` quantile (0 to 1, nearest rank) of `values`.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

impl Rounds {
    /// The index of the variant labelled `label`.
    pub fn index(&self, label: &str) -> usize {
        self.labels
            .iter()
            .position(|l| *l == label)
            .unwrap_or_else(|| panic!("no variant {label:?}"))
    }

    /// The median batch time of variant `v`, in seconds.
    pub fn median_secs(&self, v: usize) -> f64 {
        let secs: Vec<f64> = self.times[v].iter().map(Duration::as_secs_f64).collect();
        quantile(&secs, 0.5)
    }

    /// The per-round ratios `v / base`: median, 10th and 90th percentiles.
    pub fn ratio(&self, v: usize, base: usize) -> [f64; 3] {
        let ratios: Vec<f64> = self.times[v]
            .iter()
            .zip(&self.times[base])
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect();
        [0.5, 0.1, 0.9].map(|q| quantile(&ratios, q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_and_ratios_pair_within_a_round() {
        let order = std::cell::RefCell::new(Vec::new());
        let mut variants: Vec<Variant<'_>> = vec![
            (
                "a",
                Box::new(|| {
                    order.borrow_mut().push('a');
                    Duration::from_millis(10)
                }),
            ),
            (
                "b",
                Box::new(|| {
                    order.borrow_mut().push('b');
                    Duration::from_millis(30)
                }),
            ),
        ];
        let rounds = run(3, &mut variants);
        drop(variants);
        assert_eq!(order.into_inner(), ['a', 'b', 'b', 'a', 'a', 'b']);
        assert_eq!(rounds.index("b"), 1);
        assert_eq!(rounds.ratio(1, 0), [3.0; 3]);
        assert!((rounds.median_secs(0) - 0.010).abs() < 1e-9);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
    }
}
