//! Summaries of repeated measurements. The machine is shared and noisy, so
//! every point is measured several times and reported by its median, with the
//! range alongside.

/// The median, least and greatest of some measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many measurements.
    pub runs: usize,
}

impl Summary {
    /// Summarises `values` (`None` if there are none).
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            runs: sorted.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Summary::of([5.0, 1.0, 3.0]).expect("values");
        assert_eq!((odd.median, odd.min, odd.max, odd.runs), (3.0, 1.0, 5.0, 3));
        let even = Summary::of([4.0, 1.0, 3.0, 2.0]).expect("values");
        assert_eq!(even.median, 2.5);
        assert_eq!(Summary::of([]), None);
    }
}
