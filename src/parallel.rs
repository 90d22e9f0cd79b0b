//! Splitting a list of independent jobs over the machine's cores.

use std::ops::Range;

/// Runs `job` on contiguous shares of `0..len`, one share per core, and
/// returns the results in the order of the shares. No share is smaller
/// than `min_share` items (fewer are not worth a thread). The first share
/// runs on the calling thread; with one core or a short list, all of it
/// does.
pub fn chunks<R: Send>(len: usize, min_share: usize, job: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shares = cores.min(len / min_share.max(1)).max(1);
    let size = len.div_ceil(shares).max(1);
    let ranges: Vec<Range<usize>> = (0..shares)
        .map(|i| (i * size).min(len)..((i + 1) * size).min(len))
        .collect();
    std::thread::scope(|scope| {
        let job = &job;
        let rest: Vec<_> = ranges[1..]
            .iter()
            .map(|range| {
                let range = range.clone();
                scope.spawn(move || job(range))
            })
            .collect();
        let mut results = vec![job(ranges[0].clone())];
        results.extend(
            rest.into_iter()
                .map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
        );
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_index_once_in_order() {
        for len in [0, 1, 31, 32, 33, 100, 1001] {
            let shares = chunks(len, 32, |range| range.collect::<Vec<_>>());
            let all: Vec<usize> = shares.into_iter().flatten().collect();
            assert_eq!(all, (0..len).collect::<Vec<_>>(), "len {len}");
        }
    }
}
