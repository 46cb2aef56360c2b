//! Stacking requests along the batch axis and handing each its rows of the outputs. Pure functions, so the
//! batching rules are tested without threads or timing.

use crate::tensor::{Tensor, TensorData};

/// Whether two requests can share a batch: same inputs in the same order, same datatypes and the same
/// dimensions after the batch axis.
pub fn compatible(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name && x.datatype() == y.datatype() && x.shape.get(1..) == y.shape.get(1..) && !x.shape.is_empty()
        })
}

/// Concatenates the jobs' inputs along axis 0. Callers guarantee `compatible` between all of them.
pub fn stack(mut parts: Vec<Vec<Tensor>>) -> Vec<Tensor> {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    // One allocation per input: growing by doubling would copy a batch of images several times.
    let totals: Vec<usize> = (0..parts[0].len()).map(|k| parts.iter().map(|p| p.get(k).map_or(0, |t| t.data.len())).sum()).collect();
    let mut iter = parts.into_iter();
    let Some(mut out) = iter.next() else { return Vec::new() };
    for (acc, total) in out.iter_mut().zip(totals) {
        acc.data.reserve(total.saturating_sub(acc.data.len()));
    }
    for part in iter {
        for (acc, t) in out.iter_mut().zip(part) {
            acc.data.extend_from(&t.data);
            acc.shape[0] += t.shape[0];
        }
    }
    out
}

/// Splits batched outputs back into one list per job, by the jobs' row counts. An output whose first axis is not
/// the batch (a model that returns a fixed tensor) is given whole to every job.
pub fn unstack(outputs: Vec<Tensor>, rows: &[usize]) -> Vec<Vec<Tensor>> {
    let total: usize = rows.iter().sum();
    if rows.len() == 1 {
        return vec![outputs];
    }
    let mut per_job: Vec<Vec<Tensor>> = vec![Vec::with_capacity(outputs.len()); rows.len()];
    for out in outputs {
        let batched = out.shape.first().map(|&d| d as usize) == Some(total) && total > 0;
        if !batched {
            per_job.iter_mut().for_each(|j| j.push(out.clone()));
            continue;
        }
        let per_row = out.data.len() / total;
        let mut start = 0;
        for (job, &r) in per_job.iter_mut().zip(rows) {
            let mut shape = out.shape.clone();
            shape[0] = r as i64;
            let data: TensorData = out.data.slice(start * per_row, (start + r) * per_row);
            job.push(Tensor { name: out.name.clone(), shape, data });
            start += r;
        }
    }
    per_job
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: Vec<i64>, v: Vec<f32>) -> Tensor {
        Tensor { name: name.into(), shape, data: TensorData::Fp32(v) }
    }

    #[test]
    fn compatibility_rules() {
        let a = vec![t("x", vec![1, 2], vec![1.0, 2.0])];
        assert!(compatible(&a, &[t("x", vec![3, 2], vec![0.0; 6])]));
        assert!(!compatible(&a, &[t("x", vec![1, 3], vec![0.0; 3])]), "inner dims differ");
        assert!(!compatible(&a, &[t("y", vec![1, 2], vec![0.0; 2])]), "names differ");
        let ints = vec![Tensor { name: "x".into(), shape: vec![1, 2], data: TensorData::Int32(vec![1, 2]) }];
        assert!(!compatible(&a, &ints), "datatypes differ");
    }

    #[test]
    fn stack_then_unstack_restores_rows() {
        let jobs = vec![vec![t("x", vec![1, 2], vec![1.0, 2.0])], vec![t("x", vec![2, 2], vec![3.0, 4.0, 5.0, 6.0])]];
        let stacked = stack(jobs);
        assert_eq!(stacked[0].shape, vec![3, 2]);
        assert_eq!(stacked[0].data, TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let back = unstack(stacked, &[1, 2]);
        assert_eq!(back[0][0].shape, vec![1, 2]);
        assert_eq!(back[1][0].data, TensorData::Fp32(vec![3.0, 4.0, 5.0, 6.0]));
    }

    #[test]
    fn unbatched_output_goes_to_everyone() {
        let outs = vec![t("fixed", vec![2], vec![7.0, 8.0])];
        let back = unstack(outs, &[1, 2]);
        assert_eq!(back[0][0].data, back[1][0].data);
    }
}
