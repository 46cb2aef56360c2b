//! How many CPUs this process may really use. In a container the host's core count is a lie: the CPU limit is a
//! cgroup quota, and sizing thread pools to the host oversubscribes the quota and throttles every request.

/// CPUs allowed by the cgroup quota (v2, then v1), bounded by the affinity mask; at least 1.
pub fn available_cpus() -> usize {
    let affinity = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    quota_cpus().map_or(affinity, |q| q.min(affinity)).max(1)
}

fn quota_cpus() -> Option<usize> {
    if let Ok(text) = std::fs::read_to_string("/sys/fs/cgroup/cpu.max") {
        return parse_v2(&text);
    }
    let quota = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").ok()?;
    let period = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.cfs_period_us").ok()?;
    ratio(quota.trim().parse().ok()?, period.trim().parse().ok()?)
}

fn parse_v2(text: &str) -> Option<usize> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    if quota == "max" {
        return None;
    }
    ratio(quota.parse().ok()?, parts.next()?.parse().ok()?)
}

/// Whole CPUs, rounded up: a 1.5-CPU limit is best served by 2 threads that together stay under it.
fn ratio(quota: i64, period: i64) -> Option<usize> {
    (quota > 0 && period > 0).then(|| ((quota + period - 1) / period) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quotas() {
        assert_eq!(parse_v2("max 100000\n"), None);
        assert_eq!(parse_v2("200000 100000\n"), Some(2));
        assert_eq!(parse_v2("150000 100000"), Some(2));
        assert_eq!(parse_v2("50000 100000"), Some(1));
        assert_eq!(ratio(-1, 100000), None);
        assert!(available_cpus() >= 1);
    }
}
