//! Ranking scores into labels: the classification extension's "score:index:label" strings and the image
//! endpoint's `{label, index, score}` objects come from the same top-k.

use crate::tensor::{Tensor, TensorData};

/// One ranked class.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Class {
    pub label: String,
    pub index: usize,
    pub score: f64,
}

/// Top `k` classes of each row of `scores` (shape [rows, classes] or [classes]), best first.
pub fn top_k(scores: &Tensor, rows: usize, k: usize, labels: &[String]) -> Option<Vec<Vec<Class>>> {
    let values = scores.data.to_f64()?;
    let rows = rows.max(1);
    let per_row = values.len() / rows;
    if per_row == 0 {
        return Some(vec![Vec::new(); rows]);
    }
    Some(
        values
            .chunks_exact(per_row)
            .map(|row| {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                let k = k.min(row.len());
                // Partial sort: only the top k need ordering.
                idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| row[b].total_cmp(&row[a]));
                idx.truncate(k);
                idx.sort_unstable_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                idx.into_iter()
                    .map(|i| Class { label: labels.get(i).cloned().unwrap_or_default(), index: i, score: row[i] })
                    .collect()
            })
            .collect(),
    )
}

/// Softmax over each row, for logits outputs shown as probabilities.
pub fn softmax_rows(values: &mut [f64], per_row: usize) {
    for row in values.chunks_mut(per_row.max(1)) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        row.iter_mut().for_each(|v| *v = (*v - max).exp() / sum);
    }
}

/// The classification extension: replaces `t` by a BYTES tensor [rows, k] of "score:index[:label]".
pub fn classification_tensor(t: &Tensor, rows: usize, batched: bool, k: usize, labels: &[String]) -> Option<Tensor> {
    let ranked = top_k(t, rows, k, labels)?;
    let k_eff = ranked.first().map_or(0, Vec::len);
    let data = ranked
        .iter()
        .flatten()
        .map(|c| {
            let s = if c.label.is_empty() { format!("{}:{}", c.score as f32, c.index) } else { format!("{}:{}:{}", c.score as f32, c.index, c.label) };
            s.into_bytes()
        })
        .collect();
    let shape = if batched { vec![rows as i64, k_eff as i64] } else { vec![k_eff as i64] };
    Some(Tensor { name: t.name.clone(), shape, data: TensorData::Bytes(data) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_rows_independently() {
        let t = Tensor { name: "y".into(), shape: vec![2, 3], data: TensorData::Fp32(vec![0.1, 0.7, 0.2, 0.9, 0.0, 0.5]) };
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = top_k(&t, 2, 2, &labels).unwrap();
        assert_eq!(r[0].iter().map(|c| c.index).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(r[1][0].label, "a");
        let c = classification_tensor(&t, 2, true, 1, &labels).unwrap();
        assert_eq!(c.shape, vec![2, 1]);
        assert_eq!(c.data, TensorData::Bytes(vec![b"0.7:1:b".to_vec(), b"0.9:0:a".to_vec()]));
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut v = vec![1.0, 2.0, 3.0];
        softmax_rows(&mut v, 3);
        assert!((v.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(v[2] > v[1]);
    }
}
