//! Shutdown ends the media ports' readers and the media threads (their rooms with them). Its
//! own test binary: it counts the process's threads.

mod common;

use common::{Harness, STEP};

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("procfs");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_readers_and_media_threads() {
    // columns: --media-threads, media threads while serving
    for (threads, named) in [("0", 0), ("2", 2)] {
        let h = Harness::start_with(&["--media-threads", threads]).await;
        let _publisher = h.publisher(&format!("shut{threads}"), "p").await;
        assert_eq!(threads_named("sfu-media-"), named, "--media-threads {threads}");
        assert!(h.server.readers.iter().all(|r| !r.is_finished()));
        assert!(h.server.shutdown(STEP).await, "--media-threads {threads}: every reader ended");
        assert_eq!(threads_named("sfu-media-"), 0, "--media-threads {threads}: no media thread left");
    }
}
