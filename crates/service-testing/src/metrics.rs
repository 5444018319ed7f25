//! Reading a service's `/metrics` page in tests.

/// The sum of a counter's series on a Prometheus text page whose labels include all of `labels`
/// (0 when there is none).
pub fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_matching_series() {
        let page = "# HELP emails_sent_total sent\n\
                    emails_sent_total{event_type=\"task-created\"} 2\n\
                    emails_sent_total{event_type=\"task-due-soon\"} 3\n\
                    emails_failed_total{event_type=\"task-created\"} 7\n";
        assert_eq!(counter(page, "emails_sent_total", &[]), 5.0);
        assert_eq!(
            counter(
                page,
                "emails_sent_total",
                &[("event_type", "task-due-soon")]
            ),
            3.0
        );
        assert_eq!(counter(page, "emails_retried_total", &[]), 0.0);
    }
}
