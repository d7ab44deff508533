//! The one worker pool: work items numbered `0..count` run on a few
//! threads, and their results come back in number order, so nothing that
//! is written ever depends on scheduling. [`Ordered`] is the same for a
//! stream of items whose count is not known in advance (the blocks of a
//! layer being compressed).
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

/// Items handed over one by one to a few worker threads, whose results
/// come back in the order the items were handed over.
///
/// Threads start with the first item (none for one job: items run on the
/// caller's thread); at most `2 * jobs + 1` items are under way at once,
/// so memory is bounded whatever the stream's length.
pub struct Ordered<T: Send + 'static, R: Send + 'static> {
    jobs: usize,
    work: std::sync::Arc<dyn Fn(T) -> R + Send + Sync>,
    queue: Option<mpsc::Sender<(T, mpsc::Sender<R>)>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    under_way: std::collections::VecDeque<mpsc::Receiver<R>>,
}

impl<T: Send + 'static, R: Send + 'static> Ordered<T, R> {
    pub fn new(jobs: usize, work: impl Fn(T) -> R + Send + Sync + 'static) -> Self {
        Ordered {
            jobs: jobs.max(1),
            work: std::sync::Arc::new(work),
            queue: None,
            workers: Vec::new(),
            under_way: std::collections::VecDeque::new(),
        }
    }

    /// Hands `item` over, and returns the results that are ready, in
    /// order; waits for the oldest when too many are under way.
    pub fn push(&mut self, item: T) -> Vec<R> {
        if self.jobs == 1 {
            return vec![(self.work)(item)];
        }
        let (done, result) = mpsc::channel();
        self.queue()
            .send((item, done))
            .expect("workers live while the queue does");
        self.under_way.push_back(result);
        let mut ready = Vec::new();
        while let Some(front) = self.under_way.front() {
            let full = self.under_way.len() > 2 * self.jobs;
            let next = if full {
                front.recv().ok()
            } else {
                front.try_recv().ok()
            };
            match next {
                Some(r) => {
                    ready.push(r);
                    self.under_way.pop_front();
                }
                None => break,
            }
        }
        ready
    }

    /// Waits for every item under way and returns their results in order;
    /// the workers stop (a later `push` starts them again).
    pub fn finish(&mut self) -> Vec<R> {
        let ready = self
            .under_way
            .drain(..)
            .map(|r| r.recv().expect("a worker answers every item"))
            .collect();
        self.queue = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        ready
    }

    fn queue(&mut self) -> &mpsc::Sender<(T, mpsc::Sender<R>)> {
        if self.queue.is_none() {
            let (queue, items) = mpsc::channel::<(T, mpsc::Sender<R>)>();
            let items = std::sync::Arc::new(std::sync::Mutex::new(items));
            for _ in 0..self.jobs {
                let (items, work) = (items.clone(), self.work.clone());
                self.workers.push(std::thread::spawn(move || {
                    loop {
                        let next = items.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((item, done)) = next else { break };
                        // The receiver is gone only when the owner was
                        // dropped without finishing: nothing to hand over.
                        let _ = done.send(work(item));
                    }
                }));
            }
            self.queue = Some(queue);
        }
        self.queue.as_ref().expect("just set")
    }
}

impl<T: Send + 'static, R: Send + 'static> Drop for Ordered<T, R> {
    fn drop(&mut self) {
        self.under_way.clear();
        self.queue = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_of_items_comes_back_in_order() {
        for jobs in [1, 2, 4] {
            let mut ordered = Ordered::new(jobs, |i: u64| {
                std::thread::sleep(std::time::Duration::from_micros((37 - i % 37) * 20));
                i * 3
            });
            let mut out = Vec::new();
            for i in 0..200 {
                out.extend(ordered.push(i));
            }
            out.extend(ordered.finish());
            assert_eq!(
                out,
                (0..200).map(|i| i * 3).collect::<Vec<_>>(),
                "{jobs} jobs"
            );
        }
    }

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
