//! The one worker pool: work items numbered `0..count` run on a few
//! threads, and their results come back in number order, so nothing that
//! is written ever depends on scheduling.
//!
//! Written here rather than taken from rayon: callers need results handed
//! over in order while later items still run (a base image's layers go on
//! its view one by one as soon as those below are read), a stop at the
//! first failure that reports that failure and not the items skipped
//! because of it, and no global thread pool inside a Nix builder.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::Result;

/// The threads to use when the caller names none: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work` for every number below `count` on up to `jobs` threads,
/// lowest number first, and hands each result to `take` in number order,
/// as soon as those before it are taken. At `take`'s first error no item
/// is started again, and the error is returned once the items under way
/// end.
pub fn in_order<T: Send>(
    count: usize,
    jobs: usize,
    work: impl Fn(usize) -> T + Sync,
    take: impl FnMut(usize, T) -> Result<()>,
) -> Result<()> {
    run(count, jobs, work, |_| false, take)
}

/// [`in_order`], in which no item starts once one has given a result
/// that `fails`.
fn run<T: Send>(
    count: usize,
    jobs: usize,
    work: impl Fn(usize) -> T + Sync,
    fails: impl Fn(&T) -> bool + Sync,
    mut take: impl FnMut(usize, T) -> Result<()>,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (done, results) = mpsc::channel();
        for _ in 0..jobs.clamp(1, count.max(1)) {
            let done = done.clone();
            let (next, stop, work, fails) = (&next, &stop, &work, &fails);
            scope.spawn(move || {
                // Stop is looked at before an item is taken, so every item
                // taken is run and the results below any one always come.
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        break;
                    }
                    let result = work(i);
                    if fails(&result) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if done.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the workers send: the loop below ends when they all have.
        drop(done);
        let mut waiting = BTreeMap::new();
        let mut want = 0;
        for (i, result) in results {
            waiting.insert(i, result);
            while let Some(result) = waiting.remove(&want) {
                if let Err(e) = take(want, result) {
                    stop.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                want += 1;
            }
        }
        Ok(())
    })
}

/// Runs `work` for every number below `count` on up to `jobs` threads and
/// returns the results in number order. No item starts once one has
/// failed, and the failure of the lowest number that failed is the error.
pub fn map<T: Send>(
    count: usize,
    jobs: usize,
    work: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(count);
    run(count, jobs, work, Result::is_err, |_, result| {
        out.push(result?);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_number_order_whatever_finishes_first() {
        let out = map(20, 4, |i| {
            std::thread::sleep(std::time::Duration::from_millis(((20 - i) % 7) as u64));
            Ok(i * 2)
        })
        .unwrap();
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn the_lowest_failure_is_reported_and_later_items_stop() {
        let started = AtomicUsize::new(0);
        let err = map(1000, 2, |i| {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 3 || i == 5 {
                anyhow::bail!("item {i} failed");
            }
            Ok(i)
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "item 3 failed");
        assert!(started.load(Ordering::SeqCst) < 1000);
    }

    #[test]
    fn nothing_to_do_is_fine() {
        assert!(map(0, 4, Ok).unwrap().is_empty());
    }
}
