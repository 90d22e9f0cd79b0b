//! The `etl` binary: parse arguments, start tracing, call the library, and
//! map the outcome to an exit code (0 ok, 1 a node failed, 2 etl could not
//! run).

mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
