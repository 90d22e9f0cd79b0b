//! The `etl` binary: parse arguments, start tracing, call the library, and
//! map the outcome to an exit code (0 ok, 1 a node failed, 2 etl could not
//! run).

mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keep_small_pages();
    cli::main()
}

/// Turns transparent huge pages off for this process, before the build
/// allocates anything large. mimalloc asks the kernel for huge pages on its
/// arenas, and a build frees and re-takes gigabytes of short-lived buffers
/// (hash tables, decoded batches): every first touch of a huge page then
/// zeroes 2 MiB, and a kernel that defragments for huge pages compacts
/// memory inside the fault. On this project's 2-core VM an incremental
/// build of the 5M-order lake spent 23 CPU seconds in the kernel beside 22
/// in user space, 26 s of wall clock; with small pages, 2.7 s in the kernel,
/// the same user time, 13.6 s of wall clock. Whoever wants huge pages back
/// sets mimalloc's own `MIMALLOC_ALLOW_THP=1`.
fn keep_small_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no
        // memory of ours; failing (an old kernel) only leaves huge pages on.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}
